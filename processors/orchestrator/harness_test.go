package orchestrator_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/orchestrator"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// harness plays the pipeline loop for the orchestrator: it keeps the state
// per key and the log of every output, without a broker.
type harness struct {
	t      testing.TB
	layout pipeline.Layout
	o      *orchestrator.Orchestrator
	clk    *clock
	states map[string][]byte
	out    []pipeline.Output
}

func newHarness(t testing.TB, opts ...orchestrator.Option) *harness {
	t.Helper()
	h := &harness{t: t, layout: pipeline.Layout{Prefix: "t."}, clk: newClock(), states: map[string][]byte{}}
	o, err := orchestrator.New(h.layout, append([]orchestrator.Option{orchestrator.WithClock(h.clk.Now)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	h.o = o
	return h
}

func (h *harness) apply(key string, res pipeline.Result) []pipeline.Output {
	h.t.Helper()
	if res.StateChanged && res.DeadlineSet && res.State != nil {
		// The deadline a result reports is the one the loop would read
		// from its state.
		at, ok := h.o.Deadline(res.State)
		if ok == res.Deadline.IsZero() || !at.Equal(res.Deadline) {
			h.t.Errorf("key %s: result says deadline %v, Deadline(state) says %v, %t", key, res.Deadline, at, ok)
		}
	}
	if res.StateChanged {
		if res.State == nil {
			delete(h.states, key)
		} else {
			h.states[key] = res.State
		}
	}
	h.out = append(h.out, res.Outputs...)
	return res.Outputs
}

// handle runs one input through the orchestrator; a rejection is returned.
func (h *harness) handle(topic pipeline.Topic, key string, v any, ver schemas.ContractVersion) ([]pipeline.Output, error) {
	h.t.Helper()
	res, err := h.o.Handle(context.Background(), h.states[key], pipeline.Input{Topic: topic, Key: []byte(key), Value: v, Version: ver, Timestamp: h.clk.Now()})
	if err != nil {
		return nil, err
	}
	return h.apply(key, res), nil
}

func (h *harness) must(outs []pipeline.Output, err error) []*schemas.RuntimeEvent {
	h.t.Helper()
	if err != nil {
		h.t.Fatalf("handle: %v", err)
	}
	return events(outs)
}

func events(outs []pipeline.Output) []*schemas.RuntimeEvent {
	evs := make([]*schemas.RuntimeEvent, 0, len(outs))
	for _, o := range outs {
		evs = append(evs, o.Value.(*schemas.RuntimeEvent))
	}
	return evs
}

func newIntent(trace, actor, kind string) *schemas.Intent {
	return &schemas.Intent{IntentID: "i-" + trace, TraceID: trace, Actor: actor, Kind: kind, Input: "hello", SchemaVersion: schemas.V1, Timestamp: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)}
}

func (h *harness) intent(it *schemas.Intent) ([]pipeline.Output, error) {
	return h.handle(h.layout.Intents(), it.TraceID, it, it.SchemaVersion)
}

// reply builds the data-plane event typ answering dispatch.
func reply(dispatch *schemas.RuntimeEvent, typ schemas.EventType, n int) *schemas.RuntimeEvent {
	ev := &schemas.RuntimeEvent{
		EventID: thread.ID(dispatch.TraceID, "test", string(typ), dispatch.SpanID), TraceID: dispatch.TraceID,
		SpanID: thread.SpanID(dispatch.TraceID, "test", string(typ), dispatch.SpanID, thread.Step(uint32(n))), ParentSpanID: dispatch.SpanID,
		Actor: dispatch.Actor, Intent: dispatch.Intent, SchemaVersion: dispatch.SchemaVersion, Phase: schemas.PhaseData,
		EventType: typ, Route: dispatch.Route, Attempt: dispatch.Attempt,
	}
	switch typ {
	case thread.ArtifactDelivered:
		ev.ArtifactID = "art-" + dispatch.SpanID
		ev.Artifact = &schemas.ArtifactSummary{ContentType: "text/plain", Summary: "ok", Score: 0.9, LatencyMs: 10}
	case thread.DataplaneFailed:
		msg := "synthetic: boom"
		ev.Error = &msg
	}
	return ev
}

func verdict(delivered *schemas.RuntimeEvent, passed bool) *schemas.RuntimeEvent {
	return &schemas.RuntimeEvent{
		EventID: thread.ID(delivered.TraceID, "verdict", delivered.SpanID), TraceID: delivered.TraceID,
		SpanID: thread.SpanID(delivered.TraceID, "verdict", delivered.SpanID), ParentSpanID: delivered.SpanID,
		Actor: delivered.Actor, Intent: delivered.Intent, SchemaVersion: delivered.SchemaVersion, Phase: schemas.PhaseGate,
		EventType: thread.GateVerdict, Gate: &schemas.GateOutcome{Name: thread.VerdictGate, Passed: passed},
	}
}

func (h *harness) data(ev *schemas.RuntimeEvent) ([]pipeline.Output, error) {
	return h.handle(h.layout.Dataplane(), ev.TraceID, ev, ev.SchemaVersion)
}

func (h *harness) gate(ev *schemas.RuntimeEvent) ([]pipeline.Output, error) {
	return h.handle(h.layout.Gate(thread.VerdictGate), ev.TraceID, ev, ev.SchemaVersion)
}

// fire fires key's timer if it is due at the harness clock.
func (h *harness) fire(key string) []*schemas.RuntimeEvent {
	h.t.Helper()
	st := h.states[key]
	d, ok := h.o.Deadline(st)
	if !ok || h.clk.Now().Before(d) {
		return nil
	}
	res, err := h.o.Fire(context.Background(), []byte(key), st, h.clk.Now())
	if err != nil {
		h.t.Fatalf("fire %s: %v", key, err)
	}
	return events(h.apply(key, res))
}

// runEvents returns the control events of trace in order.
func (h *harness) runEvents(trace string) []*schemas.RuntimeEvent {
	var evs []*schemas.RuntimeEvent
	for _, o := range h.out {
		if string(o.Key) == trace {
			evs = append(evs, o.Value.(*schemas.RuntimeEvent))
		}
	}
	return evs
}

func types(evs []*schemas.RuntimeEvent) []schemas.EventType {
	out := make([]schemas.EventType, len(evs))
	for i, e := range evs {
		out[i] = e.EventType
	}
	return out
}

func last(evs []*schemas.RuntimeEvent, typ schemas.EventType) *schemas.RuntimeEvent {
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].EventType == typ {
			return evs[i]
		}
	}
	return nil
}

// terminals counts the terminal events of evs and returns the last one.
func terminals(evs []*schemas.RuntimeEvent) (n int, last schemas.EventType) {
	for _, e := range evs {
		if _, ok := thread.Outcome(e.EventType); ok {
			n++
			last = e.EventType
		}
	}
	return n, last
}
