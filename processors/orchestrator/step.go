package orchestrator

import (
	"fmt"
	"strings"

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
	}
}

func (s *step) emit(ev *schemas.RuntimeEvent) {
	s.out = append(s.out, pipeline.Output{Topic: s.o.layout.Control(), Key: []byte(s.r.Trace), Value: ev, Version: s.r.Version})
}

// enter moves the run on trigger on, emitting the target state's event; an
// illegal transition is refused and recorded instead. cause is the input
// event, if any.
func (s *step) enter(on Trigger, cause *schemas.RuntimeEvent) *schemas.RuntimeEvent {
	r := s.r
	to, ok := s.o.flow.Next(r.State, on)
	if !ok {
		s.illegal(cause, on)
		return nil
	}
	spec, _ := s.o.flow.Spec(to)
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
	case to == StateDispatched:
		r.Dispatch = ev.SpanID
		ev.Attributes = r.Attrs
	case spec.Terminal:
		// Keep a small record of the ended run for deduplication and to
		// refuse late events, until the retention passes (then Fire
		// deletes it).
		r.Deadline, r.RetryAt, r.RunDeadline = 0, 0, 0
		if s.o.retention > 0 {
			r.Deadline = ms(s.now.Add(s.o.retention))
		}
		r.Dispatch, r.Delivered, r.Attrs, r.Early = "", "", nil, nil
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

// admit dispatches the run (an arbitration slot held, or none needed).
func (s *step) admit() { s.enter(OnAdmit, nil) }

// failOrRetry handles a failure (a dataplane.failed or a timeout) of the
// current state: a retry per the state's policy, else the trigger's target
// (failed, or the state's fallback on a timeout).
func (s *step) failOrRetry(kind, text string, on Trigger, cause *schemas.RuntimeEvent) {
	r := s.r
	spec, ok := s.o.flow.Spec(r.State)
	next := r.Attempt + 1
	if !ok || spec.Retry == nil || !spec.Retry.Allows(next, kind) {
		if ev := s.enter(on, cause); ev != nil && ev.Error == nil {
			msg := kind + ": " + text
			ev.Error = &msg
		}
		return
	}
	if _, ok := s.o.flow.Next(r.State, OnRetry); !ok {
		s.illegal(cause, OnRetry)
		return
	}
	delay := spec.Retry.Backoff(next)
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
		EventID:       thread.ID(r.Trace, "arb", string(typ)),
		TraceID:       r.Trace,
		SpanID:        thread.SpanID(r.Trace, "arb", string(typ)),
		ParentSpanID:  r.Span,
		Actor:         r.Actor,
		Intent:        r.Kind,
		SchemaVersion: schemas.V2,
		Timestamp:     s.now,
		RunStarted:    fromMs(r.Started),
		Phase:         schemas.PhaseControl,
		EventType:     typ,
		State:         string(r.State),
		Route:         r.Route,
		Attempt:       r.Attempt,
		Priority:      r.Priority,
		Tenant:        r.Tenant,
		Attributes:    map[string]string{"run_version": r.Version.String()},
	}
	s.out = append(s.out, pipeline.Output{Topic: s.o.layout.Control(), Key: thread.ActorKey(r.Actor), Value: ev, Version: schemas.V2})
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
	k, _, ok := strings.Cut(*ev.Error, ": ")
	if !ok {
		return "unknown"
	}
	return k
}

func errorText(ev *schemas.RuntimeEvent) string {
	if ev.Error == nil {
		return string(thread.DataplaneFailed)
	}
	return *ev.Error
}
