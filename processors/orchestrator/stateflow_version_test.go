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

// versionFiles are two versions of the default machine: in v1 executing
// does not retry a timeout; v2 retries it.
func versionFiles(t *testing.T) (v1, v2 *orchestrator.Stateflow) {
	t.Helper()
	src := string(orchestrator.DefaultFile)
	noRetry := strings.Replace(src, `    event: run.executing
    entries:
      - {from: [dispatched], on: dataplane.started}
    timeout: 30s
    retry:
      initial_interval: 200ms
      backoff_coefficient: 2
      maximum_interval: 5s
      maximum_attempts: 3`, `    event: run.executing
    entries:
      - {from: [dispatched], on: dataplane.started}
    timeout: 30s`, 1)
	if noRetry == src {
		t.Fatal("the default file changed: update the test's edit")
	}
	var err error
	if v1, err = orchestrator.ParseStateflow("v1.yaml", []byte(noRetry)); err != nil {
		t.Fatal(err)
	}
	if v2, err = orchestrator.ParseStateflow("v2.yaml", orchestrator.DefaultFile); err != nil {
		t.Fatal(err)
	}
	if v1.Version() == v2.Version() {
		t.Fatal("two machines, one version")
	}
	return v1, v2
}

// TestRunsFinishUnderTheirVersion: a run started under v1 and still in
// flight when the orchestrator restarts with v2 (v1 kept as previous)
// finishes under v1's rules, its every event stamped v1; a run started
// after the restart runs v2. A run whose version is not known continues
// under the current machine.
func TestRunsFinishUnderTheirVersion(t *testing.T) {
	t.Parallel()
	v1, v2 := versionFiles(t)
	h := newHarness(t, orchestrator.WithStateflow(v1))
	old := last(h.must(h.intent(newIntent("old", "a", "answer"))), thread.RunDispatch)
	h.must(h.data(reply(old, thread.DataplaneStarted, 0)))
	for _, ev := range h.runEvents("old") {
		if ev.StateflowVersion != v1.Version() {
			t.Fatalf("%s stamped %q, want %s", ev.EventType, ev.StateflowVersion, v1.Version())
		}
	}

	// The deploy: v2 current, v1 kept for the runs in flight.
	h2 := newHarness(t, orchestrator.WithStateflow(v2), orchestrator.WithPreviousStateflows(v1))
	h2.clk = h.clk
	h2.states = h.states
	h2.clk.Add(31 * time.Second)
	evs := h2.fire("old")
	if !slices.Equal(types(evs), []schemas.EventType{thread.RunTimedOut}) || evs[0].StateflowVersion != v1.Version() {
		t.Fatalf("old run under v2's orchestrator: %v (want v1's timed_out, no retry)", types(evs))
	}
	fresh := last(h2.must(h2.intent(newIntent("new", "a", "answer"))), thread.RunDispatch)
	h2.must(h2.data(reply(fresh, thread.DataplaneStarted, 0)))
	h2.clk.Add(31 * time.Second)
	evs = h2.fire("new")
	if !slices.Equal(types(evs), []schemas.EventType{thread.RunRetryScheduled}) || evs[0].StateflowVersion != v2.Version() {
		t.Fatalf("new run: %v, want v2's retry", types(evs))
	}

	// Without v1 kept, the old run would be judged by v2.
	h3 := newHarness(t, orchestrator.WithStateflow(v2))
	h3.must(h3.intent(newIntent("x", "a", "answer")))
	h4 := newHarness(t, orchestrator.WithStateflow(v1))
	d := last(h4.must(h4.intent(newIntent("old2", "a", "answer"))), thread.RunDispatch)
	h4.must(h4.data(reply(d, thread.DataplaneStarted, 0)))
	h3.states["old2"] = h4.states["old2"]
	h3.clk = h4.clk
	h3.clk.Add(31 * time.Second)
	if evs := h3.fire("old2"); !slices.Equal(types(evs), []schemas.EventType{thread.RunRetryScheduled}) {
		t.Fatalf("unknown version: %v, want the current machine's retry", types(evs))
	}
}
