// Package stack is Spine's composition root. Build makes every part of the
// stack, in dependency order and as plain values — registry client, codec
// (once), golden-path metrics, flag store and canary router, projections
// store, the thread processors, the projections processor, the canary
// analyzer, the HTTP routes — and Run runs them. `spine up` builds all of
// it; `spine run X` builds the subset part X needs; the end-to-end tests
// build the same values, so all three run the same thing.
//
// Build does no I/O: it connects nothing and starts nothing. What needs the
// cluster (the registry replay, the contracts, the topics) is done by the
// caller before Build or by Run.
package stack

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"golang.org/x/sync/errgroup"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/canary"
	"github.com/spinerun/spine/processors/orchestrator"
	"github.com/spinerun/spine/projections"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// The parts of the stack, as `spine run` names them.
const (
	Orchestrator = thread.Orchestrator
	Dataplane    = thread.Dataplane
	Gates        = thread.Gatekeeper
	Projections  = thread.Projections
	Canary       = "canary"
)

// Parts are every part, in the order Build makes and Run starts them.
var Parts = []string{Orchestrator, Dataplane, Gates, Projections, Canary}

// ThreadProcessors are the parts that are processors of the thread on the
// transactional loop.
var ThreadProcessors = []string{Orchestrator, Dataplane, Gates}

// Env is what the stack runs on, given by its caller.
type Env struct {
	Config  *Config
	Brokers []string
	// RegistryURL is the schema registry every part uses.
	RegistryURL string
	Log         *slog.Logger
	// Metrics is the process's Prometheus registry.
	Metrics *prometheus.Registry
	// Instance, when set, is this process's instance id (its transactional
	// ids), overriding Config.InstanceID.
	Instance string
	// Router, when set, routes new runs instead of the flag-backed canary
	// router (tests pin a route).
	Router orchestrator.Router
}

// Stack is every part Build made; a part not asked for is nil.
type Stack struct {
	Config   *Config
	Layout   pipeline.Layout
	Registry *sr.Client
	Codec    *pipeline.SchemaCodec
	Golden   *thread.GoldenPath
	// Flags and Router: the flag store tailing spine.flags and the canary
	// router on it (the orchestrator and the canary analyzer).
	Flags  *canary.Rollouts
	Router orchestrator.Router
	// Store is the read side of the projections (the projections' API and
	// the canary analyzer's evidence).
	Store *projections.Store
	// Processors are the thread processors asked for, in Parts order.
	Processors  []*pipeline.Processor
	Projections *projections.Runner
	Analyzer    *canary.Analyzer
	// Routes are the HTTP routes of the parts: the projections API and
	// dashboard, /v1/flags, /v1/canary/analyses. The caller adds /metrics
	// and /healthz.
	Routes *http.ServeMux

	log  *slog.Logger
	runs []func(context.Context) error
	// closers release what a part holds when Run never runs.
	closers []func()
}

// Build makes the parts named (none: every part) and what they depend on.
func Build(env Env, parts ...string) (*Stack, error) {
	if len(parts) == 0 {
		parts = Parts
	}
	for _, p := range parts {
		if !slices.Contains(Parts, p) {
			return nil, fmt.Errorf("unknown part %q (want one of %s)", p, strings.Join(Parts, ", "))
		}
	}
	wants := func(names ...string) bool {
		return slices.ContainsFunc(parts, func(p string) bool { return slices.Contains(names, p) })
	}
	cfg := env.Config
	if env.Log == nil {
		env.Log = slog.New(slog.DiscardHandler)
	}
	if env.Metrics == nil {
		env.Metrics = prometheus.NewRegistry()
	}
	s := &Stack{Config: cfg, Layout: pipeline.NewLayout(&cfg.Config), Routes: http.NewServeMux(), log: env.Log}
	kafka, err := cfg.KafkaOpts(env.Brokers...)
	if err != nil {
		return nil, err
	}
	kafka = slices.Clip(kafka) // each part appends its own client id

	// 1. The registry client and the one codec every part encodes with.
	if s.Registry, err = RegistryClient(&cfg.Config, env.RegistryURL); err != nil {
		return nil, err
	}
	serde, err := schemas.NewSerde(s.Registry, schemas.WithLogger(env.Log))
	if err != nil {
		return nil, err
	}
	s.Codec = pipeline.NewSchemaCodec(serde, s.Layout)
	if s.Golden, err = thread.NewGoldenPath(env.Metrics, thread.GateNames...); err != nil {
		return nil, err
	}

	// 2. The flag store and the canary router.
	s.Router = env.Router
	if wants(Canary) || (wants(Orchestrator) && s.Router == nil) {
		s.Flags = canary.NewRollouts(kafka, s.Layout, pipeline.WithFlagsLogger(env.Log), pipeline.WithFlagsRegisterer(env.Metrics))
		s.runs = append(s.runs, s.Flags.Run)
		s.Routes.Handle("GET /v1/flags", FlagsHandler(s.Flags))
		if s.Router == nil {
			s.Router = canary.NewRouter(s.Flags)
		}
	}

	// 3. The projections store.
	if wants(Projections, Canary) {
		if s.Store, err = newProjectionsStore(cfg, kafka, env.Log); err != nil {
			return nil, err
		}
		s.runs = append(s.runs, s.Store.Run)
	}

	// 4. The thread processors, sharing the codec and golden-path metrics.
	for _, name := range ThreadProcessors {
		if !wants(name) {
			continue
		}
		p, err := newThreadProcessor(cfg, name, threadDeps{
			brokers: env.Brokers, codec: s.Codec, log: env.Log, reg: env.Metrics,
			golden: s.Golden, router: s.Router, instance: env.Instance,
		})
		if err != nil {
			return nil, err
		}
		s.Processors = append(s.Processors, p)
		s.runs = append(s.runs, p.Run)
	}

	// 5. The projections processor, its API and dashboard.
	if wants(Projections) {
		if s.Projections, err = newProjectionsRunner(cfg, kafka, s.Layout, s.Codec, instanceID(cfg, env.Instance), env.Log, env.Metrics); err != nil {
			return nil, err
		}
		s.runs = append(s.runs, s.Projections.Run)
		projections.NewAPI(s.Store).Mount(s.Routes)
	}

	// 6. The canary analyzer, reading the projections store.
	if wants(Canary) {
		runs, closer, err := s.buildAnalyzer(kafka, env)
		if err != nil {
			return nil, err
		}
		s.runs = append(s.runs, runs...)
		s.closers = append(s.closers, closer)
		s.Routes.Handle("GET /v1/canary/analyses", AnalysesHandler(s.Analyzer))
	}
	return s, nil
}

// Run runs every part built until ctx ends or one fails.
func (s *Stack) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, run := range s.runs {
		g.Go(func() error { return run(gctx) })
	}
	return g.Wait()
}

// Close releases what the parts hold; call it when Run is never called.
func (s *Stack) Close() {
	for _, c := range s.closers {
		c()
	}
	s.closers = nil
}

// RegistryClient returns a schema registry client on url with the
// configured basic auth and a bounded timeout.
func RegistryClient(cfg *pipeline.Config, url string) (*sr.Client, error) {
	opts := []sr.ClientOpt{sr.URLs(url), sr.HTTPClient(&http.Client{Timeout: 15 * time.Second})}
	if cfg.RegistryUsername != "" {
		opts = append(opts, sr.BasicAuth(cfg.RegistryUsername, cfg.RegistryPassword))
	}
	cl, err := sr.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("schema registry client for %s: %w", url, err)
	}
	return cl, nil
}

// instanceID is the process's instance id: override, SPINE_INSTANCE_ID,
// the hostname, or "0".
func instanceID(cfg *Config, override string) string {
	switch {
	case override != "":
		return override
	case cfg.InstanceID != "":
		return cfg.InstanceID
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "0"
}

// clientID names a part's Kafka client.
func clientID(cfg *Config, part string) kgo.Opt {
	return kgo.ClientID(cfg.ServiceName + "-" + part)
}
