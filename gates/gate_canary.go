package gates

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Canary analysis: one pure function that compares the canary side of a
// rollout with its baseline and decides, in Flagger's vocabulary (threshold
// ranges, step weight, max weight, failure limit) with Argo Rollouts'
// *inconclusive* outcome when there are too few samples to decide.
//
// Weights are in basis points: 0 is no traffic, 10000 is all of it.

// MaxWeight is the largest weight, in basis points (100%).
const MaxWeight = 10000

// ErrInvalidPolicy is returned by CanaryPolicy.Validate for a policy that
// contradicts itself or holds values out of range (stable code
// "invalid_canary_policy").
var ErrInvalidPolicy = errors.New("invalid canary policy")

// DriftMethod names the statistic that measures how far the canary's score
// distribution moved from the baseline's.
type DriftMethod string

// The drift statistics.
const (
	// DriftPSI is the population stability index, Σ (c−b)·ln(c/b) over
	// shared bins. Rule of thumb: < 0.1 stable, 0.1–0.25 moderate, > 0.25
	// a significant shift.
	DriftPSI DriftMethod = "psi"
	// DriftKS is the two-sample Kolmogorov–Smirnov statistic D, the largest
	// distance between the two empirical CDFs over shared bins (0..1).
	DriftKS DriftMethod = "ks"
)

// CanaryPolicy is what a rollout is analysed against. A zero threshold
// disables its check.
type CanaryPolicy struct {
	// StepWeight is added to the weight after each passing analysis.
	StepWeight int `json:"step_weight_bp"`
	// MaxWeight is the weight at which a passing analysis promotes.
	MaxWeight int `json:"max_weight_bp"`
	// FailureLimit is the number of failed analyses that rolls back
	// (Flagger's threshold). At least 1.
	FailureLimit int `json:"failure_limit"`
	// MinSamples is the number of finished runs each side needs before the
	// analysis decides; below it the outcome is inconclusive.
	MinSamples int64 `json:"min_samples"`

	// SuccessRateMin is the lowest acceptable canary success rate
	// (completed / finished runs, 0..1).
	SuccessRateMin float64 `json:"success_rate_min"`
	// ErrorRateMax is the highest acceptable canary execution failure rate
	// (dataplane.failed / executions, retried attempts included, 0..1).
	ErrorRateMax float64 `json:"error_rate_max"`
	// GatePassRateMin is the lowest acceptable canary pass rate of each
	// gate (0..1).
	GatePassRateMin float64 `json:"gate_pass_rate_min"`
	// LatencyP99MaxRatio is the highest acceptable canary p99 latency as a
	// multiple of the baseline's p99 (for example 1.2). With fewer than 500
	// runs a side p95 is compared instead, below 100 the median (a tail
	// quantile needs observations beyond it).
	LatencyP99MaxRatio float64 `json:"latency_p99_max_ratio"`
	// LatencyP99MaxMs is the highest acceptable canary p99 latency in ms.
	LatencyP99MaxMs float64 `json:"latency_p99_max_ms"`
	// DriftMethod is psi or ks (default psi).
	DriftMethod DriftMethod `json:"drift_method"`
	// DriftMax is the highest acceptable drift statistic of the artifact
	// score distribution.
	DriftMax float64 `json:"drift_max"`
}

// Validate reports every contradiction in p at once.
func (p CanaryPolicy) Validate() error {
	var errs []string
	bad := func(f string, a ...any) { errs = append(errs, fmt.Sprintf(f, a...)) }
	if p.StepWeight < 1 || p.StepWeight > MaxWeight {
		bad("step weight %d bp is not in 1..%d", p.StepWeight, MaxWeight)
	}
	if p.MaxWeight < 1 || p.MaxWeight > MaxWeight {
		bad("max weight %d bp is not in 1..%d", p.MaxWeight, MaxWeight)
	}
	if p.FailureLimit < 1 {
		bad("failure limit %d is below 1", p.FailureLimit)
	}
	if p.MinSamples < 1 {
		bad("min samples %d is below 1", p.MinSamples)
	}
	for name, v := range map[string]float64{"success rate min": p.SuccessRateMin, "error rate max": p.ErrorRateMax, "gate pass rate min": p.GatePassRateMin} {
		if v < 0 || v > 1 || math.IsNaN(v) {
			bad("%s %v is not in 0..1", name, v)
		}
	}
	for name, v := range map[string]float64{"latency p99 max ratio": p.LatencyP99MaxRatio, "latency p99 max ms": p.LatencyP99MaxMs, "drift max": p.DriftMax} {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			bad("%s %v is negative or not finite", name, v)
		}
	}
	switch p.DriftMethod {
	case "", DriftPSI, DriftKS:
	default:
		bad("drift method %q is not psi or ks", p.DriftMethod)
	}
	if len(errs) > 0 {
		slices.Sort(errs)
		return fmt.Errorf("%w: %s", ErrInvalidPolicy, strings.Join(errs, "; "))
	}
	return nil
}

// Passes counts the outcomes of one gate.
type Passes struct {
	Passed int64 `json:"passed"`
	Total  int64 `json:"total"`
}

// Rate is Passed/Total, or 1 with no outcome.
func (p Passes) Rate() float64 {
	if p.Total <= 0 {
		return 1
	}
	return float64(p.Passed) / float64(p.Total)
}

// Latency holds golden-path latency quantiles in milliseconds.
type Latency struct {
	P50 float64 `json:"p50_ms"`
	P95 float64 `json:"p95_ms"`
	P99 float64 `json:"p99_ms"`
}

// CanarySide is what the projections say about one route over the analysis
// window.
type CanarySide struct {
	// Runs counts finished runs (any terminal outcome); it is the sample
	// size.
	Runs int64 `json:"runs"`
	// Completed counts runs that completed.
	Completed int64 `json:"completed"`
	// Executions counts executions (delivered or failed attempts);
	// ExecFailed counts the failed ones.
	Executions int64 `json:"executions"`
	ExecFailed int64 `json:"exec_failed"`
	// Gates holds the outcomes of each gate.
	Gates map[string]Passes `json:"gates,omitempty"`
	// Latency is end-to-end golden-path latency (intent → verdict).
	Latency Latency `json:"latency"`
	// Scores counts artifact scores per bin; both sides use the same bins.
	Scores []float64 `json:"scores,omitempty"`
}

// SuccessRate is Completed/Runs, or 0 with no run.
func (s CanarySide) SuccessRate() float64 {
	if s.Runs <= 0 {
		return 0
	}
	return float64(s.Completed) / float64(s.Runs)
}

// ErrorRate is ExecFailed/Executions, or 0 with no execution.
func (s CanarySide) ErrorRate() float64 {
	if s.Executions <= 0 {
		return 0
	}
	return float64(s.ExecFailed) / float64(s.Executions)
}

// CanaryEvidence is both sides of one analysis window.
type CanaryEvidence struct {
	Baseline CanarySide `json:"baseline"`
	Canary   CanarySide `json:"canary"`
}

// CanaryState is the rollout's position when the analysis runs.
type CanaryState struct {
	// Weight is the canary's current weight in basis points.
	Weight int `json:"weight_bp"`
	// Failures counts failed analyses so far in this rollout.
	Failures int `json:"failures"`
	// RunsAtLast is the canary's finished-run count at the last conclusive
	// analysis: the next one needs MinSamples runs beyond it, so no
	// evidence is judged twice.
	RunsAtLast int64 `json:"canary_runs_at_last"`
}

// CanaryAction is the outcome of one analysis.
type CanaryAction string

// The outcomes of an analysis.
const (
	// ActionStep: every check passed, the weight steps up by StepWeight
	// (capped at MaxWeight).
	ActionStep CanaryAction = "step"
	// ActionPromote: every check passed at the policy's MaxWeight; the
	// rollout is promoted and all the traffic goes to the canary (weight
	// 10000, as Flagger's promotion).
	ActionPromote CanaryAction = "promote"
	// ActionHold: a check failed, the failure count is still below the
	// limit; the weight stays.
	ActionHold CanaryAction = "hold"
	// ActionRollback: a check failed and the failure count reached the
	// limit; the weight goes to 0.
	ActionRollback CanaryAction = "rollback"
	// ActionInconclusive: too few samples to decide (Argo's inconclusive);
	// the rollout pauses, the weight and the failure count stay.
	ActionInconclusive CanaryAction = "inconclusive"
)

// CanaryCheck is one comparison of an analysis: both sides' values and the
// threshold the canary was held to.
type CanaryCheck struct {
	Name      string  `json:"name"`
	Passed    bool    `json:"passed"`
	Baseline  float64 `json:"baseline"`
	Canary    float64 `json:"canary"`
	Threshold float64 `json:"threshold"`
	// Reason says why the check failed, empty when it passed.
	Reason string `json:"reason,omitempty"`
}

// CanaryDecision is the outcome of one analysis and the rollout's next
// position.
type CanaryDecision struct {
	Action   CanaryAction `json:"action"`
	Weight   int          `json:"weight_bp"`
	Failures int          `json:"failures"`
	// RunsAtLast is the state's RunsAtLast after this analysis.
	RunsAtLast int64         `json:"canary_runs_at_last"`
	Checks     []CanaryCheck `json:"checks"`
	// Reason summarises the decision in one line.
	Reason string `json:"reason"`
}

// Failed returns the checks that failed.
func (d CanaryDecision) Failed() []CanaryCheck {
	var out []CanaryCheck
	for _, c := range d.Checks {
		if !c.Passed {
			out = append(out, c)
		}
	}
	return out
}

// Canary analyses one window: evidence in, decision out. It is pure and
// deterministic. p must be valid (see CanaryPolicy.Validate).
//
// Too few samples on either side (fewer than MinSamples finished runs), or
// fewer than MinSamples canary runs since the last conclusive analysis, is
// inconclusive: nothing moves. Otherwise each configured check compares the
// canary with its threshold; if all pass the weight steps up by StepWeight
// to MaxWeight, and an analysis that passes at MaxWeight promotes. If any
// fails the failure count grows (it is never reset within a rollout, as in
// Flagger), and at FailureLimit the rollout rolls back to weight 0.
func Canary(p CanaryPolicy, s CanaryState, e CanaryEvidence) CanaryDecision {
	d := CanaryDecision{Weight: s.Weight, Failures: s.Failures, RunsAtLast: s.RunsAtLast}
	d.Checks = canaryChecks(p, e)
	if e.Canary.Runs < p.MinSamples || e.Baseline.Runs < p.MinSamples {
		d.Action = ActionInconclusive
		d.Reason = fmt.Sprintf("inconclusive: %d canary and %d baseline runs, %d each needed", e.Canary.Runs, e.Baseline.Runs, p.MinSamples)
		return d
	}
	if fresh := e.Canary.Runs - s.RunsAtLast; fresh < p.MinSamples {
		d.Action = ActionInconclusive
		d.Reason = fmt.Sprintf("inconclusive: %d canary runs since the last decision, %d needed", max(fresh, 0), p.MinSamples)
		return d
	}
	d.RunsAtLast = e.Canary.Runs
	failed := d.Failed()
	if len(failed) > 0 {
		d.Failures = s.Failures + 1
		names := make([]string, len(failed))
		for i, c := range failed {
			names[i] = c.Reason
		}
		if d.Failures >= max(p.FailureLimit, 1) {
			d.Action, d.Weight = ActionRollback, 0
			d.Reason = fmt.Sprintf("rollback: failure %d of %d: %s", d.Failures, p.FailureLimit, strings.Join(names, "; "))
			return d
		}
		d.Action = ActionHold
		d.Reason = fmt.Sprintf("hold at %s: failure %d of %d: %s", pct(s.Weight), d.Failures, p.FailureLimit, strings.Join(names, "; "))
		return d
	}
	if s.Weight >= p.MaxWeight {
		// As Flagger's promotion: the canary passed at the max weight,
		// so all the traffic goes to it.
		d.Action = ActionPromote
		d.Weight = MaxWeight
		d.Reason = fmt.Sprintf("promote: every check passed at the max weight %s; all traffic to v2", pct(p.MaxWeight))
		return d
	}
	d.Action = ActionStep
	d.Weight = min(s.Weight+p.StepWeight, p.MaxWeight)
	d.Reason = fmt.Sprintf("step: every check passed, weight %s → %s", pct(s.Weight), pct(d.Weight))
	return d
}

// pct formats basis points as a percentage.
func pct(bp int) string {
	return strings.TrimSuffix(strings.TrimSuffix(fmt.Sprintf("%.2f", float64(bp)/100), "0"), ".0") + "%"
}

// canaryChecks runs every configured check, in a fixed order.
func canaryChecks(p CanaryPolicy, e CanaryEvidence) []CanaryCheck {
	b, c := e.Baseline, e.Canary
	var out []CanaryCheck
	if p.SuccessRateMin > 0 {
		ch := CanaryCheck{Name: "success_rate", Baseline: b.SuccessRate(), Canary: c.SuccessRate(), Threshold: p.SuccessRateMin}
		ch.Passed = ch.Canary >= ch.Threshold
		if !ch.Passed {
			ch.Reason = fmt.Sprintf("success rate %.4f below %.4f (baseline %.4f)", ch.Canary, ch.Threshold, ch.Baseline)
		}
		out = append(out, ch)
	}
	if p.ErrorRateMax > 0 {
		ch := CanaryCheck{Name: "error_rate", Baseline: b.ErrorRate(), Canary: c.ErrorRate(), Threshold: p.ErrorRateMax}
		ch.Passed = ch.Canary <= ch.Threshold
		if !ch.Passed {
			ch.Reason = fmt.Sprintf("execution error rate %.4f above %.4f (baseline %.4f)", ch.Canary, ch.Threshold, ch.Baseline)
		}
		out = append(out, ch)
	}
	if p.GatePassRateMin > 0 {
		names := make([]string, 0, len(b.Gates)+len(c.Gates))
		for n := range c.Gates {
			names = append(names, n)
		}
		for n := range b.Gates {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range slices.Compact(names) {
			ch := CanaryCheck{Name: "gate_pass_rate." + n, Baseline: b.Gates[n].Rate(), Canary: c.Gates[n].Rate(), Threshold: p.GatePassRateMin}
			ch.Passed = ch.Canary >= ch.Threshold
			if !ch.Passed {
				ch.Reason = fmt.Sprintf("gate %s pass rate %.4f below %.4f (baseline %.4f)", n, ch.Canary, ch.Threshold, ch.Baseline)
			}
			out = append(out, ch)
		}
	}
	q, bl, cl := tailLatency(b, c)
	if p.LatencyP99MaxRatio > 0 && bl > 0 {
		ch := CanaryCheck{Name: "latency_" + q + "_ratio", Baseline: bl, Canary: cl, Threshold: p.LatencyP99MaxRatio}
		ratio := cl / bl
		ch.Passed = ratio <= ch.Threshold
		if !ch.Passed {
			ch.Reason = fmt.Sprintf("%s latency %.0f ms is %.2f× the baseline's %.0f ms, above %.2f×", q, cl, ratio, bl, ch.Threshold)
		}
		out = append(out, ch)
	}
	if p.LatencyP99MaxMs > 0 {
		ch := CanaryCheck{Name: "latency_" + q + "_ms", Baseline: bl, Canary: cl, Threshold: p.LatencyP99MaxMs}
		ch.Passed = ch.Canary <= ch.Threshold
		if !ch.Passed {
			ch.Reason = fmt.Sprintf("%s latency %.0f ms above %.0f ms (baseline %.0f ms)", q, cl, ch.Threshold, bl)
		}
		out = append(out, ch)
	}
	if p.DriftMax > 0 && sum(b.Scores) > 0 && sum(c.Scores) > 0 {
		m := p.DriftMethod
		if m == "" {
			m = DriftPSI
		}
		var v, noise float64
		if m == DriftKS {
			v, noise = KS(b.Scores, c.Scores), KSNoise(sum(b.Scores), sum(c.Scores))
		} else {
			v, noise = PSI(b.Scores, c.Scores), PSINoise(occupied(b.Scores, c.Scores), sum(b.Scores), sum(c.Scores))
		}
		// Baseline carries the drift two samples of these sizes show by
		// chance; the canary passes while its drift beyond that stays
		// under the threshold.
		ch := CanaryCheck{Name: "score_drift_" + string(m), Baseline: noise, Canary: v, Threshold: p.DriftMax}
		ch.Passed = v-noise <= ch.Threshold
		if !ch.Passed {
			ch.Reason = fmt.Sprintf("score drift %s %.4f (%.4f expected by chance) above %.4f", m, v, noise, ch.Threshold)
		}
		out = append(out, ch)
	}
	return out
}

// tailSamples is the number of observations a tail quantile needs beyond
// it to be more than one outlier: p99 is compared from 500 runs a side,
// p95 from 100; below that the median stands in, so that one slow run in a
// small sample cannot roll a rollout back.
const tailSamples = 5

// tailLatency returns the highest latency quantile both sides' sample sizes
// support (p99, p95 or p50) and both sides' values of it.
func tailLatency(b, c CanarySide) (name string, bv, cv float64) {
	n := min(b.Runs, c.Runs)
	switch {
	case n >= tailSamples*100:
		return "p99", b.Latency.P99, c.Latency.P99
	case n >= tailSamples*20:
		return "p95", b.Latency.P95, c.Latency.P95
	}
	return "p50", b.Latency.P50, c.Latency.P50
}

// occupied counts the bins where either vector has counts.
func occupied(a, b []float64) int {
	k := 0
	for i := range min(len(a), len(b)) {
		if a[i] > 0 || b[i] > 0 {
			k++
		}
	}
	return k
}

// PSINoise is the PSI two samples of sizes n and m drawn from one
// distribution show by chance over k occupied bins: PSI is a symmetrised
// chi-square divergence, whose expectation under the null is about
// (k−1)·(1/n + 1/m).
func PSINoise(k int, n, m float64) float64 {
	if k < 2 || n <= 0 || m <= 0 {
		return 0
	}
	return float64(k-1) * (1/n + 1/m)
}

// KSNoise is the two-sample KS critical value at the 5% level for samples
// of sizes n and m: 1.358·√((n+m)/(n·m)).
func KSNoise(n, m float64) float64 {
	if n <= 0 || m <= 0 {
		return 0
	}
	return 1.358 * math.Sqrt((n+m)/(n*m))
}

func sum(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		if x > 0 {
			s += x
		}
	}
	return s
}

// psiPseudo is the pseudo-count added to every occupied bin before PSI
// takes shares (additive smoothing), so a bin one small sample happens to
// miss does not count as a share of zero.
const psiPseudo = 0.5

// PSI is the population stability index of actual against expected, two
// count vectors over the same bins: Σ (a−e)·ln(a/e) over the bins' shares,
// after adding 0.5 to the counts of every bin either vector occupies. It
// is 0 for equal distributions and grows with the shift. Vectors of
// different length are compared over the shorter; an empty vector gives 0.
func PSI(expected, actual []float64) float64 {
	n := min(len(expected), len(actual))
	se, sa := sum(expected[:n]), sum(actual[:n])
	if se <= 0 || sa <= 0 {
		return 0
	}
	k := float64(occupied(expected[:n], actual[:n]))
	var psi float64
	for i := range n {
		if expected[i] <= 0 && actual[i] <= 0 {
			continue
		}
		e := (max(expected[i], 0) + psiPseudo) / (se + psiPseudo*k)
		a := (max(actual[i], 0) + psiPseudo) / (sa + psiPseudo*k)
		psi += (a - e) * math.Log(a/e)
	}
	return psi
}

// KS is the two-sample Kolmogorov–Smirnov statistic of two count vectors
// over the same ordered bins: the largest distance between their empirical
// CDFs, in 0..1. An empty vector gives 0.
func KS(a, b []float64) float64 {
	n := min(len(a), len(b))
	sa, sb := sum(a[:n]), sum(b[:n])
	if sa <= 0 || sb <= 0 {
		return 0
	}
	var ca, cb, d float64
	for i := range n {
		ca += max(a[i], 0) / sa
		cb += max(b[i], 0) / sb
		d = max(d, math.Abs(ca-cb))
	}
	return d
}
