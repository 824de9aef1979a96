package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/spinerun/spine/processors/dataplane"
	"github.com/spinerun/spine/processors/gatekeeper"
	"github.com/spinerun/spine/processors/orchestrator"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// checkTimedOut asserts each run of traces took its retries per the policy
// and then the fallback: exactly MaximumAttempts dispatches (attempts 0, 1,
// …), one run.retry_scheduled between consecutive ones, each retry no
// earlier than the state's timeout after the state was entered and each
// re-dispatch no earlier than the backoff after its retry was scheduled,
// and run.timed_out last (checkThread checks it is the only terminal).
func checkTimedOut(t *testing.T, s *rig, rep threadReport, traces map[string]bool) {
	t.Helper()
	policy := s.cfg.Orchestrator.Retry()
	want := int(policy.MaximumAttempts)
	errs := 0
	fail := func(format string, args ...any) {
		if errs++; errs <= 10 {
			t.Errorf(format, args...)
		}
	}
	// Event timestamps are milliseconds; allow for the truncation.
	const slack = 2 * time.Millisecond
	for tr := range traces {
		var control []event
		for _, e := range rep.perTrace[tr] {
			if e.ev.Phase == "control_plane" {
				control = append(control, e)
			}
		}
		var dispatches, retries int32
		var entered, scheduled time.Time
		for _, e := range control {
			ev := e.ev
			switch ev.EventType {
			case thread.RunDispatch:
				// attempt is a V2 field: V1 (baseline) events carry 0.
				if ev.SchemaVersion == schemas.V2 && ev.Attempt != dispatches {
					fail("run %s: dispatch %d has attempt %d", tr, dispatches, ev.Attempt)
				}
				if dispatches > 0 {
					// Full jitter, seeded by the trace id: the run's own delay.
					if gap := ev.Timestamp.Sub(scheduled); gap+slack < policy.Jittered(dispatches, tr) {
						fail("run %s: attempt %d dispatched %s after its retry was scheduled, backoff is %s", tr, dispatches, gap, policy.Jittered(dispatches, tr))
					}
				}
				dispatches++
				entered = ev.Timestamp
			case thread.RunExecuting:
				entered = ev.Timestamp
			case thread.RunRetryScheduled, thread.RunTimedOut:
				if gap := ev.Timestamp.Sub(entered); gap+slack < s.cfg.Orchestrator.ExecTimeout {
					fail("run %s: %s %s after the state was entered, timeout is %s", tr, ev.EventType, gap, s.cfg.Orchestrator.ExecTimeout)
				}
				if ev.EventType == thread.RunRetryScheduled {
					retries++
					scheduled = ev.Timestamp
				}
			}
		}
		if int(dispatches) != want || int(retries) != want-1 {
			fail("run %s: %d dispatches and %d retries, want %d and %d", tr, dispatches, retries, want, want-1)
		}
		var ended schemas.EventType
		for _, e := range control {
			if terminalTypes[e.ev.EventType] {
				ended = e.ev.EventType
			}
		}
		if ended != thread.RunTimedOut {
			fail("run %s does not end timed out: %v", tr, control)
		}
	}
	if rep.outcomes[thread.RunTimedOut] != len(traces) {
		t.Errorf("outcomes %v, want %d timed out", rep.outcomes, len(traces))
	}
}

// timeoutEnv is a short stateflow: a dispatch or execution times out after
// exec, three attempts 150 ms then 300 ms apart, and a data plane whose
// executor never answers.
func timeoutEnv(exec string) map[string]string {
	return map[string]string{
		"SPINE_EXEC_TIMEOUT":           exec,
		"SPINE_RETRY_MAX_ATTEMPTS":     "3",
		"SPINE_RETRY_INITIAL_INTERVAL": "150ms",
		"SPINE_RETRY_MAX_INTERVAL":     "1s",
		"SPINE_SYNTHETIC_HANG_RATE":    "1",
	}
}

// TestTimeouts: with a data plane that never answers (the synthetic
// executor hangs every execution), every run times out in executing,
// is re-dispatched per the retry policy (MaximumAttempts dispatches, the
// backoff between them), then takes the fallback, run.timed_out.
func TestTimeouts(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	t.Parallel()
	const n = 200
	s := newStack(t, nil, timeoutEnv("400ms"))
	committed := s.collect(t, true)
	s.startAll(canaryRouter)
	outs := intents("to", n)
	traces := map[string]bool{}
	for _, o := range outs {
		traces[string(o.Key)] = true
	}
	s.produce(t.Context(), outs)
	waitFor(t, 60*time.Second, func() bool { return committed.terminalCount() >= n },
		func() string { return fmt.Sprintf("%d runs timed out (have %d)", n, committed.terminalCount()) })
	// dataplane.started is written by another processor to another topic:
	// the last ones can be read after the last run.timed_out.
	started := func() int { return committed.countType(thread.DataplaneStarted) }
	waitFor(t, 60*time.Second, func() bool { return started() >= 3*n },
		func() string { return fmt.Sprintf("%d dataplane.started (have %d)", 3*n, started()) })
	committed.settle(time.Second)
	flow := orchestrator.MustStateflow(s.cfg.Orchestrator.States())
	rep := checkThread(t, committed, flow, traces)
	checkTimedOut(t, s, rep, traces)
	// The data plane answered each dispatch with dispatched and started,
	// then nothing.
	all, _ := committed.snapshot()
	kinds := map[schemas.EventType]int{}
	for _, e := range all {
		if e.ev.Phase == "data_plane" {
			kinds[e.ev.EventType]++
		}
	}
	if kinds[thread.DataplaneStarted] != 3*n || kinds[thread.ArtifactDelivered] != 0 {
		t.Errorf("data-plane events %v, want %d started and no artifact", kinds, 3*n)
	}
}

// TestTimeoutsAcrossRestart runs the orchestrator as a child process
// (`spine run orchestrator`) and SIGKILLs it while every run's timer is
// pending, twice, restarting it after the deadlines have passed: the timers
// fire after the restart, exactly once each, and every run still retries
// per policy and ends timed out once.
func TestTimeoutsAcrossRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	t.Parallel()
	const n = 200
	spineBinary(t)
	env := timeoutEnv("2s")
	env["SPINE_GROUP_SESSION_TIMEOUT"] = "6s" // the killed member's partitions move sooner
	s := newStack(t, embeddedNoCompaction(t), env)
	committed := s.collect(t, true)
	s.start(dataplane.Name, "e2e", nil)
	s.start(gatekeeper.Name, "e2e", nil)
	orch := s.spawn(t, orchestrator.Name, "timers")
	outs := intents("tor", n)
	traces := map[string]bool{}
	for _, o := range outs {
		traces[string(o.Key)] = true
	}
	s.produce(t.Context(), outs)

	executing := func() int { return committed.countType(thread.RunExecuting) }
	retries := func() int { return committed.countType(thread.RunRetryScheduled) }
	// 1: every run is executing (its timeout pending): kill, wait past the
	// deadline, restart.
	waitFor(t, 60*time.Second, func() bool { return executing() >= n },
		func() string { return fmt.Sprintf("%d runs executing (have %d)", n, executing()) })
	orch.Kill(t)
	t.Logf("killed the orchestrator with %d runs executing, %d retries scheduled", executing(), retries())
	time.Sleep(s.cfg.Orchestrator.ExecTimeout + 500*time.Millisecond)
	orch = s.spawn(t, orchestrator.Name, "timers")
	// 2: once the first timers fired after the restart, kill again while the
	// rest (retries, second attempts' timeouts) are pending.
	waitFor(t, 60*time.Second, func() bool { return retries() >= n },
		func() string { return fmt.Sprintf("%d retries after the restart (have %d)", n, retries()) })
	orch.Kill(t)
	t.Logf("killed the orchestrator again with %d retries scheduled", retries())
	time.Sleep(time.Second)
	orch = s.spawn(t, orchestrator.Name, "timers")

	waitFor(t, 90*time.Second, func() bool { return committed.terminalCount() >= n },
		func() string { return fmt.Sprintf("%d runs timed out (have %d)", n, committed.terminalCount()) })
	committed.settle(1500 * time.Millisecond)
	if !orch.Alive() {
		t.Error("the orchestrator exited on its own")
	}
	flow := orchestrator.MustStateflow(s.cfg.Orchestrator.States())
	rep := checkThread(t, committed, flow, traces)
	checkTimedOut(t, s, rep, traces)
	// Answers that arrive after their run moved on (a retry, the timeout)
	// are recorded as stale or refused, never acted on.
	t.Logf("%d stale answers and %d refused late answers recorded", rep.stale, rep.illegal)
}

// TestAnsweredWhileOrchestratorDown: runs are dispatched, the orchestrator
// (a child process) is SIGKILLed, the data plane answers every run and the
// gates pass every artifact while it is down, and it is restarted after the
// runs' execution deadline. Every answer was committed before its deadline,
// so every run completes: on assignment the pipeline loop holds a
// partition's overdue timers until its inputs are read up to their last
// stable offset at assignment time (WithCatchUpGrace).
func TestAnsweredWhileOrchestratorDown(t *testing.T) {
	const n = 200
	spineBinary(t)
	// The execution timeout must outlast dispatching every run and
	// answering it with the orchestrator down, under the race detector on
	// a loaded machine; the restart waits it out.
	s := newStack(t, embeddedNoCompaction(t), map[string]string{
		"SPINE_EXEC_TIMEOUT": "15s", "SPINE_RETRY_MAX_ATTEMPTS": "1", "SPINE_GROUP_SESSION_TIMEOUT": "6s"})
	committed := s.collect(t, true)
	orch := s.spawn(t, orchestrator.Name, "timers")
	outs := intents("down", n)
	traces := map[string]bool{}
	for _, o := range outs {
		traces[string(o.Key)] = true
	}
	s.produce(t.Context(), outs)
	count := committed.countType
	waitFor(t, 60*time.Second, func() bool { return count(thread.RunDispatch) >= n },
		func() string { return fmt.Sprintf("%d dispatches (have %d)", n, count(thread.RunDispatch)) })
	orch.Kill(t)
	s.start(dataplane.Name, "e2e", nil)
	s.start(gatekeeper.Name, "e2e", nil)
	waitFor(t, 60*time.Second, func() bool { return count(thread.GateVerdict) >= n },
		func() string { return fmt.Sprintf("%d verdicts (have %d)", n, count(thread.GateVerdict)) })
	time.Sleep(s.cfg.Orchestrator.ExecTimeout + 500*time.Millisecond)
	// Only the orchestrator writes these, and it has been down long enough
	// for the collector to read all it wrote: had a deadline passed before
	// the kill, the test would not show what it means to.
	if to, re := count(thread.RunTimedOut), count(thread.RunRetryScheduled); to != 0 || re != 0 {
		t.Fatalf("%d run.timed_out and %d run.retry_scheduled before the restart: the %s execution timeout expired while the orchestrator was up",
			to, re, s.cfg.Orchestrator.ExecTimeout)
	}
	s.spawn(t, orchestrator.Name, "timers")
	waitFor(t, 60*time.Second, func() bool { return committed.terminalCount() >= n },
		func() string { return fmt.Sprintf("%d terminal outcomes (have %d)", n, committed.terminalCount()) })
	committed.settle(time.Second)
	rep := checkThread(t, committed, orchestrator.MustStateflow(s.cfg.Orchestrator.States()), traces)
	if rep.outcomes[thread.RunCompleted] != n {
		t.Errorf("outcomes %v (%d late answers refused): want all %d completed, every answer was committed before its deadline",
			rep.outcomes, rep.illegal, n)
	}
}
