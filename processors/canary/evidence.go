package canary

import (
	"context"
	"time"

	"github.com/spinerun/spine/gates"
	"github.com/spinerun/spine/projections"
	"github.com/spinerun/spine/schemas/thread"
)

// ScoreBins is the number of equal-width bins over scores 0..1 that the
// drift statistics compare.
const ScoreBins = 20

// EvidenceSource returns both sides of the rollout since a time. Evidence
// must honour ctx.
type EvidenceSource interface {
	Evidence(ctx context.Context, since time.Time) (gates.CanaryEvidence, error)
}

// EvidenceSourceFunc adapts a function to EvidenceSource.
type EvidenceSourceFunc func(ctx context.Context, since time.Time) (gates.CanaryEvidence, error)

// Evidence calls f.
func (f EvidenceSourceFunc) Evidence(ctx context.Context, since time.Time) (gates.CanaryEvidence, error) {
	return f(ctx, since)
}

// Aggregator is what ProjectionEvidence reads: a *projections.Store.
type Aggregator interface {
	Aggregate(rng projections.Range) *projections.Aggregates
}

// LatencySource says which latency the analysis compares.
type LatencySource string

// The latencies the analysis can compare.
const (
	// LatencyEndToEnd is the golden path's end-to-end latency, intent to
	// terminal event, from the thread's envelopes (the default).
	LatencyEndToEnd LatencySource = "end_to_end"
	// LatencyExecutor is the latency executors report on artifacts. Use it
	// when the executor only simulates its latency (the synthetic executor
	// without SPINE_SYNTHETIC_SLEEP), which the thread then never shows.
	LatencyExecutor LatencySource = "executor"
)

// ProjectionEvidence reads the evidence from the projections: every
// aggregate window from the one holding since onwards, merged exactly.
func ProjectionEvidence(a Aggregator, window time.Duration, latency LatencySource) EvidenceSource {
	if window <= 0 {
		window = projections.DefaultWindow
	}
	return EvidenceSourceFunc(func(_ context.Context, since time.Time) (gates.CanaryEvidence, error) {
		var rng projections.Range
		if !since.IsZero() {
			rng.From = since.Truncate(window)
		}
		rep := a.Aggregate(rng).CanaryReport()
		return EvidenceFromReport(rep, latency), nil
	})
}

// EvidenceFromReport turns the projections' canary comparison into analysis
// evidence. The canary gate itself (the analysis's own outcomes) and the
// per-run verdict (the conjunction of the others) are not compared.
func EvidenceFromReport(rep projections.CanaryReport, latency LatencySource) gates.CanaryEvidence {
	return gates.CanaryEvidence{Baseline: sideOf(rep.Baseline, latency), Canary: sideOf(rep.Canary, latency)}
}

func sideOf(s *projections.RouteSummary, latency LatencySource) gates.CanarySide {
	if s == nil {
		return gates.CanarySide{}
	}
	out := gates.CanarySide{
		Runs:       s.Terminal,
		Completed:  s.Runs["completed"],
		Executions: s.Artifacts + s.FailedExec,
		ExecFailed: s.FailedExec,
		Gates:      map[string]gates.Passes{},
		Latency:    gates.Latency{P50: float64(s.EndToEnd.P50), P95: float64(s.EndToEnd.P95), P99: float64(s.EndToEnd.P99)},
		Scores:     BinScores(s.ScoreBuckets),
	}
	if latency == LatencyExecutor && s.ArtifactsCell() != nil {
		h := &s.ArtifactsCell().ExecLatency
		out.Latency = gates.Latency{P50: float64(h.Quantile(0.50)), P95: float64(h.Quantile(0.95)), P99: float64(h.Quantile(0.99))}
	}
	for name, g := range s.Gates {
		if name == "canary" || name == thread.VerdictGate {
			continue
		}
		out.Gates[name] = gates.Passes{Passed: g.Passed, Total: g.Passed + g.Failed}
	}
	return out
}

// BinScores spreads histogram buckets of score×1e4 over ScoreBins equal
// bins of 0..1, by each bucket's midpoint (scores outside 0..1 go to the
// end bins).
func BinScores(bs []projections.Bucket) []float64 {
	out := make([]float64, ScoreBins)
	for _, b := range bs {
		mid := float64(b.Lo+b.Hi) / 2 / 1e4
		i := int(mid * ScoreBins)
		i = max(0, min(ScoreBins-1, i))
		out[i] += float64(b.Count)
	}
	return out
}
