package stack

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/spinerun/spine/adapters/oidc"
	"github.com/spinerun/spine/agents"
	"github.com/spinerun/spine/gates"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/dataplane"
	"github.com/spinerun/spine/processors/drift"
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
	// drift is the drift status view of the gates' drift check (nil when
	// SPINE_DRIFT_MODE is off).
	drift gates.DriftStatuses
	// policy is the policy file (SPINE_POLICY), nil for none: the
	// orchestrator judges admission with it, the gates artifacts.
	policy *gates.PolicyFile
	// verifier, when set, verifies an intent record's id-token header.
	verifier *oidc.Verifier
	// exec is the dataplane's executor.
	exec dataplane.Executor
	// artifacts reads an artifact whole, for the output schemas of the
	// agents file.
	artifacts gates.ArtifactContent
	// tracer, when set, records the thread's spans.
	tracer trace.TracerProvider
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
	codec := d.codec
	layout := pipeline.NewLayout(&cfg.Config)
	switch name {
	case Orchestrator:
		var extra []orchestrator.Option
		if d.policy != nil {
			extra = append(extra, orchestrator.WithPolicy(d.policy))
		}
		if d.verifier != nil {
			extra = append(extra, orchestrator.WithVerifier(d.verifier))
		}
		h, err = newOrchestrator(cfg, layout, d.log, d.router, extra...)
	case Dataplane:
		dc := dataplane.Config{Executor: d.exec, Logger: d.log,
			ExecTimeout: cfg.Orchestrator.ExecTimeout, Registerer: d.reg, MaxArtifactBytes: cfg.Dataplane.MaxArtifactBytes}
		if d.tracer != nil {
			dc.Tracer = d.tracer.Tracer(TracerName)
		}
		h, err = dataplane.New(layout, dc)
	case Gates:
		var performance gates.Check
		if performance, err = cfg.Performance.Check(); err == nil {
			checks := []gates.Check{schemaCheck(cfg.AgentsFile(), d.artifacts), performance}
			if d.policy != nil {
				checks = append(checks, gates.PolicyGate(d.policy))
			}
			var taps []gatekeeper.Tap
			if cfg.Drift.Mode != gates.DriftOff {
				taps = append(taps, drift.NewSampler(layout))
			}
			// Only enforce mode judges each run (a drifted kind and route
			// fails its runs' verdicts); observe mode reports per window,
			// on the monitor's gate.drift events, and writes nothing per run
			// but the sample.
			if cfg.Drift.Mode == gates.DriftEnforce && d.drift != nil {
				checks = append(checks, gates.Drift(cfg.Drift.Mode, d.drift))
			}
			h, err = gatekeeper.New(layout, gatekeeper.Config{
				Checks: checks,
				Taps:   taps,
				Logger: d.log,
			})
		}
	case Drift:
		h, err = drift.New(layout, drift.Config{Drift: cfg.Drift, Logger: d.log})
		codec = drift.NewCodec(codec, layout)
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
		pipeline.WithCodec(codec),
		pipeline.WithLogger(d.log),
		pipeline.WithRegisterer(d.reg),
	)
	if s, ok := h.(interface{ EventTypes() []schemas.EventType }); ok {
		opts = append(opts, pipeline.WithEventTypes(s.EventTypes()...))
	}
	if name == Dataplane {
		// Calls run outside transactions, at most this many at once.
		opts = append(opts, pipeline.WithAsync(cfg.Dataplane.Concurrency, 0))
	}
	if name == Drift {
		opts = append(opts, pipeline.WithObserver(drift.NewMetrics(d.reg)))
	}
	if d.golden != nil && name != Drift { // drift windows are not golden-path hops
		opts = append(opts, pipeline.WithObserver(pipeline.ObserveEvents(d.golden)))
	}
	if d.tracer != nil && name != Drift {
		opts = append(opts, pipeline.WithObserver(pipeline.TraceHops(d.tracer.Tracer(TracerName), name)))
	}
	if d.instance != "" {
		opts = append(opts, pipeline.WithInstanceID(d.instance))
	}
	return pipeline.NewProcessor(name, h, opts...)
}

// newOrchestrator returns the orchestrator with the stateflow, intent kinds,
// limits and agent fallbacks of cfg, and the extra options given.
func newOrchestrator(cfg *Config, layout pipeline.Layout, log *slog.Logger, router orchestrator.Router, extra ...orchestrator.Option) (*orchestrator.Orchestrator, error) {
	opts, err := cfg.Orchestrator.Options()
	if err != nil {
		return nil, err
	}
	if f := cfg.AgentsFile(); f != nil {
		// Fallback agents: the stateflow's degraded path.
		opts = append(opts, orchestrator.WithAgentFallbacks(f.Fallbacks()))
	}
	opts = append(opts, extra...)
	opts = append(opts, orchestrator.WithLogger(log))
	if router != nil {
		opts = append(opts, orchestrator.WithRouter(router))
	}
	return orchestrator.New(layout, opts...)
}

// schemaCheck is the schema gate, judging each kind's artifacts against
// the output schema its agent declares (agents file, output_schema).
func schemaCheck(file *agents.File, content gates.ArtifactContent) *gates.SchemaCheck {
	c := gates.Schema()
	if file == nil || !slices.ContainsFunc(file.Agents, func(a agents.Agent) bool {
		return a.OutputSchema != nil || (a.Canary != nil && a.Canary.OutputSchema != nil)
	}) {
		return c
	}
	return c.WithOutputs(func(kind, route string) *agents.OutputSchema {
		a, ok := file.Agent(kind)
		if !ok {
			return nil
		}
		return a.Route(route == thread.RouteCanary).OutputSchema
	}, content)
}
