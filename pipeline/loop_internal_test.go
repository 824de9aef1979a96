package pipeline

import (
	"context"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/schemas"
)

type bytesCodec struct{}

func (bytesCodec) Decode(_ context.Context, _ Topic, b []byte) (any, schemas.ContractVersion, error) {
	return b, schemas.V1, nil
}

func (bytesCodec) Encode(_ context.Context, _ Topic, _ schemas.ContractVersion, v any) ([]byte, error) {
	return v.([]byte), nil
}

// BenchmarkLoopRecord measures the loop's own work per record, without a
// broker: decode, state lookup through the overlay, handle, encode, stage
// the output and the state write.
func BenchmarkLoopRecord(b *testing.B) {
	out := Topic("out")
	h := HandlerFunc(func(_ context.Context, state []byte, in Input) (Result, error) {
		n, _ := strconv.Atoi(string(state))
		return Result{State: strconv.AppendInt(nil, int64(n+1), 10), StateChanged: true,
			Outputs: []Output{{Topic: out, Key: in.Key, Value: in.Value}}}, nil
	})
	p, err := NewProcessor("bench", h, WithKafka(kgo.SeedBrokers("127.0.0.1:1")), WithInputs("in"), WithCodec(bytesCodec{}))
	if err != nil {
		b.Fatal(err)
	}
	p.store.install(0, &partState{data: map[string][]byte{}})
	keys := make([][]byte, 1000)
	for i := range keys {
		keys[i] = []byte("trace-" + strconv.Itoa(i))
	}
	rec := &kgo.Record{Topic: "in", Value: []byte("0123456789abcdef0123456789abcdef")}
	var produced int
	produce := func(*kgo.Record) { produced++ }
	ctx := context.Background()
	b.ReportAllocs()
	bt := &batch{ov: p.store.newOverlay(), dlq: map[string]int{}}
	for i := 0; b.Loop(); i++ {
		if i%1000 == 0 {
			bt.ov.apply(nil)
			bt = &batch{ov: p.store.newOverlay(), dlq: map[string]int{}}
		}
		rec.Key = keys[i%len(keys)]
		if err := p.try(ctx, bt, rec, produce); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(produced)/b.Elapsed().Seconds(), "records/s")
}
