package pipeline_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
)

// alarm is a Timed test handler. Its state per key holds a deadline: an
// input with DelayMs arms it, Kind "disarm" clears it, and Fire emits one
// "fired" output and clears it. handled counts the Handle calls.
type alarm struct {
	out     pipeline.Topic
	handled atomic.Int64
}

type alarmState struct {
	DeadlineMs int64 `json:"deadline_ms,omitempty"`
	Fired      int   `json:"fired"`
}

var _ pipeline.Timed = (*alarm)(nil)

func (a *alarm) Handle(_ context.Context, state []byte, in pipeline.Input) (pipeline.Result, error) {
	a.handled.Add(1)
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

	// Armed with 5s, then the processor stops as soon as it has handled
	// the arms (its in-flight transaction still commits), well before the
	// deadline; its successor restores the deadlines and fires each once.
	handled := h.handled.Load()
	arm2 := make([]msg, 8)
	for i := range arm2 {
		arm2[i] = msg{ID: fmt.Sprintf("b%d", i), DelayMs: 5000}
	}
	e.produce(t, e.layout.Intents(), arm2, key("b"))
	waitFor(t, 60*time.Second, func() bool { return h.handled.Load() >= handled+8 }, "the arms to be handled")
	stop()
	countKinds(t, e, 18+8, 0) // the arms are committed
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

// produceTxn writes msgs keyed by key(i) to topic in one committed
// transaction, so the partitions' tails are commit markers (which a
// read_committed consumer never sees as records).
func (e *env) produceTxn(t *testing.T, topic pipeline.Topic, ms []msg, key func(i int) string) {
	t.Helper()
	cl := kafkatest.Client(t, e.brokers, kgo.TransactionalID(e.layout.Prefix+"test-producer"))
	if err := cl.BeginTransaction(); err != nil {
		t.Fatalf("begin: %v", err)
	}
	recs := make([]*kgo.Record, len(ms))
	for i, m := range ms {
		b, _ := json.Marshal(m)
		recs[i] = &kgo.Record{Topic: string(topic), Key: []byte(key(i)), Value: b}
	}
	if err := cl.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	if err := cl.EndTransaction(t.Context(), kgo.TryCommit); err != nil {
		t.Fatalf("commit: %v", err)
	}
}

// TestTimersWaitForBacklogAfterRestart: timers are armed, the processor
// stops, and while it is down a backlog is committed on its input — filler
// records first, then a disarm for every armed key — and the deadlines pass.
// After the restart the timers are overdue, but the loop holds them until
// it has read its inputs up to where they ended at assignment: the disarms
// win and no timer fires, although the backlog takes many transactions
// (batch size 10). Timers armed afterwards still fire: the hold ends.
func TestTimersWaitForBacklogAfterRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	h := &alarm{out: e.layout.Control()}
	opts := []pipeline.ProcessorOpt{pipeline.WithTimerTick(20 * time.Millisecond), pipeline.WithBatchSize(10)}
	stop := e.start(t, "orchestrator", h, opts...)

	const armed, filler, delay = 20, 300, 5 * time.Second
	arm := make([]msg, armed)
	for i := range arm {
		arm[i] = msg{ID: fmt.Sprintf("a%d", i), DelayMs: int(delay.Milliseconds())}
	}
	e.produce(t, e.layout.Intents(), arm, func(i int) string { return arm[i].ID })
	// Stop as soon as every arm was handled (the in-flight transaction
	// still commits), well before the deadlines: no timer fires before the
	// restart.
	waitFor(t, 60*time.Second, func() bool { return h.handled.Load() >= armed }, "the arms to be handled")
	stop()
	due := time.Now().Add(delay)
	countKinds(t, e, armed, 0) // armed and committed

	backlog := make([]msg, 0, filler+armed)
	for i := range filler {
		backlog = append(backlog, msg{ID: fmt.Sprintf("f%d", i)})
	}
	for i := range armed {
		backlog = append(backlog, msg{ID: fmt.Sprintf("a%d", i), Kind: "disarm"})
	}
	e.produceTxn(t, e.layout.Intents(), backlog, func(i int) string { return backlog[i].ID })
	time.Sleep(time.Until(due) + 200*time.Millisecond) // every timer is overdue at the restart

	e.start(t, "orchestrator", h, opts...)
	got := countKinds(t, e, armed+filler+armed, time.Second)
	if n := len(got["disarmed"]); n != armed {
		t.Errorf("%d keys disarmed, want %d", n, armed)
	}
	if n := len(got["fired"]); n != 0 {
		t.Errorf("%d overdue timers fired before the backlog that disarmed them was read: %v", n, got["fired"])
	}

	// The hold has ended: a new timer fires.
	e.produce(t, e.layout.Intents(), []msg{{ID: "late", DelayMs: 100}}, func(int) string { return "late" })
	got = countKinds(t, e, armed+filler+armed+2, 0)
	if got["fired"]["late"] != 1 {
		t.Errorf("timer armed after the catch-up fired %d times, want 1", got["fired"]["late"])
	}
}
