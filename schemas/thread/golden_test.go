package thread_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spinerun/spine/internal/spinetest"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

func TestGoldenPathCounts(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	g, err := thread.NewGoldenPath(reg, "schema", "performance")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := thread.NewGoldenPath(reg, "schema", "performance"); err != nil {
		t.Fatalf("second GoldenPath on one registry: %v", err)
	}
	t0 := time.Unix(1_800_000_000, 0)
	ev := func(typ schemas.EventType, v schemas.ContractVersion, route string, after time.Duration, gate *schemas.GateOutcome) *schemas.RuntimeEvent {
		return &schemas.RuntimeEvent{EventType: typ, SchemaVersion: v, Route: route,
			RunStarted: t0, Timestamp: t0.Add(after), Gate: gate}
	}
	g.Committed([]*schemas.RuntimeEvent{
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
		nil, // ignored
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
		if got := spinetest.MetricValue(t, reg, tc.name, tc.labels...); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	if n := spinetest.HistogramCount(t, reg, "spine_run_duration_seconds"); n != 2 {
		t.Errorf("run duration observations %d, want 2", n)
	}
	if n := spinetest.HistogramCount(t, reg, "spine_golden_path_latency_seconds"); n != 7 {
		t.Errorf("hop latency observations %d, want 7", n)
	}
}

// TestGoldenPathCountsAgain: the second event of a label set counts on the
// child looked up for the first, and each label set keeps its own.
func TestGoldenPathCountsAgain(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	g, err := thread.NewGoldenPath(reg, "schema")
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1_800_000_000, 0)
	for i := range 3 {
		for _, v := range []schemas.ContractVersion{schemas.V1, schemas.V2, 9} {
			for _, route := range []string{"", "canary", "elsewhere"} {
				g.Committed([]*schemas.RuntimeEvent{
					{EventType: thread.GatePassed, SchemaVersion: v, Route: route, RunStarted: t0, Timestamp: t0.Add(time.Duration(i) * time.Millisecond),
						Gate: &schemas.GateOutcome{Name: "schema"}},
					{EventType: thread.RunTimedOut, SchemaVersion: v, Route: route, RunStarted: t0, Timestamp: t0.Add(time.Second)},
				})
			}
		}
	}
	for _, cv := range []string{"V1", "V2", "unknown"} {
		for _, route := range []string{"baseline", "canary", "other"} {
			for name, labels := range map[string][]string{
				"spine_golden_path_events_total": {"gate.passed", cv, route},
				"spine_gate_checks_total":        {"schema", cv, route, "passed"},
				"spine_runs_total":               {cv, route, "timed_out"},
			} {
				if got := spinetest.MetricValue(t, reg, name, labels...); got != 3 {
					t.Errorf("%s%v = %v, want 3", name, labels, got)
				}
			}
		}
	}
	if n := spinetest.HistogramCount(t, reg, "spine_run_duration_seconds"); n != 27 {
		t.Errorf("run duration observations %d, want 27", n)
	}
}

func BenchmarkGoldenPathObserve(b *testing.B) {
	g, err := thread.NewGoldenPath(prometheus.NewRegistry(), "schema", "performance")
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Unix(1_800_000_000, 0)
	evs := []*schemas.RuntimeEvent{
		{EventType: thread.IntentReceived, SchemaVersion: schemas.V2, Route: "baseline", RunStarted: t0, Timestamp: t0},
		{EventType: thread.RunRouted, SchemaVersion: schemas.V2, Route: "baseline", RunStarted: t0, Timestamp: t0},
		{EventType: thread.GatePassed, SchemaVersion: schemas.V1, RunStarted: t0, Timestamp: t0, Gate: &schemas.GateOutcome{Name: "performance"}},
		{EventType: thread.RunCompleted, SchemaVersion: schemas.V1, RunStarted: t0, Timestamp: t0.Add(time.Millisecond)},
	}
	b.ReportAllocs()
	for b.Loop() {
		g.Committed(evs)
	}
}
