// Package drift is the drift monitor: a stateful processor on the
// pipeline loop that keeps, for every intent kind and route, a reference
// window and a current window of artifact metrics (score, content length,
// latency, output tokens) and compares them with PSI and the two-sample
// KS test (gates.DriftCompare).
//
// The thread of it, in the Kafka Streams repartition pattern:
//
//	gatekeeper ── artifact.delivered ──► spine.drift.samples (keyed kind/route, Sampler)
//	spine.drift.samples ──► [drift monitor] ──► spine.state.drift (its windows, compacted)
//	                                      ├──► gate.drift (one event per evaluated window)
//	                                      └──► spine.drift.status (compacted, keyed kind/route)
//	spine.drift.status ──► Statuses (every gatekeeper) ──► gates.Drift: the run's drift gate
//
// The windows live on Kafka, in the monitor's state changelog, written in
// the transaction that consumed the samples: they survive a restart and a
// rebalance like any processor state (pipeline/DESIGN.md, "State").
//
// Cadence: the reference is a kind and route's first Window samples, then
// frozen; the current window is tumbling: every Window samples after the
// reference it is compared with the reference and emptied, and the
// comparison is one gate.drift event (gate.passed or gate.failed, keyed
// and traced thread.DriftTrace(kind, route)) and one status record.
//
// The monitor's handler is pure and safe for concurrent use; Statuses
// documents its own goroutine.
package drift

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/spinerun/spine/gates"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// Name is the processor name: its group, state topic and metrics label.
const Name = thread.Drift

// Actor is the actor of the gate.drift window events.
const Actor = "spine-drift"

// Config configures a Monitor.
type Config struct {
	// Drift holds the window size and thresholds (its Mode is not read
	// here: the monitor runs unless the mode is off).
	Drift gates.DriftConfig
	// Logger (default discard).
	Logger *slog.Logger
}

// Monitor is the drift monitor's Handler.
type Monitor struct {
	layout pipeline.Layout
	size   int
	th     gates.DriftThresholds
	policy string
	log    *slog.Logger

	// mu guards last: per key, the state this monitor returned last. A
	// state handed back that is exactly it (same array, same length) is
	// ours to append to in place: the loop keeps a key's last state (in
	// its batch overlay or, once committed, its store) and never appends
	// to it. Any other state — restored from the changelog (a slice of a
	// fetch buffer, whose spare capacity holds other records), or an
	// older one after an aborted batch — is copied first.
	mu   sync.Mutex
	last map[string]ownedState
}

// ownedState identifies a state slice: its first byte and length.
type ownedState struct {
	p *byte
	n int
}

func (m *Monitor) owns(key string, state []byte) bool {
	if len(state) == 0 {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.last[key]
	return ok && o.p == &state[0] && o.n == len(state)
}

func (m *Monitor) own(key string, state []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(state) == 0 {
		delete(m.last, key)
		return
	}
	m.last[key] = ownedState{p: &state[0], n: len(state)}
}

var _ pipeline.Handler = (*Monitor)(nil)

// New returns the monitor reading layout's samples topic. It does no I/O.
func New(layout pipeline.Layout, cfg Config) (*Monitor, error) {
	if errs := cfg.Drift.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("drift: %v", errs)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := cfg.Drift
	return &Monitor{
		layout: layout, size: c.Window, th: c.Thresholds(), log: cfg.Logger.With("processor", Name), last: map[string]ownedState{},
		policy: fmt.Sprintf("window=%d,psi=%g,ks_alpha=%g", c.Window, c.PSI, c.KSAlpha),
	}, nil
}

// Topics lists the topics the monitor consumes: spine.drift.samples.
func (m *Monitor) Topics() []pipeline.Topic { return []pipeline.Topic{m.layout.DriftSamples()} }

// Handle implements pipeline.Handler: one sample in; the key's windows
// out, and when the sample completes a window, its gate.drift event and
// status record.
func (m *Monitor) Handle(_ context.Context, state []byte, in pipeline.Input) (pipeline.Result, error) {
	s, ok := in.Value.(*Sample)
	if !ok {
		return pipeline.Result{}, pipeline.Reject("bad_drift_sample", "a %T on %s is not a drift sample", in.Value, in.Topic)
	}
	kind, route := s.Kind, s.Route
	key := string(in.Key)
	if s.IsReset() {
		res := m.reset(state, in, kind, route)
		m.own(key, res.State)
		return res, nil
	}
	next, r, done, err := AddEncoded(state, *s, m.size, m.th, m.owns(key, state))
	if err != nil {
		// Our own changelog: a state we cannot read is a bug or a
		// version we do not know; start over rather than block.
		m.log.Error("drift: unreadable state, starting the windows over", "key", key, "err", err)
		next, r, done, _ = AddEncoded(nil, *s, m.size, m.th, false)
	}
	m.own(key, next)
	res := pipeline.Result{State: next, StateChanged: true}
	if !done {
		return res, nil
	}
	w, _ := DecodeWindows(next)
	at := in.Timestamp.UTC()
	if at.IsZero() {
		at = time.Now().UTC()
	}
	st := m.status(kind, route, w, r, at)
	res.Outputs = []pipeline.Output{
		{Topic: m.layout.Gate(thread.DriftGate), Key: []byte(thread.DriftTrace(kind, route)), Value: m.event(st), Version: schemas.V2},
		{Topic: m.layout.DriftStatus(), Key: []byte(thread.DriftKey(kind, route)), Raw: encodeStatus(st)},
	}
	return res, nil
}

// reset drops the windows of kind and route (their window count goes on)
// and publishes a status that is not drifted, with rule "reset", and its
// gate.drift event.
func (m *Monitor) reset(state []byte, in pipeline.Input, kind, route string) pipeline.Result {
	w, err := DecodeWindows(state)
	if err != nil {
		w = &Windows{}
	}
	at := in.Timestamp.UTC()
	if at.IsZero() {
		at = time.Now().UTC()
	}
	st := gates.DriftStatus{Kind: kind, Route: route, Window: w.Evaluated, Rule: "reset", At: at,
		Evidence: map[string]string{"kind": kind, "route": route, "window": strconv.FormatInt(w.Evaluated, 10),
			"reset": "the reference is taken again from the next " + strconv.Itoa(m.size) + " samples", "dropped_ref": strconv.Itoa(len(w.Ref)), "dropped_cur": strconv.Itoa(len(w.Cur))}}
	ev := m.event(st)
	ev.EventID, ev.SpanID = thread.IDs(thread.DriftTrace(kind, route), "reset", strconv.FormatInt(in.Offset, 10), strconv.FormatInt(int64(in.Partition), 10))
	ev.Gate.Reason = fmt.Sprintf("reference of %s on %s reset after window %d; the next %d samples are the new reference", kind, route, w.Evaluated, m.size)
	return pipeline.Result{
		State: (&Windows{Evaluated: w.Evaluated, RefSize: m.size}).Encode(), StateChanged: true,
		Outputs: []pipeline.Output{
			{Topic: m.layout.Gate(thread.DriftGate), Key: []byte(thread.DriftTrace(kind, route)), Value: ev, Version: schemas.V2},
			{Topic: m.layout.DriftStatus(), Key: []byte(thread.DriftKey(kind, route)), Raw: encodeStatus(st)},
		},
	}
}

// status is the outcome of one evaluated window.
func (m *Monitor) status(kind, route string, w *Windows, r gates.DriftResult, at time.Time) gates.DriftStatus {
	ev := gates.DriftEvidence(r)
	ev["kind"], ev["route"] = kind, route
	ev["window"] = strconv.FormatInt(w.Evaluated, 10)
	ev["window_size"] = strconv.Itoa(m.size)
	ev["cadence"] = "tumbling"
	return gates.DriftStatus{
		Kind: kind, Route: route, Drifted: r.Drifted, Window: w.Evaluated,
		Rule: r.Worst.Rule(), Measured: r.Worst.Value, Threshold: r.Worst.Threshold,
		NRef: r.Worst.NRef, NCur: r.Worst.NCur, Evidence: ev, At: at,
	}
}

// event is the gate.drift event of one evaluated window.
func (m *Monitor) event(st gates.DriftStatus) *schemas.RuntimeEvent {
	trace := thread.DriftTrace(st.Kind, st.Route)
	id, span := thread.IDs(trace, "window", strconv.FormatInt(st.Window, 10))
	typ, verdict := thread.GatePassed, "within the reference"
	if st.Drifted {
		typ, verdict = thread.GateFailed, "drifted"
	}
	return &schemas.RuntimeEvent{
		EventID:       id,
		TraceID:       trace,
		SpanID:        span,
		Actor:         Actor,
		Intent:        st.Kind,
		SchemaVersion: schemas.V2,
		Timestamp:     st.At,
		RunStarted:    st.At,
		Phase:         schemas.PhaseGate,
		EventType:     typ,
		State:         "window",
		Route:         st.Route,
		Gate: &schemas.GateOutcome{
			Name: thread.DriftGate, Passed: !st.Drifted,
			Reason:   fmt.Sprintf("window %d of %s on %s %s: %s %.4g against %.4g (n_ref %d, n_cur %d)", st.Window, st.Kind, st.Route, verdict, st.Rule, st.Measured, st.Threshold, st.NRef, st.NCur),
			Measured: st.Measured, Threshold: st.Threshold, Rule: st.Rule, PolicyVersion: m.policy, Evidence: st.Evidence,
		},
	}
}
