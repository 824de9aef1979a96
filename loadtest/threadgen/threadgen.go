// Package threadgen writes golden-path runs straight onto a thread's
// topics, encoded as the processors encode them, without running a
// processor: a thread of many runs, made fast, for what reads the thread
// (spine verify's benchmark, spine trace and restarts at scale, see
// e2e/scale). A generated run is the golden path: intent, seven control
// events (intent.received … run.completed), three data-plane events, the
// schema and performance gates and the verdict, and the artifact.
package threadgen

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// Run is one generated run: its records by topic, in thread order, as the
// processors write them on the golden path. Tests change its fields to
// build anomalies (a missing event, an extra one).
type Run struct {
	Trace string
	// Intent is the intent's record without its value (Records encodes it).
	Intent  *kgo.Record
	Control []*schemas.RuntimeEvent
	Data    []*schemas.RuntimeEvent
	// Gates are gate.schema, gate.performance and gate.verdict.
	Gates    []*schemas.RuntimeEvent
	Artifact *kgo.Record
}

// Events returns the run's events with the topic each goes to.
func (x *Run) Events(l pipeline.Layout) ([]pipeline.Topic, []*schemas.RuntimeEvent) {
	var topics []pipeline.Topic
	var evs []*schemas.RuntimeEvent
	for _, e := range x.Control {
		topics, evs = append(topics, l.Control()), append(evs, e)
	}
	for _, e := range x.Data {
		topics, evs = append(topics, l.Dataplane()), append(evs, e)
	}
	for _, e := range x.Gates {
		topics, evs = append(topics, l.Gate(e.Gate.Name)), append(evs, e)
	}
	return topics, evs
}

// Golden builds the golden-path run of trace id tr on layout l at time at
// (every event of it): intent, control, data plane and gate events with
// the ids the processors derive, and the artifact.
func Golden(l pipeline.Layout, tr string, at time.Time) *Run {
	seq := uint32(0)
	base := func(typ schemas.EventType, state string, phase schemas.Phase) *schemas.RuntimeEvent {
		return &schemas.RuntimeEvent{TraceID: tr, Actor: "gen", Intent: "summarize", SchemaVersion: schemas.V1, Timestamp: at,
			RunStarted: at, Phase: phase, EventType: typ, State: state, Route: thread.RouteBaseline}
	}
	ctl := func(typ schemas.EventType, state, parent string) *schemas.RuntimeEvent {
		e := base(typ, state, schemas.PhaseControl)
		e.EventID, e.SpanID = thread.IDs(tr, "o", thread.Step(seq))
		e.ParentSpanID = parent
		seq++
		return e
	}
	out := &Run{Trace: tr}
	out.Intent = &kgo.Record{Topic: string(l.Intents()), Key: []byte(tr), Timestamp: at}
	c0 := ctl(thread.IntentReceived, "received", "")
	c1 := ctl(thread.RunRouted, "routed", c0.SpanID)
	c2 := ctl(thread.RunDispatch, "dispatched", c1.SpanID)
	d := c2.SpanID
	data := func(typ schemas.EventType, state string) *schemas.RuntimeEvent {
		e := base(typ, state, schemas.PhaseData)
		e.EventID, e.SpanID, e.ParentSpanID = thread.DataEventID(tr, d, typ), thread.DataSpanID(tr, d, typ), d
		return e
	}
	d0 := data(thread.DataplaneDispatched, "dispatched")
	d1 := data(thread.DataplaneStarted, "executing")
	d2 := data(thread.ArtifactDelivered, "delivered")
	d2.ArtifactID = thread.ArtifactID(tr, d, at)
	d2.Artifact = &schemas.ArtifactSummary{ContentType: "text/plain", SizeBytes: 7}
	c3 := ctl(thread.RunExecuting, "executing", d1.SpanID)
	c4 := ctl(thread.RunDelivered, "delivered", d2.SpanID)
	c5 := ctl(thread.RunGating, "gating", c4.SpanID)
	gate := func(name string, typ schemas.EventType, g *schemas.GateOutcome) *schemas.RuntimeEvent {
		e := base(typ, "gating", schemas.PhaseGate)
		e.EventID, e.SpanID = thread.IDs(tr, "g", d2.SpanID, name)
		e.ParentSpanID, e.ArtifactID, e.Gate = d2.SpanID, d2.ArtifactID, g
		return e
	}
	g0 := gate(thread.SchemaGate, thread.GatePassed, &schemas.GateOutcome{Name: thread.SchemaGate, Passed: true, Reason: "valid"})
	g1 := gate(thread.PerformanceGate, thread.GatePassed, &schemas.GateOutcome{Name: thread.PerformanceGate, Passed: true, Reason: "within_budget"})
	gv := gate(thread.VerdictGate, thread.GateVerdict, &schemas.GateOutcome{Name: thread.VerdictGate, Passed: true, Measured: 2, Threshold: 2, Reason: "all_passed"})
	c6 := ctl(thread.RunCompleted, "completed", gv.SpanID)
	c6.ArtifactID, c6.Gate = d2.ArtifactID, gv.Gate
	for _, e := range []*schemas.RuntimeEvent{c3, c4, c5, c6} {
		e.ArtifactID = d2.ArtifactID
	}
	c3.ArtifactID = ""
	out.Control = []*schemas.RuntimeEvent{c0, c1, c2, c3, c4, c5, c6}
	out.Data = []*schemas.RuntimeEvent{d0, d1, d2}
	out.Gates = []*schemas.RuntimeEvent{g0, g1, gv}
	out.Artifact = &kgo.Record{Topic: string(l.Artifacts()), Key: []byte(d2.ArtifactID), Value: []byte("content"), Timestamp: at,
		Headers: []kgo.RecordHeader{{Key: thread.HeaderContentType, Value: []byte("text/plain")}, {Key: thread.HeaderTraceID, Value: []byte(tr)}}}
	return out
}

// Writer encodes runs and produces them. Its clients are the caller's.
type Writer struct {
	Codec  *pipeline.SchemaCodec
	Layout pipeline.Layout
	// Tx is a transactional client (as the processors write); Plain an
	// idempotent one (as the CLI writes intents). Without Tx the rest is
	// written plainly too: a transaction's markers carry the time they are
	// written, so a thread back-dated in transactions would break
	// offset-by-time lookups.
	Tx, Plain *kgo.Client
	// Batch is how many runs go into one transaction (default 500).
	Batch int
}

// Records encodes the run's events into records on their topics: intents
// (written plainly) and the rest (written in transactions). The topic of a
// gate event is its gate's.
func (w *Writer) Records(ctx context.Context, x *Run) (intents, rest []*kgo.Record, err error) {
	if x.Intent != nil {
		it := *x.Intent
		b, err := w.Codec.Encode(ctx, w.Layout.Intents(), schemas.V1, &schemas.Intent{IntentID: "i-" + x.Trace, TraceID: x.Trace,
			Actor: "gen", Kind: "summarize", Input: "x", SchemaVersion: schemas.V1, Timestamp: it.Timestamp})
		if err != nil {
			return nil, nil, fmt.Errorf("encode intent: %w", err)
		}
		it.Value = b
		intents = append(intents, &it)
	}
	topics, evs := x.Events(w.Layout)
	for i, e := range evs {
		b, err := w.Codec.Encode(ctx, topics[i], schemas.V1, e)
		if err != nil {
			return nil, nil, fmt.Errorf("encode %s: %w", e.EventType, err)
		}
		rest = append(rest, &kgo.Record{Topic: string(topics[i]), Key: []byte(x.Trace), Value: b, Timestamp: e.Timestamp,
			Headers: []kgo.RecordHeader{{Key: "x-event-type", Value: []byte(e.EventType)}}})
	}
	if x.Artifact != nil {
		rest = append(rest, x.Artifact)
	}
	return intents, rest, nil
}

// Write produces runs: intents plainly, the rest in transactions of at
// most Batch runs, committed, or aborted when commit is false. extra, when
// set, is called once per transaction with the runs in it and returns
// more records for the same transaction (a projection's cells).
func (w *Writer) Write(ctx context.Context, runs []*Run, commit bool, extra func([]*Run) ([]*kgo.Record, error)) error {
	batch := w.Batch
	if batch <= 0 {
		batch = 500
	}
	var intents, rest []*kgo.Record
	from := 0
	flush := func(to int) error {
		if extra != nil {
			more, err := extra(runs[from:to])
			if err != nil {
				return err
			}
			rest = append(rest, more...)
		}
		from = to
		if len(intents) > 0 {
			if err := w.Plain.ProduceSync(ctx, intents...).FirstErr(); err != nil {
				return fmt.Errorf("produce intents: %w", err)
			}
		}
		if len(rest) > 0 && w.Tx == nil {
			if !commit {
				return errors.New("threadgen: an aborted write needs a transactional client")
			}
			if err := w.Plain.ProduceSync(ctx, rest...).FirstErr(); err != nil {
				return fmt.Errorf("produce: %w", err)
			}
		} else if len(rest) > 0 {
			if err := w.Tx.BeginTransaction(); err != nil {
				return err
			}
			if err := w.Tx.ProduceSync(ctx, rest...).FirstErr(); err != nil {
				_ = w.Tx.EndTransaction(ctx, kgo.TryAbort)
				return fmt.Errorf("produce: %w", err)
			}
			if err := w.Tx.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
				return fmt.Errorf("end transaction: %w", err)
			}
		}
		intents, rest = intents[:0], rest[:0]
		return nil
	}
	for i, x := range runs {
		in, re, err := w.Records(ctx, x)
		if err != nil {
			return err
		}
		intents, rest = append(intents, in...), append(rest, re...)
		if (i+1)%batch == 0 {
			if err := flush(i + 1); err != nil {
				return err
			}
		}
	}
	return flush(len(runs))
}
