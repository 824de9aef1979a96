package drift

import (
	"context"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
)

// Codec is the monitor's codec: records of the samples topic decode as
// *Sample (a record that does not is poison, dead-lettered with code
// "bad_drift_sample"); everything else, the gate.drift events it writes
// included, goes through the thread's codec. It is safe for concurrent use
// when that codec is.
type Codec struct {
	thread  pipeline.Codec
	samples pipeline.Topic
}

var _ pipeline.Codec = (*Codec)(nil)

// NewCodec returns the monitor's codec over the thread's codec for the
// topics of layout.
func NewCodec(thread pipeline.Codec, layout pipeline.Layout) *Codec {
	return &Codec{thread: thread, samples: layout.DriftSamples()}
}

// Decode implements pipeline.Codec.
func (c *Codec) Decode(ctx context.Context, topic pipeline.Topic, b []byte) (any, schemas.ContractVersion, error) {
	if topic != c.samples {
		return c.thread.Decode(ctx, topic, b)
	}
	s, err := DecodeSample(b)
	if err != nil {
		return nil, 0, &pipeline.RejectError{Code: "bad_drift_sample", Reason: err.Error()}
	}
	return &s, 0, nil
}

// Encode implements pipeline.Codec.
func (c *Codec) Encode(ctx context.Context, topic pipeline.Topic, v schemas.ContractVersion, value any) ([]byte, error) {
	return c.thread.Encode(ctx, topic, v, value)
}
