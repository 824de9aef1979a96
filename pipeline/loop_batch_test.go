package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/internal/spinetest"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
)

// tally is the test BatchHandler: it counts the inputs of each key in
// memory and, per batch, writes each changed key's count once to table,
// on the key's input partition. Uncommitted counts are dropped when a
// transaction aborts; a partition's counts are dropped when it is revoked
// (and then read back from table).
type tally struct {
	table pipeline.Topic
	read  func(part int32) map[string]int // the committed counts of a partition on table

	// failFirst makes the first n HandleBatch calls fail after counting.
	failFirst int

	mu      sync.Mutex // guards revoked
	revoked [][]int32

	// Loop goroutine only.
	committed map[string]int
	owned     map[int32]bool
	pending   map[string]int
	calls     int
	settled   []string
	batches   []int
}

var (
	_ pipeline.BatchHandler = (*tally)(nil)
	_ pipeline.Settler      = (*tally)(nil)
	_ pipeline.Revoker      = (*tally)(nil)
)

func (h *tally) HandleBatch(_ context.Context, batch []pipeline.Input) ([]pipeline.Record, error) {
	h.mu.Lock()
	for _, ps := range h.revoked {
		if ps == nil {
			h.owned = nil
		}
		for _, p := range ps {
			delete(h.owned, p)
		}
	}
	h.revoked = nil
	h.mu.Unlock()
	if h.owned == nil {
		h.owned, h.committed = map[int32]bool{}, map[string]int{}
	}
	h.calls++
	h.pending = map[string]int{}
	parts := map[string]int32{}
	for _, in := range batch {
		if !h.owned[in.Partition] { // restore lazily, as the projections do
			for k, n := range h.read(in.Partition) {
				h.committed[k] = n
			}
			h.owned[in.Partition] = true
		}
		k := string(in.Key)
		if _, ok := h.pending[k]; !ok {
			h.pending[k] = h.committed[k]
		}
		h.pending[k]++
		parts[k] = in.Partition
	}
	h.batches = append(h.batches, len(batch))
	if h.calls <= h.failFirst {
		return nil, errors.New("simulated failure after counting")
	}
	out := make([]pipeline.Record, 0, len(h.pending))
	for _, k := range slices.Sorted(maps.Keys(h.pending)) {
		out = append(out, pipeline.Record{Topic: h.table, Partition: parts[k], Key: []byte(k), Value: []byte(strconv.Itoa(h.pending[k]))})
	}
	return out, nil
}

func (h *tally) Committed(c pipeline.BatchCommit) {
	for k, n := range h.pending {
		h.committed[k] = n
	}
	h.pending = nil
	h.settled = append(h.settled, fmt.Sprintf("committed %d/%d", c.Inputs, c.DeadLettered))
}

func (h *tally) Aborted() {
	h.pending = nil
	h.settled = append(h.settled, "aborted")
}

func (h *tally) Revoked(parts []int32) {
	h.mu.Lock()
	h.revoked = append(h.revoked, parts)
	h.mu.Unlock()
}

// lastByKey is the last value of each key in recs, and how many records
// each key has.
func lastByKey(recs []*kgo.Record) (last map[string]string, n map[string]int) {
	last, n = map[string]string{}, map[string]int{}
	for _, r := range recs {
		last[string(r.Key)] = string(r.Value)
		n[string(r.Key)]++
	}
	return last, n
}

func (e *env) startBatch(t *testing.T, name string, h pipeline.BatchHandler, opts ...pipeline.ProcessorOpt) (stop func()) {
	t.Helper()
	p, err := pipeline.NewBatchProcessor(name, h, append(e.baseOpts(t), opts...)...)
	if err != nil {
		t.Fatalf("new batch processor: %v", err)
	}
	return spinetest.Start(t, "batch processor "+name, p.Run)
}

// tableReader reads a table partition's committed records (for a
// restore).
func (e *env) tableReader(t *testing.T, table pipeline.Topic) func(int32) map[string]int {
	return func(part int32) map[string]int {
		cl := e.readAll(t, table, 0, 300*time.Millisecond, true)
		out := map[string]int{}
		for _, r := range cl {
			if r.Partition == part {
				n, _ := strconv.Atoi(string(r.Value))
				out[string(r.Key)] = n
			}
		}
		return out
	}
}

// A batch handler's records commit with the offsets, one per changed key
// per batch, on the partition it names; poison is dead-lettered by the
// loop and never reaches it; no state changelog is used; every
// transaction is settled.
func TestBatchProcessorExactlyOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 3)
	table := e.layout.Projection("runs")
	const n = 240
	key := func(i int) string { return fmt.Sprintf("k%d", i%12) }
	e.produce(t, e.layout.Intents(), msgs("a", n, ""), key)
	cl := kafkatest.Client(t, e.brokers)
	poison := &kgo.Record{Topic: string(e.layout.Intents()), Key: []byte("poison"), Value: []byte("not json")}
	if err := cl.ProduceSync(t.Context(), poison).FirstErr(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	h := &tally{table: table}
	h.read = e.tableReader(t, table)
	stop := e.startBatch(t, "batcher", h, pipeline.WithRegisterer(reg), pipeline.WithBatchSize(50))
	waitFor(t, 30*time.Second, func() bool {
		return spinetest.MetricValue(t, reg, "spine_processor_records_total", "batcher", "ok") == n
	}, "records_total{ok} == n")
	stop()

	recs := e.readAll(t, table, 12, 300*time.Millisecond, true)
	last, count := lastByKey(recs)
	total := 0
	for k, v := range last {
		if v != strconv.Itoa(n/12) {
			t.Errorf("key %s: last count %s, want %d", k, v, n/12)
		}
	}
	for _, c := range count {
		total += c
	}
	if len(last) != 12 {
		t.Errorf("%d keys on the table, want 12", len(last))
	}
	// One record per changed key per batch: never more than the batches.
	if total > 12*len(h.batches) || len(h.batches) > n {
		t.Errorf("%d table records for %d batches", total, len(h.batches))
	}
	// Each key's records are on the partition of its inputs.
	inParts := map[string]int32{}
	for _, r := range e.readAll(t, e.layout.Intents(), n+1, 0, true) {
		inParts[string(r.Key)] = r.Partition
	}
	for _, r := range recs {
		if inParts[string(r.Key)] != r.Partition {
			t.Errorf("key %s on table partition %d, its inputs on %d", r.Key, r.Partition, inParts[string(r.Key)])
		}
	}
	dl := e.readAll(t, e.layout.DLQ(), 1, 300*time.Millisecond, true)
	if len(dl) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dl))
	}
	d, err := pipeline.ParseDeadLetter(dl[0])
	if err != nil || d.Code != "bad_json" || d.Processor != "batcher" || d.Group != e.layout.Group("batcher") || string(d.Key) != "poison" {
		t.Errorf("dead letter %+v (%v)", d, err)
	}
	if got := spinetest.MetricValue(t, reg, "spine_dlq_records_total", "batcher", "bad_json"); got != 1 {
		t.Errorf("spine_dlq_records_total{bad_json} = %v, want 1", got)
	}
	inputs, dead := 0, 0
	for _, s := range h.settled {
		var i, d int
		if _, err := fmt.Sscanf(s, "committed %d/%d", &i, &d); err == nil {
			inputs, dead = inputs+i, dead+d
		}
	}
	if inputs != n || dead != 1 {
		t.Errorf("settled %d inputs and %d dead letters, want %d and 1 (%v)", inputs, dead, n, h.settled)
	}
	if len(h.settled) < len(h.batches) {
		t.Errorf("%d settlements for %d batches", len(h.settled), len(h.batches))
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.revoked) == 0 || h.revoked[len(h.revoked)-1] != nil {
		t.Errorf("revocations %v: want the last to be nil (all), once the client closed", h.revoked)
	}
}

// A failing batch aborts its transaction: the handler drops what it
// counted (Aborted), the loop polls the same records again and the table
// ends as if the failures never happened.
func TestBatchProcessorErrorAborts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	table := e.layout.Projection("runs")
	const n = 60
	e.produce(t, e.layout.Intents(), msgs("b", n, ""), func(i int) string { return fmt.Sprintf("k%d", i%6) })
	reg := prometheus.NewRegistry()
	h := &tally{table: table, failFirst: 3}
	h.read = e.tableReader(t, table)
	stop := e.startBatch(t, "batcher", h, pipeline.WithRegisterer(reg))
	waitFor(t, 30*time.Second, func() bool {
		return spinetest.MetricValue(t, reg, "spine_processor_records_total", "batcher", "ok") == n
	}, "records_total{ok} == n")
	stop()
	last, _ := lastByKey(e.readAll(t, table, 6, 300*time.Millisecond, true))
	for k, v := range last {
		if v != strconv.Itoa(n/6) {
			t.Errorf("key %s: last count %s, want %d", k, v, n/6)
		}
	}
	if len(last) != 6 {
		t.Errorf("%d keys on the table, want 6", len(last))
	}
	aborted := 0
	for _, s := range h.settled {
		if s == "aborted" {
			aborted++
		}
	}
	if aborted < 3 {
		t.Errorf("settled %v: want 3 aborts first", h.settled)
	}
	if got := spinetest.MetricValue(t, reg, "spine_processor_transactions_total", "batcher", "aborted"); got < 3 {
		t.Errorf("spine_processor_transactions_total{aborted} = %v, want >= 3", got)
	}
}

// A batch handler that names a partition the topic lacks fails its
// transaction (transient: blocked and retried), and nothing it wrote is
// visible.
func TestBatchProcessorBadPartitionBlocks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	table := e.layout.Projection("runs")
	e.produce(t, e.layout.Intents(), msgs("c", 3, ""), func(i int) string { return "k" })
	reg := prometheus.NewRegistry()
	h := pipeline.BatchHandlerFunc(func(_ context.Context, batch []pipeline.Input) ([]pipeline.Record, error) {
		return []pipeline.Record{{Topic: table, Partition: 7, Key: []byte("k"), Value: []byte("x")}}, nil
	})
	e.startBatch(t, "batcher", h, pipeline.WithRegisterer(reg))
	waitFor(t, 30*time.Second, func() bool {
		return spinetest.MetricValue(t, reg, "spine_processor_blocked", "batcher") == 1 &&
			spinetest.MetricValue(t, reg, "spine_processor_transactions_total", "batcher", "aborted") >= 1
	}, "blocked after an aborted transaction")
	if recs := e.readAll(t, table, 0, 300*time.Millisecond, true); len(recs) != 0 {
		t.Errorf("%d table records visible from aborted transactions", len(recs))
	}
}

func TestNewBatchProcessorValidates(t *testing.T) {
	t.Parallel()
	base := []pipeline.ProcessorOpt{
		pipeline.WithKafka(kgo.SeedBrokers("127.0.0.1:1")),
		pipeline.WithInputs("in"),
		pipeline.WithCodec(&jsonCodec{}),
	}
	if _, err := pipeline.NewBatchProcessor("b", nil, base...); err == nil {
		t.Error("nil batch handler accepted")
	}
	h := pipeline.BatchHandlerFunc(func(context.Context, []pipeline.Input) ([]pipeline.Record, error) { return nil, nil })
	if _, err := pipeline.NewBatchProcessor("b", h, append(base, pipeline.WithConcurrency(4))...); err == nil {
		t.Error("WithConcurrency accepted for a batch handler")
	}
	if _, err := pipeline.NewBatchProcessor("b", h, base...); err != nil {
		t.Errorf("valid batch processor refused: %v", err)
	}
}

// A processor stopped while its batch handler waits on I/O (a restore
// behind a crashed predecessor's open transaction) does not wait for it:
// the handler's context ends with Run's, the batch aborts, and Run returns
// well inside BatchHandleTimeout. Nothing of the batch is visible.
func TestBatchProcessorStopsAWaitingHandler(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	table := e.layout.Projection("runs")
	e.produce(t, e.layout.Intents(), msgs("w", 3, ""), func(i int) string { return "k" })
	entered := make(chan struct{}, 1)
	h := pipeline.BatchHandlerFunc(func(ctx context.Context, batch []pipeline.Input) ([]pipeline.Record, error) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-ctx.Done() // a restore that does not end on its own
		return nil, ctx.Err()
	})
	p, err := pipeline.NewBatchProcessor("waiter", h, append(e.baseOpts(t), pipeline.WithShutdownTimeout(3*time.Second))...)
	if err != nil {
		t.Fatalf("new batch processor: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("the handler was never called")
	}
	stopped := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		// The shutdown timeout bounds the client's close; the handler
		// itself returns at once.
		if took := time.Since(stopped); took > 10*time.Second {
			t.Errorf("Run returned %s after its context ended, want under 10s (BatchHandleTimeout is %s)", took, pipeline.BatchHandleTimeout)
		}
	case <-time.After(pipeline.BatchHandleTimeout):
		t.Fatalf("Run still running %s after its context ended: the handler's context did not end with it", pipeline.BatchHandleTimeout)
	}
	if recs := e.readAll(t, table, 0, 300*time.Millisecond, true); len(recs) != 0 {
		t.Errorf("%d table records visible from the aborted batch", len(recs))
	}
}

// TestStopBoundedWhenTheBrokerIsGone stops a processor whose transaction
// in flight cannot end, its broker gone: Run returns within about the
// shutdown timeout twice (once for the transaction, once for the close), not
// after the transaction's own bound. Both loops: one record handler, one
// batch handler.
func TestStopBoundedWhenTheBrokerIsGone(t *testing.T) {
	t.Parallel()
	const shutdown = 2 * time.Second
	for _, kind := range []string{"record", "batch"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			// A broker of its own, closed under the loop.
			emb := pipeline.NewEmbedded(pipeline.EmbeddedConfig{})
			if err := emb.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(emb.Close)
			e := newEnvOn(t, emb.Addrs(), 1)
			e.produce(t, e.layout.Intents(), msgs("g", 3, ""), func(int) string { return "k" })
			entered, release := make(chan struct{}, 1), make(chan struct{})
			wait := func() {
				select {
				case entered <- struct{}{}:
				default:
				}
				<-release
			}
			opts := append(e.baseOpts(t),
				pipeline.WithShutdownTimeout(shutdown),
				// Unbounded by the shutdown, ending the transaction
				// would wait out this (and the batch timeout) and more.
				pipeline.WithTransactionTimeout(20*time.Second),
			)
			var p *pipeline.Processor
			var err error
			switch kind {
			case "record": // named orchestrator: its state topic exists
				p, err = pipeline.NewProcessor("orchestrator", pipeline.HandlerFunc(func(_ context.Context, _ []byte, in pipeline.Input) (pipeline.Result, error) {
					wait()
					return pipeline.Result{Outputs: []pipeline.Output{{Topic: e.layout.Control(), Key: in.Key, Value: in.Value, Version: in.Version}}}, nil
				}), opts...)
			default:
				p, err = pipeline.NewBatchProcessor("gone", pipeline.BatchHandlerFunc(func(_ context.Context, batch []pipeline.Input) ([]pipeline.Record, error) {
					wait()
					return []pipeline.Record{{Topic: e.layout.Projection("runs"), Key: []byte("k"), Value: []byte("v")}}, nil
				}), opts...)
			}
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- p.Run(ctx) }()
			select {
			case <-entered:
			case <-time.After(30 * time.Second):
				t.Fatal("the handler was never called")
			}
			emb.Close()
			stopped := time.Now()
			cancel()
			close(release) // the handler is done: the transaction must end now
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
				if took := time.Since(stopped); took > 4*shutdown {
					t.Errorf("Run returned %s after its context ended, want about twice the shutdown timeout %s", took.Round(time.Millisecond), shutdown)
				}
			case <-time.After(time.Minute):
				t.Fatal("Run still running a minute after its context ended")
			}
		})
	}
}
