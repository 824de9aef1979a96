package stack

import (
	"fmt"
	"log/slog"
	"strings"

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
func newThreadProcessor(cfg *Config, name string, d threadDeps) (*pipeline.Processor, error) {
	type topicked interface {
		pipeline.Handler
		Topics() []pipeline.Topic
	}
	var h topicked
	var err error
	layout := pipeline.NewLayout(&cfg.Config)
	switch name {
	case Orchestrator:
		h, err = newOrchestrator(cfg, layout, d.log, d.router)
	case Dataplane:
		var exec *synthetic.Executor
		if exec, err = synthetic.NewExecutor(cfg.Synthetic.Routes(), cfg.Synthetic.Sleep); err == nil {
			h, err = dataplane.New(layout, dataplane.Config{Executor: exec, Logger: d.log})
		}
	case Gates:
		var performance gates.Check
		if performance, err = cfg.Performance.Check(); err == nil {
			h, err = gatekeeper.New(layout, gatekeeper.Config{
				Checks: []gates.Check{gates.Schema(), performance},
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
func newOrchestrator(cfg *Config, layout pipeline.Layout, log *slog.Logger, router orchestrator.Router) (*orchestrator.Orchestrator, error) {
	opts, err := cfg.Orchestrator.Options()
	if err != nil {
		return nil, err
	}
	opts = append(opts, orchestrator.WithLogger(log))
	if router != nil {
		opts = append(opts, orchestrator.WithRouter(router))
	}
	return orchestrator.New(layout, opts...)
}
