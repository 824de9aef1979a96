package gates_test

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/spinerun/spine/gates"
)

func policy() gates.CanaryPolicy {
	return gates.CanaryPolicy{
		StepWeight: 1000, MaxWeight: 5000, FailureLimit: 2, MinSamples: 50,
		SuccessRateMin: 0.95, ErrorRateMax: 0.05, GatePassRateMin: 0.95,
		LatencyP99MaxRatio: 1.5, DriftMethod: gates.DriftPSI, DriftMax: 0.2,
	}
}

// scores returns 10 bins of a bell centred on bin c.
func scores(c float64) []float64 {
	out := make([]float64, 10)
	for i := range out {
		d := float64(i) - c
		out[i] = math.Round(1000 * math.Exp(-d*d/2))
	}
	return out
}

func side(runs int64) gates.CanarySide {
	return gates.CanarySide{
		Runs: runs, Completed: runs, Executions: runs,
		Gates:   map[string]gates.Passes{"schema": {Passed: runs, Total: runs}, "performance": {Passed: runs, Total: runs}},
		Latency: gates.Latency{P50: 10, P95: 20, P99: 30},
		Scores:  scores(5),
	}
}

// run applies the analysis n times to the same evidence, starting at weight
// w, and returns every decision.
func run(p gates.CanaryPolicy, w int, e gates.CanaryEvidence, n int) []gates.CanaryDecision {
	st := gates.CanaryState{Weight: w}
	var out []gates.CanaryDecision
	for range n {
		d := gates.Canary(p, st, e)
		out = append(out, d)
		if d.Action == gates.ActionRollback || d.Action == gates.ActionPromote {
			break
		}
		st = gates.CanaryState{Weight: d.Weight, Failures: d.Failures}
	}
	return out
}

func TestCanaryNeedsFreshSamples(t *testing.T) {
	t.Parallel()
	// The same evidence is never judged twice: after a decision at 200
	// canary runs, the next needs MinSamples more.
	e := gates.CanaryEvidence{Baseline: side(1000), Canary: side(200)}
	d := gates.Canary(policy(), gates.CanaryState{Weight: 1000}, e)
	if d.Action != gates.ActionStep || d.RunsAtLast != 200 {
		t.Fatalf("first analysis %+v", d)
	}
	st := gates.CanaryState{Weight: d.Weight, Failures: d.Failures, RunsAtLast: d.RunsAtLast}
	if d := gates.Canary(policy(), st, e); d.Action != gates.ActionInconclusive || d.Weight != 2000 || d.RunsAtLast != 200 || !strings.Contains(d.Reason, "since the last decision") {
		t.Fatalf("same evidence again: %+v", d)
	}
	e.Canary = side(249)
	if d := gates.Canary(policy(), st, e); d.Action != gates.ActionInconclusive {
		t.Fatalf("49 fresh runs: %+v", d)
	}
	e.Canary = side(250)
	if d := gates.Canary(policy(), st, e); d.Action != gates.ActionStep || d.Weight != 3000 || d.RunsAtLast != 250 {
		t.Fatalf("50 fresh runs: %+v", d)
	}
}

func actions(ds []gates.CanaryDecision) string {
	var b []string
	for _, d := range ds {
		b = append(b, fmt.Sprintf("%s@%d", d.Action, d.Weight))
	}
	return strings.Join(b, " ")
}

func TestCanary(t *testing.T) {
	t.Parallel()
	slower := side(600)
	slower.Latency = gates.Latency{P50: 40, P95: 80, P99: 120}
	slowerFew := side(200)
	slowerFew.Latency = gates.Latency{P50: 40, P95: 80, P99: 120}
	outlierFew := side(200)
	outlierFew.Latency = gates.Latency{P50: 10, P95: 21, P99: 90}
	flakier := side(200)
	flakier.ExecFailed, flakier.Executions = 60, 260
	failing := side(200)
	failing.Completed = 150
	drifted := side(200)
	drifted.Scores = scores(2)
	gateFails := side(200)
	gateFails.Gates = map[string]gates.Passes{"schema": {Passed: 200, Total: 200}, "performance": {Passed: 120, Total: 200}}
	better := side(200)
	better.Latency = gates.Latency{P50: 5, P95: 10, P99: 15}
	slightlyShifted := side(200)
	slightlyShifted.Scores = scores(5.2)
	ksPolicy := policy()
	ksPolicy.DriftMethod, ksPolicy.DriftMax = gates.DriftKS, 0.1
	absLatency := policy()
	absLatency.LatencyP99MaxRatio, absLatency.LatencyP99MaxMs = 0, 100

	tests := []struct {
		name   string
		policy gates.CanaryPolicy
		start  int
		canary gates.CanarySide
		want   string
		failed string // name of a check that must have failed in the last decision
	}{
		{"slower p99 rolls back after the failure limit", policy(), 1000, slower, "hold@1000 rollback@0", "latency_p99_ratio"},
		{"slower than the absolute p99 limit rolls back", absLatency, 1000, slower, "hold@1000 rollback@0", "latency_p99_ms"},
		{"slower p95 on fewer runs rolls back", policy(), 1000, slowerFew, "hold@1000 rollback@0", "latency_p95_ratio"},
		{"an outlier p99 on few runs does not", policy(), 4000, outlierFew, "step@5000 promote@10000", ""},
		{"flakier executions roll back", policy(), 1000, flakier, "hold@1000 rollback@0", "error_rate"},
		{"lower success rate rolls back", policy(), 1000, failing, "hold@1000 rollback@0", "success_rate"},
		{"drifted scores (psi) roll back", policy(), 1000, drifted, "hold@1000 rollback@0", "score_drift_psi"},
		{"drifted scores (ks) roll back", ksPolicy, 1000, drifted, "hold@1000 rollback@0", "score_drift_ks"},
		{"a failing gate rolls back", policy(), 1000, gateFails, "hold@1000 rollback@0", "gate_pass_rate.performance"},
		{"equal is promoted step by step to max", policy(), 1000, side(200), "step@2000 step@3000 step@4000 step@5000 promote@10000", ""},
		{"better is promoted step by step to max", policy(), 0, better, "step@1000 step@2000 step@3000 step@4000 step@5000 promote@10000", ""},
		{"a slight score shift stays under the drift limit", policy(), 4000, slightlyShifted, "step@5000 promote@10000", ""},
		{"too few canary samples is inconclusive", policy(), 1000, side(49), "inconclusive@1000 inconclusive@1000", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := tt.policy.Validate(); err != nil {
				t.Fatal(err)
			}
			ds := run(tt.policy, tt.start, gates.CanaryEvidence{Baseline: side(1000), Canary: tt.canary}, 6)
			if tt.want == "inconclusive@1000 inconclusive@1000" {
				ds = ds[:2]
			}
			if got := actions(ds); got != tt.want {
				t.Fatalf("decisions %q, want %q", got, tt.want)
			}
			last := ds[len(ds)-1]
			if last.Reason == "" {
				t.Error("decision without a reason")
			}
			if tt.failed != "" {
				found := false
				for _, c := range last.Failed() {
					found = found || c.Name == tt.failed
					if c.Reason == "" {
						t.Errorf("failed check %s has no reason", c.Name)
					}
				}
				if !found {
					t.Errorf("check %s did not fail: %+v", tt.failed, last.Checks)
				}
			} else if f := last.Failed(); len(f) > 0 && last.Action != gates.ActionInconclusive {
				t.Errorf("unexpected failed checks %+v", f)
			}
		})
	}
}

func TestCanaryDriftAllowsSamplingNoise(t *testing.T) {
	t.Parallel()
	// Two small samples of one distribution differ by chance; their PSI
	// alone would exceed the threshold, their drift beyond noise does not.
	b, c := side(160), side(37)
	b.Scores = []float64{3, 9, 20, 31, 38, 30, 18, 8, 3, 0}
	c.Scores = []float64{0, 4, 3, 8, 6, 9, 4, 2, 0, 1}
	p := policy()
	p.DriftMax = 0.1
	raw := gates.PSI(b.Scores, c.Scores)
	if raw <= p.DriftMax {
		t.Fatalf("raw PSI %.3f: the samples do not exercise the noise allowance", raw)
	}
	d := gates.Canary(p, gates.CanaryState{Weight: 1000}, gates.CanaryEvidence{Baseline: b, Canary: c})
	for _, ch := range d.Checks {
		if ch.Name == "score_drift_psi" {
			if ch.Canary != raw || ch.Baseline <= 0 || !ch.Passed {
				t.Fatalf("raw PSI %.3f, check %+v: want it to pass within the noise", raw, ch)
			}
			return
		}
	}
	t.Fatal("no drift check")
}

func TestCanaryInconclusiveKeepsFailures(t *testing.T) {
	t.Parallel()
	d := gates.Canary(policy(), gates.CanaryState{Weight: 2000, Failures: 1}, gates.CanaryEvidence{Baseline: side(10), Canary: side(500)})
	if d.Action != gates.ActionInconclusive || d.Weight != 2000 || d.Failures != 1 {
		t.Fatalf("too few baseline samples: %+v", d)
	}
	if !strings.Contains(d.Reason, "10 baseline") {
		t.Errorf("reason %q does not give the sample sizes", d.Reason)
	}
	if len(d.Checks) == 0 {
		t.Error("an inconclusive analysis still carries the evidence of its checks")
	}
}

func TestCanaryEvidenceCarriesBothSides(t *testing.T) {
	t.Parallel()
	c := side(500)
	c.Latency.P99 = 33
	d := gates.Canary(policy(), gates.CanaryState{Weight: 1000}, gates.CanaryEvidence{Baseline: side(500), Canary: c})
	for _, ch := range d.Checks {
		if ch.Name == "latency_p99_ratio" {
			if ch.Baseline != 30 || ch.Canary != 33 || ch.Threshold != 1.5 || !ch.Passed {
				t.Fatalf("latency check %+v", ch)
			}
			return
		}
	}
	t.Fatalf("no latency check in %+v", d.Checks)
}

func TestCanaryPolicyValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		mod  func(*gates.CanaryPolicy)
		want string
	}{
		{"valid", func(*gates.CanaryPolicy) {}, ""},
		{"zero step", func(p *gates.CanaryPolicy) { p.StepWeight = 0 }, "step weight"},
		{"max above 100%", func(p *gates.CanaryPolicy) { p.MaxWeight = 10001 }, "max weight"},
		{"no failure limit", func(p *gates.CanaryPolicy) { p.FailureLimit = 0 }, "failure limit"},
		{"no samples", func(p *gates.CanaryPolicy) { p.MinSamples = 0 }, "min samples"},
		{"rate above 1", func(p *gates.CanaryPolicy) { p.SuccessRateMin = 1.5 }, "success rate min"},
		{"negative ratio", func(p *gates.CanaryPolicy) { p.LatencyP99MaxRatio = -1 }, "latency p99 max ratio"},
		{"unknown method", func(p *gates.CanaryPolicy) { p.DriftMethod = "chi2" }, "drift method"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := policy()
			tt.mod(&p)
			err := p.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, gates.ErrInvalidPolicy) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want ErrInvalidPolicy naming %q", err, tt.want)
			}
		})
	}
}

func TestDriftStatistics(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		a, b         []float64
		psiLo, psiHi float64
		ksLo, ksHi   float64
	}{
		{"equal", scores(5), scores(5), 0, 1e-12, 0, 1e-12},
		{"scaled counts are nearly equal shares (smoothing)", []float64{1, 2, 3}, []float64{10, 20, 30}, 0, 0.01, 0, 1e-12},
		{"shifted", scores(5), scores(3), 1, 100, 0.5, 1},
		{"disjoint", []float64{10, 0}, []float64{0, 10}, 3, 100, 1, 1},
		{"empty side", []float64{0, 0}, []float64{1, 1}, 0, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if p := gates.PSI(tt.a, tt.b); p < tt.psiLo || p > tt.psiHi || math.IsNaN(p) {
				t.Errorf("PSI = %v, want in [%v, %v]", p, tt.psiLo, tt.psiHi)
			}
			if k := gates.KS(tt.a, tt.b); k < tt.ksLo || k > tt.ksHi+1e-12 {
				t.Errorf("KS = %v, want in [%v, %v]", k, tt.ksLo, tt.ksHi)
			}
		})
	}
}

func ExampleCanary() {
	p := gates.CanaryPolicy{StepWeight: 1000, MaxWeight: 3000, FailureLimit: 1, MinSamples: 10, SuccessRateMin: 0.9}
	ok := gates.CanarySide{Runs: 100, Completed: 99}
	d := gates.Canary(p, gates.CanaryState{Weight: 1000}, gates.CanaryEvidence{Baseline: ok, Canary: ok})
	fmt.Println(d.Action, d.Weight)
	bad := gates.CanarySide{Runs: 100, Completed: 70}
	d = gates.Canary(p, gates.CanaryState{Weight: d.Weight}, gates.CanaryEvidence{Baseline: ok, Canary: bad})
	fmt.Println(d.Action, d.Weight)
	// Output:
	// step 2000
	// rollback 0
}
