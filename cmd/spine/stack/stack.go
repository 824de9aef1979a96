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
	"crypto/tls"
	"crypto/x509"
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
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/spinerun/spine/adapters/ingress"
	"github.com/spinerun/spine/adapters/oidc"
	"github.com/spinerun/spine/adapters/postgres"
	"github.com/spinerun/spine/gates"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/canary"
	"github.com/spinerun/spine/processors/dataplane"
	"github.com/spinerun/spine/processors/drift"
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
	Ingress      = "ingress"
	Drift        = thread.Drift
)

// Parts are every part, in the order Build makes and Run starts them.
// Building every part (no names) makes PGSink only when SPINE_PG_URL is set.
var Parts = []string{Orchestrator, Dataplane, Gates, Drift, Projections, Canary, Ingress, PGSink}

// ThreadProcessors are the parts that are processors of the thread on the
// transactional loop. The drift monitor is one unless SPINE_DRIFT_MODE is
// off.
var ThreadProcessors = []string{Orchestrator, Dataplane, Gates, Drift}

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
	// Verifier, when set, is the process's OIDC verifier (made by the
	// caller because its registry uses it too); else the stack makes one
	// when SPINE_OIDC_ISSUER is set.
	Verifier *oidc.Verifier
	// Tracer, when set, gets a span per committed event of the thread
	// processors (pipeline.TraceHops) and per executor call; it must be
	// made by pipeline.NewTracerProvider (see Tracing). Nil: no tracing.
	Tracer trace.TracerProvider
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
	// Live is the dashboard's per-second view of what the projections
	// processor commits; DeadLetters the tail of the DLQ it shows (with
	// the projections).
	Live        *projections.Live
	DeadLetters *projections.DeadLetters
	// DriftStatus is the view of spine.drift.status the gates' drift check
	// reads (with the gates, unless SPINE_DRIFT_MODE is off).
	DriftStatus *drift.Statuses
	// Executor is the dataplane's executor (when the dataplane is asked
	// for): the synthetic executor, or the agents file's executors routed
	// by kind and route (Config.AgentsFile).
	Executor dataplane.Executor
	// Processors are the thread processors asked for, in Parts order.
	Processors  []*pipeline.Processor
	Projections *projections.Runner
	Analyzer    *canary.Analyzer
	// Policy is the policy file SPINE_POLICY names, nil when unset: the
	// orchestrator and the gates read the version in force, Run reloads it.
	Policy *gates.PolicyFile
	// Ingress serves POST /v1/intents; Verifier, when SPINE_OIDC_ISSUER is
	// set, verifies its callers' tokens.
	Ingress  *ingress.Handler
	Verifier *oidc.Verifier
	// Sink is the PostgreSQL sink (package adapters/postgres).
	Sink *postgres.Sink
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
	all := len(parts) == 0
	if all {
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
	// The projections' dashboard shows the flag's history too.
	if wants(Canary, Projections) || (wants(Orchestrator) && s.Router == nil) {
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

	// 4. The dataplane's executors, from the agents file (SPINE_AGENTS) or
	// the synthetic one; those that hold a connection run beside the rest.
	s.Routes.Handle("GET /v1/agents", AgentsHandler(cfg))
	s.Routes.Handle("GET /v1/stateflow", StateflowHandler(cfg))
	if wants(Dataplane) {
		x, err := newExecutors(cfg, env.Log)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.Executor = x.exec
		s.runs = append(s.runs, x.runs...)
		s.closers = append(s.closers, x.close)
	}

	// 5. The policy (the orchestrator judges admission, the gates
	// artifacts) and the thread processors, sharing the codec and
	// golden-path metrics.
	if wants(Orchestrator, Gates) && cfg.Policy.Path != "" {
		if s.Policy, err = cfg.Policy.Load(env.Log); err != nil {
			s.Close()
			return nil, err
		}
		s.runs = append(s.runs, s.Policy.Run)
		s.Routes.Handle("GET /v1/policy", PolicyHandler(s.Policy))
	}

	// The drift status view the gates' drift check reads (enforce mode).
	if wants(Gates) && cfg.Drift.Mode == gates.DriftEnforce {
		s.DriftStatus = drift.NewStatuses(append(slices.Clone(kafka), clientID(cfg, "drift-status")), s.Layout, env.Log)
		s.runs = append(s.runs, s.DriftStatus.Run)
	}

	var driftStatus gates.DriftStatuses
	if s.DriftStatus != nil {
		driftStatus = s.DriftStatus
	}

	for _, name := range ThreadProcessors {
		if !wants(name) || (name == Drift && cfg.Drift.Mode == gates.DriftOff) {
			continue
		}
		deps := threadDeps{
			brokers: env.Brokers, codec: s.Codec, log: env.Log, reg: env.Metrics,
			golden: s.Golden, router: s.Router, instance: env.Instance, policy: s.Policy, exec: s.Executor,
			drift: driftStatus, tracer: env.Tracer,
		}
		if name == Gates {
			arts := projections.NewArtifacts(kafka, s.Layout)
			deps.artifacts = func(ctx context.Context, id string) ([]byte, error) {
				a, err := arts.Get(ctx, id)
				return a.Content, err
			}
		}
		if name == Orchestrator {
			if deps.verifier, err = s.verifier(env); err != nil {
				s.Close()
				return nil, err
			}
		}
		p, err := newThreadProcessor(cfg, name, deps)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.Processors = append(s.Processors, p)
		s.runs = append(s.runs, p.Run)
	}

	// 6. The projections processor, its API and dashboard (fed live by
	// the processor, with the DLQ's tail, the flags and the policy).
	if wants(Projections) {
		s.Live = projections.NewLive()
		if s.Projections, err = newProjectionsRunner(cfg, kafka, s.Layout, s.Codec, instanceID(cfg, env.Instance), s.Live, env.Log, env.Metrics); err != nil {
			return nil, err
		}
		s.DeadLetters = projections.NewDeadLetters(append(slices.Clone(kafka), clientID(cfg, "dead-letters")), s.Layout, env.Log)
		api := projections.NewAPI(s.Store, s.dashboardOpts()...)
		api.Mount(s.Routes)
		s.runs = append(s.runs, s.Projections.Run, s.DeadLetters.Run, api.Run)
		projections.NewArtifacts(kafka, s.Layout).Mount(s.Routes, env.Log)
	}

	// 7. The canary analyzer, reading the projections store.
	if wants(Canary) {
		runs, closer, err := s.buildAnalyzer(kafka, env)
		if err != nil {
			return nil, err
		}
		s.runs = append(s.runs, runs...)
		s.closers = append(s.closers, closer)
		s.Routes.Handle("GET /v1/canary/analyses", AnalysesHandler(s.Analyzer))
	}

	// 7. The HTTP ingress, with the verifier when an issuer is set.
	if wants(Ingress) {
		run, closer, err := s.buildIngress(kafka, env)
		if err != nil {
			return nil, err
		}
		s.runs = append(s.runs, run)
		s.closers = append(s.closers, closer)
	}

	// 8. The PostgreSQL sink: asked for by name, or with every part when
	// a database is configured.
	if wants(PGSink) && (!all || cfg.Postgres.Enabled()) {
		if s.Sink, err = newPGSink(cfg, kafka, s.Layout, s.Codec, instanceID(cfg, env.Instance), env.Log, env.Metrics); err != nil {
			return nil, err
		}
		s.runs = append(s.runs, s.Sink.Run)
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
// configured basic auth or bearer token, the CA of SCHEMA_REGISTRY_CA_FILE
// trusted besides the system's, and a bounded timeout.
func RegistryClient(cfg *pipeline.Config, url string) (*sr.Client, error) {
	hc := &http.Client{Timeout: 15 * time.Second}
	if cfg.RegistryCAFile != "" {
		pem, err := os.ReadFile(cfg.RegistryCAFile)
		if err != nil {
			return nil, fmt.Errorf("read SCHEMA_REGISTRY_CA_FILE: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("SCHEMA_REGISTRY_CA_FILE %s holds no PEM certificate", cfg.RegistryCAFile)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
		hc.Transport = tr
	}
	opts := []sr.ClientOpt{sr.URLs(url), sr.HTTPClient(hc)}
	switch {
	case cfg.RegistryUsername != "":
		opts = append(opts, sr.BasicAuth(cfg.RegistryUsername, cfg.RegistryPassword))
	case cfg.RegistryBearerToken != "":
		opts = append(opts, sr.BearerToken(cfg.RegistryBearerToken))
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
