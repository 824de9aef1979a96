// Package dataplane is the data-plane worker: it consumes spine.control,
// acts only on run.dispatch, executes through an Executor and reports on
// spine.dataplane: dataplane.dispatched, dataplane.started, then
// artifact.delivered or dataplane.failed (or nothing more, when the
// executor never answers and the orchestrator's timeout takes over).
//
// Every event it emits has the parent span of the run.dispatch it answers,
// so the orchestrator recognises results of an earlier attempt, and ids
// derived from the trace id and that dispatch, so a retried transaction
// reproduces them. Artifacts follow the claim-check pattern: a deterministic
// artifact_id and a summary bounded by schemas.MaxSummaryBytes.
//
// The handler keeps no state and is safe for concurrent use.
package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
	"unicode/utf8"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// Name is the processor name: its group, state topic and metrics label.
const Name = "dataplane"

// Config configures a Dataplane.
type Config struct {
	// Executor runs the work (an adapter: adapters/synthetic,
	// adapters/openai, adapters/mcp). Required.
	Executor Executor
	// ExecTimeout bounds one execution; 0 means none.
	ExecTimeout time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// Dataplane is the data-plane Handler.
type Dataplane struct {
	layout  pipeline.Layout
	exec    Executor
	timeout time.Duration
	now     func() time.Time
	log     *slog.Logger
}

var _ pipeline.Handler = (*Dataplane)(nil)

// New returns a Dataplane writing to the topics of layout. It does no I/O.
func New(layout pipeline.Layout, cfg Config) (*Dataplane, error) {
	d := &Dataplane{layout: layout, exec: cfg.Executor, timeout: cfg.ExecTimeout, now: cfg.Now, log: cfg.Logger}
	if cfg.ExecTimeout < 0 {
		return nil, errors.New("dataplane: negative exec timeout")
	}
	if d.exec == nil {
		return nil, errors.New("dataplane: no executor")
	}
	if d.now == nil {
		d.now = time.Now
	}
	if d.log == nil {
		d.log = slog.Default()
	}
	d.log = d.log.With("processor", Name)
	return d, nil
}

// Topics lists the topics the dataplane consumes: spine.control.
func (d *Dataplane) Topics() []pipeline.Topic { return []pipeline.Topic{d.layout.Control()} }

// EventTypes lists the only control events the data plane acts on: the
// loop passes over the rest undecoded (pipeline.WithEventTypes).
func (d *Dataplane) EventTypes() []schemas.EventType { return []schemas.EventType{thread.RunDispatch} }

// Handle implements pipeline.Handler.
func (d *Dataplane) Handle(ctx context.Context, _ []byte, in pipeline.Input) (pipeline.Result, error) {
	ev, ok := in.Value.(*schemas.RuntimeEvent)
	if !ok || ev.EventType != thread.RunDispatch {
		return pipeline.Result{}, nil
	}
	if ev.TraceID == "" || ev.SpanID == "" {
		return pipeline.Result{}, pipeline.Reject("missing_field", "run.dispatch without trace_id or span_id")
	}
	ver := in.Version
	if !ver.Valid() {
		ver = ev.SchemaVersion
	}
	if !ver.Valid() {
		ver = schemas.V1
	}
	route := ev.Route
	if route == "" {
		route = thread.RouteBaseline
	}
	req := Request{
		TraceID: ev.TraceID, Actor: ev.Actor, Kind: ev.Intent, Route: route, Version: ver,
		Attempt: ev.Attempt, DispatchSpan: ev.SpanID, Priority: ev.Priority, Tenant: ev.Tenant, Attributes: ev.Attributes,
	}
	out := make([]pipeline.Output, 0, 3)
	emit := func(typ schemas.EventType, state string) *schemas.RuntimeEvent {
		id := thread.DataEventID(ev.TraceID, ev.SpanID, typ)
		e := &schemas.RuntimeEvent{
			EventID:       id,
			TraceID:       ev.TraceID,
			SpanID:        id[:16], // = thread.DataSpanID
			ParentSpanID:  ev.SpanID,
			Actor:         ev.Actor,
			Intent:        ev.Intent,
			SchemaVersion: ver,
			Timestamp:     d.now(),
			RunStarted:    ev.RunStarted,
			Phase:         schemas.PhaseData,
			EventType:     typ,
			State:         state,
			Route:         route,
			Attempt:       ev.Attempt,
			Priority:      ev.Priority,
			Tenant:        ev.Tenant,
		}
		out = append(out, pipeline.Output{Topic: d.layout.Dataplane(), Key: []byte(ev.TraceID), Value: e, Version: ver})
		return e
	}
	emit(thread.DataplaneDispatched, "dispatched")
	emit(thread.DataplaneStarted, "executing")

	xctx := ctx
	if d.timeout > 0 {
		var cancel context.CancelFunc
		xctx, cancel = context.WithTimeout(ctx, d.timeout)
		defer cancel()
	}
	res, err := d.exec.Execute(xctx, req)
	switch {
	case err == nil:
		e := emit(thread.ArtifactDelivered, "delivered")
		e.ArtifactID = ArtifactID(ev.TraceID, ev.SpanID)
		e.Artifact = &schemas.ArtifactSummary{
			ContentType: res.ContentType,
			Summary:     Summarize(string(res.Content), schemas.MaxSummaryBytes),
			Score:       res.Score,
			SizeBytes:   int64(len(res.Content)),
			LatencyMs:   res.Latency.Milliseconds(),
		}
		e.Usage = res.Usage
		e.Attributes = ev.Attributes
	case ctx.Err() != nil:
		return pipeline.Result{}, fmt.Errorf("execute %s: %w", ev.TraceID, ctx.Err())
	case errors.Is(err, ErrNoAnswer):
		d.log.Debug("executor never answered", "trace_id", ev.TraceID, "attempt", ev.Attempt)
	default:
		e := emit(thread.DataplaneFailed, "executing")
		text := err.Error()
		var xe *ExecError
		if errors.As(err, &xe) && xe.Err != nil {
			text = xe.Err.Error()
		}
		msg := ErrorKind(err) + ": " + text
		e.Error = &msg
	}
	return pipeline.Result{Outputs: out}, nil
}

// ArtifactID is the claim check of the artifact a dispatch produced:
// deterministic from the trace id and the dispatch span.
func ArtifactID(traceID, dispatchSpan string) string {
	return "art-" + thread.ID(traceID, "artifact", dispatchSpan)
}

// Summarize returns s cut to at most n bytes on a UTF-8 boundary, with
// invalid bytes replaced.
func Summarize(s string, n int) string {
	if !utf8.ValidString(s) {
		s = string([]rune(s)) // replaces invalid bytes with U+FFFD
	}
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}
