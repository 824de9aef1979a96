package orchestrator

import (
	"fmt"
	"time"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// event builds the next event of the run with the full envelope; it takes
// the next step index, so its ids are deterministic.
func (s *step) event(typ schemas.EventType, parent string) *schemas.RuntimeEvent {
	r := s.r
	id, span := thread.IDs(r.Trace, "o", thread.Step(r.Seq))
	r.Seq++
	return &schemas.RuntimeEvent{
		EventID:       id,
		TraceID:       r.Trace,
		SpanID:        span,
		ParentSpanID:  parent,
		Actor:         r.Actor,
		Intent:        r.Kind,
		ArtifactID:    r.Artifact,
		SchemaVersion: r.Version,
		Timestamp:     s.now,
		RunStarted:    fromMs(r.Started),
		Phase:         schemas.PhaseControl,
		EventType:     typ,
		State:         string(r.State),
		Route:         r.Route,
		Attempt:       r.Attempt,
		Priority:      r.Priority,
		Tenant:        r.Tenant,
		// The run's stateflow version: it finishes under the one it
		// started with.
		StateflowVersion: r.Flow,
	}
}

func (s *step) emit(ev *schemas.RuntimeEvent) {
	s.out = append(s.out, pipeline.Output{Topic: s.o.control, Key: []byte(s.r.Trace), Value: ev, Version: s.r.Version})
}

// enter moves the run on trigger on, emitting the target state's event; an
// illegal transition is refused and recorded instead. cause is the input
// event, if any.
func (s *step) enter(on Trigger, cause *schemas.RuntimeEvent) *schemas.RuntimeEvent {
	r := s.r
	// The hot path reads one field: CEL runs only for an edge with guards.
	ed := s.f.edge(r.State, on)
	var to State
	ok := ed != nil
	if ok {
		to, ok = ed.to, ed.hasTo
		if len(ed.guarded) > 0 {
			to, ok = ed.resolve(s.Guard())
		}
	}
	if !ok {
		s.illegal(cause, on)
		return nil
	}
	spec, _ := s.f.Spec(to)
	r.State = to
	r.Deadline = 0
	if spec.Timeout > 0 {
		r.Deadline = ms(s.now.Add(spec.Timeout))
	}
	parent := r.Span
	if cause != nil {
		parent = cause.SpanID
	}
	ev := s.event(spec.Event, parent)
	r.Span = ev.SpanID
	switch {
	case to == StateReceived:
		ev.Provenance = r.Prov
	case to == StateDispatched:
		r.Dispatch = ev.SpanID
		ev.Attributes = r.Attrs
		if r.Agent != "" {
			// A fallback agent runs the intent: the dispatch names it as
			// its kind (a field of both contract versions), and the data
			// plane's agents router runs that agent.
			ev.Intent = r.Agent
		}
		ev.Input = r.Input
		ev.Provenance = r.Prov
	case spec.Terminal:
		// Keep a small record of the ended run for deduplication and to
		// refuse late events, until the retention passes (then Fire
		// deletes it).
		r.Deadline, r.RetryAt, r.RunDeadline = 0, 0, 0
		if s.o.retention > 0 {
			r.Deadline = ms(s.now.Add(s.o.retention))
		}
		r.Dispatch, r.Delivered, r.Attrs, r.Early, r.Input = "", "", nil, nil, ""
		r.Prov = nil
		if cause != nil && cause.Error != nil {
			ev.Error = cause.Error
		}
	}
	if cause != nil && cause.Gate != nil && spec.Terminal {
		g := *cause.Gate
		ev.Gate = &g
	}
	s.emit(ev)
	if spec.Terminal && (r.Waiting || r.Admitted) {
		r.Waiting, r.Admitted = false, false
		s.toLedger(thread.ArbitrationRelease)
	}
	return ev
}

// Guard is the run as an entry's guard sees it.
func (s *step) Guard() Guard {
	r := s.r
	return Guard{Kind: r.Kind, Agent: r.agent(), Route: r.Route, Actor: r.Actor, Tenant: r.Tenant, Contract: r.Version.String(), State: string(r.State),
		ErrorKind: s.errKind, Attempt: int64(r.Attempt), Priority: int64(r.Priority), InputSize: int64(len(r.Input)), Provenance: r.Prov}
}

// admit dispatches the run (an arbitration slot held, or none needed).
func (s *step) admit() { s.enter(OnAdmit, nil) }

// failOrRetry handles a failure (a dataplane.failed or a timeout) of the
// current state: a retry per the state's policy, else the trigger's target
// (failed, or the state's fallback on a timeout).
func (s *step) failOrRetry(kind, text string, on Trigger, cause *schemas.RuntimeEvent) {
	r := s.r
	s.errKind = kind
	spec, ok := s.f.Spec(r.State)
	next := r.Attempt + 1
	if !ok || spec.Retry == nil || !spec.Retry.Allows(next, kind) {
		if s.degrade(kind, text, cause) {
			return
		}
		if ev := s.enter(on, cause); ev != nil && ev.Error == nil {
			msg := kind + ": " + text
			ev.Error = &msg
		}
		return
	}
	if _, ok := s.f.Next(r.State, OnRetry); !ok {
		s.illegal(cause, OnRetry)
		return
	}
	// The backoff, or the delay the outside system asked for if longer.
	// Full jitter seeded by the run, so a replay schedules the same delays.
	delay := max(spec.Retry.Jittered(next, r.Trace), retryAfter(cause))
	parent := r.Span
	if cause != nil {
		parent = cause.SpanID
	}
	ev := s.event(thread.RunRetryScheduled, parent)
	ev.Attempt = next
	reason := fmt.Sprintf("%s: attempt %d of %s failed (%s), retry in %s", kind, r.Attempt, r.State, text, delay)
	ev.Error = &reason
	s.emit(ev)
	r.Dispatch = ""
	r.Early = nil // a verdict held for the failed attempt judges nothing now
	r.Deadline = 0
	r.RetryAt = ms(s.now.Add(delay))
	if delay <= 0 {
		r.RetryAt = 0
		r.Attempt = next
		s.enter(OnRetry, nil)
	}
}

// degrade re-runs the intent on the fallback agent of the run's agent, if
// it has one and the stateflow enters a state on OnFallback from the run's
// state (its guard, if any, holding): run.fallback (from, to, why), then
// the state's event (run.dispatch) with the new agent, attempts counted
// afresh. It reports whether the run degraded.
func (s *step) degrade(kind, text string, cause *schemas.RuntimeEvent) bool {
	r := s.r
	if len(s.o.fallbacks) == 0 {
		return false
	}
	from := r.agent()
	to, ok := s.o.fallbacks[from]
	if !ok {
		return false
	}
	ed := s.f.edge(r.State, OnFallback)
	if ed == nil {
		return false
	}
	if _, ok := ed.resolve(s.Guard()); !ok {
		return false
	}
	parent := r.Span
	if cause != nil {
		parent = cause.SpanID
	}
	ev := s.event(thread.RunFallback, parent)
	ev.Attributes = map[string]string{thread.AttrFallbackFrom: from, thread.AttrFallbackTo: to}
	why := fmt.Sprintf("%s: attempt %d of %s on agent %s failed (%s); degrading to agent %s", kind, r.Attempt, r.State, from, text, to)
	ev.Error = &why
	s.emit(ev)
	r.Agent = to
	r.Attempt = 0
	r.Dispatch, r.Early = "", nil
	r.Deadline, r.RetryAt = 0, 0
	return s.enter(OnFallback, nil) != nil
}

// illegal records a refused transition; the run's state is unchanged.
func (s *step) illegal(cause *schemas.RuntimeEvent, on Trigger) {
	parent := s.r.Span
	what := string(on)
	if cause != nil {
		parent = cause.SpanID
		what = string(cause.EventType)
	}
	ev := s.event(thread.RunIllegal, parent)
	msg := fmt.Sprintf("illegal_transition: %s in state %s", what, s.r.State)
	ev.Error = &msg
	s.emit(ev)
	s.o.log.Debug("illegal transition refused", "trace_id", s.r.Trace, "state", s.r.State, "trigger", what)
}

// stale records an input that belongs to an earlier attempt or artifact.
func (s *step) stale(cause *schemas.RuntimeEvent, why string) {
	ev := s.event(thread.RunStale, cause.SpanID)
	msg := fmt.Sprintf("stale_event: %s ignored: %s", cause.EventType, why)
	ev.Error = &msg
	s.emit(ev)
}

// toLedger sends an arbitration message about the run to its actor's ledger.
func (s *step) toLedger(typ schemas.EventType) {
	r := s.r
	ev := &schemas.RuntimeEvent{
		EventID:          thread.ID(r.Trace, "arb", string(typ)),
		TraceID:          r.Trace,
		SpanID:           thread.SpanID(r.Trace, "arb", string(typ)),
		ParentSpanID:     r.Span,
		Actor:            r.Actor,
		Intent:           r.Kind,
		SchemaVersion:    schemas.V2,
		Timestamp:        s.now,
		RunStarted:       fromMs(r.Started),
		Phase:            schemas.PhaseControl,
		EventType:        typ,
		State:            string(r.State),
		Route:            r.Route,
		Attempt:          r.Attempt,
		Priority:         r.Priority,
		Tenant:           r.Tenant,
		Attributes:       map[string]string{"run_version": r.Version.String()},
		StateflowVersion: r.Flow,
	}
	s.out = append(s.out, pipeline.Output{Topic: s.o.control, Key: thread.ActorKey(r.Actor), Value: ev, Version: schemas.V2})
}

func (s *step) result() (pipeline.Result, error) {
	b, err := encodeRun(s.r)
	if err != nil {
		return pipeline.Result{}, fmt.Errorf("encode run state %s: %w", s.r.Trace, err)
	}
	// The deadline goes with the state, so the loop need not decode it again.
	at, _ := s.r.deadline()
	return pipeline.Result{State: b, StateChanged: true, Outputs: s.out, DeadlineSet: true, Deadline: at}, nil
}

// errorKind returns the error kind of a dataplane.failed: the text before
// the first ": " of its error field (v2), or "unknown" (v1 carries no error).
func errorKind(ev *schemas.RuntimeEvent) string {
	if ev.Error == nil || *ev.Error == "" {
		return "unknown"
	}
	k, _, _ := thread.ParseCallError(*ev.Error)
	return k
}

// retryAfter is the delay the outside system asked for before a retry of
// the failed call ev reports (Retry-After), 0 for none.
func retryAfter(ev *schemas.RuntimeEvent) time.Duration {
	if ev == nil || ev.Error == nil {
		return 0
	}
	_, d, _ := thread.ParseCallError(*ev.Error)
	return d
}

func errorText(ev *schemas.RuntimeEvent) string {
	if ev.Error == nil {
		return string(thread.DataplaneFailed)
	}
	return *ev.Error
}
