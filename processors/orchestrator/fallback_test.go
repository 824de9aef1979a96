package orchestrator_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spinerun/spine/processors/orchestrator"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// TestFallbackAgent: a run whose agent keeps failing degrades, once its
// retries are spent, to the agent's fallback agent (run.fallback naming
// from, to and why; run.dispatch naming the agent as its kind, attempts
// afresh) and
// completes there; a fallback agent without a fallback of its own fails
// as before. A timeout degrades the same way.
func TestFallbackAgent(t *testing.T) {
	t.Parallel()
	fallbacks := orchestrator.WithAgentFallbacks(map[string]string{"summarize": "summarize_small"})
	failAll := func(h *harness, d *schemas.RuntimeEvent) []*schemas.RuntimeEvent {
		t.Helper()
		for range 10 {
			evs := h.must(h.data(reply(d, thread.DataplaneFailed, 0)))
			if last(evs, thread.RunRetryScheduled) == nil {
				return evs
			}
			h.clk.Add(5 * time.Second)
			d = last(h.fire("tr"), thread.RunDispatch)
		}
		t.Fatal("never stopped retrying")
		return nil
	}

	t.Run("failure degrades and completes", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, fallbacks)
		it := newIntent("tr", "alice", "summarize")
		it.Attributes = map[string]string{"keep": "me"}
		d := last(h.must(h.intent(it)), thread.RunDispatch)
		evs := failAll(h, d)
		if !slices.Equal(types(evs), []schemas.EventType{thread.RunFallback, thread.RunDispatch}) {
			t.Fatalf("after the retries: %v", types(evs))
		}
		fb, d2 := evs[0], evs[1]
		if fb.Attributes[thread.AttrFallbackFrom] != "summarize" || fb.Attributes[thread.AttrFallbackTo] != "summarize_small" || fb.Error == nil ||
			!strings.Contains(*fb.Error, "degrading to agent summarize_small") || fb.State != "executing" && fb.State != "dispatched" {
			t.Fatalf("run.fallback: %+v", fb)
		}
		if ended := last(h.runEvents("tr"), thread.RunDelivered); ended != nil && ended.Intent != "summarize" {
			t.Fatalf("the run's own events name kind %s", ended.Intent)
		}
		if d2.Intent != "summarize_small" || d2.Attempt != 0 || d2.Attributes["keep"] != "me" {
			t.Fatalf("fallback dispatch: attempt %d, attrs %v, intent %s", d2.Attempt, d2.Attributes, d2.Intent)
		}
		dl := reply(d2, thread.ArtifactDelivered, 0)
		h.must(h.data(dl))
		if evs := h.must(h.gate(verdict(dl, true))); last(evs, thread.RunCompleted) == nil {
			t.Fatalf("verdict: %v", types(evs))
		}
		if n, end := terminals(h.runEvents("tr")); n != 1 || end != thread.RunCompleted {
			t.Fatalf("%d terminal events, last %s", n, end)
		}
	})
	t.Run("the fallback agent fails too", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, fallbacks)
		d := last(h.must(h.intent(newIntent("tr", "alice", "summarize"))), thread.RunDispatch)
		d2 := last(failAll(h, d), thread.RunDispatch)
		if evs := failAll(h, d2); !slices.Equal(types(evs), []schemas.EventType{thread.RunFailed}) {
			t.Fatalf("fallback agent's failures: %v", types(evs))
		}
	})
	t.Run("no fallback agent", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, fallbacks)
		d := last(h.must(h.intent(newIntent("tr", "alice", "classify"))), thread.RunDispatch)
		if evs := failAll(h, d); !slices.Equal(types(evs), []schemas.EventType{thread.RunFailed}) {
			t.Fatalf("kind without a fallback: %v", types(evs))
		}
	})
	t.Run("timeout degrades", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, fallbacks, orchestrator.WithStateflow(orchestrator.MustStateflow(orchestrator.DefaultStates(orchestrator.RetryPolicy{MaximumAttempts: 1}, time.Second, time.Second))))
		h.must(h.intent(newIntent("tr", "alice", "summarize")))
		h.clk.Add(time.Second)
		if evs := h.fire("tr"); !slices.Equal(types(evs), []schemas.EventType{thread.RunFallback, thread.RunDispatch}) {
			t.Fatalf("timeout: %v", types(evs))
		}
	})
	t.Run("cyclic fallbacks refused", func(t *testing.T) {
		t.Parallel()
		if _, err := orchestrator.New(newHarness(t).layout, orchestrator.WithAgentFallbacks(map[string]string{"a": "b", "b": "a"})); err == nil {
			t.Fatal("a cycle was accepted")
		}
	})
}
