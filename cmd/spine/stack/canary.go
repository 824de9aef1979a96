package stack

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/gates"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/canary"
)

// buildAnalyzer makes the canary analyzer on the stack's flag store and
// projections store, and returns what runs it: its leader election and the
// analyzer itself, which every rollout interval compares canary with
// baseline, publishes each analysis on gate.canary through its own
// producer, and moves the rollout. It analyses only while its process leads
// the canary-analyzer group, so one decision is taken however many
// processes run one. The closer releases the producer when Run never runs.
func (s *Stack) buildAnalyzer(kafka []kgo.Opt, env Env) ([]func(context.Context) error, func(), error) {
	pub, err := pipeline.NewProducer(s.Codec, kafka...)
	if err != nil {
		return nil, nil, err
	}
	// The synthetic executor without sleep only reports its latency, and
	// the agents' router reports each call's duration; the analysis then
	// compares what executors report.
	src := canary.LatencyEndToEnd
	if executorLatency(s.Config) {
		src = canary.LatencyExecutor
	}
	evidence := canary.EvidenceSourceFunc(func(ctx context.Context, since time.Time) (gates.CanaryEvidence, error) {
		return canary.ProjectionEvidence(s.Store, 0, src).Evidence(ctx, since)
	})
	leader := pipeline.NewLeader(kafka, s.Layout, "canary-analyzer", env.Log)
	s.Analyzer, err = canary.NewAnalyzer(canary.AnalyzerConfig{
		Flags: s.Flags, Evidence: evidence, Publisher: pub, Layout: s.Layout,
		Logger: env.Log, Registerer: env.Metrics, LatencySource: src, Leader: leader,
	})
	if err != nil {
		pub.Close()
		return nil, nil, err
	}
	run := func(ctx context.Context) error {
		defer pub.Close()
		if err := s.Flags.WaitReady(ctx); err != nil {
			return nil // ctx ended
		}
		return s.Analyzer.Run(ctx)
	}
	return []func(context.Context) error{leader.Run, run}, pub.Close, nil
}

// FlagsHandler serves GET /v1/flags: the current v2_rollout (its latest
// change: value, who, why, when, revision) and its history.
func FlagsHandler(f *canary.Rollouts) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(flagsView(f))
	})
}

// FlagsView is the body of GET /v1/flags and the dashboard's "flags"
// panel.
type FlagsView struct {
	Rollout canary.Rollout        `json:"v2_rollout"`
	Current *pipeline.FlagChange  `json:"current,omitempty"`
	History []pipeline.FlagChange `json:"history"`
}

func flagsView(f *canary.Rollouts) FlagsView {
	body := FlagsView{Rollout: f.Rollout(), History: f.History(canary.FlagV2Rollout)}
	if c, ok := f.Get(canary.FlagV2Rollout); ok {
		body.Current = &c
	}
	if body.History == nil {
		body.History = []pipeline.FlagChange{}
	}
	return body
}

// AnalysesHandler serves GET /v1/canary/analyses: the analyses this
// process's analyzer made (the last 1000), oldest first.
func AnalysesHandler(an *canary.Analyzer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		list := an.Analyses()
		if list == nil {
			list = []canary.Analysis{}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(list)
	})
}
