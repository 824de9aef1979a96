package projections

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
)

// readUntil reads committed records up to the end, skipping aborted ones
// and control markers, and returns once every partition is caught up.
func TestReadUntil(t *testing.T) {
	t.Parallel()
	brokers, prefix := kafkatest.Brokers(t), kafkatest.Prefix(t)
	topic := prefix + "read"
	cl := kafkatest.Client(t, brokers, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.TransactionalID(prefix+"tx"), kgo.ProducerLinger(0))
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(t.Context(), 2, -1, nil, topic); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := pipeline.WaitLeaders(ctx, adm, topic); err != nil {
		t.Fatal(err)
	}
	txn := func(commit bool, vals ...string) {
		t.Helper()
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for _, v := range vals {
			if err := cl.ProduceSync(t.Context(), &kgo.Record{Topic: topic, Partition: 0, Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := cl.EndTransaction(t.Context(), kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
	}
	txn(true, "a", "b")
	txn(false, "x")
	txn(true, "c")
	ends, _, err := endOffsets(t.Context(), adm, []string{topic}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := readUntil(t.Context(), []kgo.Opt{kgo.SeedBrokers(brokers...)}, ends, 10*time.Second, func(r *kgo.Record) error {
		got = append(got, string(r.Value))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0] != "a" || got[1] != "b" || got[2] != "c" {
		t.Fatalf("read %q, want [a b c] (ends %v)", got, ends)
	}
}
