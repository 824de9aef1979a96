// Package gatekeeper is the gates runner: it consumes spine.dataplane, acts only
// on artifact.delivered, runs every configured check (package
// github.com/spinerun/spine/gates) in order, and publishes one gate.passed
// or gate.failed event per check on gate.<name>, then one gate.verdict on
// gate.verdict (passed when every check passed), which the orchestrator
// completes or rejects the run on.
//
// Every event's parent span is the artifact.delivered event's span, so the
// orchestrator can tell a verdict on the current artifact from one on an
// earlier attempt's, and its ids derive from the trace id, that span and the
// check name, so a retried transaction reproduces them. A check that errors
// (cannot decide) makes Handle return a transient error and the pipeline
// retries the record; a check that panics fails its gate with code
// "check_panicked".
//
// The runner keeps no state of its own and is safe for concurrent use as
// long as its checks are.
package gatekeeper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/spinerun/spine/gates"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// Name is the processor name: its group, state topic and metrics label.
const Name = "gates"

// Config configures a Runner.
type Config struct {
	// Checks run in order on every artifact; nil means Default().
	Checks []gates.Check
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// Taps derive more records from every checked artifact, written in the
	// transaction of its gate events (the drift samples, drift.Sampler).
	Taps []Tap
}

// Tap derives records from a checked artifact: they are written with its
// gate events. Implementations must be safe for concurrent use.
type Tap interface {
	Tap(s gates.Subject) []pipeline.Output
}

// Default returns the checks shipped now: schema validity and performance
// with the default latency budget.
func Default() []gates.Check {
	return []gates.Check{gates.Schema(), gates.Performance(0, nil)}
}

// Runner is the gates Handler.
type Runner struct {
	layout pipeline.Layout
	topics map[string]pipeline.Topic // gate name → layout.Gate(name), named once
	checks []gates.Check
	taps   []Tap
	now    func() time.Time
	log    *slog.Logger
}

var _ pipeline.Handler = (*Runner)(nil)

// New returns a Runner writing to the topics of layout. Check names must be
// unique, not "verdict", and among thread.GateNames (each has its
// gate.<name> topic). It does no I/O.
func New(layout pipeline.Layout, cfg Config) (*Runner, error) {
	r := &Runner{layout: layout, checks: cfg.Checks, taps: cfg.Taps, now: cfg.Now, log: cfg.Logger}
	if r.checks == nil {
		r.checks = Default()
	}
	if len(r.checks) == 0 {
		return nil, errors.New("gates: no checks configured")
	}
	seen := map[string]bool{}
	for _, c := range r.checks {
		n := c.Name()
		switch {
		case n == "" || n == thread.VerdictGate:
			return nil, fmt.Errorf("gates: invalid check name %q", n)
		case seen[n]:
			return nil, fmt.Errorf("gates: check %q configured twice", n)
		case !slices.Contains(thread.GateNames, n):
			return nil, fmt.Errorf("gates: check %q has no topic %s in the layout (gate names: %s)", n, layout.Gate(n), strings.Join(thread.GateNames, ", "))
		}
		seen[n] = true
	}
	r.topics = map[string]pipeline.Topic{thread.VerdictGate: layout.Gate(thread.VerdictGate)}
	for n := range seen {
		r.topics[n] = layout.Gate(n)
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	r.log = r.log.With("processor", Name)
	return r, nil
}

// gateTopic returns the topic of gate name.
func (r *Runner) gateTopic(name string) pipeline.Topic {
	if t, ok := r.topics[name]; ok {
		return t
	}
	return r.layout.Gate(name)
}

// Topics lists the topics the runner consumes: spine.dataplane.
func (r *Runner) Topics() []pipeline.Topic { return []pipeline.Topic{r.layout.Dataplane()} }

// EventTypes lists the only data plane events the gates check: the loop
// passes over the rest undecoded (pipeline.WithEventTypes).
func (r *Runner) EventTypes() []schemas.EventType {
	return []schemas.EventType{thread.ArtifactDelivered}
}

// Checks lists the names of the configured checks, in order.
func (r *Runner) Checks() []string {
	out := make([]string, len(r.checks))
	for i, c := range r.checks {
		out[i] = c.Name()
	}
	return out
}

// Handle implements pipeline.Handler.
func (r *Runner) Handle(ctx context.Context, _ []byte, in pipeline.Input) (pipeline.Result, error) {
	ev, ok := in.Value.(*schemas.RuntimeEvent)
	if !ok || ev.EventType != thread.ArtifactDelivered {
		return pipeline.Result{}, nil
	}
	if ev.TraceID == "" || ev.SpanID == "" {
		return pipeline.Result{}, pipeline.Reject("missing_field", "artifact.delivered without trace_id or span_id")
	}
	ver := in.Version
	if !ver.Valid() {
		ver = ev.SchemaVersion
	}
	if !ver.Valid() {
		ver = schemas.V1
	}
	now := r.now()
	subj := gates.Subject{Event: ev, Version: ver, Headers: in.Headers, Now: now}
	out := make([]pipeline.Output, 0, len(r.checks)+1)
	gateEvent := func(name string, typ schemas.EventType, g *schemas.GateOutcome) {
		id, span := thread.IDs(ev.TraceID, "g", ev.SpanID, name)
		e := &schemas.RuntimeEvent{
			EventID:       id,
			TraceID:       ev.TraceID,
			SpanID:        span,
			ParentSpanID:  ev.SpanID,
			Actor:         ev.Actor,
			Intent:        ev.Intent,
			ArtifactID:    ev.ArtifactID,
			SchemaVersion: ver,
			Timestamp:     now,
			RunStarted:    ev.RunStarted,
			Phase:         schemas.PhaseGate,
			EventType:     typ,
			State:         "gating",
			Gate:          g,
			Route:         ev.Route,
			Attempt:       ev.Attempt,
			Priority:      ev.Priority,
			Tenant:        ev.Tenant,
		}
		out = append(out, pipeline.Output{Topic: r.gateTopic(name), Key: []byte(ev.TraceID), Value: e, Version: ver})
	}
	passed := 0
	var failed []string
	for _, c := range r.checks {
		o, err := runCheck(ctx, c, subj)
		if err != nil {
			return pipeline.Result{}, fmt.Errorf("gate %s on %s: %w", c.Name(), ev.TraceID, err)
		}
		typ := thread.GateFailed
		if o.Passed {
			typ = thread.GatePassed
			passed++
		} else {
			failed = append(failed, c.Name())
		}
		reason := o.Code
		if o.Reason != "" {
			reason += ": " + o.Reason
		}
		gateEvent(c.Name(), typ, &schemas.GateOutcome{Name: c.Name(), Passed: o.Passed, Reason: reason, Measured: o.Measured, Threshold: o.Threshold,
			Rule: o.Rule, PolicyVersion: o.PolicyVersion, Evidence: o.Evidence})
	}
	v := &schemas.GateOutcome{Name: thread.VerdictGate, Passed: len(failed) == 0, Measured: float64(passed), Threshold: float64(len(r.checks))}
	if v.Passed {
		v.Reason = "all_passed: " + strings.Join(r.Checks(), ", ")
	} else {
		v.Reason = "failed: " + strings.Join(failed, ", ")
	}
	gateEvent(thread.VerdictGate, thread.GateVerdict, v)
	for _, t := range r.taps {
		out = append(out, t.Tap(subj)...)
	}
	return pipeline.Result{Outputs: out}, nil
}

func runCheck(ctx context.Context, c gates.Check, s gates.Subject) (o gates.Outcome, err error) {
	defer func() {
		if p := recover(); p != nil {
			o, err = gates.Outcome{Code: "check_panicked", Reason: fmt.Sprint(p)}, nil
		}
	}()
	return c.Check(ctx, s)
}
