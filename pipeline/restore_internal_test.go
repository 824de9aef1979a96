package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// restoreEnv is a one-broker kfake cluster with a one-partition changelog
// holding n committed state records (keys k0..k<n-1>), and a restorer on it
// that takes a partition as read after quiet.
func restoreEnv(t *testing.T, n int, quiet time.Duration) (*kfake.Cluster, *restorer) {
	t.Helper()
	const topic = "changelog"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	seeds := kgo.SeedBrokers(c.ListenAddrs()...)
	prod, err := kgo.NewClient(seeds, kgo.TransactionalID("restore-test"), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	ctx := t.Context()
	if err := prod.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		prod.Produce(ctx, &kgo.Record{Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "v%d", i)}, nil)
	}
	if err := prod.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := prod.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	adm, err := kgo.NewClient(seeds)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(adm.Close)
	return c, &restorer{
		topic:   topic,
		opts:    []kgo.Opt{seeds},
		adm:     kadm.NewClient(adm),
		settle:  time.Second,
		timeout: 60 * time.Second,
		quiet:   quiet,
		log:     slog.New(slog.DiscardHandler),
	}
}

func checkRestored(t *testing.T, got map[int32]*partState, n int) {
	t.Helper()
	data := got[0].data
	if len(data) != n {
		t.Fatalf("restored %d keys, want %d", len(data), n)
	}
	for i := range n {
		if v := string(data[fmt.Sprintf("k%d", i)]); v != fmt.Sprintf("v%d", i) {
			t.Fatalf("k%d = %q, want v%d", i, v, i)
		}
	}
}

// TestRestoreWaitsForASlowBroker: a broker that takes longer than the
// quiet period to answer fetches does not make the changelog look read to
// its end; every record is restored.
func TestRestoreWaitsForASlowBroker(t *testing.T) {
	t.Parallel()
	const n = 50
	c, r := restoreEnv(t, n, 100*time.Millisecond)
	var slowed atomic.Int32
	c.ControlKey(kmsg.Fetch.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if slowed.Add(1) <= 3 {
			c.SleepControl(func() { time.Sleep(time.Second) }) // ten quiet periods
		}
		return nil, nil, false
	})
	got, err := r.restore(t.Context(), []int32{0})
	if err != nil {
		t.Fatal(err)
	}
	checkRestored(t, got, n)
	if slowed.Load() == 0 {
		t.Fatal("no fetch was slowed")
	}
}

// TestRestoreTakesAnInvisibleTailAsRead: when the last stable offset lies
// past every record the client can see (a tail of aborted data whose
// marker was compacted away), restore ends once the partition stays quiet
// while the broker keeps answering, with every visible record.
func TestRestoreTakesAnInvisibleTailAsRead(t *testing.T) {
	t.Parallel()
	const n = 20
	c, r := restoreEnv(t, n, 200*time.Millisecond)
	// The log holds the n records and the commit marker (offsets 0..n);
	// List Offsets answers as if 5 invisible records followed them.
	end := int64(n + 1 + 5)
	c.ControlKey(kmsg.ListOffsets.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		lreq := req.(*kmsg.ListOffsetsRequest)
		resp := lreq.ResponseKind().(*kmsg.ListOffsetsResponse)
		resp.Version = lreq.Version
		for _, rt := range lreq.Topics {
			st := kmsg.NewListOffsetsResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewListOffsetsResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.Offset = end
				if rp.Timestamp == -2 { // earliest
					sp.Offset = 0
				}
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	start := time.Now()
	got, err := r.restore(ctx, []int32{0})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < r.quiet {
		t.Fatalf("restore ended after %v, before the quiet period %v", took, r.quiet)
	}
	checkRestored(t, got, n)
}
