package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
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
	"github.com/spinerun/spine/projections"
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
		actors: 200, v2FailureRate: -1, partitions: 2, embedded: true,
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
			} else if !strings.Contains(string(b), "Stack memory over time") {
				t.Errorf("report %s has no memory chart", hp)
			}
			// The in-process stack's memory is sampled beside throughput.
			if r.RSSPeakBytes == 0 || r.Series[len(r.Series)-1].RSSBytes == 0 || !strings.Contains(progress.String(), " rss ") {
				t.Errorf("no resident memory in the report: peak %d, last point %+v", r.RSSPeakBytes, r.Series[len(r.Series)-1])
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
		{"loadtest", "--embedded", "--external"},
	} {
		code, _, stderr := runCLI(t, "", args...)
		if code != exitUsage || stderr == "" {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 with a reason", args, code, stderr)
		}
	}
}

// With a stack running at the configured addresses, `spine loadtest` drives
// it and says so on its first line: its runs show on that stack's
// projections (the dashboard's API). The private stack's executor knobs are
// refused against it, and --external with nothing running fails naming the
// addresses.
func TestLoadtestDrivesTheRunningStack(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a whole stack")
	}
	if kafkatest.External() {
		t.Skip("runs its own embedded stack")
	}
	base, err := stack.LoadConfigFrom(t.Context(), envconfig.MapLookuper(map[string]string{"SPINE_DATA_DIR": t.TempDir()}))
	if err != nil {
		t.Fatal(err)
	}
	quiet := &app{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, cfg: base, log: slog.New(slog.DiscardHandler)}
	// The stack a user runs (`spine up`), on free ports.
	cfg, stop, err := startLoadtestStack(t.Context(), quiet, base, loadtestOpts{v2FailureRate: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	terminals := func() int64 {
		resp, err := http.Get("http://" + cfg.HTTPAddr + "/v1/stats/golden-path")
		if err != nil {
			return -1
		}
		defer resp.Body.Close()
		var rep projections.GoldenReport
		if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
			return -1
		}
		var n int64
		for _, g := range rep.Groups {
			n += g.Terminals
		}
		return n
	}
	before := terminals()

	o := loadtestOpts{rate: 50, duration: 2 * time.Second, drain: 20 * time.Second, canary: 10, interval: time.Hour,
		stepWeight: 10, maxWeight: 50, minSamples: 100, failureLimit: 2, actors: 50, v2FailureRate: -1, rawRecords: 50, out: t.TempDir()}
	progress := &syncBuffer{}
	a := &app{stdin: strings.NewReader(""), stdout: progress, stderr: progress, cfg: cfg, log: slog.New(slog.DiscardHandler)}
	r, err := loadtestReport(t.Context(), a, cfg, o)
	if err != nil {
		t.Fatalf("%v\n%s", err, progress)
	}
	first, _, _ := strings.Cut(progress.String(), "\n")
	want := fmt.Sprintf("driving the running stack at kafka %v, registry %s", cliBrokers(cfg), cliRegistryURL(cfg))
	if !strings.HasPrefix(first, want) {
		t.Errorf("first line %q, want it to begin %q", first, want)
	}
	if r.Finished == 0 || !strings.HasPrefix(r.Params.Target, "running stack at kafka") || r.RSSPeakBytes != 0 {
		t.Errorf("finished %d, target %q, rss %d: want runs on the running stack, no memory of this process", r.Finished, r.Params.Target, r.RSSPeakBytes)
	}
	// The raw chain ran at the same rate, and only latency is compared.
	if c := r.RawComparison; c == nil || c.RatePerSec != 50 || r.Raw.Rate != 50 || !strings.Contains(c.Label, "same paced rate") {
		t.Errorf("raw comparison %+v, chain %+v: want latency at 50/s", r.RawComparison, r.Raw)
	}
	// The runs are that stack's: its projections count them.
	deadline := time.Now().Add(30 * time.Second)
	for terminals() < before+r.Finished {
		if time.Now().After(deadline) {
			t.Fatalf("the running stack's projections count %d terminal runs, want at least %d + %d", terminals(), before, r.Finished)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The private stack's knobs are refused against it.
	for _, mod := range []func(*loadtestOpts){
		func(o *loadtestOpts) { o.v2LatencyMs = 200 },
		func(o *loadtestOpts) { o.v2FailureRate = 0.3 },
		func(o *loadtestOpts) { o.partitions = 2 },
	} {
		k := o
		mod(&k)
		_, err := loadtestReport(t.Context(), quiet, cfg, k)
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "applies to a private stack only (add --embedded)") {
			t.Errorf("knobs %v against the running stack: %v, want a usage error", k.privateKnobs(), err)
		}
	}

	// --external with nothing at the configured addresses fails.
	dead := *cfg
	dead.KafkaPort, dead.RegistryAddr = 1, "127.0.0.1:1"
	k := o
	k.external = true
	if _, err := loadtestReport(t.Context(), quiet, &dead, k); err == nil || !strings.Contains(err.Error(), "no stack answers at kafka [127.0.0.1:1]") {
		t.Errorf("--external with no stack: %v", err)
	}
}
