package gates

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/spinerun/spine/schemas/thread"
)

// Drift: the artifacts of one intent kind and route are compared with a
// reference window of the same kind and route, metric by metric (score,
// content length, latency, output tokens), with the population stability
// index and the two-sample Kolmogorov–Smirnov test. The windows live in
// the drift monitor's state on Kafka (processors/drift), which evaluates
// them with DriftCompare and publishes each kind and route's status; the
// check here (Drift) only reads that status.

// DriftName is the drift check's gate name.
const DriftName = thread.DriftGate

// DriftMode says what the drift gate does with a drifted kind and route.
type DriftMode string

// The drift modes.
const (
	// DriftOff: no samples, no windows, no check.
	DriftOff DriftMode = "off"
	// DriftObserve: windows are evaluated and reported (gate.drift) and the
	// check reports the status on every run, but always passes.
	DriftObserve DriftMode = "observe"
	// DriftEnforce: a run whose kind and route is drifted fails its drift
	// gate, so its verdict fails and the run is rejected.
	DriftEnforce DriftMode = "enforce"
)

// DriftConfig is the drift gate's settings, read from the environment by
// the composition root. Every field documents its variable and default.
// Per-kind thresholds from the agents file are not read yet.
type DriftConfig struct {
	// Mode is SPINE_DRIFT_MODE: off, observe or enforce. Default off: like
	// the policy gate, drift is asked for (it costs a record per run and a
	// monitor; see the README's Drift section).
	Mode DriftMode `env:"SPINE_DRIFT_MODE, default=off"`
	// Window is SPINE_DRIFT_WINDOW, the samples in a window: the reference
	// is the first Window samples of a kind and route, and every next
	// Window samples are one current window, compared with it. Default 200.
	Window int `env:"SPINE_DRIFT_WINDOW, default=200"`
	// PSI is SPINE_DRIFT_PSI, the population stability index, beyond what
	// two samples of the windows' sizes show by chance (PSINoise), above
	// which a metric has drifted. Default 0.25.
	PSI float64 `env:"SPINE_DRIFT_PSI, default=0.25"`
	// KSAlpha is SPINE_DRIFT_KS_ALPHA, the significance level of each
	// metric's two-sample KS test: a metric has drifted when D is above the
	// test's critical value at that level. Default 0.001 (four metrics,
	// two tests each: a window of unshifted data fails well under 1% of
	// the time).
	KSAlpha float64 `env:"SPINE_DRIFT_KS_ALPHA, default=0.001"`
}

// Validate checks the settings, returning every problem.
func (c *DriftConfig) Validate() []error {
	var errs []error
	switch c.Mode {
	case DriftOff, DriftObserve, DriftEnforce:
	default:
		errs = append(errs, fmt.Errorf("SPINE_DRIFT_MODE: %q is not off, observe or enforce", c.Mode))
	}
	if c.Window < 20 || c.Window > 100000 {
		errs = append(errs, fmt.Errorf("SPINE_DRIFT_WINDOW: %d is not in 20..100000", c.Window))
	}
	if c.PSI <= 0 || math.IsNaN(c.PSI) || math.IsInf(c.PSI, 0) {
		errs = append(errs, fmt.Errorf("SPINE_DRIFT_PSI: %v must be positive", c.PSI))
	}
	if !(c.KSAlpha > 0 && c.KSAlpha < 1) {
		errs = append(errs, fmt.Errorf("SPINE_DRIFT_KS_ALPHA: %v is not in (0, 1)", c.KSAlpha))
	}
	return errs
}

// Thresholds returns the thresholds of the settings.
func (c DriftConfig) Thresholds() DriftThresholds {
	return DriftThresholds{PSI: c.PSI, KSAlpha: c.KSAlpha, MinSamples: max(c.Window/2, 1)}
}

// DefaultDriftConfig returns the defaults of DriftConfig.
func DefaultDriftConfig() DriftConfig {
	return DriftConfig{Mode: DriftObserve, Window: 200, PSI: 0.25, KSAlpha: 0.001}
}

// DriftMetric is one artifact metric the drift gate follows.
type DriftMetric int

// The metrics, in evaluation order.
const (
	// MetricScore is the artifact's quality score, where the executor
	// gives one.
	MetricScore DriftMetric = iota
	// MetricLength is the artifact's content length in bytes.
	MetricLength
	// MetricLatency is the execution's latency in ms.
	MetricLatency
	// MetricTokens is the execution's output tokens, where reported.
	MetricTokens
	// NumDriftMetrics counts the metrics.
	NumDriftMetrics
)

var metricNames = [NumDriftMetrics]string{"score", "length", "latency", "tokens"}

// String returns the metric's name: score, length, latency or tokens.
func (m DriftMetric) String() string {
	if m < 0 || m >= NumDriftMetrics {
		return "metric" + strconv.Itoa(int(m))
	}
	return metricNames[m]
}

// DriftWindow holds one window's values of each metric (only those of the
// samples that have the metric).
type DriftWindow [NumDriftMetrics][]float64

// DriftThresholds is what a window is held to.
type DriftThresholds struct {
	// PSI is the largest acceptable PSI beyond chance (see
	// DriftConfig.PSI).
	PSI float64
	// KSAlpha is the KS test's significance level.
	KSAlpha float64
	// MinSamples is the number of values of a metric each window needs for
	// the metric to be compared; below it the metric is skipped.
	MinSamples int
}

// DriftStat is one statistic of one metric.
type DriftStat struct {
	Metric DriftMetric
	// Method is psi or ks.
	Method DriftMethod
	// Value is the statistic (PSI, or KS's D), Threshold the value above
	// which it drifted: for PSI the threshold plus the PSI expected by
	// chance, for KS the critical D at KSAlpha for these sample sizes.
	Value, Threshold float64
	NRef, NCur       int
	Drifted          bool
}

// Rule names the statistic: "psi:score", "ks:latency", ...
func (s DriftStat) Rule() string { return string(s.Method) + ":" + s.Metric.String() }

// severity is how far the statistic is toward (or past) its threshold.
func (s DriftStat) severity() float64 {
	if s.Threshold <= 0 {
		return 0
	}
	return s.Value / s.Threshold
}

// DriftResult is the comparison of a current window with the reference.
type DriftResult struct {
	// Drifted is true when any statistic drifted.
	Drifted bool
	// Worst is the statistic nearest to (or furthest past) its threshold;
	// the zero DriftStat when no metric could be compared.
	Worst DriftStat
	// Stats holds every statistic computed, two per compared metric.
	Stats []DriftStat
	// Skipped names the metrics with too few values to compare.
	Skipped []DriftMetric
}

// psiBins is the number of reference quantile bins PSI uses.
const psiBins = 10

// DriftCompare compares cur with ref, metric by metric. It is pure,
// deterministic, and does not modify its arguments.
func DriftCompare(t DriftThresholds, ref, cur *DriftWindow) DriftResult {
	var r DriftResult
	for m := range NumDriftMetrics {
		a, b := ref[m], cur[m]
		if len(a) < max(t.MinSamples, 2) || len(b) < max(t.MinSamples, 2) {
			r.Skipped = append(r.Skipped, m)
			continue
		}
		sa, sb := sortedCopy(a), sortedCopy(b)
		n, k := float64(len(sa)), float64(len(sb))

		ec, ac := binCounts(sa, sb)
		psi := DriftStat{Metric: m, Method: DriftPSI, NRef: len(sa), NCur: len(sb),
			Value: PSI(ec, ac), Threshold: t.PSI + PSINoise(occupied(ec, ac), n, k)}
		psi.Drifted = psi.Value > psi.Threshold

		ks := DriftStat{Metric: m, Method: DriftKS, NRef: len(sa), NCur: len(sb),
			Value: KSSamples(sa, sb), Threshold: KSCritical(t.KSAlpha, n, k)}
		ks.Drifted = ks.Value > ks.Threshold

		for _, s := range []DriftStat{psi, ks} {
			r.Stats = append(r.Stats, s)
			r.Drifted = r.Drifted || s.Drifted
			if len(r.Stats) == 1 || s.severity() > r.Worst.severity() {
				r.Worst = s
			}
		}
	}
	return r
}

func sortedCopy(xs []float64) []float64 {
	out := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) {
			out = append(out, x)
		}
	}
	slices.Sort(out)
	return out
}

// binCounts counts both sorted samples over the bins the reference's
// deciles bound (ties merged, so a metric with few distinct values gets
// fewer bins): bin i holds the values in (edge[i-1], edge[i]], the last
// bin those above the last edge.
func binCounts(ref, cur []float64) (ec, ac []float64) {
	edges := make([]float64, 0, psiBins-1)
	for i := 1; i < psiBins; i++ {
		e := ref[min(len(ref)*i/psiBins, len(ref)-1)]
		if len(edges) == 0 || e > edges[len(edges)-1] {
			edges = append(edges, e)
		}
	}
	ec, ac = make([]float64, len(edges)+1), make([]float64, len(edges)+1)
	count := func(xs []float64, c []float64) {
		i := 0
		for _, x := range xs { // sorted: the bin index only grows
			for i < len(edges) && x > edges[i] {
				i++
			}
			c[i]++
		}
	}
	count(ref, ec)
	count(cur, ac)
	return ec, ac
}

// KSSamples is the two-sample Kolmogorov–Smirnov statistic D of two sorted
// samples: the largest distance between their empirical CDFs, ties
// handled (both CDFs step past a shared value together). 0 if either is
// empty.
func KSSamples(a, b []float64) float64 {
	if len(a) == 0 || len(b) == 0 {
		return 0
	}
	na, nb := float64(len(a)), float64(len(b))
	var i, j int
	var d float64
	for i < len(a) && j < len(b) {
		x := min(a[i], b[j])
		for i < len(a) && a[i] <= x {
			i++
		}
		for j < len(b) && b[j] <= x {
			j++
		}
		d = max(d, math.Abs(float64(i)/na-float64(j)/nb))
	}
	return d
}

// KSCritical is the two-sample KS critical value of D at significance
// level alpha for samples of sizes n and m, √(−ln(α/2)/2)·√((n+m)/(n·m))
// (the asymptotic Smirnov bound; KSNoise is it at α = 0.05).
func KSCritical(alpha, n, m float64) float64 {
	if alpha <= 0 || alpha >= 1 {
		alpha = 0.05
	}
	c := math.Sqrt(-math.Log(alpha/2) / 2)
	return KSNoise(n, m) * c / 1.358
}

// DriftStatus is the current drift status of one intent kind and route,
// as the drift monitor publishes it after each evaluated window (on
// spine.drift.status, JSON).
type DriftStatus struct {
	Kind  string `json:"kind"`
	Route string `json:"route"`
	// Drifted is the last evaluated window's outcome.
	Drifted bool `json:"drifted"`
	// Window numbers the evaluated windows of this kind and route, from 1.
	Window int64 `json:"window"`
	// Rule, Measured and Threshold are the worst statistic of the window.
	Rule      string  `json:"rule"`
	Measured  float64 `json:"measured"`
	Threshold float64 `json:"threshold"`
	NRef      int     `json:"n_ref"`
	NCur      int     `json:"n_cur"`
	// Evidence holds every statistic, as the gate.drift event does.
	Evidence map[string]string `json:"evidence,omitempty"`
	At       time.Time         `json:"at"`
}

// DriftStatuses looks up the current drift status of an intent kind and
// route: false when none was published yet (no window evaluated), an error
// when the statuses cannot be known yet (a view still catching up).
type DriftStatuses interface {
	DriftStatus(kind, route string) (DriftStatus, bool, error)
}

// DriftStatusesFunc adapts a function to DriftStatuses.
type DriftStatusesFunc func(kind, route string) (DriftStatus, bool, error)

// DriftStatus calls f.
func (f DriftStatusesFunc) DriftStatus(kind, route string) (DriftStatus, bool, error) {
	return f(kind, route)
}

// DriftCheck is the drift gate of one run: it reads its kind and route's
// current status. In enforce mode a drifted kind and route fails the
// check, and a status that cannot be known yet is an error (the record is
// retried); in observe mode it passes and says so. It is safe for concurrent
// use when its DriftStatuses is.
type DriftCheck struct {
	mode     DriftMode
	statuses DriftStatuses
}

var _ Check = (*DriftCheck)(nil)

// Drift returns the drift check in mode (observe or enforce) on statuses.
func Drift(mode DriftMode, statuses DriftStatuses) *DriftCheck {
	return &DriftCheck{mode: mode, statuses: statuses}
}

// Name returns "drift".
func (c *DriftCheck) Name() string { return DriftName }

// Check implements Check.
func (c *DriftCheck) Check(_ context.Context, s Subject) (Outcome, error) {
	kind := ""
	if s.Event != nil {
		kind = s.Event.Intent
	}
	route := s.Route()
	st, ok, err := c.statuses.DriftStatus(kind, route)
	switch {
	case err != nil && c.mode == DriftEnforce:
		// Cannot decide: the runner returns it as transient and the
		// record is retried, so no run passes unseen while the view
		// catches up.
		return Outcome{}, fmt.Errorf("drift status of %s on %s: %w", kind, route, err)
	case err != nil:
		o := pass("status_unknown", fmt.Sprintf("drift status of %s on %s not known yet: %v", kind, route, err), 0, 0)
		o.Evidence = map[string]string{"kind": kind, "route": route, "mode": string(c.mode)}
		return o, nil
	case !ok:
		o := pass("no_reference", fmt.Sprintf("no evaluated window of %s on %s yet", kind, route), 0, 0)
		o.Evidence = map[string]string{"kind": kind, "route": route, "mode": string(c.mode)}
		return o, nil
	}
	// The run's evidence names the window and its sizes; every statistic
	// of the window is on its gate.drift window event (trace
	// drift/<kind>/<route>), not repeated on every run.
	ev := map[string]string{
		"kind": kind, "route": route, "mode": string(c.mode),
		"window": strconv.FormatInt(st.Window, 10),
		"n_ref":  strconv.Itoa(st.NRef), "n_cur": strconv.Itoa(st.NCur),
	}
	what := fmt.Sprintf("%s on %s, window %d: %s %.4g against %.4g (n_ref %d, n_cur %d)", kind, route, st.Window, st.Rule, st.Measured, st.Threshold, st.NRef, st.NCur)
	var o Outcome
	switch {
	case !st.Drifted:
		o = pass("within_reference", what, st.Measured, st.Threshold)
	case c.mode == DriftEnforce:
		o = fail("drifted", what, st.Measured, st.Threshold)
	default:
		o = pass("drifted_observed", what, st.Measured, st.Threshold)
	}
	o.Rule, o.Evidence = st.Rule, ev
	return o, nil
}

// DriftEvidence renders a result as evidence: the sample sizes and, per
// statistic, its value and threshold ("psi:score" → "0.031",
// "psi:score.threshold" → "0.34").
func DriftEvidence(r DriftResult) map[string]string {
	ev := make(map[string]string, 2*len(r.Stats)+3)
	for _, s := range r.Stats {
		ev[s.Rule()] = strconv.FormatFloat(s.Value, 'g', 5, 64)
		ev[s.Rule()+".threshold"] = strconv.FormatFloat(s.Threshold, 'g', 5, 64)
	}
	ev["n_ref"] = strconv.Itoa(r.Worst.NRef)
	ev["n_cur"] = strconv.Itoa(r.Worst.NCur)
	for _, m := range r.Skipped {
		ev["skipped:"+m.String()] = "too few values"
	}
	return ev
}
