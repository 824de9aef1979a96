package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/dataplane"
	"github.com/spinerun/spine/processors/gatekeeper"
	"github.com/spinerun/spine/processors/orchestrator"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// sameActor returns n intents of kind, all of actor.
func sameActor(run, actor, kind string, n int) []pipeline.Output {
	outs := intents(run, n)
	for _, o := range outs {
		it := o.Value.(*schemas.Intent)
		it.Actor, it.Kind = actor, kind
	}
	return outs
}

// TestQueuedRunsTakeTheirFallback: with arbitration on (one run per actor)
// and no data plane running, the admitted run waits in dispatched while the
// others wait in queued; each queued run times out by its schedule-to-start
// bound (SPINE_QUEUE_TIMEOUT) and takes its fallback, run.timed_out, and
// its slot request is withdrawn (the ledger is told). Nothing waits
// forever.
func TestQueuedRunsTakeTheirFallback(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	t.Parallel()
	const n = 6
	s := newStack(t, nil, map[string]string{
		"SPINE_MAX_RUNS_PER_ACTOR": "1",
		"SPINE_QUEUE_TIMEOUT":      "1s",
		"SPINE_EXEC_TIMEOUT":       "2m",
	})
	committed := s.collect(t, true)
	s.start(stack.Orchestrator, "e2e", nil) // no data plane
	s.produce(t.Context(), sameActor("q", "alice", "summarize", n))
	waitFor(t, 60*time.Second, func() bool { return committed.terminalCount() >= n-1 },
		func() string {
			return fmt.Sprintf("%d queued runs timed out (have %d)", n-1, committed.terminalCount())
		})
	committed.settle(500 * time.Millisecond)
	_, byTrace := committed.snapshot()
	timedOut, waiting := 0, 0
	for tr, evs := range byTrace {
		var queuedAt time.Time
		var last *schemas.RuntimeEvent
		for _, e := range evs {
			if e.ev.Phase != "control_plane" || strings.HasPrefix(string(e.ev.EventType), "arbitration.") {
				continue
			}
			if e.ev.EventType == thread.RunQueued {
				queuedAt = e.ev.Timestamp
			}
			last = e.ev
		}
		switch {
		case last == nil:
			t.Errorf("run %s: no control events", tr)
		case last.EventType == thread.RunTimedOut:
			timedOut++
			if queuedAt.IsZero() || last.Timestamp.Sub(queuedAt) < time.Second-2*time.Millisecond || last.Error == nil || !strings.Contains(*last.Error, "queued") {
				t.Errorf("run %s: timed out %s after run.queued (%v), want its 1s bound in queued", tr, last.Timestamp.Sub(queuedAt), last.Error)
			}
		case last.EventType == thread.RunDispatch:
			waiting++ // the one admitted: bounded by SPINE_EXEC_TIMEOUT
		default:
			t.Errorf("run %s ends in %s", tr, last.EventType)
		}
	}
	if timedOut != n-1 || waiting != 1 {
		t.Fatalf("%d queued runs timed out and %d dispatched, want %d and 1", timedOut, waiting, n-1)
	}
}

// downModel is an OpenAI-compatible server that is down: every call
// answers 503, as a model server does while it restarts.
func downModel(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"error":{"message":"model is loading","type":"server_error"}}`))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestFallbackAgentCompletes: the executor of kind summarize (an
// OpenAI-compatible model) fails every call; once a run's retries are spent
// it degrades to the agent's fallback agent (run.fallback from summarize to
// summarize_small, then run.dispatch naming that agent as its kind) and
// completes there.
// `spine trace` shows the path.
func TestFallbackAgentCompletes(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	t.Parallel()
	const n = 10
	srv := downModel(t)
	file := filepath.Join(t.TempDir(), "agents.yaml")
	if err := os.WriteFile(file, []byte(`agents:
  - kind: summarize
    executor: openai
    base_url: `+srv.URL+`/v1
    model: big
    timeout: 5s
    fallback: summarize_small
  - kind: summarize_small
    executor: synthetic
    failure_rate: 0
    hang_rate: 0
    score_mean: 0.95
    score_stddev: 0.01
`), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newStack(t, nil, map[string]string{"SPINE_AGENTS": file})
	committed := s.collect(t, true)
	s.startAll(nil)
	s.produce(t.Context(), sameActor("fb", "alice", "summarize", n))
	waitFor(t, 90*time.Second, func() bool { return committed.terminalCount() >= n },
		func() string { return fmt.Sprintf("%d runs ended (have %d)", n, committed.terminalCount()) })
	committed.settle(500 * time.Millisecond)
	_, byTrace := committed.snapshot()
	var one string
	for tr, evs := range byTrace {
		one = tr
		var path []string
		fallbacks, dispatches := 0, 0
		var end schemas.EventType
		for _, e := range evs {
			ev := e.ev
			switch ev.EventType {
			case thread.RunFallback:
				fallbacks++
				// From and to: in attributes (v2) and the error's words (both).
				if ev.Error == nil || !strings.Contains(*ev.Error, "on agent summarize failed") || !strings.Contains(*ev.Error, "degrading to agent summarize_small") ||
					ev.SchemaVersion == schemas.V2 && (ev.Attributes[thread.AttrFallbackFrom] != "summarize" || ev.Attributes[thread.AttrFallbackTo] != "summarize_small") {
					t.Errorf("run %s: run.fallback %v %v", tr, ev.Attributes, ev.Error)
				}
			case thread.RunDispatch:
				dispatches++
				if want := map[bool]string{false: "summarize", true: "summarize_small"}[fallbacks > 0]; ev.Intent != want {
					t.Errorf("run %s: dispatch %d names kind %q, want %s", tr, dispatches, ev.Intent, want)
				}
			}
			if terminalTypes[ev.EventType] {
				end = ev.EventType
			}
			path = append(path, string(ev.EventType))
		}
		if fallbacks != 1 || dispatches != 4 || end != thread.RunCompleted {
			t.Errorf("run %s: %d fallbacks, %d dispatches, ended %s, want 1, 3 on summarize + 1 on summarize_small, completed:\n%s", tr, fallbacks, dispatches, end, strings.Join(path, " "))
		}
	}
	// The path, as `spine trace` prints it.
	cmd := exec.Command(spineBinary(t), "trace", one)
	cmd.Env = s.childEnv("trace")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("spine trace: %v\n%s", err, out)
	}
	for _, w := range []string{"dataplane.failed", "run.retry_scheduled", "run.fallback", "degrading to agent summarize_small", "kind=summarize_small", "artifact.delivered", "run.completed"} {
		if !strings.Contains(string(out), w) {
			t.Errorf("spine trace misses %q:\n%s", w, out)
		}
	}
}

// TestStateflowChangeAcrossRestart: the orchestrator (a child process)
// runs stateflow v1, in which executing does not retry a timeout; with
// runs in flight it is SIGKILLed and restarted with v2 (executing retries)
// and v1 kept as previous. Every run ends under the version it started
// with, stamped on each of its events: the old runs time out after one
// dispatch, the new ones after three.
func TestStateflowChangeAcrossRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	t.Parallel()
	const n, m = 40, 20
	spineBinary(t)
	src := strings.ReplaceAll(string(orchestrator.DefaultFile), "timeout: 30s", "timeout: 2s")
	v2src := src
	v1src := strings.Replace(src, `    event: run.executing
    entries:
      - {from: [dispatched], on: dataplane.started}
    timeout: 2s
    retry:
      initial_interval: 200ms
      backoff_coefficient: 2
      maximum_interval: 5s
      maximum_attempts: 3`, `    event: run.executing
    entries:
      - {from: [dispatched], on: dataplane.started}
    timeout: 2s`, 1)
	if v1src == v2src {
		t.Fatal("the built-in stateflow changed: update the test's edit")
	}
	dir := t.TempDir()
	v1path, v2path := filepath.Join(dir, "v1.yaml"), filepath.Join(dir, "v2.yaml")
	var v1, v2 *orchestrator.Stateflow
	for _, f := range []struct {
		path, src string
		flow      **orchestrator.Stateflow
	}{{v1path, v1src, &v1}, {v2path, v2src, &v2}} {
		if err := os.WriteFile(f.path, []byte(f.src), 0o600); err != nil {
			t.Fatal(err)
		}
		var err error
		if *f.flow, err = orchestrator.ParseStateflow(f.path, []byte(f.src)); err != nil {
			t.Fatal(err)
		}
	}
	s := newStack(t, embeddedNoCompaction(t), map[string]string{
		"SPINE_SYNTHETIC_HANG_RATE":   "1", // the data plane starts every call and never answers
		"SPINE_GROUP_SESSION_TIMEOUT": "6s",
	})
	committed := s.collect(t, true)
	s.start(dataplane.Name, "e2e", nil)
	s.start(gatekeeper.Name, "e2e", nil)
	orch := s.spawn(t, orchestrator.Name, "flows", "SPINE_STATEFLOW="+v1path)
	s.produce(t.Context(), intents("old", n))
	executing := func() int { return committed.countType(thread.RunExecuting) }
	waitFor(t, 60*time.Second, func() bool { return executing() >= n },
		func() string { return fmt.Sprintf("%d runs executing (have %d)", n, executing()) })
	orch.Kill(t)
	orch = s.spawn(t, orchestrator.Name, "flows", "SPINE_STATEFLOW="+v2path, "SPINE_STATEFLOW_PREVIOUS="+v1path)
	s.produce(t.Context(), intents("new", m))
	waitFor(t, 120*time.Second, func() bool { return committed.terminalCount() >= n+m },
		func() string { return fmt.Sprintf("%d runs ended (have %d)", n+m, committed.terminalCount()) })
	committed.settle(time.Second)
	if !orch.Alive() {
		t.Error("the orchestrator exited on its own")
	}
	_, byTrace := committed.snapshot()
	for tr, evs := range byTrace {
		want, dispatches := v2, 3
		if strings.HasPrefix(tr, "old-") {
			want, dispatches = v1, 1
		}
		got := 0
		var end schemas.EventType
		for _, e := range evs {
			if e.ev.Phase != "control_plane" || strings.HasPrefix(string(e.ev.EventType), "arbitration.") {
				continue
			}
			if e.ev.StateflowVersion != want.Version() {
				t.Errorf("run %s: %s stamped %q, want %s", tr, e.ev.EventType, e.ev.StateflowVersion, want.Version())
			}
			if e.ev.EventType == thread.RunDispatch {
				got++
			}
			if terminalTypes[e.ev.EventType] {
				end = e.ev.EventType
			}
		}
		if got != dispatches || end != thread.RunTimedOut {
			t.Errorf("run %s: %d dispatches, ended %s; want %d under %s, timed out", tr, got, end, dispatches, want.Path())
		}
	}
}
