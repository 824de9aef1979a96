// Package dataplane is the data-plane worker: it consumes spine.control,
// acts only on run.dispatch, executes through an Executor and reports on
// spine.dataplane: dataplane.dispatched, dataplane.started, then
// artifact.delivered or dataplane.failed (or nothing more, when the
// executor never answers and the orchestrator's timeout takes over).
//
// Calls never run inside a transaction. The dataplane is a
// pipeline.Async handler: a run.dispatch commits dataplane.dispatched and
// dataplane.started together with a state for the run (its
// spine.state.dataplane changelog, keyed by trace id) that names the
// pending call; only then does the loop run the call, on a pool of
// goroutines bounded by SPINE_DATAPLANE_CONCURRENCY (default 64) across and
// within partitions, each bounded by the exec timeout. When it ends, its
// result commits in a later transaction with the run's state deleted. So
// the thread is exactly-once, and calls run at least once: a call in
// flight when the instance dies (or its partition moves) is found in the
// restored state and run again, with the same idempotency key
// (Request.IdempotencyKey, the Idempotency-Key header of HTTP executors),
// so the outside system can deduplicate.
//
// Every event it emits has the parent span of the run.dispatch it answers,
// so the orchestrator recognises results of an earlier attempt, and ids
// derived from the trace id and that dispatch, so a retried transaction
// or a repeated call reproduces them. Artifacts follow the claim-check
// pattern: a deterministic artifact_id and a summary bounded by
// schemas.MaxSummaryBytes.
//
// A Dataplane is safe for concurrent use.
package dataplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// Name is the processor name: its group, state topic and metrics label.
const Name = "dataplane"

// CallBudget is how long a call may run when its state times out after
// timeout: a tenth less, at most a second less. The orchestrator's timer
// for the state is the backstop for a data plane that never answers; the
// call's own deadline comes first by that margin, so that its typed
// failure (dataplane.failed, kind timeout, retryable by the stateflow's
// policy) commits and reaches the orchestrator before the state's timer
// fires, rather than racing it.
func CallBudget(timeout time.Duration) time.Duration {
	return timeout - min(timeout/10, time.Second)
}

// Config configures a Dataplane.
type Config struct {
	// Executor runs the work (an adapter: adapters/synthetic,
	// adapters/openai, adapters/mcp). Required.
	Executor Executor
	// ExecTimeout is the state's timeout (the stack sets it to
	// SPINE_EXEC_TIMEOUT); a call runs for CallBudget of it from its
	// dispatch; 0 means no bound. A call run again after a restart keeps
	// its first deadline.
	ExecTimeout time.Duration
	// MaxArtifactBytes is the largest artifact kept; a larger one fails
	// the call as artifact_too_large (not retryable). Default
	// thread.DefaultArtifactLimit, at most thread.MaxArtifactBytes.
	MaxArtifactBytes int
	// Registerer, when set, gets the dataplane's metrics (spine_dataplane_*).
	Registerer prometheus.Registerer
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// Tracer, when set, records one span per executor call (executor.call),
	// a child of the run.dispatch span it answers, and hands the executor a
	// context carrying it (HTTP executors send it on as traceparent). Nil:
	// no tracing work at all.
	Tracer trace.Tracer
}

// Dataplane is the data-plane Handler.
type Dataplane struct {
	layout      pipeline.Layout
	out, store  pipeline.Topic // layout.Dataplane() and layout.Artifacts(), named once
	exec        Executor
	timeout     time.Duration
	maxArtifact int
	now         func() time.Time
	log         *slog.Logger
	m           *metrics
	tracer      trace.Tracer
}

var (
	_ pipeline.Handler = (*Dataplane)(nil)
	_ pipeline.Async   = (*Dataplane)(nil)
)

// New returns a Dataplane writing to the topics of layout. It does no I/O.
func New(layout pipeline.Layout, cfg Config) (*Dataplane, error) {
	d := &Dataplane{layout: layout, out: layout.Dataplane(), store: layout.Artifacts(), exec: cfg.Executor, timeout: cfg.ExecTimeout, maxArtifact: cfg.MaxArtifactBytes, now: cfg.Now, log: cfg.Logger, tracer: cfg.Tracer}
	if cfg.ExecTimeout < 0 {
		return nil, errors.New("dataplane: negative exec timeout")
	}
	if d.maxArtifact == 0 {
		d.maxArtifact = thread.DefaultArtifactLimit
	}
	if d.maxArtifact < 0 || d.maxArtifact > thread.MaxArtifactBytes {
		return nil, fmt.Errorf("dataplane: max artifact bytes %d is not in [1, %d]", d.maxArtifact, thread.MaxArtifactBytes)
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
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("dataplane: register metrics: %w", err)
	}
	d.m = m
	return d, nil
}

// Topics lists the topics the dataplane consumes: spine.control.
func (d *Dataplane) Topics() []pipeline.Topic { return []pipeline.Topic{d.layout.Control()} }

// EventTypes lists the only control events the data plane acts on: the
// loop passes over the rest undecoded (pipeline.WithEventTypes).
func (d *Dataplane) EventTypes() []schemas.EventType { return []schemas.EventType{thread.RunDispatch} }

// Handle implements pipeline.Handler. A run.dispatch commits
// dataplane.dispatched and dataplane.started and a state naming the call;
// the call runs only after that commit (Work), its result commits later
// (Complete). A newer dispatch of the run replaces a call still pending.
func (d *Dataplane) Handle(ctx context.Context, prev []byte, in pipeline.Input) (pipeline.Result, error) {
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
	c := &call{Dispatch: ev, Version: ver}
	if d.timeout > 0 {
		c.Deadline = d.now().Add(CallBudget(d.timeout))
	}
	out := make([]pipeline.Output, 0, 4)
	d.emit(&out, c, thread.DataplaneDispatched, "dispatched")
	d.emit(&out, c, thread.DataplaneStarted, "executing")
	if x, ok := d.exec.(Inline); ok && x.Inline(ev.Intent, c.route()) {
		// A call that neither waits nor calls out is a function of its
		// dispatch: its result commits with the dispatch, with no state
		// (a pending call of an earlier dispatch, prev, is replaced).
		done, err := d.complete(c, d.run(ctx, c, true))
		if err != nil {
			return pipeline.Result{}, err
		}
		return pipeline.Result{Outputs: append(out, done.Outputs...), StateChanged: len(prev) > 0}, nil
	}
	state, err := c.encode()
	if err != nil {
		return pipeline.Result{}, pipeline.Reject("unencodable_dispatch", "%s: %v", ev.TraceID, err)
	}
	return pipeline.Result{Outputs: out, State: state, StateChanged: true}, nil
}

// Executor returns the executor the dataplane calls.
func (d *Dataplane) Executor() Executor { return d.exec }

// Inline is implemented by executors whose calls neither wait nor call out
// (the synthetic executor when it only simulates its latency): the
// dataplane runs such a call in the transaction of its dispatch, with no
// state and no second transaction, as the pure function of the dispatch it
// is. Inline reports it for one kind and route.
type Inline interface {
	Inline(kind, route string) bool
}

// Pending implements pipeline.Async: the span of the dispatch whose call
// the state names.
func (d *Dataplane) Pending(state []byte) string { return pendingSpan(state) }

// outcome is a finished call, handed from Work to Complete.
type outcome struct {
	// call is the state Work decoded; Complete gets the same state (the
	// loop hands it the state only while it names the same dispatch).
	call    *call
	res     Result
	err     error
	elapsed time.Duration
	// interrupted: the call's context ended before it did (not its
	// deadline): the call is not answered.
	interrupted bool
}

// Work implements pipeline.Async: it runs the call the state names,
// bounded by its deadline.
func (d *Dataplane) Work(ctx context.Context, _, state []byte) any {
	c, err := decodeCall(state)
	if err != nil {
		return &outcome{err: Permanent(KindInvalidInput, err)}
	}
	return d.run(ctx, c, false)
}

// run makes the call c names, bounded by its deadline (unless inline:
// the call of an Inline executor, which neither waits nor calls out).
func (d *Dataplane) run(ctx context.Context, c *call, inline bool) *outcome {
	req := c.request()
	if v, ok := d.exec.(Validator); ok {
		if err := v.Validate(req); err != nil {
			d.m.completed.WithLabelValues("failed").Inc()
			return &outcome{call: c, err: err}
		}
	}
	xctx := ctx
	if !c.Deadline.IsZero() && !inline {
		// (An inline call neither waits nor calls out: nothing to cut.)
		var cancel context.CancelFunc
		xctx, cancel = context.WithDeadline(ctx, c.Deadline)
		defer cancel()
	}
	var span trace.Span
	if d.tracer != nil {
		xctx, span = d.startCall(xctx, req)
	}
	d.m.inFlight.Inc()
	start := time.Now()
	res, err := d.exec.Execute(xctx, req)
	elapsed := time.Since(start)
	d.m.inFlight.Dec()
	if err == nil && len(res.Content) > d.maxArtifact {
		err = Permanent(KindArtifactTooLarge, fmt.Errorf("the artifact is %d bytes, more than the %d SPINE_MAX_ARTIFACT_BYTES keeps", len(res.Content), d.maxArtifact))
	}
	if span != nil {
		endCall(span, res, err)
	}
	switch {
	case ctx.Err() != nil:
		d.m.completed.WithLabelValues("interrupted").Inc()
	case err == nil:
		d.m.completed.WithLabelValues("delivered").Inc()
	case errors.Is(err, ErrNoAnswer):
		d.m.completed.WithLabelValues("no_answer").Inc()
	default:
		d.m.completed.WithLabelValues("failed").Inc()
	}
	// A call no longer wanted (the partition moved, the instance stops, or
	// a newer dispatch replaced it) is not answered: the loop drops it.
	return &outcome{call: c, res: res, err: err, elapsed: elapsed, interrupted: ctx.Err() != nil}
}

// Complete implements pipeline.Async: the call's result events
// (artifact.delivered or dataplane.failed; none when the executor never
// answers) and the run's state deleted.
func (d *Dataplane) Complete(_ context.Context, _, state []byte, out any) (pipeline.Result, error) {
	o, ok := out.(*outcome)
	if !ok {
		o = &outcome{err: fmt.Errorf("executor: %v", out)} // a panic
	}
	c := o.call
	if c == nil || c.Dispatch.SpanID != pendingSpan(state) {
		var err error
		if c, err = decodeCall(state); err != nil {
			return pipeline.Result{StateChanged: true}, nil // unreadable: drop it
		}
	}
	return d.complete(c, o)
}

// complete is Complete for the call c whose outcome is o.
func (d *Dataplane) complete(c *call, o *outcome) (pipeline.Result, error) {
	if o.interrupted {
		// The loop drops the outcome of a call it cancelled; should one
		// come here, the call is still wanted: not an answer.
		return pipeline.Result{}, fmt.Errorf("call of %s interrupted: %w", c.Dispatch.TraceID, o.err)
	}
	ev := c.Dispatch
	res := pipeline.Result{StateChanged: true} // the run's state is deleted
	switch err := o.err; {
	case err == nil:
		outs := make([]pipeline.Output, 0, 2)
		e := d.emit(&outs, c, thread.ArtifactDelivered, "delivered")
		e.ArtifactID = thread.ArtifactID(ev.TraceID, ev.SpanID, ev.Timestamp)
		// The artifact's whole content, in the transaction of its
		// artifact.delivered.
		outs = append(outs, d.artifactRecord(e.ArtifactID, ev.TraceID, e.SpanID, o.res))
		lat := o.res.Latency
		if lat == 0 {
			lat = o.elapsed
		}
		e.Artifact = &schemas.ArtifactSummary{
			ContentType: o.res.ContentType,
			Summary:     Summarize(string(o.res.Content), schemas.MaxSummaryBytes),
			Score:       o.res.Score,
			SizeBytes:   int64(len(o.res.Content)),
			LatencyMs:   lat.Milliseconds(),
		}
		e.Usage = o.res.Usage
		e.Attributes, e.Provenance = ev.Attributes, ev.Provenance
		res.Outputs = outs
	case errors.Is(err, ErrNoAnswer):
		d.log.Debug("executor never answered", "trace_id", ev.TraceID, "attempt", ev.Attempt)
	default:
		outs := make([]pipeline.Output, 0, 1)
		e := d.emit(&outs, c, thread.DataplaneFailed, "executing")
		text := err.Error()
		var xe *ExecError
		if errors.As(err, &xe) && xe.Err != nil {
			text = xe.Err.Error()
		}
		kind, _, retryAfter := Classify(err)
		msg := thread.FormatCallError(kind, retryAfter, text)
		e.Error = &msg
		res.Outputs = outs
	}
	return res, nil
}

// emit appends one event answering c's dispatch to out and returns it.
func (d *Dataplane) emit(out *[]pipeline.Output, c *call, typ schemas.EventType, state string) *schemas.RuntimeEvent {
	ev := c.Dispatch
	id := thread.DataEventID(ev.TraceID, ev.SpanID, typ)
	e := &schemas.RuntimeEvent{
		EventID:       id,
		TraceID:       ev.TraceID,
		SpanID:        id[:16], // = thread.DataSpanID
		ParentSpanID:  ev.SpanID,
		Actor:         ev.Actor,
		Intent:        ev.Intent,
		SchemaVersion: c.Version,
		Timestamp:     d.now(),
		RunStarted:    ev.RunStarted,
		Phase:         schemas.PhaseData,
		EventType:     typ,
		State:         state,
		Route:         c.route(),
		Attempt:       ev.Attempt,
		Priority:      ev.Priority,
		Tenant:        ev.Tenant,
	}
	*out = append(*out, pipeline.Output{Topic: d.out, Key: []byte(ev.TraceID), Value: e, Version: c.Version})
	return e
}

// IdempotencyKey is the key of the call a dispatch asks for: derived from
// the trace id and the dispatch span, so a call run again after a crash
// carries the key of its first try, and each attempt has its own.
func IdempotencyKey(traceID, dispatchSpan string) string {
	return "spine-" + thread.ID(traceID, "call", dispatchSpan)
}

// artifactRecord is the artifact's content on the artifacts topic, keyed by
// its id, produced in the transaction of its artifact.delivered.
func (d *Dataplane) artifactRecord(id, traceID, span string, res Result) pipeline.Output {
	content := res.Content
	if content == nil {
		content = []byte{} // Raw must not be nil: an empty artifact is still one
	}
	ct := res.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	hs := make([]kgo.RecordHeader, 2, 3)
	hs[0] = kgo.RecordHeader{Key: thread.HeaderContentType, Value: []byte(ct)}
	hs[1] = kgo.RecordHeader{Key: thread.HeaderTraceID, Value: []byte(traceID)}
	if tp := pipeline.Traceparent(traceID, span); tp != nil {
		// The record belongs to its artifact.delivered's span.
		hs = append(hs, kgo.RecordHeader{Key: thread.HeaderTraceparent, Value: tp})
	}
	return pipeline.Output{Topic: d.store, Key: []byte(id), Raw: content, Headers: hs}
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
