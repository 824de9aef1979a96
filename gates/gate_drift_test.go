package gates_test

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/spinerun/spine/gates"
	"github.com/spinerun/spine/schemas"
)

// shift describes how a synthetic stream departs from the reference.
type shift struct {
	score   float64 // added to the mean score (sd 0.1)
	latency float64 // latency multiplier (1: none)
}

// driftWindow draws n seeded samples: score ~ N(0.8, 0.1) clamped to
// [0,1], content length ~ N(600, 80) bytes, latency log-normal with mean
// 50 ms and p99 about 200 ms (σ 0.7, whole ms), tokens ~ N(150, 30) — the
// synthetic executor's defaults.
func driftWindow(rng *rand.Rand, n int, s shift) *gates.DriftWindow {
	if s.latency == 0 {
		s.latency = 1
	}
	const sigma = 0.7
	mu := math.Log(50) - sigma*sigma/2
	var w gates.DriftWindow
	for range n {
		w[gates.MetricScore] = append(w[gates.MetricScore], min(max(0.8+s.score+0.1*rng.NormFloat64(), 0), 1))
		w[gates.MetricLength] = append(w[gates.MetricLength], math.Round(600+80*rng.NormFloat64()))
		w[gates.MetricLatency] = append(w[gates.MetricLatency], math.Round(s.latency*math.Exp(mu+sigma*rng.NormFloat64())))
		w[gates.MetricTokens] = append(w[gates.MetricTokens], math.Round(150+30*rng.NormFloat64()))
	}
	return &w
}

// TestDriftFalseAlarmRate measures how often a window of unshifted data is
// called drifted: 40 seeded references × 10 current windows of 200 samples
// each (400 windows, 8 statistics each), with the default thresholds.
func TestDriftFalseAlarmRate(t *testing.T) {
	t.Parallel()
	cfg := gates.DefaultDriftConfig()
	th := cfg.Thresholds()
	const refs, per = 40, 10
	// loose: each KS test at the 5% level, PSI at 0.02 beyond chance — to
	// show the measurement sees false alarms when thresholds invite them.
	loose := gates.DriftThresholds{PSI: 0.02, KSAlpha: 0.05, MinSamples: th.MinSamples}
	alarms, looseAlarms := 0, 0
	byRule := map[string]int{}
	for seed := range uint64(refs) {
		rng := rand.New(rand.NewPCG(seed, 0xd81f7))
		ref := driftWindow(rng, cfg.Window, shift{})
		for range per {
			cur := driftWindow(rng, cfg.Window, shift{})
			if gates.DriftCompare(loose, ref, cur).Drifted {
				looseAlarms++
			}
			r := gates.DriftCompare(th, ref, cur)
			if len(r.Stats) != 2*int(gates.NumDriftMetrics) {
				t.Fatalf("%d statistics, want %d (skipped %v)", len(r.Stats), 2*gates.NumDriftMetrics, r.Skipped)
			}
			if r.Drifted {
				alarms++
				byRule[r.Worst.Rule()]++
			}
		}
	}
	rate := float64(alarms) / (refs * per)
	t.Logf("false alarms: %d of %d unshifted windows of %d samples (%.2f%%), by worst rule %v; with KS at 5%% and PSI 0.02: %d (%.1f%%)",
		alarms, refs*per, cfg.Window, 100*rate, byRule, looseAlarms, 100*float64(looseAlarms)/(refs*per))
	if rate > 0.05 {
		t.Errorf("false-alarm rate %.2f%% above 5%%", 100*rate)
	}
}

// TestDriftDetects holds a window with a shifted distribution against the
// reference: a mean score 0.15 higher (1.5 sd) or latencies twice as long
// must be called drifted in one window of 200, in at least 99 of 100
// seeded trials each.
func TestDriftDetects(t *testing.T) {
	t.Parallel()
	cfg := gates.DefaultDriftConfig()
	th := cfg.Thresholds()
	for _, tc := range []struct {
		name  string
		s     shift
		rules []string // the rules that may be the worst
		min   int      // detections of 100 required (0: only reported)
	}{
		{"score +0.15", shift{score: 0.15}, []string{"psi:score", "ks:score"}, 99},
		{"score -0.15", shift{score: -0.15}, []string{"psi:score", "ks:score"}, 99},
		{"latency x2", shift{latency: 2}, []string{"psi:latency", "ks:latency"}, 99},
		// Smaller shifts, for the record: how sensitive the defaults are.
		{"score +0.05", shift{score: 0.05}, []string{"psi:score", "ks:score"}, 0},
		{"latency x1.25", shift{latency: 1.25}, []string{"psi:latency", "ks:latency"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			hits := 0
			for seed := range uint64(100) {
				rng := rand.New(rand.NewPCG(seed, 0x5eed))
				ref := driftWindow(rng, cfg.Window, shift{})
				r := gates.DriftCompare(th, ref, driftWindow(rng, cfg.Window, tc.s))
				if r.Drifted {
					hits++
					if !strings.Contains(strings.Join(tc.rules, " "), r.Worst.Rule()) {
						t.Errorf("seed %d: worst rule %s, want one of %v", seed, r.Worst.Rule(), tc.rules)
					}
				}
			}
			t.Logf("%s detected in %d of 100 windows of %d", tc.name, hits, cfg.Window)
			if hits < tc.min {
				t.Errorf("%s detected in %d of 100 windows, want >= %d", tc.name, hits, tc.min)
			}
		})
	}
}

func TestDriftCompareSkipsSparseMetrics(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	ref, cur := driftWindow(rng, 200, shift{}), driftWindow(rng, 200, shift{})
	ref[gates.MetricScore], cur[gates.MetricTokens] = nil, cur[gates.MetricTokens][:10]
	r := gates.DriftCompare(gates.DefaultDriftConfig().Thresholds(), ref, cur)
	if len(r.Skipped) != 2 || r.Skipped[0] != gates.MetricScore || r.Skipped[1] != gates.MetricTokens || len(r.Stats) != 4 {
		t.Errorf("skipped %v, %d stats; want score and tokens skipped, 4 stats", r.Skipped, len(r.Stats))
	}
	if ev := gates.DriftEvidence(r); ev["skipped:score"] == "" || ev["n_ref"] != "200" || ev["ks:latency"] == "" {
		t.Errorf("evidence %v", ev)
	}
}

func TestKSSamples(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b []float64
		want float64
	}{
		{[]float64{1, 2, 3}, []float64{1, 2, 3}, 0},
		{[]float64{1, 2, 3}, []float64{4, 5, 6}, 1},
		{[]float64{1, 1, 1, 1}, []float64{1, 1, 2, 2}, 0.5}, // ties step together
		{[]float64{1, 2, 3, 4}, []float64{3, 4, 5, 6}, 0.5},
		{nil, []float64{1}, 0},
	} {
		if got := gates.KSSamples(tc.a, tc.b); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("KSSamples(%v, %v) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
	// KSNoise is the critical value at 5%.
	if got, want := gates.KSCritical(0.05, 200, 200), gates.KSNoise(200, 200); math.Abs(got-want) > 1e-3 {
		t.Errorf("KSCritical(0.05) = %v, KSNoise %v", got, want)
	}
}

func TestDriftCheck(t *testing.T) {
	t.Parallel()
	drifted := gates.DriftStatus{Kind: "summarize", Route: "canary", Drifted: true, Window: 3, Rule: "ks:score",
		Measured: 0.5, Threshold: 0.19, NRef: 200, NCur: 200, Evidence: map[string]string{"ks:score": "0.5"}}
	statuses := gates.DriftStatusesFunc(func(kind, route string) (gates.DriftStatus, bool, error) {
		switch route {
		case "canary":
			return drifted, true, nil
		case "baseline":
			st := drifted
			st.Drifted, st.Measured = false, 0.05
			return st, true, nil
		case "catching-up":
			return gates.DriftStatus{}, false, errors.New("not ready")
		}
		return gates.DriftStatus{}, false, nil
	})
	ev := func(route string) gates.Subject {
		return gates.Subject{Event: &schemas.RuntimeEvent{Intent: "summarize", Route: route}}
	}
	for _, tc := range []struct {
		mode   gates.DriftMode
		route  string
		passed bool
		code   string
	}{
		{gates.DriftEnforce, "canary", false, "drifted"},
		{gates.DriftObserve, "canary", true, "drifted_observed"},
		{gates.DriftEnforce, "baseline", true, "within_reference"},
		{gates.DriftEnforce, "other", true, "no_reference"},
		{gates.DriftObserve, "catching-up", true, "status_unknown"},
	} {
		o, err := gates.Drift(tc.mode, statuses).Check(context.Background(), ev(tc.route))
		if err != nil || o.Passed != tc.passed || o.Code != tc.code {
			t.Errorf("%s %s: %+v %v, want passed %v code %s", tc.mode, tc.route, o, err, tc.passed, tc.code)
			continue
		}
		if tc.code != "no_reference" && tc.code != "status_unknown" && (o.Rule != "ks:score" || o.Evidence["window"] != "3" || o.Evidence["kind"] != "summarize" || o.Evidence["n_ref"] != "200") {
			t.Errorf("%s %s: rule %q evidence %v", tc.mode, tc.route, o.Rule, o.Evidence)
		}
	}
}

func TestDriftCheckEnforceWaitsForStatus(t *testing.T) {
	t.Parallel()
	notReady := gates.DriftStatusesFunc(func(string, string) (gates.DriftStatus, bool, error) {
		return gates.DriftStatus{}, false, errors.New("not ready")
	})
	if _, err := gates.Drift(gates.DriftEnforce, notReady).Check(context.Background(), gates.Subject{}); err == nil {
		t.Error("enforce with an unknown status decided; want an error (retried)")
	}
}

func TestDriftConfigValidate(t *testing.T) {
	t.Parallel()
	c := gates.DefaultDriftConfig()
	if errs := c.Validate(); len(errs) != 0 {
		t.Fatalf("defaults: %v", errs)
	}
	bad := gates.DriftConfig{Mode: "loud", Window: 5, PSI: 0, KSAlpha: 1}
	if errs := bad.Validate(); len(errs) != 4 {
		t.Errorf("%d errors, want 4: %v", len(errs), errs)
	}
}
