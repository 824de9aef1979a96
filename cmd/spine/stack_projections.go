package main

import (
	"context"
	"log/slog"
	"net/http"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

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
	instance := cfg.InstanceID
	if instance == "" {
		if instance, err = os.Hostname(); err != nil || instance == "" {
			instance = "0"
		}
	}
	layout := pipeline.NewLayout(cfg)
	return projections.NewRunner(projections.RunnerConfig{
		Kafka:              append(opts, kgo.ClientID(cfg.ServiceName+"-"+projections.ProcessorName)),
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
func newProjectionsStore(cfg *pipeline.Config, brokers []string, log *slog.Logger) (*projections.Store, error) {
	opts, err := cfg.KafkaOpts(brokers...)
	if err != nil {
		return nil, err
	}
	return projections.NewStore(projections.StoreConfig{
		Kafka:   append(opts, kgo.ClientID(cfg.ServiceName+"-projections-view")),
		Layout:  pipeline.NewLayout(cfg),
		Logger:  log,
		MaxRuns: cfg.ViewMaxRuns,
	})
}

// runProjections runs the projections processor on its own (`spine run
// projections`) with the view, the JSON API and the dashboard, /healthz and
// /metrics, until ctx ends.
func runProjections(ctx context.Context, a *app, cfg *pipeline.Config) error {
	reg := newMetricsRegistry()
	codec, err := cliCodec(cfg)
	if err != nil {
		return err
	}
	brokers := cliBrokers(cfg)
	runner, err := newProjectionsRunner(cfg, brokers, codec, a.log, reg)
	if err != nil {
		return err
	}
	store, err := newProjectionsStore(cfg, brokers, a.log)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mountOps(mux, reg, map[string]string{"processor": projections.ProcessorName})
	projections.NewAPI(store).Mount(mux)
	srv := &pipeline.HTTPServer{Name: projections.ProcessorName, Addr: cfg.HTTPAddr, Handler: mux, ShutdownTimeout: cfg.ShutdownTimeout, Log: a.log}
	if err := srv.Listen(); err != nil {
		return err
	}
	a.log.Info("processor running", "processor", projections.ProcessorName, "kafka", brokers, "http", "http://"+hostport(srv.BoundAddr())+"/")
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return runner.Run(gctx) })
	g.Go(func() error { return store.Run(gctx) })
	g.Go(func() error { return srv.Run(gctx) })
	return g.Wait()
}
