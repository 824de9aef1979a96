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
func newProjectionsRunner(cfg *Config, kafka []kgo.Opt, layout pipeline.Layout, codec pipeline.Codec, instance string, log *slog.Logger, reg prometheus.Registerer) (*projections.Runner, error) {
	return projections.NewRunner(projections.RunnerConfig{
		Kafka:              append(kafka, clientID(cfg, projections.ProcessorName)),
		Layout:             layout,
		Codec:              codec,
		TransactionalID:    layout.Group(projections.ProcessorName) + "-" + instance,
		TransactionTimeout: cfg.TransactionTimeout,
		MaxPollRecords:     cfg.BatchMaxRecords,
		SessionTimeout:     cfg.GroupSessionTimeout,
		StaticMembership:   cfg.StaticMembership,
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
