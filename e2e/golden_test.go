package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/spinerun/spine/pipeline/kafkatest"
	"github.com/spinerun/spine/processors/orchestrator"
	"github.com/spinerun/spine/schemas/thread"
)

// canaryRouter sends 30% of runs down the canary (contract V2) route, so
// both routes and both contract versions of the events are exercised.
var canaryRouter = orchestrator.HashRouter{Key: orchestrator.ByTrace, Salt: "e2e", Weight: func() int { return 3000 }}

// TestGoldenPath produces E2E_INTENTS intents (default 2000; the issue's
// figure is 10,000), half written in contract V1 and half in V2, through the
// whole in-process stack, and checks the committed thread: exactly one
// terminal outcome per intent, each run's events in stateflow order, no
// event_id twice, and every golden-path counter of the Prometheus registry
// equal to the count taken from the thread.
func TestGoldenPath(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	n := envInt("E2E_INTENTS", 2000)
	// No run may time out on the golden path: a burst of 10,000 intents
	// under the race detector on two loaded cores queues longer than the
	// default 30s execution timeout (runs would then retry and time out,
	// correctly, but off the golden path).
	s := newStack(t, nil, map[string]string{"SPINE_EXEC_TIMEOUT": "10m", "SPINE_GATE_TIMEOUT": "10m"})
	committed := s.collect(t, true)
	s.startAll(canaryRouter)

	outs := intents("gp", n)
	traces := map[string]bool{}
	for _, o := range outs {
		traces[string(o.Key)] = true
	}
	start := time.Now()
	s.produce(t.Context(), outs)
	produced := time.Since(start)
	waitFor(t, time.Duration(60+n/20)*time.Second, func() bool { return committed.terminalCount() >= n },
		func() string { return fmt.Sprintf("%d terminal outcomes (have %d)", n, committed.terminalCount()) })
	elapsed := time.Since(start)
	committed.settle(time.Second)
	t.Logf("%s: %d intents produced in %s, all %d terminal after %s (%.0f intents/s end to end)",
		kafkatest.Backend(), n, produced.Round(time.Millisecond), n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())

	// The metrics are read before the processors stop, then compared with
	// the thread: the GoldenPath counts only committed outputs.
	equalCounts(t, 30*time.Second, func() []countPair {
		all, _ := committed.snapshot()
		hops, runs, gates, latency := threadCounts(all)
		return []countPair{
			{"spine_golden_path_events_total", metricCounts(t, s.reg, "spine_golden_path_events_total", "hop", "contract_version", "route"), hops},
			{"spine_golden_path_latency_seconds_count", metricCounts(t, s.reg, "spine_golden_path_latency_seconds", "hop", "contract_version", "route"), latency},
			{"spine_runs_total", metricCounts(t, s.reg, "spine_runs_total", "contract_version", "route", "outcome"), runs},
			{"spine_run_duration_seconds_count", metricCounts(t, s.reg, "spine_run_duration_seconds", "contract_version", "route", "outcome"), runs},
			{"spine_gate_checks_total", metricCounts(t, s.reg, "spine_gate_checks_total", "gate", "contract_version", "route", "outcome"), gates},
		}
	})
	all, _ := committed.snapshot()

	flow := orchestrator.MustStateflow(s.cfg.Orchestrator.States())
	rep := checkThread(t, committed, flow, traces)
	t.Logf("thread: %d events (%.1f per run), outcomes %v", rep.events, float64(rep.events)/float64(n), rep.outcomes)
	if got := rep.outcomes[thread.RunCompleted] + rep.outcomes[thread.RunRejected]; got != n {
		t.Errorf("%d runs completed or rejected by their gates, want all %d (outcomes %v)", got, n, rep.outcomes)
	}
	routes := map[string]int{}
	for _, e := range all {
		if e.ev.EventType == thread.IntentReceived {
			routes[routeLabel(e.ev.Route)]++
		}
	}
	if routes[thread.RouteBaseline] == 0 || routes[thread.RouteCanary] == 0 {
		t.Errorf("runs per route %v: want both routes", routes)
	}
	if rep.stale != 0 || rep.illegal != 0 {
		t.Errorf("%d stale answers and %d refused transitions on the golden path, want none", rep.stale, rep.illegal)
	}
	if d := committed.dlqLen(); d != 0 {
		t.Errorf("%d dead letters from good intents", d)
	}
	if r := s.logs.restarts.Load(); r != 0 {
		t.Errorf("%d processor sessions restarted", r)
	}
	// A transaction may be aborted by a rebalance while the groups form
	// (its records are processed again); none may fail on an error.
	if v := metricCounts(t, s.reg, "spine_processor_records_total", "outcome")["retry"]; v != 0 {
		t.Errorf("%v records retried as transient", v)
	}
	t.Logf("transactions: %v", metricCounts(t, s.reg, "spine_processor_transactions_total", "outcome"))
}
