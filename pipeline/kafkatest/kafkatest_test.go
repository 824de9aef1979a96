package kafkatest_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
)

// TestTransactions is the smoke test of the processing guarantee on the
// selected backend (kfake, or real Apache Kafka with KAFKA_BROKERS): a
// GroupTransactSession consumes, transforms and produces in transactions,
// an aborted transaction stays invisible, and a read_committed consumer
// sees every committed output exactly once.
func TestTransactions(t *testing.T) {
	t.Parallel()
	brokers := kafkatest.Brokers(t)
	t.Logf("backend %s, brokers %v", kafkatest.Backend(), brokers)
	testTransactions(t, brokers)
}

// testTransactions runs the transaction smoke test on brokers.
func testTransactions(t *testing.T, brokers []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	p := kafkatest.Prefix(t)
	in, out := p+"in", p+"out"

	adm := createTopics(ctx, t, brokers, 3, in, out)

	const n = 30
	plain := kafkatest.Client(t, brokers, kgo.DefaultProduceTopic(in))
	for i := range n {
		r := &kgo.Record{Key: []byte("trace-" + strconv.Itoa(i%7)), Value: []byte(strconv.Itoa(i))}
		if err := plain.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce input %d: %v", i, err)
		}
	}

	// An aborted transaction: its records must never reach a read_committed
	// consumer.
	aborter := kafkatest.Client(t, brokers, kgo.TransactionalID(p+"aborter"), kgo.DefaultProduceTopic(out))
	if err := aborter.BeginTransaction(); err != nil {
		t.Fatalf("begin aborted txn: %v", err)
	}
	if err := aborter.ProduceSync(ctx, &kgo.Record{Value: []byte("aborted")}).FirstErr(); err != nil {
		t.Fatalf("produce in aborted txn: %v", err)
	}
	if err := aborter.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatalf("abort: %v", err)
	}

	// Consume -> transform -> produce, one transaction per poll.
	sess, err := kgo.NewGroupTransactSession(
		kgo.SeedBrokers(brokers...),
		kgo.TransactionalID(p+"txn"),
		kgo.ConsumerGroup(p+"group"),
		kgo.ConsumeTopics(in),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DefaultProduceTopic(out),
	)
	if err != nil {
		t.Fatalf("group transact session: %v", err)
	}
	defer sess.Close()
	for done := 0; done < n; {
		fs := sess.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("transformed %d of %d records before the deadline: %v", done, n, ctx.Err())
		}
		if err := fs.Err0(); err != nil {
			t.Fatalf("poll: %v", err)
		}
		if err := sess.Begin(); err != nil {
			t.Fatalf("begin: %v", err)
		}
		var outs []*kgo.Record
		fs.EachRecord(func(r *kgo.Record) {
			outs = append(outs, &kgo.Record{Key: r.Key, Value: []byte("out-" + string(r.Value))})
		})
		if err := sess.ProduceSync(ctx, outs...).FirstErr(); err != nil {
			t.Fatalf("produce in txn: %v", err)
		}
		committed, err := sess.End(ctx, kgo.TryCommit)
		if err != nil {
			t.Fatalf("end txn: %v", err)
		}
		if committed {
			done += len(outs)
		}
	}

	// A read_committed reader sees each committed output once, no aborted
	// record.
	reader := kafkatest.Client(t, brokers,
		kgo.ConsumeTopics(out),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	)
	seen := map[string]int{}
	for total := 0; total < n; {
		fs := reader.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d committed outputs before the deadline: %v", total, n, ctx.Err())
		}
		if err := fs.Err0(); err != nil {
			t.Fatalf("read: %v", err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			seen[string(r.Value)]++
			total++
		})
	}
	for i := range n {
		if got := seen[fmt.Sprintf("out-%d", i)]; got != 1 {
			t.Errorf("output %d seen %d times, want exactly once", i, got)
		}
	}
	if seen["aborted"] != 0 {
		t.Errorf("read_committed consumer saw a record of an aborted transaction")
	}
	if len(seen) != n {
		t.Errorf("saw %d distinct outputs, want %d: %v", len(seen), n, seen)
	}

	// The group's committed offsets cover every input (committed with the
	// transactions, not separately).
	offs := stableOffsets(ctx, t, adm, p+"group")
	var sum int64
	offs.Each(func(o kadm.OffsetResponse) { sum += o.At })
	if sum != n {
		t.Errorf("group committed offsets sum to %d, want %d", sum, n)
	}
}

// stableOffsets fetches a group's committed offsets once no transactional
// offset commit is pending: with transaction.version 2, EndTxn returns
// before the commit markers land in __consumer_offsets, so a plain fetch
// right after it can still see the previous offsets.
func stableOffsets(ctx context.Context, t *testing.T, adm *kadm.Client, group string) kadm.OffsetResponses {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		// A partition with a pending commit answers UNSTABLE_OFFSET_COMMIT
		// (retriable): ask again until none does.
		offs, err := adm.FetchOffsets(kadm.RequireStable(ctx), group)
		if err == nil {
			err = offs.Error()
		}
		if err == nil {
			return offs
		}
		select {
		case <-ctx.Done():
			t.Fatalf("fetch stable offsets of %s: %v", group, err)
		case <-tick.C:
		}
	}
}

// createTopics creates topics with partitions each (replication 1) and
// waits until they are served; it returns the admin client it used.
func createTopics(ctx context.Context, t *testing.T, brokers []string, partitions int32, topics ...string) *kadm.Client {
	t.Helper()
	adm := kadm.NewClient(kafkatest.Client(t, brokers))
	created, err := adm.CreateTopics(ctx, partitions, 1, nil, topics...)
	if err == nil {
		err = created.Error()
	}
	if err != nil {
		t.Fatalf("create topics: %v", err)
	}
	if err := pipeline.WaitLeaders(ctx, adm, topics...); err != nil {
		t.Fatal(err)
	}
	return adm
}

// TestOffsetOnlyTransactions runs transactions that commit consumed offsets
// but produce nothing, each right after one that produced: a processor does
// this whenever a batch holds only events it ignores. Exactly-once must hold
// however many of them the client aborts. It logs the abort count: on Apache
// Kafka 4.1 with transaction.version 2, franz-go v1.22.3 aborts a large share
// of them (its TxnOffsetCommit gets an abortable error right after the
// previous EndTxn; with transaction.version 1 none abort), so a processor
// must treat an aborted End as "process these records again", not as a
// rebalance or a failure.
func TestOffsetOnlyTransactions(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	brokers := kafkatest.Brokers(t)
	p := kafkatest.Prefix(t)
	in, out := p+"in", p+"out"
	adm := createTopics(ctx, t, brokers, 1, in, out)

	const n = 200
	plain := kafkatest.Client(t, brokers, kgo.DefaultProduceTopic(in))
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, &kgo.Record{Value: []byte(strconv.Itoa(i))})
	}
	if err := plain.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce inputs: %v", err)
	}

	sess, err := kgo.NewGroupTransactSession(
		kgo.SeedBrokers(brokers...),
		kgo.TransactionalID(p+"txn"),
		kgo.ConsumerGroup(p+"group"),
		kgo.ConsumeTopics(in),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DefaultProduceTopic(out),
	)
	if err != nil {
		t.Fatalf("group transact session: %v", err)
	}
	defer sess.Close()
	var done, txns, offsetOnly, aborted, outputs int
	for done < n {
		fs := sess.PollRecords(ctx, 5)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d before the deadline: %v", done, n, ctx.Err())
		}
		if err := fs.Err0(); err != nil {
			t.Fatalf("poll: %v", err)
		}
		if err := sess.Begin(); err != nil {
			t.Fatalf("begin: %v", err)
		}
		produce := txns%2 == 0
		var outs []*kgo.Record
		fs.EachRecord(func(r *kgo.Record) {
			if produce {
				outs = append(outs, &kgo.Record{Value: r.Value})
			}
		})
		if err := sess.ProduceSync(ctx, outs...).FirstErr(); err != nil {
			t.Fatalf("produce in txn: %v", err)
		}
		committed, err := sess.End(ctx, kgo.TryCommit)
		if err != nil {
			t.Fatalf("end txn: %v", err)
		}
		txns++
		if !produce {
			offsetOnly++
		}
		if !committed {
			aborted++
			continue
		}
		done += len(fs.Records())
		outputs += len(outs)
	}
	t.Logf("%s: %d transactions, %d offset-only, %d aborted (the aborted ones' records were consumed again)",
		kafkatest.Backend(), txns, offsetOnly, aborted)

	offs := stableOffsets(ctx, t, adm, p+"group")
	if o, ok := offs.Lookup(in, 0); !ok || o.At != n {
		t.Errorf("committed offset %+v, want %d", o, n)
	}
	// The committed outputs are exactly those of committed transactions,
	// none twice.
	reader := kafkatest.Client(t, brokers, kgo.ConsumeTopics(out),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	seen := map[string]int{}
	for total := 0; total < outputs; {
		fs := reader.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d committed outputs: %v", total, outputs, ctx.Err())
		}
		fs.EachRecord(func(r *kgo.Record) {
			seen[string(r.Value)]++
			total++
		})
	}
	for v, c := range seen {
		if c != 1 {
			t.Errorf("output %s committed %d times", v, c)
		}
	}
}
