package canary

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spinerun/spine/gates"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// Analyzer identity on the thread and in the flag history.
const (
	// AnalyzerActor is the actor of gate.canary events and the "who" of the
	// flag changes the analyzer makes.
	AnalyzerActor = "canary-analyzer"
	// AnalysisIntent is the intent kind of gate.canary events.
	AnalysisIntent = "canary.analysis"
	// GateName is the GateOutcome name of an analysis.
	GateName = "canary"
)

// EventType returns the event type of an analysis with action a, for
// example "canary.rollback".
func EventType(a gates.CanaryAction) schemas.EventType {
	switch a {
	case gates.ActionStep:
		return thread.CanaryStep
	case gates.ActionPromote:
		return thread.CanaryPromote
	case gates.ActionHold:
		return thread.CanaryHold
	case gates.ActionRollback:
		return thread.CanaryRollback
	}
	return thread.CanaryInconclusive
}

// Publisher writes events to the thread (a *pipeline.Producer).
type Publisher interface {
	Produce(ctx context.Context, outs ...pipeline.Output) ([]pipeline.Produced, error)
}

// FlagWriter reads and writes the rollout (a *Rollouts).
type FlagWriter interface {
	RolloutSource
	// RolloutRev returns the rollout and its revision.
	RolloutRev() (Rollout, int64)
	// SetRolloutIf writes r if the rollout is still at revision expect.
	SetRolloutIf(ctx context.Context, r Rollout, expect int64, who, why string) (pipeline.FlagChange, error)
}

// Policy returns the analysis policy a rollout describes.
func Policy(r Rollout) gates.CanaryPolicy {
	th := r.Thresholds
	return gates.CanaryPolicy{
		StepWeight: r.StepWeight, MaxWeight: r.MaxWeight, FailureLimit: r.FailureLimit, MinSamples: r.MinSamples,
		SuccessRateMin: th.SuccessRateMin, ErrorRateMax: th.ErrorRateMax, GatePassRateMin: th.GatePassRateMin,
		LatencyP99MaxRatio: th.LatencyP99MaxRatio, LatencyP99MaxMs: th.LatencyP99MaxMs,
		DriftMethod: gates.DriftMethod(th.DriftMethod), DriftMax: th.DriftMax,
	}
}

// Analysis is one analysis: the rollout before and after, the evidence,
// the decision, and the gate.canary event that records them.
type Analysis struct {
	At       time.Time             `json:"at"`
	Before   Rollout               `json:"before"`
	After    Rollout               `json:"after"`
	Evidence gates.CanaryEvidence  `json:"evidence"`
	Decision gates.CanaryDecision  `json:"decision"`
	Event    *schemas.RuntimeEvent `json:"-"`
}

// Changed reports whether the analysis moved the rollout (a flag change).
func (a Analysis) Changed() bool {
	b, c := a.Before, a.After
	return b.Weight != c.Weight || b.Phase != c.Phase || b.Failures != c.Failures || b.PauseReason != c.PauseReason || b.CanaryRunsAtLast != c.CanaryRunsAtLast
}

// Due reports whether a rollout is analysed: one somebody started (the
// default rollout, before anyone set the flag, is not) that is progressing,
// or that the analyzer itself paused as inconclusive.
func Due(r Rollout) bool {
	if r.Started.IsZero() {
		return false
	}
	return r.Phase == PhaseProgressing || (r.Phase == PhasePaused && r.PauseReason == PauseInconclusive)
}

// Analyze is one analysis, pure: the rollout and the evidence in, the next
// rollout and the gate.canary event out. A step keeps the rollout
// progressing, a promotion ends it promoted, a rollback sets the weight to
// 0 and ends it rolled back, a hold counts a failure, and an inconclusive
// analysis pauses it (resumed by the next conclusive one).
func Analyze(r Rollout, e gates.CanaryEvidence, now time.Time) Analysis {
	d := gates.Canary(Policy(r), gates.CanaryState{Weight: r.Weight, Failures: r.Failures, RunsAtLast: r.CanaryRunsAtLast}, e)
	next := r
	next.Weight, next.Failures, next.CanaryRunsAtLast = d.Weight, d.Failures, d.RunsAtLast
	switch d.Action {
	case gates.ActionStep, gates.ActionHold:
		next.Phase, next.PauseReason = PhaseProgressing, ""
	case gates.ActionPromote:
		next.Phase, next.PauseReason = PhasePromoted, ""
	case gates.ActionRollback:
		next.Phase, next.PauseReason = PhaseRolledBack, ""
	case gates.ActionInconclusive:
		next.Phase, next.PauseReason = PhasePaused, PauseInconclusive
	}
	a := Analysis{At: now.UTC(), Before: r, After: next, Evidence: e, Decision: d}
	a.Event = analysisEvent(a)
	return a
}

// RolloutTrace is the trace id of one rollout's analyses: every gate.canary
// event of a rollout shares it, so `spine trace` shows the rollout.
func RolloutTrace(r Rollout) string {
	return "rollout." + FlagV2Rollout + "." + strconv.FormatInt(r.Started.UnixMilli(), 10)
}

func f64(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }

// analysisEvent builds the gate.canary event: the decision in the
// GateOutcome (measured against threshold: the first failed check, or the
// sample size when inconclusive, or the canary success rate) and every
// piece of evidence as v2 attributes.
func analysisEvent(a Analysis) *schemas.RuntimeEvent {
	d, e, b := a.Decision, a.Evidence, a.Before
	trace := RolloutTrace(b)
	step := strconv.FormatInt(a.At.UnixNano(), 10)
	g := &schemas.GateOutcome{Name: GateName, Passed: d.Action == gates.ActionStep || d.Action == gates.ActionPromote, Reason: d.Reason}
	switch failed := d.Failed(); {
	case d.Action == gates.ActionInconclusive:
		g.Measured, g.Threshold = float64(min(e.Canary.Runs, e.Baseline.Runs)), float64(b.MinSamples)
	case len(failed) > 0:
		g.Measured, g.Threshold = failed[0].Canary, failed[0].Threshold
	default:
		g.Measured, g.Threshold = e.Canary.SuccessRate(), b.Thresholds.SuccessRateMin
	}
	at := map[string]string{
		"decision":         string(d.Action),
		"weight_before_bp": strconv.Itoa(b.Weight),
		"weight_after_bp":  strconv.Itoa(a.After.Weight),
		"phase_before":     string(b.Phase),
		"phase_after":      string(a.After.Phase),
		"failures":         strconv.Itoa(d.Failures),
		"failure_limit":    strconv.Itoa(b.FailureLimit),
		"step_weight_bp":   strconv.Itoa(b.StepWeight),
		"max_weight_bp":    strconv.Itoa(b.MaxWeight),
		"min_samples":      strconv.FormatInt(b.MinSamples, 10),
		"window_start":     b.Started.UTC().Format(time.RFC3339Nano),
		"drift_method":     b.Thresholds.DriftMethod,
	}
	for name, s := range map[string]gates.CanarySide{"baseline": e.Baseline, "canary": e.Canary} {
		at[name+".runs"] = strconv.FormatInt(s.Runs, 10)
		at[name+".completed"] = strconv.FormatInt(s.Completed, 10)
		at[name+".success_rate"] = f64(s.SuccessRate())
		at[name+".executions"] = strconv.FormatInt(s.Executions, 10)
		at[name+".error_rate"] = f64(s.ErrorRate())
		at[name+".p50_ms"] = f64(s.Latency.P50)
		at[name+".p95_ms"] = f64(s.Latency.P95)
		at[name+".p99_ms"] = f64(s.Latency.P99)
		for gn, p := range s.Gates {
			at[name+".gate."+gn+".pass_rate"] = f64(p.Rate())
			at[name+".gate."+gn+".samples"] = strconv.FormatInt(p.Total, 10)
		}
	}
	for _, c := range d.Checks {
		at["check."+c.Name+".baseline"] = f64(c.Baseline)
		at["check."+c.Name+".canary"] = f64(c.Canary)
		at["check."+c.Name+".threshold"] = f64(c.Threshold)
		at["check."+c.Name+".passed"] = strconv.FormatBool(c.Passed)
	}
	return &schemas.RuntimeEvent{
		EventID:       thread.ID(trace, "canary", step),
		TraceID:       trace,
		SpanID:        thread.SpanID(trace, "canary", step),
		Actor:         AnalyzerActor,
		Intent:        AnalysisIntent,
		SchemaVersion: schemas.V2,
		Timestamp:     a.At,
		RunStarted:    b.Started.UTC(),
		Phase:         schemas.PhaseGate,
		EventType:     EventType(d.Action),
		State:         string(a.After.Phase),
		Gate:          g,
		Route:         thread.RouteCanary,
		Attributes:    at,
	}
}

// AnalyzerConfig configures an Analyzer. Flags, Evidence and Publisher are
// required.
type AnalyzerConfig struct {
	Flags     FlagWriter
	Evidence  EvidenceSource
	Publisher Publisher
	Layout    pipeline.Layout
	// Logger defaults to discard.
	Logger *slog.Logger
	// Registerer receives spine_canary_analyses_total{action} and
	// spine_canary_weight_bp; nil registers nothing.
	Registerer prometheus.Registerer
	// Now defaults to time.Now.
	Now func() time.Time
	// LatencySource names the latency Evidence compares, recorded on each
	// event as the attribute latency_source (default end_to_end).
	LatencySource LatencySource
	// Leader, when set, lets only the leading process analyse (a
	// *pipeline.Leader), so that several processes take one decision.
	Leader interface{ Leading() bool }
}

// Analyzer runs the canary analysis every rollout interval. It is safe for
// concurrent use; Run must be called once.
type Analyzer struct {
	cfg      AnalyzerConfig
	log      *slog.Logger
	analyses *prometheus.CounterVec
	weight   prometheus.GaugeFunc

	mu   sync.Mutex
	last []Analysis
}

// NewAnalyzer returns an analyzer; it does no I/O.
func NewAnalyzer(cfg AnalyzerConfig) (*Analyzer, error) {
	if cfg.Flags == nil || cfg.Evidence == nil || cfg.Publisher == nil {
		return nil, errors.New("canary analyzer: Flags, Evidence and Publisher are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &Analyzer{cfg: cfg, log: cfg.Logger.With("component", "canary-analyzer")}
	a.analyses = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spine_canary_analyses_total", Help: "Canary analyses by decision (step, promote, hold, rollback, inconclusive)."}, []string{"action"})
	a.weight = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "spine_canary_weight_bp", Help: "The canary's current weight in basis points (100 = 1%)."}, func() float64 { return float64(cfg.Flags.Rollout().Weight) })
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(a.analyses); err != nil {
			return nil, err
		}
		if err := cfg.Registerer.Register(a.weight); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// Run analyses every rollout interval until ctx ends; it returns nil then.
// The interval is read afresh on every poll (four times an interval, at
// least every 250 ms), so a flag change of the interval, or a new rollout,
// applies at once. Errors of one analysis are logged and retried at the
// next interval.
func (a *Analyzer) Run(ctx context.Context) error {
	// The first analysis is one interval after the start.
	last, started := time.Now(), a.cfg.Flags.Rollout().Started
	for {
		r := a.cfg.Flags.Rollout()
		iv := time.Duration(r.Interval)
		if iv <= 0 {
			iv = 30 * time.Second
		}
		if !r.Started.Equal(started) {
			// A new rollout: its first analysis is one interval after now.
			started, last = r.Started, time.Now()
		}
		if time.Since(last) >= iv {
			last = time.Now()
			if _, _, err := a.AnalyzeOnce(ctx); err != nil && ctx.Err() == nil {
				a.log.Warn("canary analysis failed; retrying at the next interval", "err", err)
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(min(iv/4, 250*time.Millisecond)):
		}
	}
}

// AnalyzeOnce analyses the rollout now if it is due (see Due) and this
// process leads (when a Leader is configured): it reads the
// evidence, decides, publishes the gate.canary event and then, if the
// rollout moved, writes the flag change. It reports whether it analysed.
func (a *Analyzer) AnalyzeOnce(ctx context.Context) (Analysis, bool, error) {
	r, rev := a.cfg.Flags.RolloutRev()
	if !Due(r) || (a.cfg.Leader != nil && !a.cfg.Leader.Leading()) {
		return Analysis{}, false, nil
	}
	e, err := a.cfg.Evidence.Evidence(ctx, r.Started)
	if err != nil {
		return Analysis{}, false, fmt.Errorf("read canary evidence: %w", err)
	}
	an := Analyze(r, e, a.cfg.Now())
	src := a.cfg.LatencySource
	if src == "" {
		src = LatencyEndToEnd
	}
	an.Event.Attributes["latency_source"] = string(src)
	if _, now := a.cfg.Flags.RolloutRev(); now != rev {
		// Someone changed the rollout while the evidence was read: decide
		// on the new one at the next interval.
		return an, false, fmt.Errorf("canary analysis dropped: %w (revision %d, now %d)", pipeline.ErrFlagConflict, rev, now)
	}
	out := pipeline.Output{Topic: a.cfg.Layout.Gate(GateName), Key: []byte(an.Event.TraceID), Value: an.Event, Version: schemas.V2}
	if _, err := a.cfg.Publisher.Produce(ctx, out); err != nil {
		return an, true, fmt.Errorf("publish %s to %s: %w", an.Event.EventType, out.Topic, err)
	}
	a.analyses.WithLabelValues(string(an.Decision.Action)).Inc()
	if an.Changed() {
		if _, err := a.cfg.Flags.SetRolloutIf(ctx, an.After, rev, AnalyzerActor, an.Decision.Reason); err != nil {
			return an, true, fmt.Errorf("record canary decision %s: %w", an.Decision.Action, err)
		}
	}
	a.log.Info("canary analysis", "decision", an.Decision.Action, "weight_bp", an.After.Weight, "phase", an.After.Phase,
		"canary_runs", e.Canary.Runs, "baseline_runs", e.Baseline.Runs, "reason", an.Decision.Reason)
	a.mu.Lock()
	a.last = append(a.last, an)
	if len(a.last) > 1000 {
		a.last = a.last[len(a.last)-1000:]
	}
	a.mu.Unlock()
	return an, true, nil
}

// Analyses returns the analyses this analyzer made (the last 1000), oldest
// first.
func (a *Analyzer) Analyses() []Analysis {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Analysis(nil), a.last...)
}
