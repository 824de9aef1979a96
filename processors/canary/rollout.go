package canary

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spinerun/spine/pipeline"
)

// The v2 rollout: the typed value of FlagV2Rollout that the canary router
// and analyzer read and move.

// RolloutPhase is where a rollout stands.
type RolloutPhase string

// The phases of a rollout.
const (
	// PhaseProgressing: the analyzer analyses every interval and steps the
	// weight up or rolls back.
	PhaseProgressing RolloutPhase = "progressing"
	// PhasePromoted: every analysis passed up to the max weight; all the
	// traffic goes to v2 (weight 10000) and the analyzer stops. An operator
	// then makes v2 the baseline or starts the next rollout.
	PhasePromoted RolloutPhase = "promoted"
	// PhaseRolledBack: the failure limit was reached; the weight is 0 and
	// the analyzer stops.
	PhaseRolledBack RolloutPhase = "rolled_back"
	// PhasePaused: no decision is taken. A pause the analyzer took because
	// an analysis was inconclusive (PauseReason "inconclusive") resumes by
	// itself once there are enough samples; any other pause waits for a
	// person to set the phase back to progressing.
	PhasePaused RolloutPhase = "paused"
)

// PauseInconclusive is the PauseReason of a pause taken by the analyzer.
const PauseInconclusive = "inconclusive"

// Valid reports whether p is a known phase.
func (p RolloutPhase) Valid() bool {
	switch p {
	case PhaseProgressing, PhasePromoted, PhaseRolledBack, PhasePaused:
		return true
	}
	return false
}

// Duration is a time.Duration that reads and writes as text ("30s").
type Duration time.Duration

// MarshalText encodes d as Go duration text.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText decodes Go duration text.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// RolloutThresholds are the canary analysis thresholds. A zero value
// disables its check.
type RolloutThresholds struct {
	// SuccessRateMin is the lowest canary success rate (0..1).
	SuccessRateMin float64 `json:"success_rate_min"`
	// ErrorRateMax is the highest canary execution failure rate (0..1).
	ErrorRateMax float64 `json:"error_rate_max"`
	// GatePassRateMin is the lowest canary pass rate of each gate (0..1).
	GatePassRateMin float64 `json:"gate_pass_rate_min"`
	// LatencyP99MaxRatio is the highest canary p99 as a multiple of the
	// baseline's.
	LatencyP99MaxRatio float64 `json:"latency_p99_max_ratio"`
	// LatencyP99MaxMs is the highest canary p99 in milliseconds.
	LatencyP99MaxMs float64 `json:"latency_p99_max_ms"`
	// DriftMethod is "psi" or "ks".
	DriftMethod string `json:"drift_method"`
	// DriftMax is the highest drift statistic of the score distribution.
	DriftMax float64 `json:"drift_max"`
}

// Rollout is the typed value of FlagV2Rollout: the canary's weight, how
// the analyzer moves it, and where the rollout stands. Weights are basis
// points (0..10000; 100 bp = 1%).
type Rollout struct {
	// Weight is the share of runs routed to the canary.
	Weight int `json:"weight_bp"`
	// StepWeight is added after each passing analysis.
	StepWeight int `json:"step_weight_bp"`
	// MaxWeight is where a passing analysis promotes.
	MaxWeight int `json:"max_weight_bp"`
	// Interval is the time between analyses.
	Interval Duration `json:"interval"`
	// RouteKey is what the router hashes: "trace_id" (default) or "actor".
	RouteKey string `json:"route_key"`
	// FailureLimit is the number of failed analyses that rolls back.
	FailureLimit int `json:"failure_limit"`
	// MinSamples is the number of finished runs each side needs before an
	// analysis decides (fewer is inconclusive).
	MinSamples int64 `json:"min_samples"`
	// Thresholds are what the canary is held to.
	Thresholds RolloutThresholds `json:"thresholds"`
	// Phase is where the rollout stands.
	Phase RolloutPhase `json:"phase"`
	// PauseReason says why a paused rollout pauses.
	PauseReason string `json:"pause_reason,omitempty"`
	// Failures counts failed analyses in this rollout.
	Failures int `json:"failures"`
	// CanaryRunsAtLast is the canary's finished runs at the last
	// conclusive analysis; the next needs MinSamples more.
	CanaryRunsAtLast int64 `json:"canary_runs_at_last,omitempty"`
	// Started is when this rollout (its analysis window) began.
	Started time.Time `json:"started,omitzero"`
}

// DefaultRollout is the rollout before anyone set the flag: no canary
// traffic, 10% steps to 50%, analysed every 30 s.
func DefaultRollout() Rollout {
	return Rollout{
		Weight: 0, StepWeight: 1000, MaxWeight: 5000,
		Interval: Duration(30 * time.Second), RouteKey: "trace_id",
		FailureLimit: 3, MinSamples: 50,
		Thresholds: RolloutThresholds{
			SuccessRateMin: 0.95, ErrorRateMax: 0.05, GatePassRateMin: 0.95,
			LatencyP99MaxRatio: 1.5, DriftMethod: "psi", DriftMax: 0.2,
		},
		Phase: PhaseProgressing,
	}
}

// Validate reports every problem of r at once, wrapped in pipeline.ErrInvalidFlag.
func (r Rollout) Validate() error {
	var errs []string
	bad := func(f string, a ...any) { errs = append(errs, fmt.Sprintf(f, a...)) }
	inBP := func(name string, v, lo int) {
		if v < lo || v > 10000 {
			bad("%s %d bp is not in %d..10000", name, v, lo)
		}
	}
	inBP("weight", r.Weight, 0)
	inBP("step_weight", r.StepWeight, 1)
	inBP("max_weight", r.MaxWeight, 1)
	if r.Interval < Duration(10*time.Millisecond) {
		bad("interval %s is below 10ms", time.Duration(r.Interval))
	}
	if r.RouteKey != "trace_id" && r.RouteKey != "actor" {
		bad("route_key %q is not trace_id or actor", r.RouteKey)
	}
	if r.FailureLimit < 1 {
		bad("failure_limit %d is below 1", r.FailureLimit)
	}
	if r.MinSamples < 1 {
		bad("min_samples %d is below 1", r.MinSamples)
	}
	if r.Failures < 0 {
		bad("failures %d is negative", r.Failures)
	}
	if r.CanaryRunsAtLast < 0 {
		bad("canary_runs_at_last %d is negative", r.CanaryRunsAtLast)
	}
	th := r.Thresholds
	for name, v := range map[string]float64{"success_rate_min": th.SuccessRateMin, "error_rate_max": th.ErrorRateMax, "gate_pass_rate_min": th.GatePassRateMin} {
		if !(v >= 0 && v <= 1) {
			bad("%s %v is not in 0..1", name, v)
		}
	}
	for name, v := range map[string]float64{"latency_p99_max_ratio": th.LatencyP99MaxRatio, "latency_p99_max_ms": th.LatencyP99MaxMs, "drift_max": th.DriftMax} {
		if !(v >= 0) || math.IsInf(v, 0) {
			bad("%s %v is negative or not finite", name, v)
		}
	}
	if th.DriftMethod != "psi" && th.DriftMethod != "ks" {
		bad("drift_method %q is not psi or ks", th.DriftMethod)
	}
	if !r.Phase.Valid() {
		bad("phase %q is not progressing, promoted, rolled_back or paused", r.Phase)
	}
	if len(errs) > 0 {
		slices.Sort(errs)
		return fmt.Errorf("%w %s: %s", pipeline.ErrInvalidFlag, FlagV2Rollout, strings.Join(errs, "; "))
	}
	return nil
}

// RolloutSettings lists the names Rollout.Apply accepts, for help texts.
var RolloutSettings = []string{
	"weight", "step_weight", "max_weight", "interval", "route_key",
	"failure_limit", "min_samples", "failures", "phase",
	"success_rate_min", "error_rate_max", "gate_pass_rate_min",
	"latency_p99_max_ratio", "latency_p99_max_ms", "drift_method", "drift_max",
}

// ParseWeight parses a weight given as a percentage ("10", "10%", "12.5%")
// or in basis points ("1000bp") into basis points.
func ParseWeight(s string) (int, error) {
	s = strings.TrimSpace(s)
	if b, ok := strings.CutSuffix(s, "bp"); ok {
		v, err := strconv.Atoi(strings.TrimSpace(b))
		if err != nil || v < 0 || v > 10000 {
			return 0, fmt.Errorf("%w: weight %q is not 0bp..10000bp", pipeline.ErrInvalidFlag, s)
		}
		return v, nil
	}
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if err != nil || !(v >= 0 && v <= 100) {
		return 0, fmt.Errorf("%w: weight %q is not a percentage 0..100 (or 0bp..10000bp)", pipeline.ErrInvalidFlag, s)
	}
	return int(math.Round(v * 100)), nil
}

// Apply sets one named setting of r from text (see RolloutSettings); weights
// are percentages or basis points (ParseWeight). Moving a finished or
// paused rollout back to progressing starts a new rollout at now: the
// failure count is reset and the analysis window restarts.
func (r *Rollout) Apply(name, value string, now time.Time) error {
	value = strings.TrimSpace(value)
	fl := func(dst *float64) error {
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return fmt.Errorf("%w: %s %q is not a number", pipeline.ErrInvalidFlag, name, value)
		}
		*dst = v
		return nil
	}
	in := func(dst *int) error {
		v, err := strconv.Atoi(value)
		if err != nil {
			return fmt.Errorf("%w: %s %q is not an integer", pipeline.ErrInvalidFlag, name, value)
		}
		*dst = v
		return nil
	}
	w := func(dst *int) error {
		v, err := ParseWeight(value)
		if err != nil {
			return err
		}
		*dst = v
		return nil
	}
	th := &r.Thresholds
	switch name {
	case "weight":
		return w(&r.Weight)
	case "step_weight":
		return w(&r.StepWeight)
	case "max_weight":
		return w(&r.MaxWeight)
	case "interval":
		d, err := time.ParseDuration(value)
		if err != nil {
			return fmt.Errorf("%w: interval %q is not a duration such as 30s", pipeline.ErrInvalidFlag, value)
		}
		r.Interval = Duration(d)
	case "route_key":
		r.RouteKey = value
	case "failure_limit":
		return in(&r.FailureLimit)
	case "failures":
		return in(&r.Failures)
	case "min_samples":
		v, err := strconv.ParseInt(value, 10, 64)
		if err != nil {
			return fmt.Errorf("%w: min_samples %q is not an integer", pipeline.ErrInvalidFlag, value)
		}
		r.MinSamples = v
	case "phase":
		p := RolloutPhase(value)
		if p == PhaseProgressing && r.Phase != PhaseProgressing {
			r.Failures, r.Started, r.PauseReason, r.CanaryRunsAtLast = 0, now.UTC(), "", 0
		}
		if p == PhasePaused {
			r.PauseReason = "manual"
		}
		r.Phase = p
	case "success_rate_min":
		return fl(&th.SuccessRateMin)
	case "error_rate_max":
		return fl(&th.ErrorRateMax)
	case "gate_pass_rate_min":
		return fl(&th.GatePassRateMin)
	case "latency_p99_max_ratio":
		return fl(&th.LatencyP99MaxRatio)
	case "latency_p99_max_ms":
		return fl(&th.LatencyP99MaxMs)
	case "drift_method":
		th.DriftMethod = strings.ToLower(value)
	case "drift_max":
		return fl(&th.DriftMax)
	default:
		return fmt.Errorf("%w: %s has no setting %q (settings: %s)", pipeline.ErrInvalidFlag, FlagV2Rollout, name, strings.Join(RolloutSettings, ", "))
	}
	return nil
}
