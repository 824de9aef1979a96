package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/processors/drift"
	"github.com/spinerun/spine/processors/orchestrator"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// TestDriftGateEnforced runs the stack with SPINE_DRIFT_MODE=enforce and
// windows of 20 on one intent kind: 40 runs of the synthetic executor
// (the reference and one window, which passes), then the dataplane is
// restarted with a mean score shifted from 0.8 to 0.5. The next window —
// the 20 runs after the shift — fails gate.drift with the statistic, both
// sample sizes and the threshold; from then on every run of that kind and
// route fails its drift gate and is rejected.
func TestDriftGateEnforced(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	const window = 20
	s := newStack(t, nil, map[string]string{"SPINE_DRIFT_MODE": "enforce", "SPINE_DRIFT_WINDOW": fmt.Sprint(window)})
	c := s.collect(t, true)
	for _, name := range stack.ThreadProcessors {
		if name != stack.Dataplane {
			s.start(name, "e2e", orchestrator.Baseline)
		}
	}
	stopDataplane := s.startWith(stack.Dataplane, s.cfg)
	batch := 0
	runs := func(n int) []string {
		batch++
		outs := intents(fmt.Sprintf("drift%d", batch), n)
		var traces []string
		for _, o := range outs {
			o.Value.(*schemas.Intent).Kind = "summarize"
			traces = append(traces, string(o.Key))
		}
		s.produce(t.Context(), outs)
		waitFor(t, 90*time.Second, func() bool { return endedRuns(c, traces) == n },
			func() string {
				return fmt.Sprintf("%d terminal runs of batch %d (have %d)", n, batch, endedRuns(c, traces))
			})
		return traces
	}
	windows := func(n int) []*schemas.RuntimeEvent {
		var out []*schemas.RuntimeEvent
		waitFor(t, 60*time.Second, func() bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			out = out[:0]
			for _, e := range c.windows {
				out = append(out, e.ev)
			}
			return len(out) >= n
		}, func() string { return fmt.Sprintf("%d gate.drift windows (have %d)", n, len(out)) })
		return out
	}

	// The reference and one unshifted window: all complete, window 1 passes.
	first := runs(2 * window)
	if w := windows(1); len(w) != 1 || !w[0].Gate.Passed || w[0].TraceID != thread.DriftTrace("summarize", thread.RouteBaseline) {
		t.Fatalf("window 1: %+v", w[0].Gate)
	}
	if got := outcomes(c, first); got[thread.RunCompleted] != 2*window {
		t.Fatalf("unshifted runs: outcomes %v, want %d completed", got, 2*window)
	}

	// The executor drifts: the next window fails within its 20 runs.
	stopDataplane()
	shifted := *s.cfg
	shifted.Synthetic.ScoreMean = 0.5
	s.startWith(stack.Dataplane, &shifted)
	runs(window)
	w := windows(2)
	g := w[1].Gate
	t.Logf("window 2 after the shift: %s (rule %s, measured %.3f, threshold %.3f, evidence %v)", g.Reason, g.Rule, g.Measured, g.Threshold, g.Evidence)
	if w[1].EventType != thread.GateFailed || g.Passed || !strings.HasSuffix(g.Rule, ":score") || g.Measured <= g.Threshold ||
		g.Evidence["n_ref"] != fmt.Sprint(window) || g.Evidence["n_cur"] != fmt.Sprint(window) || g.Evidence["window"] != "2" {
		t.Fatalf("window 2: %s %+v", w[1].EventType, g)
	}

	// Enforced: once the gates' view has the drifted status, runs of the
	// kind and route fail their drift gate and are rejected.
	probe := 0
	waitFor(t, 60*time.Second, func() bool {
		probe++
		tr := runs(1)
		return outcomes(c, tr)[thread.RunRejected] == 1
	}, func() string { return "a run rejected by the drift gate" })
	last := runs(window)
	if got := outcomes(c, last); got[thread.RunRejected] != window {
		t.Errorf("runs while drifted: outcomes %v, want all %d rejected", got, window)
	}
	_, byTrace := c.snapshot()
	for _, tr := range last {
		var drifted *schemas.GateOutcome
		for _, e := range byTrace[tr] {
			if e.ev.Gate != nil && e.ev.Gate.Name == thread.DriftGate {
				drifted = e.ev.Gate
			}
		}
		if drifted == nil || drifted.Passed || !strings.HasPrefix(drifted.Reason, "drifted") || drifted.Rule == "" || drifted.Evidence["n_ref"] == "" {
			t.Errorf("run %s: drift gate %+v, want failed with the status's rule and evidence", tr, drifted)
			break
		}
	}
	t.Logf("drift enforced after %d probe run(s); %d window events", probe, len(windows(3)))

	// The status topic says so too.
	st := drift.NewStatuses(append(s.kopts, kgo.ClientID("e2e-drift-status")), s.layout, nil)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- st.Run(ctx) }()
	defer func() { cancel(); <-done }()
	wctx, wcancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer wcancel()
	if err := st.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := st.DriftStatus("summarize", thread.RouteBaseline); err != nil || !ok || !got.Drifted || got.Window < 2 {
		t.Errorf("status %+v %v %v, want drifted", got, ok, err)
	}
}

// startWith runs part in-process, built from cfg, until the returned stop
// (or the test's end).
func (s *rig) startWith(part string, cfg *stack.Config) (stop func()) {
	s.tb.Helper()
	st, err := stack.Build(stack.Env{Config: cfg, Brokers: s.brokers, RegistryURL: s.registryURL, Log: s.log, Metrics: nil,
		Instance: "e2e", Router: orchestrator.Baseline}, part)
	if err != nil {
		s.tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- st.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			s.tb.Errorf("%s: %v", part, err)
		}
	}
	s.tb.Cleanup(stop)
	return stop
}

// endedRuns counts the runs of traces with a terminal outcome.
func endedRuns(c *collector, traces []string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, tr := range traces {
		if c.terminals[tr] > 0 {
			n++
		}
	}
	return n
}

// outcomes counts the terminal event types of traces.
func outcomes(c *collector, traces []string) map[schemas.EventType]int {
	_, byTrace := c.snapshot()
	out := map[schemas.EventType]int{}
	for _, tr := range traces {
		for _, e := range byTrace[tr] {
			if terminalTypes[e.ev.EventType] {
				out[e.ev.EventType]++
			}
		}
	}
	return out
}
