package pipeline_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spinerun/spine/internal/spinetest"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// emitter turns every input into one intent.received event.
type emitter struct{ out pipeline.Topic }

func (h emitter) Handle(_ context.Context, _ []byte, in pipeline.Input) (pipeline.Result, error) {
	now := time.Now()
	return pipeline.Result{Outputs: []pipeline.Output{{Topic: h.out, Key: in.Key, Version: schemas.V2,
		Value: &schemas.RuntimeEvent{EventID: in.Value.(*msg).ID, EventType: thread.IntentReceived, SchemaVersion: schemas.V2,
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
	g, err := thread.NewGoldenPath(reg)
	if err != nil {
		t.Fatal(err)
	}
	ms := append(msgs("x", 20, ""), msg{ID: "flaky", Kind: "flaky-decode"})
	ms = append(ms, msgs("y", 20, "")...)
	e.produce(t, e.layout.Intents(), ms, func(int) string { return "k" })
	e.start(t, "orchestrator", emitter{out: e.layout.Control()}, pipeline.WithObserver(pipeline.ObserveEvents(g)), pipeline.WithRegisterer(reg))
	thread := e.readAll(t, e.layout.Control(), len(ms), 300*time.Millisecond, true)
	waitFor(t, 5*time.Second, func() bool {
		return spinetest.MetricValue(t, reg, "spine_golden_path_events_total", "intent.received") == float64(len(thread))
	}, "golden-path counter == events on the thread")
	if got := spinetest.MetricValue(t, reg, "spine_processor_transactions_total", "aborted"); got < 1 {
		t.Errorf("no aborted transaction; the test proves nothing")
	}
}
