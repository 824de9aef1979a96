package stack

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spinerun/spine/adapters/synthetic"
	"github.com/spinerun/spine/gates"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/dataplane"
	"github.com/spinerun/spine/processors/gatekeeper"
	"github.com/spinerun/spine/processors/orchestrator"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// threadDeps are what the thread processors of one stack share.
type threadDeps struct {
	brokers  []string
	codec    pipeline.Codec
	log      *slog.Logger
	reg      prometheus.Registerer
	golden   *thread.GoldenPath
	router   orchestrator.Router
	instance string
}

// newThreadProcessor builds the named processor of the thread on the
// pipeline loop, with the settings of cfg.
func newThreadProcessor(cfg *pipeline.Config, name string, d threadDeps) (*pipeline.Processor, error) {
	type topicked interface {
		pipeline.Handler
		Topics() []pipeline.Topic
	}
	var h topicked
	var err error
	layout := pipeline.NewLayout(cfg)
	switch name {
	case Orchestrator:
		h, err = newOrchestrator(cfg, layout, d.log, d.router)
	case Dataplane:
		var exec *synthetic.Executor
		if exec, err = synthetic.NewExecutor(SyntheticRoutes(cfg), cfg.SyntheticSleep); err == nil {
			h, err = dataplane.New(layout, dataplane.Config{Executor: exec, Logger: d.log})
		}
	case Gates:
		var budgets map[string]time.Duration
		if budgets, err = gates.ParseBudgets(cfg.LatencyBudgets); err == nil {
			h, err = gatekeeper.New(layout, gatekeeper.Config{
				Checks: []gates.Check{gates.Schema(), gates.Performance(cfg.LatencyBudget, budgets)},
				Logger: d.log,
			})
		}
	default:
		return nil, fmt.Errorf("unknown processor %q (want one of %s)", name, strings.Join(ThreadProcessors, ", "))
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	opts, err := cfg.ProcessorOpts(d.brokers...)
	if err != nil {
		return nil, err
	}
	opts = append(opts,
		pipeline.WithInputs(h.Topics()...),
		pipeline.WithCodec(d.codec),
		pipeline.WithLogger(d.log),
		pipeline.WithRegisterer(d.reg),
	)
	if s, ok := h.(interface{ EventTypes() []schemas.EventType }); ok {
		opts = append(opts, pipeline.WithEventTypes(s.EventTypes()...))
	}
	if d.golden != nil {
		opts = append(opts, pipeline.WithObserver(pipeline.ObserveEvents(d.golden)))
	}
	if d.instance != "" {
		opts = append(opts, pipeline.WithInstanceID(d.instance))
	}
	return pipeline.NewProcessor(name, h, opts...)
}

// newOrchestrator returns the orchestrator with the stateflow, intent kinds
// and limits of cfg.
func newOrchestrator(cfg *pipeline.Config, layout pipeline.Layout, log *slog.Logger, router orchestrator.Router) (*orchestrator.Orchestrator, error) {
	flow, err := orchestrator.NewStateflow(States(cfg))
	if err != nil {
		return nil, err
	}
	var kinds []string
	for _, k := range cfg.IntentKinds {
		if k = strings.TrimSpace(k); k != "" {
			kinds = append(kinds, k)
		}
	}
	opts := []orchestrator.Option{
		orchestrator.WithStateflow(flow),
		orchestrator.WithIntentKinds(kinds...),
		orchestrator.WithMaxPerActor(cfg.MaxRunsPerActor),
		orchestrator.WithRunDeadline(cfg.RunDeadline),
		orchestrator.WithLogger(log),
	}
	if router != nil {
		opts = append(opts, orchestrator.WithRouter(router))
	}
	return orchestrator.New(layout, opts...)
}

// RetryPolicy is the dispatch retry policy cfg asks for.
func RetryPolicy(cfg *pipeline.Config) orchestrator.RetryPolicy {
	retry := orchestrator.DefaultRetry
	retry.MaximumAttempts = cfg.RetryMaxAttempts
	retry.InitialInterval = cfg.RetryInitialInterval
	retry.BackoffCoefficient = cfg.RetryBackoffCoefficient
	retry.MaximumInterval = cfg.RetryMaxInterval
	return retry
}

// States is the stateflow table cfg asks for: the default states with its
// timeouts and retry policy.
func States(cfg *pipeline.Config) []orchestrator.Spec {
	return orchestrator.DefaultStates(RetryPolicy(cfg), cfg.ExecTimeout, cfg.GateTimeout)
}

// SyntheticRoutes returns the synthetic executor's parameters per route:
// the baseline from SPINE_SYNTHETIC_*, the canary from it with the
// SPINE_CANARY_* overrides.
func SyntheticRoutes(cfg *pipeline.Config) map[string]synthetic.Params {
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
