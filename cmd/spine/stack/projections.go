package stack

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/projections"
)

// newProjectionsRunner builds the projections processor: it folds the
// thread into the spine.proj.* topics under the transactional id of
// instance.
func newProjectionsRunner(cfg *Config, kafka []kgo.Opt, layout pipeline.Layout, codec pipeline.Codec, instance string, live *projections.Live, log *slog.Logger, reg prometheus.Registerer) (*projections.Runner, error) {
	return projections.NewRunner(projections.RunnerConfig{
		Kafka:              append(kafka, clientID(cfg, projections.ProcessorName)),
		Layout:             layout,
		Codec:              codec,
		InstanceID:         instance,
		TransactionTimeout: cfg.TransactionTimeout,
		MaxPollRecords:     cfg.BatchMaxRecords,
		SessionTimeout:     cfg.GroupSessionTimeout,
		StaticMembership:   cfg.StaticMembership,
		Live:               live,
		Logger:             log,
		Registerer:         reg,
	})
}

// newProjectionsStore builds the read-only view of the projections.
func newProjectionsStore(cfg *Config, kafka []kgo.Opt, log *slog.Logger) (*projections.Store, error) {
	return projections.NewStore(projections.StoreConfig{
		Kafka:   append(kafka, clientID(cfg, "projections-view")),
		Layout:  pipeline.NewLayout(&cfg.Config),
		Logger:  log,
		MaxRuns: cfg.Projections.ViewMaxRuns,
	})
}

// dashboardOpts gives the dashboard what the rest of the stack serves: the
// live view, the dead letters, the canary flag with its history and the
// policy in force, when this process has them.
func (s *Stack) dashboardOpts() []projections.APIOpt {
	opts := []projections.APIOpt{projections.WithLive(s.Live), projections.WithDeadLetters(s.DeadLetters)}
	if f := s.Flags; f != nil {
		opts = append(opts, projections.WithPanel("flags", func() any { return flagsView(f) }))
	}
	if p := s.Policy; p != nil {
		opts = append(opts, projections.WithPanel("policy", func() any { return NewPolicyView(p.Path(), p.Current()) }))
	}
	return opts
}
