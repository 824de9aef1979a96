package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spinerun/spine/gates"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/canary"
	"github.com/spinerun/spine/processors/orchestrator"
	"github.com/spinerun/spine/schemas"
)

// canaryWiring is the stack's canary rollout: the flag store every part
// reads the v2_rollout flag from, and the router built on it.
type canaryWiring struct {
	flags  *pipeline.Flags
	router *canary.Router
}

// wireCanary gives the stack its flag store (tailing spine.flags), the
// flag-backed router the orchestrator routes with, and the canary analyzer,
// which compares canary with baseline on the projections every rollout
// interval and publishes each analysis on gate.canary. It runs after the
// registry and before the processors; the analyzer reads the projections
// store wired later, at analysis time.
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
	pub, err := pipeline.NewProducer(pipeline.NewSchemaCodec(serde, layout), opts...)
	if err != nil {
		return err
	}
	// The synthetic executor without sleep only reports its latency; the
	// analysis then compares what it reports.
	src := canary.LatencyEndToEnd
	if !cfg.SyntheticSleep {
		src = canary.LatencyExecutor
	}
	var evidence canary.EvidenceSource = canary.EvidenceSourceFunc(func(ctx context.Context, since time.Time) (gates.CanaryEvidence, error) {
		if st.projections == nil {
			return gates.CanaryEvidence{}, fmt.Errorf("no projections in this stack")
		}
		return canary.ProjectionEvidence(st.projections, 0, src).Evidence(ctx, since)
	})
	// One analyzer decides, however many stacks share the cluster.
	leader := pipeline.NewLeader(opts, layout, "canary-analyzer", log)
	an, err := canary.NewAnalyzer(canary.AnalyzerConfig{
		Flags: flags, Evidence: evidence, Publisher: pub, Layout: layout,
		Logger: log, Registerer: st.reg, LatencySource: src, Leader: leader,
	})
	if err != nil {
		return err
	}
	st.mux.Handle("GET /v1/flags", flagsHandler(flags))
	st.mux.Handle("GET /v1/canary/analyses", analysesHandler(an))
	st.runners = append(st.runners, flags.Run, leader.Run, func(ctx context.Context) error {
		defer pub.Close()
		if err := flags.WaitReady(ctx); err != nil {
			return nil // ctx ended
		}
		return an.Run(ctx)
	})
	return nil
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
