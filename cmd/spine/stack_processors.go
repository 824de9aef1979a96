package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	checks "github.com/spinerun/spine/gates"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/dataplane"
	"github.com/spinerun/spine/processors/dataplane/synthetic"
	gatesrunner "github.com/spinerun/spine/processors/gates"
	"github.com/spinerun/spine/processors/orchestrator"
	"github.com/spinerun/spine/processors/thread"
	"github.com/spinerun/spine/schemas"
)

// threadProcessors are the processors of the event thread, in the order
// `spine up` starts them and `spine run` names them.
var threadProcessors = []string{orchestrator.Name, dataplane.Name, gatesrunner.Name}

// wireProcessors adds the orchestrator, dataplane and gates runner to the
// stack, each on its own transactional loop, sharing the golden-path
// metrics.
func (st *stack) wireProcessors(ctx context.Context) error {
	serde, err := schemas.NewSerde(st.sr, schemas.WithLogger(st.a.log))
	if err != nil {
		return err
	}
	codec := pipeline.NewSchemaCodec(serde, pipeline.NewLayout(st.cfg))
	golden, err := pipeline.NewGoldenPath(st.reg)
	if err != nil {
		return err
	}
	for _, name := range threadProcessors {
		p, err := newThreadProcessor(st.cfg, name, st.brokers, codec, st.a.log, st.reg, golden, st.router())
		if err != nil {
			return err
		}
		st.runners = append(st.runners, p.Run)
	}
	return nil
}

// newThreadProcessor builds the named processor of the thread on the
// pipeline loop. router routes new runs (the orchestrator only).
func newThreadProcessor(cfg *pipeline.Config, name string, brokers []string, codec pipeline.Codec, log *slog.Logger,
	reg prometheus.Registerer, golden *pipeline.GoldenPath, router orchestrator.Router) (*pipeline.Processor, error) {
	type topicked interface {
		pipeline.Handler
		Topics() []pipeline.Topic
	}
	var h topicked
	var err error
	layout := pipeline.NewLayout(cfg)
	switch name {
	case orchestrator.Name:
		h, err = newOrchestrator(cfg, layout, log, router)
	case dataplane.Name:
		h, err = dataplane.New(layout, dataplane.Config{Routes: syntheticRoutes(cfg), Sleep: cfg.SyntheticSleep, Logger: log})
	case gatesrunner.Name:
		var budgets map[string]time.Duration
		if budgets, err = checks.ParseBudgets(cfg.LatencyBudgets); err == nil {
			h, err = gatesrunner.New(layout, gatesrunner.Config{
				Checks: []checks.Check{checks.Schema(), checks.Performance(cfg.LatencyBudget, budgets)},
				Logger: log,
			})
		}
	default:
		return nil, fmt.Errorf("unknown processor %q (want one of %s)", name, strings.Join(threadProcessors, ", "))
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	opts, err := cfg.ProcessorOpts(brokers...)
	if err != nil {
		return nil, err
	}
	opts = append(opts,
		pipeline.WithInputs(h.Topics()...),
		pipeline.WithCodec(codec),
		pipeline.WithLogger(log),
		pipeline.WithRegisterer(reg),
	)
	if golden != nil {
		opts = append(opts, pipeline.WithObserver(golden))
	}
	return pipeline.NewProcessor(name, h, opts...)
}

func newOrchestrator(cfg *pipeline.Config, layout pipeline.Layout, log *slog.Logger, router orchestrator.Router) (*orchestrator.Orchestrator, error) {
	retry := orchestrator.DefaultRetry
	retry.MaximumAttempts = cfg.RetryMaxAttempts
	retry.InitialInterval = cfg.RetryInitialInterval
	retry.BackoffCoefficient = cfg.RetryBackoffCoefficient
	retry.MaximumInterval = cfg.RetryMaxInterval
	flow, err := orchestrator.NewStateflow(orchestrator.DefaultStates(retry, cfg.ExecTimeout, cfg.GateTimeout))
	if err != nil {
		return nil, err
	}
	var kinds []string
	for _, k := range cfg.IntentKinds {
		if k = strings.TrimSpace(k); k != "" {
			kinds = append(kinds, k)
		}
	}
	return orchestrator.New(layout,
		orchestrator.WithStateflow(flow),
		orchestrator.WithRouter(router),
		orchestrator.WithIntentKinds(kinds...),
		orchestrator.WithMaxPerActor(cfg.MaxRunsPerActor),
		orchestrator.WithRunDeadline(cfg.RunDeadline),
		orchestrator.WithLogger(log),
	)
}

// syntheticRoutes returns the synthetic executor's parameters per route:
// the baseline from SPINE_SYNTHETIC_*, the canary from it with the
// SPINE_CANARY_* overrides.
func syntheticRoutes(cfg *pipeline.Config) map[string]synthetic.Params {
	base := synthetic.Default()
	base.LatencyMean = cfg.SyntheticLatencyMean
	base.LatencyP99 = cfg.SyntheticLatencyP99
	base.FailureRate = cfg.SyntheticFailureRate
	base.HangRate = cfg.SyntheticHangRate
	base.ScoreMean = cfg.SyntheticScoreMean
	base.ScoreStddev = cfg.SyntheticScoreStddev
	canary := base
	if cfg.CanaryLatencyMean > 0 {
		canary.LatencyMean = cfg.CanaryLatencyMean
	}
	if cfg.CanaryLatencyP99 > 0 {
		canary.LatencyP99 = cfg.CanaryLatencyP99
	}
	if cfg.CanaryFailureRate >= 0 {
		canary.FailureRate = cfg.CanaryFailureRate
	}
	canary.ScoreMean += cfg.CanaryScoreShift
	return map[string]synthetic.Params{thread.RouteBaseline: base, thread.RouteCanary: canary}
}
