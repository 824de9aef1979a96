package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/schemas"
)

// Producer is a small non-transactional, idempotent producer for CLIs and
// adapters (`spine produce`): it encodes canonical values through a Codec
// and reports where each record landed. It is safe for concurrent use.
type Producer struct {
	cl    *kgo.Client
	codec Codec
	once  sync.Once
}

// NewProducer returns a producer writing through codec with the client
// options opts (Config.KafkaOpts). Records are partitioned by key with
// Kafka's murmur2, like every Spine client. It does no I/O.
func NewProducer(codec Codec, opts ...kgo.Opt) (*Producer, error) {
	if codec == nil {
		return nil, errors.New("pipeline: producer needs a codec")
	}
	cl, err := kgo.NewClient(append(slices.Clone(opts),
		kgo.ProducerLinger(0),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
	)...)
	if err != nil {
		return nil, fmt.Errorf("pipeline: producer: %w", err)
	}
	return &Producer{cl: cl, codec: codec}, nil
}

// Produced is where one record landed, or why it did not.
type Produced struct {
	Topic     Topic
	Partition int32
	Offset    int64
	Err       error
}

// Produce encodes every output and produces them as one batch, waiting for
// all acknowledgements. The results are in the order of outs. An encoding
// error fails the whole call before anything is sent; produce errors are
// reported per record and joined in the returned error. Each record carries
// its W3C traceparent (an event's, or an intent's naming its run's root
// span) and an event's its HeaderEventType, as the loop's records do.
func (p *Producer) Produce(ctx context.Context, outs ...Output) ([]Produced, error) {
	recs := make([]*kgo.Record, len(outs))
	for i, o := range outs {
		v := o.Version
		if v == 0 {
			v = schemas.V1
		}
		val, err := p.codec.Encode(ctx, o.Topic, v, o.Value)
		if err != nil {
			return nil, fmt.Errorf("encode record %d for %s: %w", i, o.Topic, err)
		}
		recs[i] = &kgo.Record{Topic: string(o.Topic), Key: o.Key, Value: val, Headers: recordHeaders(o.Value)}
	}
	out := inOrder(recs, p.cl.ProduceSync(ctx, recs...))
	var errs []error
	for i, r := range out {
		if r.Err != nil {
			errs = append(errs, fmt.Errorf("record %d to %s: %w", i, r.Topic, r.Err))
		}
	}
	return out, errors.Join(errs...)
}

// inOrder returns the results of recs in the order of recs: ProduceSync
// returns them in the order the promises completed, which differs across
// partitions.
func inOrder(recs []*kgo.Record, res kgo.ProduceResults) []Produced {
	at := make(map[*kgo.Record]int, len(recs))
	for i, r := range recs {
		at[r] = i
	}
	out := make([]Produced, len(recs))
	for _, r := range res {
		i, ok := at[r.Record]
		if !ok {
			continue
		}
		out[i] = Produced{Topic: Topic(r.Record.Topic), Partition: r.Record.Partition, Offset: r.Record.Offset, Err: r.Err}
	}
	return out
}

// ProduceRaw produces already-encoded records (for example poison test
// input) and waits for them. The results are in the order of recs.
func (p *Producer) ProduceRaw(ctx context.Context, recs ...*kgo.Record) ([]Produced, error) {
	res := p.cl.ProduceSync(ctx, recs...)
	return inOrder(recs, res), res.FirstErr()
}

// Close flushes nothing further and closes the client. It is idempotent.
func (p *Producer) Close() { p.once.Do(p.cl.Close) }
