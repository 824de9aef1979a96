package canary_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/gates"
	"github.com/spinerun/spine/internal/spinetest"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/canary"
	"github.com/spinerun/spine/projections"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// foldRuns folds n runs of one route into cells, as the projections do
// from the thread: each run's golden path, gate outcomes and terminal event.
func foldRuns(cells projections.Cells, start time.Time, route string, n int, latency time.Duration, failEvery int, score float64) {
	var f projections.Folder
	ver := schemas.V1
	if route == "canary" {
		ver = schemas.V2
	}
	for i := range n {
		trace := fmt.Sprintf("%s-%d", route, i)
		t0 := start.Add(time.Duration(i) * time.Millisecond)
		ev := func(topic string, typ schemas.EventType, at time.Duration, mod func(*schemas.RuntimeEvent)) {
			e := &schemas.RuntimeEvent{TraceID: trace, EventID: trace + string(typ) + topic, SchemaVersion: ver, Route: route, Timestamp: t0.Add(at), RunStarted: t0, EventType: typ, Phase: schemas.PhaseControl}
			if mod != nil {
				mod(e)
			}
			f.Fold(cells, projections.Source{Topic: topic}, e, ver)
		}
		ev("spine.control", "intent.received", 0, nil)
		ev("spine.dataplane", "dataplane.dispatched", latency/4, nil)
		failed := failEvery > 0 && i%failEvery == 0
		if failed {
			ev("spine.dataplane", "dataplane.failed", latency/2, nil)
			ev("spine.control", "run.failed", latency, nil)
			continue
		}
		s := score + 0.1*math.Sin(float64(i))
		ev("spine.dataplane", "artifact.delivered", latency/2, func(e *schemas.RuntimeEvent) {
			e.Artifact = &schemas.ArtifactSummary{Score: s, LatencyMs: latency.Milliseconds() / 2}
		})
		for _, g := range []string{"schema", "performance", "verdict"} {
			ev("gate."+g, "gate.passed", latency*3/4, func(e *schemas.RuntimeEvent) {
				e.Phase, e.Gate = schemas.PhaseGate, &schemas.GateOutcome{Name: g, Passed: true}
			})
		}
		ev("spine.control", "run.completed", latency, nil)
	}
	// An analysis event must not count as a gate of either route.
	ev := &schemas.RuntimeEvent{TraceID: "rollout.x", SchemaVersion: schemas.V2, Route: "canary", Timestamp: start, Phase: schemas.PhaseGate, EventType: thread.CanaryHold, Gate: &schemas.GateOutcome{Name: "canary"}}
	f.Fold(cells, projections.Source{Topic: "gate.canary"}, ev, schemas.V2)
}

func TestEvidenceFromProjections(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cells := projections.Cells{}
	foldRuns(cells, start, "baseline", 300, 20*time.Millisecond, 0, 0.5)
	foldRuns(cells, start, "canary", 100, 80*time.Millisecond, 10, 0.8)
	src := canary.ProjectionEvidence(projections.NewMemStore(cells, 0), 0, canary.LatencyEndToEnd)
	e, err := src.Evidence(t.Context(), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	b, c := e.Baseline, e.Canary
	if b.Runs != 300 || b.Completed != 300 || c.Runs != 100 || c.Completed != 90 {
		t.Fatalf("runs: baseline %d/%d canary %d/%d", b.Completed, b.Runs, c.Completed, c.Runs)
	}
	if c.Executions != 100 || c.ExecFailed != 10 || b.ExecFailed != 0 {
		t.Errorf("executions: canary %d failed of %d, baseline %d failed", c.ExecFailed, c.Executions, b.ExecFailed)
	}
	if math.Abs(b.Latency.P99-20) > 1 || math.Abs(c.Latency.P99-80) > 3 {
		t.Errorf("p99: baseline %v canary %v, want ~20 and ~80", b.Latency.P99, c.Latency.P99)
	}
	if _, ok := c.Gates["canary"]; ok {
		t.Error("the analysis's own gate is compared")
	}
	if _, ok := c.Gates["verdict"]; ok {
		t.Error("the verdict is compared as a gate")
	}
	if p := c.Gates["schema"]; p.Total != 90 || p.Passed != 90 {
		t.Errorf("canary schema gate %+v", p)
	}
	var sb, sc float64
	for i := range b.Scores {
		sb += b.Scores[i]
		sc += c.Scores[i]
	}
	if sb != 300 || sc != 90 {
		t.Errorf("score samples %v and %v", sb, sc)
	}
	if psi := gates.PSI(b.Scores, c.Scores); psi < 1 {
		t.Errorf("scores centred on 0.5 and 0.8 have PSI %v", psi)
	}
	// The executor-reported latency (half the run's, in foldRuns).
	ex, _ := canary.ProjectionEvidence(projections.NewMemStore(cells, 0), 0, canary.LatencyExecutor).Evidence(t.Context(), time.Time{})
	if math.Abs(ex.Baseline.Latency.P99-10) > 1 || math.Abs(ex.Canary.Latency.P99-40) > 2 {
		t.Errorf("executor p99: baseline %v canary %v, want ~10 and ~40", ex.Baseline.Latency.P99, ex.Canary.Latency.P99)
	}
	// A window after every run selects nothing.
	e, _ = src.Evidence(t.Context(), start.Add(time.Hour))
	if e.Baseline.Runs != 0 || e.Canary.Runs != 0 {
		t.Errorf("evidence since an hour later: %+v", e)
	}
}

func rollout(weight int) canary.Rollout {
	r := canary.DefaultRollout()
	r.Weight, r.StepWeight, r.MaxWeight, r.FailureLimit, r.MinSamples = weight, 1000, 3000, 2, 50
	r.Started = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	return r
}

func evidence(canaryP99 float64, canaryRuns int64) gates.CanaryEvidence {
	s := func(p99 float64, runs int64) gates.CanarySide {
		return gates.CanarySide{Runs: runs, Completed: runs, Executions: runs, Latency: gates.Latency{P50: p99 / 3, P95: p99 / 2, P99: p99},
			Gates: map[string]gates.Passes{"schema": {Passed: runs, Total: runs}}}
	}
	return gates.CanaryEvidence{Baseline: s(30, 500), Canary: s(canaryP99, canaryRuns)}
}

func TestDue(t *testing.T) {
	t.Parallel()
	started := rollout(1000)
	manual := started
	manual.Phase, manual.PauseReason = canary.PhasePaused, "manual"
	auto := started
	auto.Phase, auto.PauseReason = canary.PhasePaused, canary.PauseInconclusive
	done := started
	done.Phase = canary.PhasePromoted
	for name, tt := range map[string]struct {
		r    canary.Rollout
		want bool
	}{
		"never started (the default)": {canary.DefaultRollout(), false},
		"progressing":                 {started, true},
		"paused by a person":          {manual, false},
		"paused as inconclusive":      {auto, true},
		"promoted":                    {done, false},
	} {
		if got := canary.Due(tt.r); got != tt.want {
			t.Errorf("%s: Due = %v, want %v", name, got, tt.want)
		}
	}
}

func TestAnalyze(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 5, 0, 0, time.UTC)
	paused := rollout(1000)
	paused.Phase, paused.PauseReason = canary.PhasePaused, canary.PauseInconclusive
	failedOnce := rollout(1000)
	failedOnce.Failures = 1
	tests := []struct {
		name      string
		r         canary.Rollout
		e         gates.CanaryEvidence
		event     schemas.EventType
		phase     canary.RolloutPhase
		weight    int
		passed    bool
		changed   bool
		measured  float64
		threshold float64
	}{
		{"equal steps up", rollout(1000), evidence(30, 100), thread.CanaryStep, canary.PhaseProgressing, 2000, true, true, 1, 0.95},
		{"equal at max promotes to all the traffic", rollout(3000), evidence(30, 100), thread.CanaryPromote, canary.PhasePromoted, 10000, true, true, 1, 0.95},
		{"slower holds first", rollout(1000), evidence(90, 100), thread.CanaryHold, canary.PhaseProgressing, 1000, false, true, 45, 1.5},
		{"slower again rolls back", failedOnce, evidence(90, 100), thread.CanaryRollback, canary.PhaseRolledBack, 0, false, true, 45, 1.5},
		{"too few samples pauses", rollout(1000), evidence(30, 10), thread.CanaryInconclusive, canary.PhasePaused, 1000, false, true, 10, 50},
		{"still too few stays paused, unchanged", paused, evidence(30, 10), thread.CanaryInconclusive, canary.PhasePaused, 1000, false, false, 10, 50},
		{"enough samples resume a paused rollout", paused, evidence(30, 100), thread.CanaryStep, canary.PhaseProgressing, 2000, true, true, 1, 0.95},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if !canary.Due(tt.r) {
				t.Fatal("rollout not due")
			}
			a := canary.Analyze(tt.r, tt.e, now)
			ev := a.Event
			if ev.EventType != tt.event || a.After.Phase != tt.phase || a.After.Weight != tt.weight || a.Changed() != tt.changed {
				t.Fatalf("got %s phase %s weight %d changed %v; want %s %s %d %v", ev.EventType, a.After.Phase, a.After.Weight, a.Changed(), tt.event, tt.phase, tt.weight, tt.changed)
			}
			if ev.Gate == nil || ev.Gate.Name != "canary" || ev.Gate.Passed != tt.passed || ev.Gate.Measured != tt.measured || ev.Gate.Threshold != tt.threshold || ev.Gate.Reason == "" {
				t.Fatalf("gate outcome %+v", ev.Gate)
			}
			if ev.SchemaVersion != schemas.V2 || ev.Phase != schemas.PhaseGate || ev.TraceID != canary.RolloutTrace(tt.r) || ev.EventID == "" || ev.SpanID == "" || !ev.Timestamp.Equal(now) {
				t.Fatalf("envelope %+v", ev)
			}
			q, qb := "p95", "15"
			if tt.e.Canary.Runs < 100 {
				q, qb = "p50", "10"
			}
			for k, want := range map[string]string{
				"check.latency_" + q + "_ratio.threshold": "1.5", "check.latency_" + q + "_ratio.baseline": qb,
				"decision": strings.TrimPrefix(string(tt.event), "canary."), "baseline.runs": "500", "canary.runs": fmt.Sprint(tt.e.Canary.Runs),
				"baseline.p99_ms": "30", "canary.p99_ms": fmt.Sprint(tt.e.Canary.Latency.P99), "min_samples": "50", "failure_limit": "2",
				"weight_after_bp": fmt.Sprint(tt.weight), "canary.gate.schema.samples": fmt.Sprint(tt.e.Canary.Runs),
			} {
				if got := ev.Attributes[k]; got != want {
					t.Errorf("attribute %s = %q, want %q", k, got, want)
				}
			}
			if err := ev.ValidateAt(now); err != nil {
				t.Errorf("event does not validate against its contract: %v", err)
			}
		})
	}
}

// recorder is a Publisher that keeps what it was given.
type recorder struct {
	mu   sync.Mutex
	outs []pipeline.Output
}

func (r *recorder) Produce(_ context.Context, outs ...pipeline.Output) ([]pipeline.Produced, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.outs = append(r.outs, outs...)
	return make([]pipeline.Produced, len(outs)), nil
}

// startedFlags runs a flag store on a fresh layout of the test broker until
// the test ends, with the rollout at 10 %.
func startedFlags(t *testing.T) (*canary.Rollouts, pipeline.Layout) {
	t.Helper()
	brokers, l := flagsEnv(t)
	flags := canary.NewRollouts([]kgo.Opt{kgo.SeedBrokers(brokers...)}, l)
	spinetest.Start(t, "flags", flags.Run)
	if _, err := flags.SetRollout(t.Context(), rollout(1000), "tester", "start"); err != nil {
		t.Fatal(err)
	}
	return flags, l
}

func TestAnalyzerRecordsEachDecisionAsAFlagChange(t *testing.T) {
	t.Parallel()
	flags, l := startedFlags(t)

	// Evidence: too few samples, then equal twice, then slower until the
	// failure limit.
	seq := []gates.CanaryEvidence{evidence(30, 5), evidence(30, 100), evidence(30, 200), evidence(95, 300), evidence(95, 400)}
	var i int
	src := canary.EvidenceSourceFunc(func(context.Context, time.Time) (gates.CanaryEvidence, error) {
		e := seq[min(i, len(seq)-1)]
		i++
		return e, nil
	})
	pub := &recorder{}
	an, err := canary.NewAnalyzer(canary.AnalyzerConfig{Flags: flags, Evidence: src, Publisher: pub, Layout: l})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for range 6 {
		a, ran, err := an.AnalyzeOnce(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if !ran {
			got = append(got, "not-due")
			continue
		}
		got = append(got, fmt.Sprintf("%s@%d", a.Decision.Action, flags.Rollout().Weight))
	}
	want := "inconclusive@1000 step@2000 step@3000 hold@3000 rollback@0 not-due"
	if s := strings.Join(got, " "); s != want {
		t.Fatalf("decisions %q, want %q", s, want)
	}
	if len(pub.outs) != 5 {
		t.Fatalf("published %d gate.canary events, want 5", len(pub.outs))
	}
	for _, o := range pub.outs {
		if o.Topic != l.Gate("canary") || o.Version != schemas.V2 {
			t.Errorf("published to %s as %v", o.Topic, o.Version)
		}
	}
	h := flags.History(canary.FlagV2Rollout)
	var by []string
	for _, c := range h[1:] {
		r, _ := canary.RolloutOf(c)
		if c.Who != canary.AnalyzerActor || c.Why == "" {
			t.Errorf("change %d by %q why %q", c.Rev, c.Who, c.Why)
		}
		by = append(by, fmt.Sprintf("%s/%d", r.Phase, r.Weight))
	}
	if s := strings.Join(by, " "); s != "paused/1000 progressing/2000 progressing/3000 progressing/3000 rolled_back/0" {
		t.Fatalf("flag history %q", s)
	}
}

func TestAnalyzerDropsADecisionWhenTheRolloutMoved(t *testing.T) {
	t.Parallel()
	flags, l := startedFlags(t)
	// A person pauses the rollout while the analyzer reads the evidence.
	src := canary.EvidenceSourceFunc(func(ctx context.Context, _ time.Time) (gates.CanaryEvidence, error) {
		r := flags.Rollout()
		r.Phase = canary.PhasePaused
		if _, err := flags.SetRollout(ctx, r, "alice", "incident"); err != nil {
			return gates.CanaryEvidence{}, err
		}
		return evidence(30, 100), nil
	})
	pub := &recorder{}
	an, err := canary.NewAnalyzer(canary.AnalyzerConfig{Flags: flags, Evidence: src, Publisher: pub, Layout: l})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := an.AnalyzeOnce(t.Context()); !errors.Is(err, pipeline.ErrFlagConflict) {
		t.Fatalf("err %v, want ErrFlagConflict", err)
	}
	if len(pub.outs) != 0 {
		t.Errorf("published %d events for a dropped decision", len(pub.outs))
	}
	if r := flags.Rollout(); r.Phase != canary.PhasePaused || r.Weight != 1000 {
		t.Errorf("the person's pause was overwritten: %+v", r)
	}
}
