package pipeline_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
)

func TestGoldenPathCounts(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	g, err := pipeline.NewGoldenPath(reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pipeline.NewGoldenPath(reg); err != nil {
		t.Fatalf("second GoldenPath on one registry: %v", err)
	}
	t0 := time.Unix(1_800_000_000, 0)
	ev := func(typ string, v schemas.ContractVersion, route string, after time.Duration, gate *schemas.GateOutcome) pipeline.Output {
		return pipeline.Output{Value: &schemas.RuntimeEvent{EventType: typ, SchemaVersion: v, Route: route,
			RunStarted: t0, Timestamp: t0.Add(after), Gate: gate}}
	}
	g.Committed([]pipeline.Output{
		ev("intent.received", schemas.V1, "", 0, nil),
		ev("intent.received", schemas.V2, "canary", 0, nil),
		ev("run.routed", schemas.V2, "canary", time.Millisecond, nil),
		ev("dataplane.dispatched", schemas.V2, "canary", 2*time.Millisecond, nil),
		ev("artifact.delivered", schemas.V2, "canary", 30*time.Millisecond, nil),
		ev("gate.passed", schemas.V2, "canary", 31*time.Millisecond, &schemas.GateOutcome{Name: "schema", Passed: true}),
		ev("gate.failed", schemas.V2, "canary", 31*time.Millisecond, &schemas.GateOutcome{Name: "performance"}),
		ev("gate.failed", schemas.V2, "canary", 31*time.Millisecond, &schemas.GateOutcome{Name: "made-up-name-123"}),
		ev("gate.verdict", schemas.V2, "canary", 32*time.Millisecond, &schemas.GateOutcome{Name: "verdict"}),
		ev("run.rejected", schemas.V2, "canary", 33*time.Millisecond, nil),
		ev("run.completed", schemas.V1, "", 40*time.Millisecond, nil),
		{Value: &schemas.Intent{}}, // not an event: ignored
	})
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"spine_golden_path_events_total", []string{"intent.received", "V1", "baseline"}, 1},
		{"spine_golden_path_events_total", []string{"intent.received", "V2", "canary"}, 1},
		{"spine_golden_path_events_total", []string{"dataplane.dispatched"}, 1},
		{"spine_golden_path_events_total", []string{"gate.failed"}, 2},
		{"spine_golden_path_events_total", []string{"run.routed"}, 0},
		{"spine_runs_total", []string{"V2", "canary", "rejected"}, 1},
		{"spine_runs_total", []string{"V1", "baseline", "completed"}, 1},
		{"spine_gate_checks_total", []string{"schema", "passed"}, 1},
		{"spine_gate_checks_total", []string{"performance", "failed"}, 1},
		{"spine_gate_checks_total", []string{"other", "failed"}, 1},
	} {
		if got := metricValue(t, reg, tc.name, tc.labels...); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	if n := histCount(t, reg, "spine_run_duration_seconds"); n != 2 {
		t.Errorf("run duration observations %d, want 2", n)
	}
	if n := histCount(t, reg, "spine_golden_path_latency_seconds"); n != 7 {
		t.Errorf("hop latency observations %d, want 7", n)
	}
}

func histCount(t *testing.T, reg *prometheus.Registry, name string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				n += m.GetHistogram().GetSampleCount()
			}
		}
	}
	return n
}

// emitter turns every input into one intent.received event.
type emitter struct{ out pipeline.Topic }

func (h emitter) Handle(_ context.Context, _ []byte, in pipeline.Input) (pipeline.Result, error) {
	now := time.Now()
	return pipeline.Result{Outputs: []pipeline.Output{{Topic: h.out, Key: in.Key, Version: schemas.V2,
		Value: &schemas.RuntimeEvent{EventID: in.Value.(*msg).ID, EventType: "intent.received", SchemaVersion: schemas.V2,
			Route: "canary", RunStarted: now, Timestamp: now}}}}, nil
}

// TestGoldenPathCountsOnlyCommitted: with aborted transactions in between
// (a transiently failing record), the golden-path counter equals the count
// of events on the thread, read_committed.
func TestGoldenPathCountsOnlyCommitted(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	e.codec.n = 6
	reg := prometheus.NewRegistry()
	g, err := pipeline.NewGoldenPath(reg)
	if err != nil {
		t.Fatal(err)
	}
	ms := append(msgs("x", 20, ""), msg{ID: "flaky", Kind: "flaky-decode"})
	ms = append(ms, msgs("y", 20, "")...)
	e.produce(t, e.layout.Intents(), ms, func(int) string { return "k" })
	e.start(t, "orchestrator", emitter{out: e.layout.Control()}, pipeline.WithObserver(g), pipeline.WithRegisterer(reg))
	thread := e.readAll(t, e.layout.Control(), len(ms), 300*time.Millisecond, true)
	waitFor(t, 5*time.Second, func() bool {
		return metricValue(t, reg, "spine_golden_path_events_total", "intent.received") == float64(len(thread))
	}, "golden-path counter == events on the thread")
	if got := metricValue(t, reg, "spine_processor_transactions_total", "aborted"); got < 1 {
		t.Errorf("no aborted transaction; the test proves nothing")
	}
}
