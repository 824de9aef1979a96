package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/loadtest"
	"github.com/spinerun/spine/pipeline/kafkatest"
)

// syncBuffer is a bytes.Buffer safe for the progress writer and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLoadtestCanaryEndToEnd runs the whole stack in-process (orchestrator,
// dataplane, gates, projections, flag store, router and analyzer) and
// checks the rollout's decisions: a slower or flakier v2 is rolled back, an
// equal v2 is promoted step by step to the max weight, and too few samples
// pause. Every decision must be a gate.canary event (the report reads them
// from the thread) and a flag change by the analyzer.
func TestLoadtestCanaryEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts whole stacks")
	}
	if kafkatest.External() {
		t.Skip("drives the in-process stack: the v2 executor settings apply to it only")
	}
	// Not parallel: whole stacks would starve the package's other tests.
	base := loadtestOpts{
		rate: 100, duration: 5 * time.Second, untilDecided: 90 * time.Second, drain: 20 * time.Second, canary: 20,
		interval: 1200 * time.Millisecond, stepWeight: 20, maxWeight: 60, minSamples: 25, failureLimit: 2,
		actors: 200, v2FailureRate: -1, partitions: 2,
	}
	tests := []struct {
		name  string
		mod   func(*loadtestOpts)
		check func(t *testing.T, r *loadtest.Report)
	}{
		{"slower v2 is rolled back", func(o *loadtestOpts) { o.v2LatencyMs = 400 }, rolledBack("latency")},
		{"flakier v2 is rolled back", func(o *loadtestOpts) { o.v2FailureRate = 0.5 }, rolledBack("error rate")},
		{"drifted v2 is rolled back", func(o *loadtestOpts) { o.v2ScoreShift = -0.3 }, rolledBack("score drift")},
		{"equal v2 is promoted step by step", func(*loadtestOpts) {}, func(t *testing.T, r *loadtest.Report) {
			// An equal v2 may fail analyses by chance on small samples (that
			// is what the failure limit is for; how often depends on the
			// random trace ids and latencies), never roll back.
			var steps []int
			promoted, holds := false, 0
			for _, d := range r.Decisions {
				switch d.Action {
				case "step":
					steps = append(steps, d.WeightAfter)
				case "promote":
					promoted = true
				case "hold":
					holds++
				case "rollback":
					t.Errorf("equal v2 rolled back: %s", d.Reason)
				}
			}
			t.Logf("equal v2 held %d times", holds)
			if fmt.Sprint(steps) != "[4000 6000]" || !promoted || r.FinalPhase != "promoted" || r.FinalWeightBP != 10000 {
				t.Fatalf("steps %v promoted %v, final %d %s; want steps [4000 6000], then a promotion at 6000 to all the traffic", steps, promoted, r.FinalWeightBP, r.FinalPhase)
			}
		}},
		{"too few samples pause", func(o *loadtestOpts) { o.minSamples, o.duration, o.untilDecided = 1000000, 6*time.Second, 0 }, func(t *testing.T, r *loadtest.Report) {
			if len(r.Decisions) < 2 {
				t.Fatalf("only %d analyses", len(r.Decisions))
			}
			for _, d := range r.Decisions {
				if d.Action != "inconclusive" || d.WeightAfter != 2000 || d.Phase != "paused" {
					t.Fatalf("decision %+v, want inconclusive, paused at 20%%", d)
				}
			}
			if r.FinalPhase != "paused" || r.FinalWeightBP != 2000 {
				t.Fatalf("final %d %s", r.FinalWeightBP, r.FinalPhase)
			}
		}},
	}
	// One stack at a time: each is a whole Spine (broker, registry, four
	// processors), and the machine has two cores.
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := stack.LoadConfigFrom(t.Context(), envconfig.MapLookuper(map[string]string{"SPINE_DATA_DIR": t.TempDir()}))
			if err != nil {
				t.Fatal(err)
			}
			o := base
			o.out = t.TempDir()
			tt.mod(&o)
			progress := &syncBuffer{}
			a := &app{stdin: strings.NewReader(""), stdout: progress, stderr: progress, cfg: cfg, log: slog.New(slog.DiscardHandler)}
			r, err := loadtestReport(t.Context(), a, cfg, o)
			if err != nil {
				t.Fatalf("%v\n%s", err, progress)
			}
			for _, d := range r.Decisions {
				t.Logf("+%4.1fs %-12s canary %d / baseline %d runs: %s", d.At.Sub(r.Started).Seconds(), d.Action, d.CanaryRuns, d.BaselineRuns, d.Reason)
			}
			// How many runs finish within the drain depends on the machine's
			// load (the race detector, other tests); the decisions do not.
			if r.Sent == 0 || r.Finished == 0 {
				t.Errorf("sent %d, finished %d", r.Sent, r.Finished)
			}
			if !strings.Contains(progress.String(), "canary weight") {
				t.Errorf("no progress lines:\n%s", progress)
			}
			// Every analyzer decision that moved the rollout is a flag change.
			var byAnalyzer int
			for _, c := range r.FlagChanges {
				if c.Who == "canary-analyzer" {
					byAnalyzer++
				}
			}
			if byAnalyzer == 0 {
				t.Errorf("no flag change by the analyzer: %+v", r.FlagChanges)
			}
			tt.check(t, r)
			_, hp, err := r.Write(o.out)
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(hp); !strings.Contains(string(b), "<svg") || filepath.Dir(hp) != o.out {
				t.Errorf("report %s has no chart", hp)
			}
		})
	}
}

// rolledBack checks a rollout was rolled back after holding, for a reason
// that names check.
func rolledBack(check string) func(t *testing.T, r *loadtest.Report) {
	return func(t *testing.T, r *loadtest.Report) {
		t.Helper()
		var holds, rollbacks int
		for _, d := range r.Decisions {
			switch d.Action {
			case "hold":
				holds++
			case "rollback":
				rollbacks++
				if !strings.Contains(d.Reason, check) {
					t.Errorf("rollback for another reason than %q: %s", check, d.Reason)
				}
				if d.WeightAfter != 0 {
					t.Errorf("rollback left weight %d", d.WeightAfter)
				}
			case "step", "promote":
				t.Errorf("a bad v2 got %s: %s", d.Action, d.Reason)
			}
		}
		if holds != 1 || rollbacks != 1 || r.FinalWeightBP != 0 || r.FinalPhase != "rolled_back" {
			t.Fatalf("holds %d rollbacks %d final %d %s; want one hold, one rollback, weight 0 rolled_back", holds, rollbacks, r.FinalWeightBP, r.FinalPhase)
		}
	}
}

func TestLoadtestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"loadtest", "--rate", "0"},
		{"loadtest", "--duration", "-1s"},
		{"loadtest", "--canary", "150"},
		{"loadtest", "--max-weight", "0"},
		{"loadtest", "--v2-failure-rate", "2"},
		{"loadtest", "extra"},
	} {
		code, _, stderr := runCLI(t, "", args...)
		if code != exitUsage || stderr == "" {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 with a reason", args, code, stderr)
		}
	}
}
