package orchestrator_test

import (
	"slices"
	"testing"
	"time"

	"github.com/spinerun/spine/processors/orchestrator"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

func TestRetryPolicyBackoff(t *testing.T) {
	t.Parallel()
	p := orchestrator.RetryPolicy{InitialInterval: 100 * time.Millisecond, BackoffCoefficient: 2, MaximumInterval: time.Second, MaximumAttempts: 6}
	for _, tc := range []struct {
		n    int32
		want time.Duration
	}{{0, 0}, {1, 100 * time.Millisecond}, {2, 200 * time.Millisecond}, {3, 400 * time.Millisecond}, {4, 800 * time.Millisecond}, {5, time.Second}, {40, time.Second}} {
		if got := p.Backoff(tc.n); got != tc.want {
			t.Errorf("Backoff(%d) = %s, want %s", tc.n, got, tc.want)
		}
	}
	if d := (orchestrator.RetryPolicy{InitialInterval: time.Second}).Backoff(3); d != time.Second {
		t.Errorf("coefficient 0 means 1: got %s", d)
	}
	if d := (orchestrator.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 10}).Backoff(9); d != 100*time.Second {
		t.Errorf("maximum interval 0 means 100× initial: got %s", d)
	}
	for _, tc := range []struct {
		p    orchestrator.RetryPolicy
		next int32
		kind string
		want bool
	}{
		{p, 5, "x", true},
		{p, 6, "x", false},
		{orchestrator.RetryPolicy{MaximumAttempts: 1}, 1, "x", false},
		{orchestrator.RetryPolicy{}, 1000, "x", true},
		{orchestrator.RetryPolicy{NonRetryableErrorKinds: []string{"bad"}}, 1, "bad", false},
	} {
		if got := tc.p.Allows(tc.next, tc.kind); got != tc.want {
			t.Errorf("%+v.Allows(%d, %q) = %v", tc.p, tc.next, tc.kind, got)
		}
	}
}

// TestRetryScheduleThenFallback: a data plane that always fails is retried
// per policy, each timer the backoff with full jitter seeded by the trace id
// (so the same run draws the same delays), then the run fails.
func TestRetryScheduleThenFallback(t *testing.T) {
	t.Parallel()
	pol := orchestrator.RetryPolicy{InitialInterval: 100 * time.Millisecond, BackoffCoefficient: 3, MaximumInterval: 500 * time.Millisecond, MaximumAttempts: 4}
	h := newHarness(t, orchestrator.WithStateflow(orchestrator.MustStateflow(orchestrator.DefaultStates(pol, 10*time.Second, 10*time.Second))))
	d := last(h.must(h.intent(newIntent("tr", "a", "answer"))), thread.RunDispatch)
	ceilings := []time.Duration{100 * time.Millisecond, 300 * time.Millisecond, 500 * time.Millisecond}
	for i, ceil := range ceilings {
		delay := pol.Jittered(int32(i+1), "tr")
		if delay <= time.Millisecond || delay > ceil || pol.Jittered(int32(i+1), "tr") != delay {
			t.Fatalf("jittered delay %d = %s, want in (1ms, %s] and stable", i+1, delay, ceil)
		}
		h.must(h.data(reply(d, thread.DataplaneStarted, 0)))
		evs := h.must(h.data(reply(d, thread.DataplaneFailed, 0)))
		if len(evs) != 1 || evs[0].EventType != thread.RunRetryScheduled || evs[0].Attempt != int32(i+1) {
			t.Fatalf("failure %d: %v", i, types(evs))
		}
		due, ok := h.o.Deadline(h.states["tr"])
		if !ok || due.Sub(h.clk.Now()) != delay {
			t.Fatalf("retry %d due in %s, want %s", i+1, due.Sub(h.clk.Now()), delay)
		}
		h.clk.Add(delay - time.Millisecond)
		if evs := h.fire("tr"); evs != nil {
			t.Fatalf("retry fired early: %v", types(evs))
		}
		h.clk.Add(time.Millisecond)
		evs = h.fire("tr")
		if len(evs) != 1 || evs[0].EventType != thread.RunDispatch || evs[0].Attempt != int32(i+1) {
			t.Fatalf("retry %d: %v", i+1, types(evs))
		}
		d = evs[0]
	}
	evs := h.must(h.data(reply(d, thread.DataplaneFailed, 0)))
	if len(evs) != 1 || evs[0].EventType != thread.RunFailed || evs[0].State != "failed" || evs[0].Error == nil {
		t.Fatalf("after the last attempt: %v", types(evs))
	}
}

func TestNonRetryableKind(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	d := last(h.must(h.intent(newIntent("tr", "a", "answer"))), thread.RunDispatch)
	f := reply(d, thread.DataplaneFailed, 0)
	msg := "invalid_input: nope"
	f.Error = &msg
	if evs := h.must(h.data(f)); len(evs) != 1 || evs[0].EventType != thread.RunFailed {
		t.Fatalf("non-retryable failure: %v", types(evs))
	}
}

// TestTimeouts: a state's timeout retries per policy, fires exactly once,
// never after the run moved on, and ends in the fallback.
func TestTimeouts(t *testing.T) {
	t.Parallel()
	pol := orchestrator.RetryPolicy{InitialInterval: 50 * time.Millisecond, BackoffCoefficient: 2, MaximumAttempts: 2}
	flow := orchestrator.WithStateflow(orchestrator.MustStateflow(orchestrator.DefaultStates(pol, time.Second, 2*time.Second)))

	t.Run("retry then fallback", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, flow)
		h.must(h.intent(newIntent("tr", "a", "answer")))
		h.clk.Add(time.Second)
		if evs := h.fire("tr"); !slices.Equal(types(evs), []schemas.EventType{thread.RunRetryScheduled}) {
			t.Fatalf("first timeout: %v", types(evs))
		}
		if evs := h.fire("tr"); evs != nil {
			t.Fatalf("timer fired twice: %v", types(evs))
		}
		h.clk.Add(50 * time.Millisecond)
		if evs := h.fire("tr"); !slices.Equal(types(evs), []schemas.EventType{thread.RunDispatch}) {
			t.Fatalf("retry: %v", types(evs))
		}
		h.clk.Add(time.Second)
		evs := h.fire("tr")
		if !slices.Equal(types(evs), []schemas.EventType{thread.RunTimedOut}) || evs[0].State != "timed_out" {
			t.Fatalf("second timeout: %v", types(evs))
		}
		h.clk.Add(time.Hour)
		if evs := h.fire("tr"); len(evs) != 0 {
			t.Fatalf("a timed-out run fired again: %v", types(evs))
		}
	})
	t.Run("not after moving on", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, flow)
		d := last(h.must(h.intent(newIntent("tr", "a", "answer"))), thread.RunDispatch)
		stale := h.states["tr"] // a state whose deadline the loop may still hold
		h.clk.Add(900 * time.Millisecond)
		h.must(h.data(reply(d, thread.DataplaneStarted, 0)))
		h.clk.Add(200 * time.Millisecond) // the dispatched deadline has passed
		if evs := h.fire("tr"); evs != nil {
			t.Fatalf("dispatched timeout fired after the run moved to executing: %v", types(evs))
		}
		// Even given the old state, Fire acts on the state it is handed: the
		// loop hands it the current one, which has no due deadline.
		if _, ok := h.o.Deadline(stale); !ok {
			t.Fatal("the dispatched state had no deadline")
		}
		h.must(h.data(reply(d, thread.ArtifactDelivered, 0)))
		h.clk.Add(1500 * time.Millisecond)
		if evs := h.fire("tr"); evs != nil {
			t.Fatalf("executing timeout fired in gating: %v", types(evs))
		}
		h.clk.Add(600 * time.Millisecond)
		// Gating waits again for a gate that could not decide yet.
		if evs := h.fire("tr"); !slices.Equal(types(evs), []schemas.EventType{thread.RunRetryScheduled}) {
			t.Fatalf("gating timeout: %v", types(evs))
		}
	})
	t.Run("run deadline", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, flow, orchestrator.WithRunDeadline(1500*time.Millisecond))
		d := last(h.must(h.intent(newIntent("tr", "a", "answer"))), thread.RunDispatch)
		h.must(h.data(reply(d, thread.DataplaneStarted, 0)))
		h.clk.Add(1500 * time.Millisecond)
		evs := h.fire("tr")
		if !slices.Equal(types(evs), []schemas.EventType{thread.RunTimedOut}) {
			t.Fatalf("run deadline: %v", types(evs))
		}
	})
	t.Run("intent deadline", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, flow)
		it := newIntent("tr", "a", "answer")
		it.DeadlineMs = 300
		h.must(h.intent(it))
		due, _ := h.o.Deadline(h.states["tr"])
		if got := due.Sub(h.clk.Now()); got != 300*time.Millisecond {
			t.Fatalf("first deadline in %s, want the intent's 300ms", got)
		}
	})
}

func TestStateflowValidation(t *testing.T) {
	t.Parallel()
	if _, err := orchestrator.NewStateflow(orchestrator.DefaultStates(orchestrator.DefaultRetry, time.Second, time.Second)); err != nil {
		t.Fatalf("default table: %v", err)
	}
	base := func() []orchestrator.Spec {
		return orchestrator.DefaultStates(orchestrator.DefaultRetry, time.Second, time.Second)
	}
	for _, tc := range []struct {
		name string
		edit func([]orchestrator.Spec) []orchestrator.Spec
	}{
		{"duplicate state", func(s []orchestrator.Spec) []orchestrator.Spec { return append(s, s[0]) }},
		{"no event", func(s []orchestrator.Spec) []orchestrator.Spec { s[0].Event = ""; return s }},
		{"unknown from", func(s []orchestrator.Spec) []orchestrator.Spec {
			s[1].Entry = append(s[1].Entry, orchestrator.Entry{From: []orchestrator.State{"nowhere"}, On: "x"})
			return s
		}},
		{"out of terminal", func(s []orchestrator.Spec) []orchestrator.Spec {
			s[1].Entry = append(s[1].Entry, orchestrator.Entry{From: []orchestrator.State{orchestrator.StateCompleted}, On: "x"})
			return s
		}},
		{"ambiguous", func(s []orchestrator.Spec) []orchestrator.Spec {
			s[2].Entry = append(s[2].Entry, orchestrator.Entry{From: []orchestrator.State{orchestrator.StateReceived}, On: orchestrator.OnRouted})
			return s
		}},
		{"fallback not terminal", func(s []orchestrator.Spec) []orchestrator.Spec { s[3].Fallback = orchestrator.StateRouted; return s }},
		{"bad retry", func(s []orchestrator.Spec) []orchestrator.Spec {
			s[3].Retry = &orchestrator.RetryPolicy{BackoffCoefficient: 0.5}
			return s
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := orchestrator.NewStateflow(tc.edit(base())); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
