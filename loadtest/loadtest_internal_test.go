package loadtest

import (
	"context"
	"testing"
	"time"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/canary"
)

func TestAwaitDecision(t *testing.T) {
	t.Parallel()
	rolledBack := canary.Rollout{Phase: canary.PhaseRolledBack, Weight: 0}
	hold := Decision{Action: "hold", Phase: string(canary.PhaseProgressing), WeightAfter: 2000}
	rollback := Decision{Action: "rollback", Phase: string(canary.PhaseRolledBack), WeightAfter: 0}
	const wait = 5 * time.Second
	tests := []struct {
		name    string
		rollout canary.Rollout
		have    []Decision
		late    []Decision // read by the collector 100ms in
		// atLeast and below bound how long awaitDecision takes.
		atLeast, below time.Duration
	}{
		{"not decided: no wait", canary.Rollout{Phase: canary.PhaseProgressing, Weight: 2000}, nil, nil, 0, time.Second},
		{"decision already read", rolledBack, []Decision{hold, rollback}, nil, 0, time.Second},
		{"decision read late", rolledBack, []Decision{hold}, []Decision{rollback}, 100 * time.Millisecond, wait},
		{"no decision: bounded", rolledBack, []Decision{hold}, nil, wait, 2 * wait},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := &state{decisions: tt.have}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if tt.late != nil {
				go func() {
					select {
					case <-time.After(100 * time.Millisecond):
					case <-ctx.Done():
						return
					}
					st.mu.Lock()
					st.decisions = append(st.decisions, tt.late...)
					st.mu.Unlock()
				}()
			}
			start := time.Now()
			awaitDecision(ctx, st, tt.rollout, wait)
			if took := time.Since(start); took < tt.atLeast || took >= tt.below {
				t.Errorf("returned after %s, want at least %s and below %s", took, tt.atLeast, tt.below)
			}
		})
	}
}

func TestAwaitDecisionEndsWithContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	awaitDecision(ctx, &state{}, canary.Rollout{Phase: canary.PhasePromoted, Weight: 6000}, time.Hour)
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("returned %s after its context ended", took)
	}
}

// historyFlags is a FlagStore that only answers History.
type historyFlags struct {
	FlagStore
	h []pipeline.FlagChange
}

func (f historyFlags) History(string) []pipeline.FlagChange { return f.h }

func TestEndedByAnalyzer(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		who  []string
		want bool
	}{
		{"never set", nil, false},
		{"the analyzer last", []string{"alice", canary.AnalyzerActor}, true},
		{"an operator last", []string{canary.AnalyzerActor, "alice"}, false},
	} {
		var h []pipeline.FlagChange
		for _, w := range tt.who {
			h = append(h, pipeline.FlagChange{Who: w})
		}
		if got := endedByAnalyzer(historyFlags{h: h}); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}
