package projections_test

import (
	"fmt"
	"time"

	"github.com/spinerun/spine/projections"
	"github.com/spinerun/spine/schemas"
)

// Latency histograms merge exactly, so per-partition projections add up
// to the same percentiles as one big histogram. Quantiles are exact below
// 32 and within about 3% above (the p99 here is 98, the exact value 99).
func ExampleHistogram() {
	var a, b projections.Histogram
	for v := int64(1); v <= 50; v++ {
		a.Record(v)
		b.Record(v + 50)
	}
	a.Merge(&b)
	fmt.Println(a.Count(), a.Quantile(0.5), a.Quantile(0.99), a.Max())
	// Output: 100 50 98 100
}

// Folding a run's events, then querying the merged views.
func ExampleFolder() {
	start := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	ev := func(topic string, typ schemas.EventType, state string, ms int) (projections.Source, *schemas.RuntimeEvent) {
		return projections.Source{Topic: topic, Partition: 0}, &schemas.RuntimeEvent{
			TraceID: "t1", EventType: typ, State: state, SchemaVersion: schemas.V2, Route: "canary",
			RunStarted: start, Timestamp: start.Add(time.Duration(ms) * time.Millisecond),
		}
	}
	cells := projections.Cells{}
	var f projections.Folder
	for _, e := range [][3]any{
		{"spine.control", "intent.received", "received"},
		{"spine.dataplane", "dataplane.dispatched", "dispatched"},
		{"spine.dataplane", "artifact.delivered", "delivered"},
		{"spine.control", "run.completed", "completed"},
	} {
		src, re := ev(e[0].(string), schemas.EventType(e[1].(string)), e[2].(string), 40)
		f.Fold(cells, src, re, schemas.V2)
	}
	store := projections.NewMemStore(cells, 0)
	run, _ := store.RunStatus("t1")
	fmt.Println(run.State, run.Outcome, run.Route, run.Version)
	rep := store.Aggregate(projections.Range{}).CanaryReport()
	fmt.Println(rep.Canary.Terminal, rep.Canary.SuccessRate, rep.Canary.EndToEnd.P99)
	// Output:
	// completed completed canary V2
	// 1 1 40
}
