package pipeline_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
)

// TestProducerResultsInOrder: the results of ProduceRaw are in the order of
// the records given, although kgo completes them per partition in any
// order; each says where its own record landed.
func TestProducerResultsInOrder(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	topic := kafkatest.Prefix(t) + "order"
	adm := kadm.NewClient(kafkatest.Client(t, brokers))
	if _, err := adm.CreateTopic(t.Context(), 6, -1, nil, topic); err != nil {
		t.Fatal(err)
	}
	p, err := pipeline.NewProducer(&jsonCodec{}, kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const n = 300
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "v%d", i)}
	}
	res, err := p.ProduceRaw(t.Context(), recs...)
	if err != nil {
		t.Fatal(err)
	}
	cl := kafkatest.Client(t, brokers, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	at := map[string][2]int64{}
	deadline := time.Now().Add(20 * time.Second)
	for len(at) < n && time.Now().Before(deadline) {
		cl.PollFetches(t.Context()).EachRecord(func(r *kgo.Record) { at[string(r.Value)] = [2]int64{int64(r.Partition), r.Offset} })
	}
	for i, r := range res {
		if got := at[fmt.Sprintf("v%d", i)]; got != [2]int64{int64(r.Partition), r.Offset} {
			t.Fatalf("result %d says partition %d offset %d; record v%d is at %v", i, r.Partition, r.Offset, i, got)
		}
	}
}
