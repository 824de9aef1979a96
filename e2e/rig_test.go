package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sethvargo/go-envconfig"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"go.opentelemetry.io/otel/trace"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
	"github.com/spinerun/spine/processors/orchestrator"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/registry"
	"github.com/spinerun/spine/schemas/registry/registrytest"
)

// envInt reads a positive integer knob, or def.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// rig is the thread's parts on one broker under one topic prefix: topics
// from the layout, Spine's registry storing in the layout's _schemas topic
// with the contracts registered under FULL_TRANSITIVE, and the processors
// built by the composition root `spine up` uses (package stack), one
// shared Prometheus registry counting the golden path of them all.
type rig struct {
	tb      testing.TB
	brokers []string
	// env is the environment the stack's Config was read from; child
	// processes get it too (plus SCHEMA_REGISTRY_URL and an instance id).
	env         map[string]string
	cfg         *stack.Config
	layout      pipeline.Layout
	kopts       []kgo.Opt
	registryURL string
	sr          *sr.Client
	codec       *pipeline.SchemaCodec
	reg         *prometheus.Registry
	log         *slog.Logger
	logs        *logCounter
	// tracer, when set before start, records the processors' spans.
	tracer trace.TracerProvider

	mu    sync.Mutex
	procs []*running
}

// running is one in-process processor.
type running struct {
	name   string
	cancel context.CancelFunc
	done   chan error
}

// newStack starts a stack on brokers (nil: kafkatest.Brokers) with the
// environment overrides env. It registers its own cleanup.
func newStack(tb testing.TB, brokers []string, env map[string]string) *rig {
	tb.Helper()
	if brokers == nil {
		brokers = kafkatest.Brokers(tb)
	}
	s := &rig{tb: tb, brokers: brokers, reg: prometheus.NewRegistry(), logs: &logCounter{}}
	s.log = slog.New(s.logs)
	s.env = map[string]string{
		"KAFKA_BROKERS":          strings.Join(brokers, ","),
		"SPINE_TOPIC_PREFIX":     kafkatest.Prefix(tb),
		"SPINE_PARTITIONS":       "6",
		"SPINE_HTTP_ADDR":        "127.0.0.1:0",
		"SPINE_REGISTRY_ADDR":    "127.0.0.1:0",
		"SPINE_LOG_LEVEL":        "warn",
		"SPINE_SHUTDOWN_TIMEOUT": "5s",
	}
	for k, v := range env {
		s.env[k] = v
	}
	ctx := context.Background()
	cfg, err := stack.LoadConfigFrom(ctx, envconfig.MapLookuper(s.env))
	if err != nil {
		tb.Fatal(err)
	}
	s.cfg = cfg
	s.layout = pipeline.NewLayout(&cfg.Config)
	if s.kopts, err = cfg.KafkaOpts(); err != nil {
		tb.Fatal(err)
	}

	// Topics, as `spine up` creates them.
	adm := kadm.NewClient(kafkatest.Client(tb, brokers))
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := pipeline.EnsureTopics(tctx, adm, s.layout, cfg.ReplicationFactor); err != nil {
		tb.Fatal(err)
	}

	// Spine's registry, served over HTTP (children reach it by URL); the
	// children stop before it does.
	_, s.registryURL = registrytest.Serve(tb,
		registry.WithKafka(append(s.kopts, kgo.ClientID("e2e-registry"))...),
		registry.WithTopic(string(s.layout.Schemas())),
		registry.WithTransactionalID(s.layout.Group("schema-registry")),
		registry.WithReplicationFactor(cfg.ReplicationFactor),
		registry.WithLogger(s.log),
		registry.WithRegisterer(s.reg),
	)
	tb.Cleanup(s.stopAll)
	if s.sr, err = sr.NewClient(sr.URLs(s.registryURL), sr.HTTPClient(&http.Client{Timeout: 30 * time.Second})); err != nil {
		tb.Fatal(err)
	}
	cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
	defer ccancel()
	if _, err := schemas.RegisterContracts(cctx, s.sr, s.layout.ContractSubjects()); err != nil {
		tb.Fatalf("register contracts: %v", err)
	}
	serde, err := schemas.NewSerde(s.sr, schemas.WithLogger(s.log))
	if err != nil {
		tb.Fatal(err)
	}
	s.codec = pipeline.NewSchemaCodec(serde, s.layout)
	return s
}

// childEnv is the environment of a `spine run` child process.
func (s *rig) childEnv(instance string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"SCHEMA_REGISTRY_URL=" + s.registryURL, "SPINE_INSTANCE_ID=" + instance}
	for k, v := range s.env {
		env = append(env, k+"="+v)
	}
	if os.Getenv("E2E_VERBOSE") == "" {
		env = append(env, "SPINE_LOG_LEVEL=error")
	}
	return env
}

// start runs processor name in-process as instance id; router routes new
// runs (the orchestrator only; nil means orchestrator.Baseline).
func (s *rig) start(name, instance string, router orchestrator.Router) *running {
	s.tb.Helper()
	if router == nil {
		router = orchestrator.Baseline
	}
	st, err := stack.Build(stack.Env{Config: s.cfg, Brokers: s.brokers, RegistryURL: s.registryURL, Log: s.log, Metrics: s.reg,
		Instance: instance, Router: router, Tracer: s.tracer}, name)
	if err != nil {
		s.tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{name: name, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- st.Run(ctx) }()
	s.mu.Lock()
	s.procs = append(s.procs, r)
	s.mu.Unlock()
	return r
}

// startAll runs the three processors of the thread in-process.
func (s *rig) startAll(router orchestrator.Router) {
	for _, name := range stack.ThreadProcessors {
		s.start(name, "e2e", router)
	}
}

// stop ends one in-process processor and reports how it ended.
func (r *running) stop(tb testing.TB) {
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			tb.Errorf("processor %s: %v", r.name, err)
		}
		r.done <- nil // later stops see it ended
	case <-time.After(30 * time.Second):
		tb.Errorf("processor %s did not stop within 30s", r.name)
	}
}

func (s *rig) stopAll() {
	s.mu.Lock()
	procs := s.procs
	s.procs = nil
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, r := range procs {
		wg.Go(func() { r.stop(s.tb) })
	}
	wg.Wait()
}

// intents returns n valid intents under run prefix run, alternately written
// in contract V1 and V2 (V2 ones carry a priority, tenant and attributes).
func intents(run string, n int) []pipeline.Output {
	kinds := orchestrator.DefaultIntentKinds
	now := time.Now()
	outs := make([]pipeline.Output, n)
	for i := range outs {
		trace := fmt.Sprintf("%s-%06d", run, i)
		it := &schemas.Intent{
			IntentID: "i-" + trace, TraceID: trace, Actor: fmt.Sprintf("agent-%d", i%97),
			Kind: kinds[i%len(kinds)], Input: "summarise the quarterly report " + trace,
			SchemaVersion: schemas.V1, Timestamp: now,
		}
		v := schemas.V1
		if i%2 == 1 {
			v = schemas.V2
			it.SchemaVersion = schemas.V2
			it.Priority = int32(i % 5)
			it.Tenant = "tenant-" + strconv.Itoa(i%3)
			it.Attributes = map[string]string{"source": "e2e", "n": strconv.Itoa(i)}
		}
		outs[i] = pipeline.Output{Topic: "", Key: []byte(trace), Value: it, Version: v}
	}
	return outs
}

// produce writes outs to the intents topic in batches of 500.
func (s *rig) produce(ctx context.Context, outs []pipeline.Output) {
	s.tb.Helper()
	p, err := pipeline.NewProducer(s.codec, s.kopts...)
	if err != nil {
		s.tb.Fatal(err)
	}
	defer p.Close()
	for i := 0; i < len(outs); i += 500 {
		batch := outs[i:min(i+500, len(outs))]
		for j := range batch {
			batch[j].Topic = s.layout.Intents()
		}
		if _, err := p.Produce(ctx, batch...); err != nil {
			s.tb.Fatalf("produce intents: %v", err)
		}
	}
}

// logCounter is the processors' slog handler: it counts records by level
// and message (a restarted session logs "processor session failed") and
// prints warnings and errors to stderr when E2E_VERBOSE is set.
type logCounter struct {
	attrs    []slog.Attr
	warns    atomic.Int64
	errors   atomic.Int64
	restarts atomic.Int64
	parent   *logCounter
}

func (l *logCounter) root() *logCounter {
	for l.parent != nil {
		l = l.parent
	}
	return l
}

func (l *logCounter) Enabled(context.Context, slog.Level) bool { return true }

func (l *logCounter) Handle(_ context.Context, r slog.Record) error {
	root := l.root()
	switch {
	case r.Level >= slog.LevelError:
		root.errors.Add(1)
	case r.Level >= slog.LevelWarn:
		root.warns.Add(1)
	default:
		return nil
	}
	if strings.Contains(r.Message, "session failed") {
		root.restarts.Add(1)
	}
	if os.Getenv("E2E_VERBOSE") != "" {
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s %s", r.Time.Format("15:04:05.000"), r.Level, r.Message)
		for _, a := range l.attrs {
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		}
		r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
		fmt.Fprintln(os.Stderr, b.String())
	}
	return nil
}

func (l *logCounter) WithAttrs(as []slog.Attr) slog.Handler {
	return &logCounter{attrs: append(append([]slog.Attr(nil), l.attrs...), as...), parent: l.root()}
}

func (l *logCounter) WithGroup(string) slog.Handler { return l }

// waitFor polls cond every 50ms until it holds or d passes.
func waitFor(tb testing.TB, d time.Duration, cond func() bool, what func() string) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", d, what())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
