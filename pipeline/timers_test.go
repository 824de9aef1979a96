package pipeline_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/spinerun/spine/pipeline"
)

// alarm is a Timed test handler. Its state per key holds a deadline: an
// input with DelayMs arms it, Kind "disarm" clears it, and Fire emits one
// "fired" output and clears it.
type alarm struct{ out pipeline.Topic }

type alarmState struct {
	DeadlineMs int64 `json:"deadline_ms,omitempty"`
	Fired      int   `json:"fired"`
}

var _ pipeline.Timed = (*alarm)(nil)

func (a *alarm) Handle(_ context.Context, state []byte, in pipeline.Input) (pipeline.Result, error) {
	var s alarmState
	if state != nil {
		_ = json.Unmarshal(state, &s)
	}
	m := in.Value.(*msg)
	kind := "armed"
	switch {
	case m.Kind == "disarm":
		s.DeadlineMs, kind = 0, "disarmed"
	case m.DelayMs > 0:
		s.DeadlineMs = time.Now().Add(time.Duration(m.DelayMs) * time.Millisecond).UnixMilli()
	}
	b, _ := json.Marshal(s)
	return pipeline.Result{State: b, StateChanged: true,
		Outputs: []pipeline.Output{{Topic: a.out, Key: in.Key, Value: &msg{ID: m.ID, Kind: kind}}}}, nil
}

func (a *alarm) Deadline(state []byte) (time.Time, bool) {
	var s alarmState
	if json.Unmarshal(state, &s) != nil || s.DeadlineMs == 0 {
		return time.Time{}, false
	}
	return time.UnixMilli(s.DeadlineMs), true
}

func (a *alarm) Fire(_ context.Context, key, state []byte, _ time.Time) (pipeline.Result, error) {
	var s alarmState
	_ = json.Unmarshal(state, &s)
	s.DeadlineMs = 0
	s.Fired++
	b, _ := json.Marshal(s)
	return pipeline.Result{State: b, StateChanged: true,
		Outputs: []pipeline.Output{{Topic: a.out, Key: key, Value: &msg{ID: string(key), Kind: "fired", Seq: s.Fired}}}}, nil
}

func countKinds(t *testing.T, e *env, n int, settle time.Duration) map[string]map[string]int {
	t.Helper()
	recs := e.readAll(t, e.layout.Control(), n, settle, true)
	out := map[string]map[string]int{}
	for _, m := range decodeOut(t, recs) {
		if out[m.Kind] == nil {
			out[m.Kind] = map[string]int{}
		}
		out[m.Kind][m.ID]++
	}
	return out
}

func TestTimersFireOnceAndSurviveRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	h := &alarm{out: e.layout.Control()}
	key := func(prefix string) func(int) string {
		return func(i int) string { return fmt.Sprintf("%s%d", prefix, i) }
	}
	stop := e.start(t, "orchestrator", h, pipeline.WithTimerTick(20*time.Millisecond))

	// Armed with 300ms: each fires once. "d0" is disarmed before its
	// deadline and must never fire.
	arm := make([]msg, 8)
	for i := range arm {
		arm[i] = msg{ID: fmt.Sprintf("a%d", i), DelayMs: 300}
	}
	e.produce(t, e.layout.Intents(), arm, key("a"))
	e.produce(t, e.layout.Intents(), []msg{{ID: "d0", DelayMs: 400}, {ID: "d0", Kind: "disarm"}}, func(int) string { return "d0" })
	got := countKinds(t, e, 8+2+8, 800*time.Millisecond)
	for i := range 8 {
		if n := got["fired"][fmt.Sprintf("a%d", i)]; n != 1 {
			t.Errorf("timer a%d fired %d times, want 1", i, n)
		}
	}
	if n := got["fired"]["d0"]; n != 0 {
		t.Errorf("disarmed timer fired %d times", n)
	}

	// Armed with 1.5s, then the processor stops before the deadline; its
	// successor restores the deadlines and fires each once.
	arm2 := make([]msg, 8)
	for i := range arm2 {
		arm2[i] = msg{ID: fmt.Sprintf("b%d", i), DelayMs: 1500}
	}
	e.produce(t, e.layout.Intents(), arm2, key("b"))
	countKinds(t, e, 18+8, 0) // the arms are committed
	stop()
	e.start(t, "orchestrator", h, pipeline.WithTimerTick(20*time.Millisecond))
	got = countKinds(t, e, 18+8+8, time.Second)
	for i := range 8 {
		id := fmt.Sprintf("b%d", i)
		if got["armed"][id] != 1 || got["fired"][id] != 1 {
			t.Errorf("timer %s: armed %d, fired %d times; want 1 and 1", id, got["armed"][id], got["fired"][id])
		}
	}
	if n := len(got["fired"]); n != 16 {
		t.Errorf("%d keys fired, want 16", n)
	}
}
