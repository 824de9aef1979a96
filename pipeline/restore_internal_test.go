package pipeline

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
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

// TestRestoreIgnoresAnswersWithoutRecords: fetch answers the client drops
// (here, a retriable error on every fetch of the restoring consumer for
// longer than the quiet period) do not make the changelog look read to its
// end: the probe of the partition's tail sees the records and restore waits
// until the consumer delivers them all.
func TestRestoreIgnoresAnswersWithoutRecords(t *testing.T) {
	t.Parallel()
	const n = 50
	c, r := restoreEnv(t, n, 100*time.Millisecond)
	refuseUntil := time.Now().Add(2 * time.Second) // twenty quiet periods
	var refused, probes atomic.Int32
	c.ControlKey(kmsg.Fetch.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		freq := req.(*kmsg.FetchRequest)
		if freq.MaxWaitMillis == 0 {
			probes.Add(1) // the restorer's probe (the consumer waits 100 ms): answered as it is
			return nil, nil, false
		}
		if time.Now().After(refuseUntil) {
			return nil, nil, false
		}
		refused.Add(1)
		resp := freq.ResponseKind().(*kmsg.FetchResponse)
		resp.Version = freq.Version
		for _, rt := range freq.Topics {
			st := kmsg.NewFetchResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewFetchResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.NotLeaderForPartition.Code
				sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = -1, -1, -1
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	got, err := r.restore(t.Context(), []int32{0})
	if err != nil {
		t.Fatal(err)
	}
	checkRestored(t, got, n)
	if refused.Load() < 2 || probes.Load() == 0 {
		t.Fatalf("%d fetches refused and %d probes: the test did not exercise the quiet rule", refused.Load(), probes.Load())
	}
}

// wireBatch is one v2 record batch's wire bytes with the given header fields
// and a body of filler records.
func wireBatch(first int64, lastDelta int32, attrs int16, producer int64, records int32) []byte {
	b := kmsg.RecordBatch{
		FirstOffset:     first,
		Magic:           2,
		Attributes:      attrs,
		LastOffsetDelta: lastDelta,
		ProducerID:      producer,
		NumRecords:      records,
		Records:         make([]byte, 8*records),
	}
	out := b.AppendTo(nil)
	binary.BigEndian.PutUint32(out[8:], uint32(len(out)-12))
	return out
}

func TestScanBatches(t *testing.T) {
	const txn, control = 0x10, 0x30
	aborted := func(producer, first int64) kmsg.FetchResponseTopicPartitionAbortedTransaction {
		a := kmsg.NewFetchResponseTopicPartitionAbortedTransaction()
		a.ProducerID, a.FirstOffset = producer, first
		return a
	}
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	for _, tc := range []struct {
		name    string
		b       []byte
		from    int64
		until   int64
		aborted []kmsg.FetchResponseTopicPartitionAbortedTransaction
		next    int64
		whole   int
		visible bool
	}{
		{name: "empty answer", b: nil, from: 5, until: 100},
		{name: "plain data past from", b: wireBatch(5, 2, 0, -1, 3), from: 5, until: 100, next: 8, whole: 1, visible: true},
		{name: "a delivered batch before from", b: wireBatch(0, 4, 0, -1, 5), from: 5, until: 100, next: 5, whole: 1},
		{name: "a batch spanning from was delivered whole", b: wireBatch(3, 4, 0, -1, 5), from: 5, until: 100, next: 8, whole: 1},
		{name: "an emptied batch", b: wireBatch(5, 2, 0, 7, 0), from: 5, until: 100, next: 8, whole: 1},
		{name: "aborted data", b: cat(wireBatch(5, 1, txn, 7, 2), wireBatch(7, 0, txn, 7, 1)), from: 5, until: 100,
			aborted: []kmsg.FetchResponseTopicPartitionAbortedTransaction{aborted(7, 5)}, next: 8, whole: 2},
		{name: "data of a transaction not listed aborted", b: wireBatch(5, 1, txn, 7, 2), from: 5, until: 100, next: 7, whole: 1, visible: true},
		{name: "another producer's abort", b: wireBatch(5, 1, txn, 8, 2), from: 5, until: 100,
			aborted: []kmsg.FetchResponseTopicPartitionAbortedTransaction{aborted(7, 5)}, next: 7, whole: 1, visible: true},
		{name: "an abort listed from a later offset", b: wireBatch(5, 1, txn, 7, 2), from: 5, until: 100,
			aborted: []kmsg.FetchResponseTopicPartitionAbortedTransaction{aborted(7, 9)}, next: 7, whole: 1, visible: true},
		{name: "a marker is seen", b: wireBatch(5, 0, control, 7, 1), from: 5, until: 100, next: 6, whole: 1, visible: true},
		{name: "the marker ends the abort", b: cat(wireBatch(3, 1, txn, 7, 2), wireBatch(5, 0, control, 7, 1), wireBatch(6, 0, txn, 7, 1)), from: 6, until: 100,
			aborted: []kmsg.FetchResponseTopicPartitionAbortedTransaction{aborted(7, 3)}, next: 7, whole: 3, visible: true},
		{name: "a cut-off batch is left for the next read", b: cat(wireBatch(5, 0, 0, 7, 0), wireBatch(6, 0, 0, -1, 1)[:40]), from: 5, until: 100, next: 6, whole: 1},
		{name: "a batch at until ends the walk", b: cat(wireBatch(5, 1, txn, 7, 2), wireBatch(7, 0, control, 7, 1)), from: 5, until: 7,
			aborted: []kmsg.FetchResponseTopicPartitionAbortedTransaction{aborted(7, 5)}, next: 7, whole: 1},
		{name: "only a cut-off batch", b: wireBatch(5, 0, 0, -1, 1)[:40], from: 5, until: 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next, whole, visible := scanBatches(tc.b, tc.from, tc.until, tc.aborted)
			if next != tc.next || whole != tc.whole || visible != tc.visible {
				t.Fatalf("scanBatches = (%d, %d, %v), want (%d, %d, %v)", next, whole, visible, tc.next, tc.whole, tc.visible)
			}
		})
	}
}

// FuzzScanBatches: any fetch answer's bytes are walked without a panic,
// and the offset it returns is after a whole batch only when it saw one.
func FuzzScanBatches(f *testing.F) {
	f.Add(wireBatch(5, 2, 0, -1, 3), int64(5), int64(-1), int64(0))
	f.Add(append(wireBatch(5, 1, 0x10, 7, 2), wireBatch(7, 0, 0x30, 7, 1)...), int64(5), int64(7), int64(5))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 0xff, 0xff, 0xff}, int64(0), int64(0), int64(0))
	f.Fuzz(func(t *testing.T, b []byte, from, producer, first int64) {
		a := kmsg.NewFetchResponseTopicPartitionAbortedTransaction()
		a.ProducerID, a.FirstOffset = producer, first
		_, whole, visible := scanBatches(b, from, math.MaxInt64, []kmsg.FetchResponseTopicPartitionAbortedTransaction{a})
		if whole < 0 || whole > len(b)/61 {
			t.Fatalf("%d whole batches in %d bytes", whole, len(b))
		}
		if visible && whole == 0 {
			t.Fatal("a visible record without a whole batch")
		}
	})
}

// TestTailProbe: the restorer's probe of a changelog's tail, on the test
// broker (Apache Kafka under `make test-kafka`): committed data and both
// kinds of transaction marker are visible, aborted data alone is not, and
// past the last record nothing is.
func TestTailProbe(t *testing.T) {
	t.Parallel()
	var brokers []string
	if bs := strings.TrimSpace(os.Getenv("KAFKA_BROKERS")); bs != "" {
		brokers = strings.Split(bs, ",")
	} else {
		e := NewEmbedded(EmbeddedConfig{})
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(e.Close)
		brokers = e.Addrs()
	}
	var id [4]byte
	_, _ = rand.Read(id[:])
	topic := "t_tailprobe_" + hex.EncodeToString(id[:])
	seeds := kgo.SeedBrokers(brokers...)
	admc, err := kgo.NewClient(seeds)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admc.Close)
	adm := kadm.NewClient(admc)
	ctx := t.Context()
	if _, err := adm.CreateTopic(ctx, 1, -1, nil, topic); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = adm.DeleteTopics(context.Background(), topic) })
	prod, err := kgo.NewClient(seeds, kgo.TransactionalID(topic), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	txn := func(commit kgo.TransactionEndTry, keys ...string) {
		t.Helper()
		if err := prod.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if err := prod.ProduceSync(ctx, &kgo.Record{Key: []byte(k), Value: []byte(k)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := prod.EndTransaction(ctx, commit); err != nil {
			t.Fatal(err)
		}
	}
	txn(kgo.TryCommit, "a", "b", "c") // offsets 0-2, its marker 3
	txn(kgo.TryAbort, "d", "e")       // offsets 4-5, its marker 6
	r := &restorer{topic: Topic(topic), adm: adm, log: slog.New(slog.DiscardHandler)}
	for _, tc := range []struct {
		from      int64
		invisible bool
	}{{0, false}, {2, false}, {3, false}, {4, false}, {7, true}} {
		got, err := r.tailInvisible(ctx, admc, 0, tc.from, 7)
		if err != nil {
			t.Fatalf("from %d: %v", tc.from, err)
		}
		if got != tc.invisible {
			t.Errorf("from %d: invisible %v, want %v", tc.from, got, tc.invisible)
		}
	}
	// The aborted records alone, their marker left out of the range.
	got, err := r.tailInvisible(ctx, admc, 0, 4, 6)
	if err != nil || !got {
		t.Errorf("aborted data alone: invisible %v (%v), want true", got, err)
	}
}
