package gatekeeper_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spinerun/spine/gates"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/gatekeeper"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func artifact(latency int64) *schemas.RuntimeEvent {
	return &schemas.RuntimeEvent{
		EventID: "e", TraceID: "tr", SpanID: "span-delivered", ParentSpanID: "span-dispatch", Actor: "alice", Intent: "summarize",
		ArtifactID: "art-1", SchemaVersion: schemas.V2, Timestamp: t0, RunStarted: t0, Phase: schemas.PhaseData,
		EventType: thread.ArtifactDelivered, State: "delivered", Route: thread.RouteCanary, Attempt: 1,
		Artifact: &schemas.ArtifactSummary{ContentType: "text/plain", Summary: "ok", Score: 0.9, SizeBytes: 2, LatencyMs: latency},
	}
}

func run(t *testing.T, r *gatekeeper.Runner, ev *schemas.RuntimeEvent) ([]pipeline.Output, error) {
	t.Helper()
	res, err := r.Handle(t.Context(), nil, pipeline.Input{Topic: "t.spine.dataplane", Key: []byte(ev.TraceID), Value: ev, Version: schemas.V2})
	return res.Outputs, err
}

func newRunner(t *testing.T, cs ...gates.Check) *gatekeeper.Runner {
	t.Helper()
	r, err := gatekeeper.New(pipeline.Layout{Prefix: "t."}, gatekeeper.Config{Checks: cs, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRunner(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		latency int64
		types   []schemas.EventType
		verdict bool
		reason  string
	}{
		{"all pass", 100, []schemas.EventType{thread.GatePassed, thread.GatePassed, thread.GateVerdict}, true, "all_passed: schema, performance"},
		{"over budget", 5000, []schemas.EventType{thread.GatePassed, thread.GateFailed, thread.GateVerdict}, false, "failed: performance"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRunner(t)
			ev := artifact(tc.latency)
			outs, err := run(t, r, ev)
			if err != nil {
				t.Fatal(err)
			}
			var got []schemas.EventType
			topics := []pipeline.Topic{"t.gate.schema", "t.gate.performance", "t.gate.verdict"}
			ids := map[string]bool{}
			for i, o := range outs {
				e := o.Value.(*schemas.RuntimeEvent)
				got = append(got, e.EventType)
				if o.Topic != topics[i] || string(o.Key) != "tr" || o.Version != schemas.V2 {
					t.Errorf("output %d to %s key %s version %v", i, o.Topic, o.Key, o.Version)
				}
				if e.ParentSpanID != ev.SpanID || e.Phase != schemas.PhaseGate || e.ArtifactID != "art-1" || e.Route != thread.RouteCanary ||
					e.Gate == nil || e.State != "gating" || !e.RunStarted.Equal(t0) || ids[e.EventID] {
					t.Errorf("event %d: %+v", i, e)
				}
				ids[e.EventID] = true
			}
			if !reflect.DeepEqual(got, tc.types) {
				t.Fatalf("events %v, want %v", got, tc.types)
			}
			perf := outs[1].Value.(*schemas.RuntimeEvent).Gate
			if perf.Name != "performance" || perf.Measured != float64(tc.latency) || perf.Threshold != 2000 || !strings.Contains(perf.Reason, "budget") {
				t.Errorf("performance outcome %+v", perf)
			}
			v := outs[2].Value.(*schemas.RuntimeEvent).Gate
			if v.Name != thread.VerdictGate || v.Passed != tc.verdict || v.Reason != tc.reason || v.Threshold != 2 {
				t.Errorf("verdict %+v", v)
			}
			again, _ := run(t, r, ev)
			if !reflect.DeepEqual(outs, again) {
				t.Error("the same artifact judged twice gave different events")
			}
		})
	}
}

func TestRunnerIgnoresOthers(t *testing.T) {
	t.Parallel()
	r := newRunner(t)
	for _, typ := range []schemas.EventType{thread.DataplaneDispatched, thread.DataplaneStarted, thread.DataplaneFailed} {
		ev := artifact(1)
		ev.EventType = typ
		if outs, err := run(t, r, ev); err != nil || len(outs) != 0 {
			t.Fatalf("%s: %d outputs, %v", typ, len(outs), err)
		}
	}
}

func TestRunnerCheckErrors(t *testing.T) {
	t.Parallel()
	down := gates.CheckFunc{CheckName: "policy", Fn: func(context.Context, gates.Subject) (gates.Outcome, error) {
		return gates.Outcome{}, errors.New("identity provider unreachable")
	}}
	if _, err := run(t, newRunner(t, gates.Schema(), down), artifact(1)); err == nil || pipeline.CodeOf(err) != "" {
		t.Fatalf("an undecided check must be a transient error, got %v", err)
	}
	panics := gates.CheckFunc{CheckName: "drift", Fn: func(context.Context, gates.Subject) (gates.Outcome, error) { panic("bug") }}
	outs, err := run(t, newRunner(t, panics), artifact(1))
	if err != nil {
		t.Fatal(err)
	}
	if g := outs[0].Value.(*schemas.RuntimeEvent).Gate; g.Passed || !strings.HasPrefix(g.Reason, "check_panicked") {
		t.Fatalf("panicking check: %+v", g)
	}
	if v := outs[1].Value.(*schemas.RuntimeEvent).Gate; v.Passed {
		t.Fatal("verdict passed with a panicked check")
	}
}

func TestRunnerConfig(t *testing.T) {
	t.Parallel()
	for _, cs := range [][]gates.Check{
		{},
		{gates.Schema(), gates.Schema()},
		{gates.CheckFunc{CheckName: "verdict"}},
		{gates.CheckFunc{CheckName: ""}},
		{gates.CheckFunc{CheckName: "astrology"}},
	} {
		if _, err := gatekeeper.New(pipeline.Layout{}, gatekeeper.Config{Checks: cs}); err == nil {
			t.Errorf("accepted checks %v", cs)
		}
	}
	r, err := gatekeeper.New(pipeline.Layout{}, gatekeeper.Config{})
	if err != nil || !reflect.DeepEqual(r.Checks(), []string{"schema", "performance"}) {
		t.Fatalf("default checks %v, %v", r.Checks(), err)
	}
}
