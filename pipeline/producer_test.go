package pipeline_test

import (
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/pipeline"
)

func TestProducer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 3)
	p, err := pipeline.NewProducer(e.codec, kgo.SeedBrokers(e.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var outs []pipeline.Output
	for i := range 10 {
		outs = append(outs, pipeline.Output{Topic: e.layout.Intents(), Key: fmt.Appendf(nil, "trace-%d", i), Value: &msg{ID: fmt.Sprint(i)}})
	}
	res, err := p.Produce(t.Context(), outs...)
	if err != nil {
		t.Fatal(err)
	}
	next := map[int32]int64{}
	for i, r := range res {
		if r.Err != nil || r.Topic != e.layout.Intents() || r.Partition != kafkaPartition(outs[i].Key, 3) || r.Offset != next[r.Partition] {
			t.Errorf("record %d landed at %+v; want partition %d offset %d", i, r, kafkaPartition(outs[i].Key, 3), next[r.Partition])
		}
		next[r.Partition]++
	}
	// An encoding error fails the call before anything is sent.
	_, err = p.Produce(t.Context(), pipeline.Output{Topic: e.layout.Intents(), Value: make(chan int)})
	if err == nil {
		t.Error("unencodable value produced")
	}
	got := e.readAll(t, e.layout.Intents(), 10, 0, true)
	if len(got) != 10 {
		t.Errorf("%d records on the topic, want 10", len(got))
	}
	p.Close() // idempotent
	if _, err := pipeline.NewProducer(nil); err == nil {
		t.Error("NewProducer(nil codec) accepted")
	}
}
