package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sethvargo/go-envconfig"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/spinerun/spine/adapters/openai"
	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/internal/spinetest"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
	"github.com/spinerun/spine/processors/dataplane"
	"github.com/spinerun/spine/processors/gatekeeper"
	"github.com/spinerun/spine/processors/orchestrator"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// chatServer is an OpenAI-compatible Chat Completions server
// (POST /v1/chat/completions): it answers each call after delay, or, for
// an input hold matches, only when the request ends. It logs every call
// with its Idempotency-Key and user message.
type chatServer struct {
	*httptest.Server
	delay time.Duration
	hold  func(input string) bool
	stop  chan struct{}

	inFlight atomic.Int64
	mu       sync.Mutex
	calls    []chatCall
}

// chatCall is one call the server received.
type chatCall struct {
	key, input string
	at         time.Time
}

func newChatServer(tb testing.TB, delay time.Duration, hold func(string) bool) *chatServer {
	c := &chatServer{delay: delay, hold: hold, stop: make(chan struct{})}
	c.Server = httptest.NewServer(http.HandlerFunc(c.serve))
	tb.Cleanup(func() { close(c.stop); c.Close() })
	return c
}

// chatInput reads an OpenAI chat completion request and returns its last
// message's content; it answers 404 or 400 itself, as the API does, and
// reports false then.
func chatInput(w http.ResponseWriter, r *http.Request) (string, bool) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions" {
		http.Error(w, `{"error":{"message":"not found","type":"invalid_request_error"}}`, http.StatusNotFound)
		return "", false
	}
	var req struct {
		Messages []struct{ Role, Content string } `json:"messages"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Messages) == 0 {
		http.Error(w, `{"error":{"message":"bad body","type":"invalid_request_error"}}`, http.StatusBadRequest)
		return "", false
	}
	return req.Messages[len(req.Messages)-1].Content, true
}

func (c *chatServer) serve(w http.ResponseWriter, r *http.Request) {
	input, ok := chatInput(w, r)
	if !ok {
		return
	}
	c.mu.Lock()
	c.calls = append(c.calls, chatCall{key: r.Header.Get("Idempotency-Key"), input: input, at: time.Now()})
	c.mu.Unlock()
	c.inFlight.Add(1)
	defer c.inFlight.Add(-1)
	var wait <-chan time.Time
	if c.hold == nil || !c.hold(input) {
		t := time.NewTimer(c.delay)
		defer t.Stop()
		wait = t.C
	}
	select {
	case <-wait:
	case <-r.Context().Done():
		return // the caller went away (cancelled, or killed)
	case <-c.stop:
		http.Error(w, `{"error":{"message":"shutting down","type":"server_error"}}`, http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"id": "chatcmpl-1", "object": "chat.completion", "created": time.Now().Unix(), "model": "test",
		"choices": []any{map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": answerTo(input)}, "finish_reason": "stop"}},
		"usage":   map[string]any{"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18},
	})
}

// answerTo is the server's answer to input: the artifact's content, a
// JSON object.
func answerTo(input string) string {
	b, _ := json.Marshal(map[string]string{"answer": input})
	return string(b)
}

// log returns the calls received so far.
func (c *chatServer) log() []chatCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]chatCall(nil), c.calls...)
}

// openAIExecutor is the OpenAI adapter on the chat server, asking for JSON
// answers (so the schema gate also checks the artifacts parse).
func openAIExecutor(tb testing.TB, url string) *openai.Executor {
	tb.Helper()
	x, err := openai.New(openai.Config{BaseURL: url + "/v1", Model: "test", JSON: true})
	if err != nil {
		tb.Fatal(err)
	}
	return x
}

// dataplaneProcessor builds the dataplane on the pipeline loop as the
// stack does, with exec as its executor.
func dataplaneProcessor(cfg *stack.Config, brokers []string, codec pipeline.Codec, log *slog.Logger, reg prometheus.Registerer, instance string, exec dataplane.Executor) (*pipeline.Processor, error) {
	layout := pipeline.NewLayout(&cfg.Config)
	d, err := dataplane.New(layout, dataplane.Config{Executor: exec, Logger: log, ExecTimeout: cfg.Orchestrator.ExecTimeout, Registerer: reg,
		MaxArtifactBytes: cfg.Dataplane.MaxArtifactBytes})
	if err != nil {
		return nil, err
	}
	opts, err := cfg.ProcessorOpts(brokers...)
	if err != nil {
		return nil, err
	}
	opts = append(opts,
		pipeline.WithInputs(d.Topics()...),
		pipeline.WithCodec(codec),
		pipeline.WithLogger(log),
		pipeline.WithRegisterer(reg),
		pipeline.WithEventTypes(d.EventTypes()...),
		pipeline.WithInstanceID(instance),
		pipeline.WithAsync(cfg.Dataplane.Concurrency, 0),
	)
	return pipeline.NewProcessor(dataplane.Name, d, opts...)
}

// startDataplane runs the dataplane in-process with exec as its executor.
func (s *rig) startDataplane(instance string, exec dataplane.Executor) *running {
	s.tb.Helper()
	p, err := dataplaneProcessor(s.cfg, s.brokers, s.codec, s.log, s.reg, instance, exec)
	if err != nil {
		s.tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{name: dataplane.Name, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- p.Run(ctx) }()
	s.mu.Lock()
	s.procs = append(s.procs, r)
	s.mu.Unlock()
	return r
}

// TestSlowCallDoesNotHoldItsPartition: with one partition, a call that
// takes 30 s (here: until the test ends) is in flight while the other runs
// of its partition, dispatched after it, go through the whole thread.
func TestSlowCallDoesNotHoldItsPartition(t *testing.T) {
	s := newStack(t, nil, map[string]string{"SPINE_PARTITIONS": "1", "SPINE_EXEC_TIMEOUT": "60s"})
	committed := s.collect(t, true)
	const slowInput = "summarise the quarterly report slow-000000"
	srv := newChatServer(t, 20*time.Millisecond, func(in string) bool { return in == slowInput })
	s.start(orchestrator.Name, "e2e", nil)
	s.start(gatekeeper.Name, "e2e", nil)
	s.startDataplane("e2e", openAIExecutor(t, srv.URL))

	s.produce(context.Background(), intents("slow", 1))
	waitFor(t, 60*time.Second, func() bool { return srv.inFlight.Load() == 1 }, func() string { return "the slow call to be in flight" })
	const n = 100
	s.produce(context.Background(), intents("fast", n))
	started := time.Now()
	waitFor(t, 25*time.Second, func() bool { return committed.terminalCount() >= n },
		func() string {
			return fmt.Sprintf("%d fast runs to end while the slow call is in flight (have %d)", n, committed.terminalCount())
		})
	took := time.Since(started)
	if srv.inFlight.Load() != 1 {
		t.Fatalf("the slow call is no longer in flight (%d calls in flight)", srv.inFlight.Load())
	}
	_, byTrace := committed.snapshot()
	for _, e := range byTrace["slow-000000"] {
		if terminalTypes[e.ev.EventType] {
			t.Fatalf("the slow run ended: %v", e)
		}
	}
	for tr, evs := range byTrace {
		if tr == "slow-000000" {
			continue
		}
		var outcome schemas.EventType
		for _, e := range evs {
			if terminalTypes[e.ev.EventType] {
				outcome = e.ev.EventType
			}
		}
		if outcome != thread.RunCompleted {
			for _, e := range evs {
				t.Log(e)
			}
			t.Fatalf("run %s ended with %q", tr, outcome)
		}
	}
	t.Logf("%d runs of the slow call's partition completed in %s while it was in flight", n, took.Round(time.Millisecond))
}

// BenchmarkOpenAIConcurrency: b.N runs (run it with -benchtime 1000x)
// through the OpenAI adapter to a server that answers each call after 1 s,
// one dataplane instance running 64 calls at once: runs/s from the first
// produce to the last gate.verdict visible read_committed, beside the
// ideal of 64 calls a second.
//
//	go test -run '^$' -bench OpenAIConcurrency -benchtime 1000x ./e2e
func BenchmarkOpenAIConcurrency(b *testing.B) {
	const concurrency, delay = 64, time.Second
	s := newStack(b, nil, map[string]string{"SPINE_DATAPLANE_CONCURRENCY": fmt.Sprint(concurrency), "SPINE_EXEC_TIMEOUT": "120s"})
	w := s.watch(b)
	srv := newChatServer(b, delay, nil)
	s.start(orchestrator.Name, "e2e", nil)
	s.start(gatekeeper.Name, "e2e", nil)
	s.startDataplane("e2e", openAIExecutor(b, srv.URL))
	cl := kafkatest.Client(b, s.brokers, kgo.ProducerLinger(0))
	// Warm up: groups joined, schema ids cached, connections open.
	warm := s.encoded(b, "warm", concurrency)
	if err := cl.ProduceSync(context.Background(), warm...).FirstErr(); err != nil {
		b.Fatal(err)
	}
	waitFor(b, 60*time.Second, func() bool { _, v := w.counts(); return v >= concurrency }, func() string { return "warm-up runs" })
	recs := s.encoded(b, fmt.Sprintf("oa%d", b.N), b.N)
	_, v0 := w.counts()
	b.ResetTimer()
	start := time.Now()
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		b.Fatal(err)
	}
	waitFor(b, time.Duration(120+2*b.N)*time.Second, func() bool { _, v := w.counts(); return v-v0 >= b.N },
		func() string { _, v := w.counts(); return fmt.Sprintf("%d verdicts (have %d)", b.N, v-v0) })
	elapsed := time.Since(start)
	b.StopTimer()
	runsPerSec := float64(b.N) / elapsed.Seconds()
	ideal := float64(concurrency) / delay.Seconds()
	b.ReportMetric(runsPerSec, "runs/s")
	b.ReportMetric(ideal, "ideal-runs/s")
	b.ReportMetric(runsPerSec/ideal, "of-ideal")
	if n := len(srv.log()); n < b.N+concurrency {
		b.Errorf("the server got %d calls for %d runs", n, b.N+concurrency)
	}
}

// TestCrashWhileCallsInFlight SIGKILLs the dataplane (a child process
// running it with the OpenAI adapter) while 64 calls are in flight, and
// starts it again: exactly one terminal outcome per run, no event_id
// twice, each artifact kept whole on the artifacts topic; the calls cut
// off by the kill were made again, each with the idempotency key of its
// first try.
func TestCrashWhileCallsInFlight(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	const n, concurrency = 400, 64
	s := newStack(t, embeddedNoCompaction(t), map[string]string{
		"SPINE_STATIC_MEMBERSHIP": "true", "SPINE_EXEC_TIMEOUT": "120s",
		"SPINE_DATAPLANE_CONCURRENCY": fmt.Sprint(concurrency),
	})
	committed := s.collect(t, true)
	srv := newChatServer(t, 1500*time.Millisecond, nil)
	s.start(orchestrator.Name, "e2e", nil)
	s.start(gatekeeper.Name, "e2e", nil)
	child := s.spawnDataplane(t, srv.URL)

	outs := intents("crash", n)
	traces := map[string]bool{}
	for _, o := range outs {
		traces[string(o.Key)] = true
	}
	s.produce(context.Background(), outs)
	// Kill once 64 calls are in flight and some runs have been answered.
	waitFor(t, 120*time.Second, func() bool {
		return srv.inFlight.Load() == concurrency && committed.countType(thread.ArtifactDelivered) >= concurrency
	}, func() string {
		return fmt.Sprintf("64 calls in flight after 64 answers (%d in flight, %d delivered)", srv.inFlight.Load(), committed.countType(thread.ArtifactDelivered))
	})
	inFlight, callsAtKill := srv.inFlight.Load(), len(srv.log())
	child.Kill(t)
	t.Logf("SIGKILLed the dataplane with %d calls in flight, %d calls made, %d runs ended", inFlight, callsAtKill, committed.terminalCount())
	child = s.spawnDataplane(t, srv.URL)
	waitFor(t, 180*time.Second, func() bool { return committed.terminalCount() >= n },
		func() string { return fmt.Sprintf("%d terminal outcomes (have %d)", n, committed.terminalCount()) })
	committed.settle(1500 * time.Millisecond)
	if !child.Alive() {
		t.Error("the restarted dataplane exited on its own")
	}

	rep := checkThread(t, committed, orchestrator.MustStateflow(s.cfg.Orchestrator.States()), traces)
	if rep.outcomes[thread.RunCompleted] != n {
		t.Errorf("outcomes %v, want %d runs completed", rep.outcomes, n)
	}

	// Every artifact delivered is kept, whole, under its id.
	all, _ := committed.snapshot()
	want := map[string]string{}
	for _, e := range all {
		if e.ev.EventType == thread.ArtifactDelivered {
			want[e.ev.ArtifactID] = answerTo("summarise the quarterly report " + e.ev.TraceID)
		}
	}
	kept := map[string]string{}
	cl := kafkatest.Client(t, s.brokers, kgo.ConsumeTopics(string(s.layout.Artifacts())), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	for deadline := time.Now().Add(30 * time.Second); len(kept) < len(want) && time.Now().Before(deadline); {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { kept[string(r.Key)] = string(r.Value) })
		cancel()
	}
	for id, content := range want {
		if kept[id] != content {
			t.Errorf("artifact %s: kept %q, want %q", id, kept[id], content)
		}
	}
	// One redeemed the way `spine artifacts get` does.
	for id := range want {
		since, err := thread.ParseArtifactID(id)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		f, err := pipeline.FindKey(ctx, s.kopts, s.layout.Artifacts(), []byte(id), since)
		cancel()
		if err != nil || string(f.Record.Value) != want[id] {
			t.Errorf("FindKey %s: %v", id, err)
		}
		break
	}

	// The server's log: the calls made again, each with the key of its
	// first try (one key per run: every run completed on its first
	// attempt).
	keys := map[string]map[string]int{} // input → key → calls
	for _, c := range srv.log() {
		if keys[c.input] == nil {
			keys[c.input] = map[string]int{}
		}
		keys[c.input][c.key]++
	}
	var repeated []string
	for in, ks := range keys {
		if len(ks) != 1 {
			t.Errorf("run %q was called with %d idempotency keys: %v", in, len(ks), ks)
		}
		for k, c := range ks {
			if k == "" {
				t.Errorf("run %q: a call without an Idempotency-Key", in)
			}
			if c > 1 {
				repeated = append(repeated, fmt.Sprintf("%s ×%d key %s", strings.TrimPrefix(in, "summarise the quarterly report "), c, k))
			}
		}
	}
	sort.Strings(repeated)
	if len(repeated) == 0 {
		t.Error("no call was made again after the kill")
	}
	t.Logf("%d calls for %d runs; %d runs' calls were made again after the kill, each with its first key:\n  %s",
		len(srv.log()), n, len(repeated), strings.Join(repeated, "\n  "))
}

// spawnDataplane runs the dataplane with the OpenAI adapter on url as a
// child process: this test binary running TestAsyncDataplaneChild.
func (s *rig) spawnDataplane(tb testing.TB, url string) *child {
	tb.Helper()
	const instance = "c-dataplane"
	cmd := exec.Command(os.Args[0], "-test.run=^TestAsyncDataplaneChild$", "-test.count=1")
	cmd.Env = append(s.childEnv(instance), "E2E_ASYNC_CHILD=1", "E2E_OPENAI_URL="+url)
	if os.Getenv("E2E_VERBOSE") != "" {
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	}
	c := &child{name: dataplane.Name, instance: instance, Proc: spinetest.StartProc(tb, "the dataplane child", cmd, nil)}
	return c
}

// TestAsyncDataplaneChild is the child process of spawnDataplane: the
// dataplane with the OpenAI adapter, configured from the environment as
// `spine run dataplane` is. It runs until killed (at most 10 minutes).
func TestAsyncDataplaneChild(t *testing.T) {
	if os.Getenv("E2E_ASYNC_CHILD") != "1" {
		t.Skip("the child process of TestCrashWhileCallsInFlight")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cfg, err := stack.LoadConfigFrom(ctx, envconfig.OsLookuper())
	if err != nil {
		t.Fatal(err)
	}
	client, err := sr.NewClient(sr.URLs(cfg.RegistryURL))
	if err != nil {
		t.Fatal(err)
	}
	serde, err := schemas.NewSerde(client)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	p, err := dataplaneProcessor(cfg, cfg.Brokers, pipeline.NewSchemaCodec(serde, pipeline.NewLayout(&cfg.Config)), log,
		prometheus.NewRegistry(), cfg.InstanceID, openAIExecutor(t, os.Getenv("E2E_OPENAI_URL")))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
}
