package pipeline_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/internal/spinetest"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
	"github.com/spinerun/spine/schemas"
)

// msg is the test payload; the test codec is JSON.
type msg struct {
	ID   string `json:"id"`
	Kind string `json:"kind,omitempty"`
	Seq  int    `json:"seq,omitempty"`
	// DelayMs arms a timer (timed handler).
	DelayMs int `json:"delay_ms,omitempty"`
}

type codeErr struct{ code, msg string }

func (e *codeErr) Error() string     { return e.code + ": " + e.msg }
func (e *codeErr) ErrorCode() string { return e.code }

// jsonCodec is a trivial Codec: JSON of msg. Empty or invalid input is
// poison (coded); transientDecodes makes the first n decodes of an id with
// Kind "flaky-decode" fail with an uncoded (transient) error.
type jsonCodec struct {
	mu    sync.Mutex
	fails map[string]int
	n     int
}

func (c *jsonCodec) Decode(_ context.Context, _ pipeline.Topic, b []byte) (any, schemas.ContractVersion, error) {
	if len(b) == 0 {
		return nil, 0, &codeErr{"empty", "empty value"}
	}
	var m msg
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, 0, &codeErr{"bad_json", err.Error()}
	}
	if m.Kind == "flaky-decode" {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.fails == nil {
			c.fails = map[string]int{}
		}
		if c.fails[m.ID] < c.n {
			c.fails[m.ID]++
			return nil, 0, errors.New("registry unreachable (simulated)")
		}
	}
	return &m, schemas.V1, nil
}

func (c *jsonCodec) Encode(_ context.Context, _ pipeline.Topic, _ schemas.ContractVersion, v any) ([]byte, error) {
	return json.Marshal(v)
}

// counter is the test Handler: its state per key is the count of inputs
// seen; each input produces one output {id, seq=count} on out.
type counter struct {
	out   pipeline.Topic
	calls atomic.Int64
}

func (h *counter) Handle(_ context.Context, state []byte, in pipeline.Input) (pipeline.Result, error) {
	h.calls.Add(1)
	m := in.Value.(*msg)
	switch m.Kind {
	case "reject":
		return pipeline.Result{}, pipeline.Reject("test_reject", "kind reject for %s", m.ID)
	case "panic":
		panic("test panic")
	}
	n := 0
	if state != nil {
		n, _ = strconv.Atoi(string(state))
	}
	n++
	return pipeline.Result{
		State:        []byte(strconv.Itoa(n)),
		StateChanged: true,
		Outputs:      []pipeline.Output{{Topic: h.out, Key: in.Key, Value: &msg{ID: m.ID, Seq: n}}},
	}, nil
}

type env struct {
	brokers []string
	layout  pipeline.Layout
	codec   *jsonCodec
}

func newEnv(t *testing.T, partitions int32) *env {
	t.Helper()
	return newEnvOn(t, nil, partitions)
}

// newEnvOn is newEnv on given brokers (nil: kafkatest.Brokers).
func newEnvOn(t *testing.T, brokers []string, partitions int32) *env {
	t.Helper()
	if brokers == nil {
		brokers = kafkatest.Brokers(t)
	}
	l := pipeline.Layout{Prefix: kafkatest.Prefix(t), Partitions: partitions}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(kafkatest.Client(t, brokers))
	if err := pipeline.EnsureTopics(ctx, adm, l, -1); err != nil {
		t.Fatalf("ensure topics: %v", err)
	}
	return &env{brokers: brokers, layout: l, codec: &jsonCodec{n: 2}}
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("SPINE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// baseOpts are the options every test processor on e starts with.
func (e *env) baseOpts(t *testing.T) []pipeline.ProcessorOpt {
	return []pipeline.ProcessorOpt{
		pipeline.WithKafka(kgo.SeedBrokers(e.brokers...)),
		pipeline.WithLayout(e.layout),
		pipeline.WithInputs(e.layout.Intents()),
		pipeline.WithCodec(e.codec),
		pipeline.WithLogger(testLogger(t)),
		pipeline.WithInstanceID("i0"),
		pipeline.WithGroupTimeouts(6*time.Second, 10*time.Second),
		pipeline.WithRetryBackoff(20*time.Millisecond, 200*time.Millisecond),
	}
}

// start runs a processor until the returned stop is called (or the test
// ends) and fails the test if Run returns an error.
func (e *env) start(t *testing.T, name string, h pipeline.Handler, opts ...pipeline.ProcessorOpt) (stop func()) {
	t.Helper()
	p, err := pipeline.NewProcessor(name, h, append(e.baseOpts(t), opts...)...)
	if err != nil {
		t.Fatalf("new processor: %v", err)
	}
	return spinetest.Start(t, "processor "+name, p.Run)
}

// produce writes msgs keyed by key(i) to topic.
func (e *env) produce(t *testing.T, topic pipeline.Topic, ms []msg, key func(i int) string) {
	t.Helper()
	cl := kafkatest.Client(t, e.brokers)
	recs := make([]*kgo.Record, len(ms))
	for i, m := range ms {
		b, _ := json.Marshal(m)
		recs[i] = &kgo.Record{Topic: string(topic), Key: []byte(key(i)), Value: b}
	}
	if err := cl.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// readAll reads topic from the start until want records arrived, then keeps
// reading for settle to catch extras, under a deadline generous enough for
// a rebalance or restart and the restore before the records come.
func (e *env) readAll(t *testing.T, topic pipeline.Topic, want int, settle time.Duration, committed bool) []*kgo.Record {
	t.Helper()
	iso := kgo.ReadCommitted()
	if !committed {
		iso = kgo.ReadUncommitted()
	}
	cl := kafkatest.Client(t, e.brokers, kgo.ConsumeTopics(string(topic)), kgo.FetchIsolationLevel(iso),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	var out []*kgo.Record
	deadline := time.Now().Add(60 * time.Second)
	var settleBy time.Time
	for {
		now := time.Now()
		if now.After(deadline) {
			t.Fatalf("read %s: got %d records, want %d within the deadline", topic, len(out), want)
		}
		if !settleBy.IsZero() && now.After(settleBy) {
			return out
		}
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		out = append(out, fs.Records()...)
		if len(out) >= want && settleBy.IsZero() {
			if settle == 0 {
				return out
			}
			settleBy = time.Now().Add(settle)
		}
	}
}

func decodeOut(t *testing.T, recs []*kgo.Record) []msg {
	t.Helper()
	out := make([]msg, len(recs))
	for i, r := range recs {
		if err := json.Unmarshal(r.Value, &out[i]); err != nil {
			t.Fatalf("output %d: %v", i, err)
		}
	}
	return out
}

func msgs(prefix string, n int, kind string) []msg {
	out := make([]msg, n)
	for i := range out {
		out[i] = msg{ID: fmt.Sprintf("%s-%d", prefix, i), Kind: kind}
	}
	return out
}

// assertExactlyOnce checks every id appears once and each key's seq runs
// 1..n without gaps, which proves state was kept per key.
func assertExactlyOnce(t *testing.T, outs []*kgo.Record, wantIDs int) {
	t.Helper()
	seen := map[string]int{}
	seqs := map[string][]int{}
	for i, m := range decodeOut(t, outs) {
		seen[m.ID]++
		k := string(outs[i].Key)
		seqs[k] = append(seqs[k], m.Seq)
	}
	if len(outs) != wantIDs || len(seen) != wantIDs {
		t.Errorf("got %d outputs with %d distinct ids, want %d each", len(outs), len(seen), wantIDs)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("id %s output %d times", id, n)
		}
	}
	for k, s := range seqs {
		for i, v := range s {
			if v != i+1 {
				t.Errorf("key %s: seq %v, want 1..%d in order", k, s, len(s))
				break
			}
		}
	}
}

func TestLoopExactlyOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 3)
	out := e.layout.Control()
	const n = 300
	e.produce(t, e.layout.Intents(), msgs("a", n, ""), func(i int) string { return fmt.Sprintf("k%d", i%30) })
	reg := prometheus.NewRegistry()
	h := &counter{out: out}
	e.start(t, "orchestrator", h, pipeline.WithRegisterer(reg), pipeline.WithBatchSize(64))
	recs := e.readAll(t, out, n, 500*time.Millisecond, true)
	assertExactlyOnce(t, recs, n)
	// Outputs are keyed like inputs, so each key's outputs share a partition.
	parts := map[string]int32{}
	for _, r := range recs {
		if p, ok := parts[string(r.Key)]; ok && p != r.Partition {
			t.Errorf("key %s on partitions %d and %d", r.Key, p, r.Partition)
		}
		parts[string(r.Key)] = r.Partition
	}
	waitFor(t, 5*time.Second, func() bool {
		return spinetest.MetricValue(t, reg, "spine_processor_records_total", "orchestrator", "ok") == n
	}, "records_total{ok} == n")
	if got := spinetest.SeriesCount(t, reg, "spine_processor_transactions_total"); got == 0 {
		t.Errorf("no transactions counted")
	}
	if got := spinetest.SeriesCount(t, reg, "spine_kafka_produce_bytes_total"); got == 0 {
		t.Errorf("kprom client metrics (namespace spine_kafka) missing")
	}
}

func TestLoopStateRestoredAfterRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 3)
	out := e.layout.Control()
	key := func(i int) string { return fmt.Sprintf("k%d", i%5) }
	e.produce(t, e.layout.Intents(), msgs("first", 50, ""), key)
	stop := e.start(t, "orchestrator", &counter{out: out})
	e.readAll(t, out, 50, 0, true)
	stop()
	e.produce(t, e.layout.Intents(), msgs("second", 50, ""), key)
	e.start(t, "orchestrator", &counter{out: out}, pipeline.WithInstanceID("i1"))
	recs := e.readAll(t, out, 100, 300*time.Millisecond, true)
	// Seq continues 11..20 per key only if state was restored.
	assertExactlyOnce(t, recs, 100)
}

func TestLoopTwoInstancesShareGroup(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 4)
	out := e.layout.Control()
	var a, b atomic.Int64
	obs := func(c *atomic.Int64) pipeline.Observer {
		return pipeline.ObserverFunc(func(o []pipeline.Output) { c.Add(int64(len(o))) })
	}
	e.start(t, "orchestrator", &counter{out: out}, pipeline.WithInstanceID("a"), pipeline.WithObserver(obs(&a)))
	stopB := e.start(t, "orchestrator", &counter{out: out}, pipeline.WithInstanceID("b"), pipeline.WithObserver(obs(&b)))
	// Wait until both joined: the group has two members.
	adm := kadm.NewClient(kafkatest.Client(t, e.brokers))
	waitFor(t, 20*time.Second, func() bool {
		gs, err := adm.DescribeGroups(t.Context(), e.layout.Group("orchestrator"))
		if err != nil {
			return false
		}
		g := gs[e.layout.Group("orchestrator")]
		return g.State == "Stable" && len(g.Members) == 2
	}, "two members in the group")
	const n = 400
	e.produce(t, e.layout.Intents(), msgs("s", n, ""), func(i int) string { return fmt.Sprintf("k%d", i%40) })
	recs := e.readAll(t, out, n, 500*time.Millisecond, true)
	assertExactlyOnce(t, recs, n)
	// Observers are told after each commit, so a reader can see the
	// outputs before the counters move.
	waitFor(t, 20*time.Second, func() bool { return a.Load()+b.Load() >= n }, "the observers to count every output")
	if a.Load() == 0 || b.Load() == 0 || a.Load()+b.Load() != n {
		t.Errorf("instances committed %d and %d outputs; want both > 0 summing to %d", a.Load(), b.Load(), n)
	}

	// b leaves: a is revoked, reassigned everything, restores b's
	// partitions' state and continues every key's sequence.
	stopB()
	e.produce(t, e.layout.Intents(), msgs("s2", n, ""), func(i int) string { return fmt.Sprintf("k%d", i%40) })
	recs = e.readAll(t, out, 2*n, 500*time.Millisecond, true)
	assertExactlyOnce(t, recs, 2*n)
	waitFor(t, 20*time.Second, func() bool { return a.Load()+b.Load() >= 2*n }, "the observers to count every output")
	if a.Load() <= int64(n)-b.Load() {
		t.Errorf("instance a committed no outputs after b left")
	}
}

func TestLoopDeadLetters(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	out := e.layout.Control()
	reg := prometheus.NewRegistry()
	e.start(t, "orchestrator", &counter{out: out}, pipeline.WithRegisterer(reg))
	cl := kafkatest.Client(t, e.brokers)
	type poison struct {
		value []byte
		code  string
	}
	poisons := []poison{
		{nil, "empty"},
		{[]byte("{not json"), "bad_json"},
		{[]byte("\xff\xfe\x00garbage"), "bad_json"},
		{[]byte(`{"id":"r1","kind":"reject"}`), "test_reject"},
		{[]byte(`{"id":"p1","kind":"panic"}`), "handler_panic"},
	}
	var recs []*kgo.Record
	for i := range 20 {
		b, _ := json.Marshal(msg{ID: fmt.Sprintf("g%d", i)})
		recs = append(recs, &kgo.Record{Topic: string(e.layout.Intents()), Key: []byte(fmt.Sprintf("k%d", i%4)), Value: b})
		if i < len(poisons) {
			recs = append(recs, &kgo.Record{Topic: string(e.layout.Intents()), Key: []byte(fmt.Sprintf("bad%d", i)), Value: poisons[i].value,
				Headers: []kgo.RecordHeader{{Key: "origin", Value: []byte("test")}}})
		}
	}
	if err := cl.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	good := e.readAll(t, out, 20, 0, true)
	assertExactlyOnce(t, good, 20)
	dead := e.readAll(t, e.layout.DLQ(), len(poisons), 500*time.Millisecond, true)
	if len(dead) != len(poisons) {
		t.Fatalf("DLQ has %d records, want %d (exactly once each)", len(dead), len(poisons))
	}
	byKey := map[string]*kgo.Record{}
	for _, r := range dead {
		byKey[string(r.Key)] = r
	}
	for i, p := range poisons {
		r := byKey[fmt.Sprintf("bad%d", i)]
		if r == nil {
			t.Errorf("poison %d (%s) not dead-lettered", i, p.code)
			continue
		}
		d, err := pipeline.ParseDeadLetter(r)
		if err != nil {
			t.Errorf("poison %d: %v", i, err)
			continue
		}
		if string(d.Value) != string(p.value) {
			t.Errorf("poison %d: value %q, want original %q", i, d.Value, p.value)
		}
		if d.Code != p.code || d.Processor != "orchestrator" || d.Topic != e.layout.Intents() ||
			d.Group != e.layout.Group("orchestrator") || d.Message == "" || d.ErrorType == "" || d.Timestamp.IsZero() {
			t.Errorf("poison %d: dead letter %+v, want code %s", i, d, p.code)
		}
		orig := false
		for _, h := range r.Headers {
			orig = orig || (h.Key == "origin" && string(h.Value) == "test")
		}
		if !orig {
			t.Errorf("poison %d: original headers not kept", i)
		}
	}
	waitFor(t, 5*time.Second, func() bool {
		return spinetest.MetricValue(t, reg, "spine_dlq_records_total", "orchestrator", "bad_json") == 2
	}, "spine_dlq_records_total{code=bad_json} == 2")
}

// TestLoopTransientRetriedAbortedInvisible: a record whose decode fails
// transiently aborts its batch after earlier records already produced
// outputs; the retry succeeds, nothing is dead-lettered, and the aborted
// outputs are invisible to read_committed readers (yet present for
// read_uncommitted ones).
func TestLoopTransientRetriedAbortedInvisible(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	e.codec.n = 6 // more than the in-place retries: the batch aborts at least once
	out := e.layout.Control()
	ms := msgs("t", 10, "")
	ms = append(ms, msg{ID: "flaky", Kind: "flaky-decode"})
	ms = append(ms, msgs("u", 10, "")...)
	e.produce(t, e.layout.Intents(), ms, func(int) string { return "k" })
	reg := prometheus.NewRegistry()
	// A small send buffer makes the transaction send records before it
	// reaches the flaky one, so its abort leaves aborted data in the log.
	e.start(t, "orchestrator", &counter{out: out}, pipeline.WithRegisterer(reg), pipeline.WithMaxBuffered(4))
	recs := e.readAll(t, out, len(ms), 500*time.Millisecond, true)
	assertExactlyOnce(t, recs, len(ms))
	all := e.readAll(t, out, len(ms)+1, 0, false)
	if len(all) <= len(ms) {
		t.Errorf("read_uncommitted saw %d records; want aborted extras beyond %d", len(all), len(ms))
	}
	if n := spinetest.MetricValue(t, reg, "spine_processor_transactions_total", "orchestrator", "aborted"); n < 1 {
		t.Errorf("aborted transactions = %v, want >= 1", n)
	}
	if n := spinetest.MetricValue(t, reg, "spine_processor_records_total", "orchestrator", "retry"); n < 6 {
		t.Errorf("retries = %v, want >= 6", n)
	}
	if n := spinetest.SeriesCount(t, reg, "spine_dlq_records_total"); n != 0 {
		t.Errorf("transient error dead-lettered (%d series)", n)
	}
}

// TestLoopConcurrency: with WithConcurrency the partitions of a batch are
// handled at once, yet every key's records stay in order, exactly once,
// poison still goes to the DLQ once and a transient error still blocks and
// retries the batch.
func TestLoopConcurrency(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 4)
	e.codec.n = 5
	out := e.layout.Control()
	ms := msgs("c", 200, "")
	ms = append(ms, msg{ID: "rej", Kind: "reject"}, msg{ID: "flaky", Kind: "flaky-decode"})
	ms = append(ms, msgs("d", 200, "")...)
	e.produce(t, e.layout.Intents(), ms, func(i int) string { return fmt.Sprintf("k%d", i%40) })
	reg := prometheus.NewRegistry()
	e.start(t, "orchestrator", &slowCounter{counter{out: out}}, pipeline.WithConcurrency(4), pipeline.WithRegisterer(reg))
	recs := e.readAll(t, out, len(ms)-1, 500*time.Millisecond, true)
	assertExactlyOnce(t, recs, len(ms)-1)
	dead := e.readAll(t, e.layout.DLQ(), 1, 300*time.Millisecond, true)
	if len(dead) != 1 {
		t.Errorf("DLQ has %d records, want 1", len(dead))
	}
	if n := spinetest.MetricValue(t, reg, "spine_processor_records_total", "orchestrator", "retry"); n < 5 {
		t.Errorf("retries = %v, want >= 5", n)
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, cond func() bool, what string) {
	t.Helper()
	spinetest.Eventually(t, d, spinetest.Holds(what, cond))
}
