package main

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/projections"
	"github.com/spinerun/spine/schemas"
)

// wireProjections adds the projections to the stack: the processor that
// folds the thread into the spine.proj.* topics, the store that reads them
// back, and the JSON API and dashboard on the stack's HTTP server.
func (st *stack) wireProjections(ctx context.Context) error {
	serde, err := schemas.NewSerde(st.sr, schemas.WithLogger(st.a.log))
	if err != nil {
		return err
	}
	codec := pipeline.NewSchemaCodec(serde, pipeline.NewLayout(st.cfg))
	runner, err := newProjectionsRunner(st.cfg, st.brokers, codec, st.a.log, st.reg)
	if err != nil {
		return err
	}
	store, err := newProjectionsStore(st.cfg, st.brokers, st.a.log)
	if err != nil {
		return err
	}
	st.projections = store
	projections.NewAPI(store).Mount(st.mux)
	st.runners = append(st.runners, runner.Run, store.Run)
	return nil
}

// newProjectionsRunner builds the projections processor on the configured
// cluster (`spine up`, and `spine run projections`).
func newProjectionsRunner(cfg *pipeline.Config, brokers []string, codec pipeline.Codec, log *slog.Logger, reg prometheus.Registerer) (*projections.Runner, error) {
	opts, err := cfg.KafkaOpts(brokers...)
	if err != nil {
		return nil, err
	}
	return projections.NewRunner(projections.RunnerConfig{
		Kafka:      append(opts, kgo.ClientID(cfg.ServiceName+"-"+projections.ProcessorName)),
		Layout:     pipeline.NewLayout(cfg),
		Codec:      codec,
		Logger:     log,
		Registerer: reg,
	})
}

// newProjectionsStore builds the read-only view of the projections.
func newProjectionsStore(cfg *pipeline.Config, brokers []string, log *slog.Logger) (*projections.Store, error) {
	opts, err := cfg.KafkaOpts(brokers...)
	if err != nil {
		return nil, err
	}
	return projections.NewStore(projections.StoreConfig{
		Kafka:  append(opts, kgo.ClientID(cfg.ServiceName+"-projections-view")),
		Layout: pipeline.NewLayout(cfg),
		Logger: log,
	})
}
