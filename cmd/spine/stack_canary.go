package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/spinerun/spine/gates"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/canary"
	"github.com/spinerun/spine/processors/orchestrator"
	"github.com/spinerun/spine/projections"
	"github.com/spinerun/spine/schemas"
)

// canaryWiring is the stack's canary rollout: the flag store every part
// reads the v2_rollout flag from, and the router built on it.
type canaryWiring struct {
	flags  *pipeline.Flags
	router *canary.Router
}

// wireCanary gives the stack its flag store (tailing spine.flags), the
// flag-backed router the orchestrator routes with, and the canary analyzer
// (newCanaryAnalyzer). It runs after the registry and before the
// processors; the analyzer reads the projections store wired later, at
// analysis time.
func (st *stack) wireCanary(ctx context.Context) error {
	cfg, log := st.cfg, st.a.log
	opts, err := cfg.KafkaOpts(st.brokers...)
	if err != nil {
		return err
	}
	layout := pipeline.NewLayout(cfg)
	flags := pipeline.NewFlags(opts, layout, pipeline.WithFlagsLogger(log), pipeline.WithFlagsRegisterer(st.reg))
	st.canary = &canaryWiring{flags: flags, router: canary.NewRouter(flags)}

	serde, err := schemas.NewSerde(st.sr, schemas.WithLogger(log))
	if err != nil {
		return err
	}
	an, runners, err := newCanaryAnalyzer(cfg, opts, pipeline.NewSchemaCodec(serde, layout), flags,
		func() *projections.Store { return st.projections }, log, st.reg)
	if err != nil {
		return err
	}
	st.mux.Handle("GET /v1/flags", flagsHandler(flags))
	st.mux.Handle("GET /v1/canary/analyses", analysesHandler(an))
	st.runners = append(st.runners, flags.Run)
	st.runners = append(st.runners, runners...)
	return nil
}

// newCanaryAnalyzer returns the canary analyzer on flags and what runs it:
// every rollout interval it compares canary with baseline on the
// projections view that view returns at analysis time (nil: not wired
// yet), publishes each analysis on gate.canary through its own producer,
// and moves the rollout. It analyses only while its process leads the
// canary-analyzer group, so one decision is taken however many processes
// run one. The runners (the leader election, the analyzer) must run beside
// flags.Run.
func newCanaryAnalyzer(cfg *pipeline.Config, opts []kgo.Opt, codec pipeline.Codec, flags *pipeline.Flags,
	view func() *projections.Store, log *slog.Logger, reg prometheus.Registerer) (*canary.Analyzer, []func(context.Context) error, error) {
	layout := pipeline.NewLayout(cfg)
	pub, err := pipeline.NewProducer(codec, opts...)
	if err != nil {
		return nil, nil, err
	}
	// The synthetic executor without sleep only reports its latency; the
	// analysis then compares what it reports.
	src := canary.LatencyEndToEnd
	if !cfg.SyntheticSleep {
		src = canary.LatencyExecutor
	}
	evidence := canary.EvidenceSourceFunc(func(ctx context.Context, since time.Time) (gates.CanaryEvidence, error) {
		store := view()
		if store == nil {
			return gates.CanaryEvidence{}, fmt.Errorf("no projections view in this process")
		}
		return canary.ProjectionEvidence(store, 0, src).Evidence(ctx, since)
	})
	leader := pipeline.NewLeader(opts, layout, "canary-analyzer", log)
	an, err := canary.NewAnalyzer(canary.AnalyzerConfig{
		Flags: flags, Evidence: evidence, Publisher: pub, Layout: layout,
		Logger: log, Registerer: reg, LatencySource: src, Leader: leader,
	})
	if err != nil {
		pub.Close()
		return nil, nil, err
	}
	return an, []func(context.Context) error{leader.Run, func(ctx context.Context) error {
		defer pub.Close()
		if err := flags.WaitReady(ctx); err != nil {
			return nil // ctx ended
		}
		return an.Run(ctx)
	}}, nil
}

// router is the Router the orchestrator routes new runs with: the
// flag-backed canary router once wireCanary ran, else everything to the
// baseline.
func (st *stack) router() orchestrator.Router {
	if st.canary == nil {
		return orchestrator.Baseline
	}
	return st.canary.router
}

// newFlagRouter returns the flag-backed router for a processor running on
// its own (`spine run orchestrator`) and the flag store's Run, which must
// run beside the processor so flag changes apply without a restart.
func newFlagRouter(cfg *pipeline.Config, brokers []string, log *slog.Logger, reg prometheus.Registerer) (orchestrator.Router, func(context.Context) error, error) {
	opts, err := cfg.KafkaOpts(brokers...)
	if err != nil {
		return nil, nil, err
	}
	flags := pipeline.NewFlags(opts, pipeline.NewLayout(cfg), pipeline.WithFlagsLogger(log), pipeline.WithFlagsRegisterer(reg))
	return canary.NewRouter(flags), flags.Run, nil
}

// flagsHandler serves GET /v1/flags: the current v2_rollout (its latest
// change: value, who, why, when, revision) and its history.
func flagsHandler(f *pipeline.Flags) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		body := struct {
			Rollout pipeline.Rollout      `json:"v2_rollout"`
			Current *pipeline.FlagChange  `json:"current,omitempty"`
			History []pipeline.FlagChange `json:"history"`
		}{Rollout: f.Rollout(), History: f.History(pipeline.FlagV2Rollout)}
		if c, ok := f.Get(pipeline.FlagV2Rollout); ok {
			body.Current = &c
		}
		if body.History == nil {
			body.History = []pipeline.FlagChange{}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(body)
	})
}

// analysesHandler serves GET /v1/canary/analyses: the analyses this
// process's analyzer made (the last 1000), oldest first.
func analysesHandler(an *canary.Analyzer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		list := an.Analyses()
		if list == nil {
			list = []canary.Analysis{}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(list)
	})
}

// canaryName is what `spine run` calls the canary analyzer.
const canaryName = "canary"

// runCanary runs the canary analyzer on its own (`spine run canary`), for
// a split deployment whose processors run with `spine run`: the flag store,
// a projections view to read the evidence from (the projections service
// fills the topics it reads), the analyzer under its leader election,
// /v1/flags, /v1/canary/analyses, /healthz and /metrics, until ctx ends.
func runCanary(ctx context.Context, a *app, cfg *pipeline.Config) error {
	reg := newMetricsRegistry()
	codec, err := cliCodec(cfg)
	if err != nil {
		return err
	}
	brokers := cliBrokers(cfg)
	opts, err := cfg.KafkaOpts(brokers...)
	if err != nil {
		return err
	}
	flags := pipeline.NewFlags(opts, pipeline.NewLayout(cfg), pipeline.WithFlagsLogger(a.log), pipeline.WithFlagsRegisterer(reg))
	store, err := newProjectionsStore(cfg, brokers, a.log)
	if err != nil {
		return err
	}
	an, runners, err := newCanaryAnalyzer(cfg, opts, codec, flags, func() *projections.Store { return store }, a.log, reg)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mountOps(mux, reg, map[string]string{"processor": canaryName})
	mux.Handle("GET /v1/flags", flagsHandler(flags))
	mux.Handle("GET /v1/canary/analyses", analysesHandler(an))
	srv := &pipeline.HTTPServer{Name: canaryName, Addr: cfg.HTTPAddr, Handler: mux, ShutdownTimeout: cfg.ShutdownTimeout, Log: a.log}
	if err := srv.Listen(); err != nil {
		return err
	}
	a.log.Info("canary analyzer running", "kafka", brokers, "http", "http://"+hostport(srv.BoundAddr())+"/v1/canary/analyses")
	g, gctx := errgroup.WithContext(ctx)
	for _, run := range append([]func(context.Context) error{flags.Run, store.Run, srv.Run}, runners...) {
		g.Go(func() error { return run(gctx) })
	}
	return g.Wait()
}
