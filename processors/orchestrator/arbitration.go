package orchestrator

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// handleLedger applies an arbitration message to an actor's ledger (see the
// package doc): acquire takes a slot or queues the run by priority, release
// frees the run's slot (or queue place) and grants freed slots in order.
func (o *Orchestrator) handleLedger(state []byte, actor string, ev *schemas.RuntimeEvent) (pipeline.Result, error) {
	if ev.EventType != thread.ArbitrationAcquire && ev.EventType != thread.ArbitrationRelease {
		return pipeline.Result{}, nil
	}
	l, err := decodeLedger(state)
	if err != nil {
		return pipeline.Result{}, err
	}
	l.Ledger = true
	now := o.now()
	var out []pipeline.Output
	reply := func(typ schemas.EventType, q queueEnt) {
		re := &schemas.RuntimeEvent{
			EventID:       thread.ID(q.Trace, "ledger", string(typ)),
			TraceID:       q.Trace,
			SpanID:        thread.SpanID(q.Trace, "ledger", string(typ)),
			ParentSpanID:  ev.SpanID,
			Actor:         actor,
			Intent:        ev.Intent,
			SchemaVersion: schemas.V2,
			Timestamp:     now,
			RunStarted:    ev.RunStarted,
			Phase:         schemas.PhaseControl,
			EventType:     typ,
			State:         string(StateRouted),
			Route:         q.Route,
			Priority:      q.Priority,
		}
		if typ == thread.ArbitrationQueued {
			re.State = string(StateQueued)
		}
		out = append(out, pipeline.Output{Topic: o.control, Key: []byte(q.Trace), Value: re, Version: schemas.V2})
	}
	switch ev.EventType {
	case thread.ArbitrationAcquire:
		if slices.Contains(l.Running, ev.TraceID) || slices.ContainsFunc(l.Queue, func(q queueEnt) bool { return q.Trace == ev.TraceID }) {
			return pipeline.Result{}, nil // a duplicate: already counted
		}
		q := queueEnt{Trace: ev.TraceID, Priority: ev.Priority, Seq: l.Seq, Route: ev.Route}
		l.Seq++
		if len(l.Running) < o.maxPerActor {
			l.Running = append(l.Running, q.Trace)
			reply(thread.ArbitrationGrant, q)
		} else {
			// Keep the queue sorted: higher priority first, then arrival.
			i, _ := slices.BinarySearchFunc(l.Queue, q, func(a, b queueEnt) int {
				if a.Priority != b.Priority {
					return int(b.Priority) - int(a.Priority)
				}
				return int(a.Seq) - int(b.Seq)
			})
			l.Queue = slices.Insert(l.Queue, i, q)
			reply(thread.ArbitrationQueued, q)
		}
	case thread.ArbitrationRelease:
		if i := slices.Index(l.Running, ev.TraceID); i >= 0 {
			l.Running = slices.Delete(l.Running, i, i+1)
		} else if i := slices.IndexFunc(l.Queue, func(q queueEnt) bool { return q.Trace == ev.TraceID }); i >= 0 {
			l.Queue = slices.Delete(l.Queue, i, i+1)
		} else {
			return pipeline.Result{}, nil
		}
		for len(l.Running) < o.maxPerActor && len(l.Queue) > 0 {
			q := l.Queue[0]
			l.Queue = l.Queue[1:]
			l.Running = append(l.Running, q.Trace)
			reply(thread.ArbitrationGrant, q)
		}
	}
	b, err := json.Marshal(l)
	if err != nil {
		return pipeline.Result{}, fmt.Errorf("encode ledger of %q: %w", actor, err)
	}
	if len(l.Running) == 0 && len(l.Queue) == 0 {
		b = nil // an idle actor leaves a tombstone, not a ledger
	}
	// A ledger has no timer: said here, the loop does not try to decode it
	// as a run to find one.
	return pipeline.Result{State: b, StateChanged: true, Outputs: out, DeadlineSet: true}, nil
}

// handleAdmission applies the ledger's answer to a waiting run.
func (o *Orchestrator) handleAdmission(state []byte, ev *schemas.RuntimeEvent) (pipeline.Result, error) {
	r, err := o.loadRun(state)
	if err != nil || r == nil || !r.Waiting {
		// Not waiting (ended while queued, or a reply already applied):
		// the ledger has been or will be told by the run's release.
		return pipeline.Result{}, err
	}
	s := o.newStep(r, o.now())
	switch ev.EventType {
	case thread.ArbitrationQueued:
		if r.State != StateRouted {
			return pipeline.Result{}, nil
		}
		s.enter(OnQueue, nil)
	case thread.ArbitrationGrant:
		r.Waiting, r.Admitted = false, true
		if r.State == StateQueued {
			deq := s.event(thread.RunDequeued, r.Span)
			s.emit(deq)
		}
		s.admit()
	}
	return s.result()
}
