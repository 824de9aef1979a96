package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/pipeline"
)

func newUpCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "up",
		Short: "Start the whole embedded stack: broker, registry, processors, API and /metrics",
		Long: `Start the whole stack in one process: an in-process Kafka-protocol broker
(kfake) persisted under SPINE_DATA_DIR (default ./spine-data) on port 9092, the
schema registry on :8081, every processor, and the HTTP server on :8080 with
/healthz, /metrics, the projections API and the dashboard. With KAFKA_BROKERS
set, the same stack runs against that cluster instead of the embedded broker.
Ctrl-C shuts down cleanly within SPINE_SHUTDOWN_TIMEOUT.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.config(cmd.Context())
			if err != nil {
				return err
			}
			return runUp(cmd.Context(), a, cfg)
		},
	}
}

// runUp is the whole stack in one process, in start order: the broker, the
// topics, the schema registry and Spine's contracts, every part of the
// stack (package stack), and the HTTP server. Everything runs under one
// errgroup until ctx ends.
func runUp(ctx context.Context, a *app, cfg *stack.Config) error {
	log := a.log
	metrics := newMetricsRegistry()
	var runs []func(context.Context) error

	// 1. The broker: embedded unless KAFKA_BROKERS names a cluster.
	brokers := cfg.Brokers
	if cfg.Embedded() {
		embedded := pipeline.NewEmbedded(pipeline.EmbeddedConfig{
			DataDir: cfg.DataDir,
			Brokers: cfg.EmbeddedBrokers,
			Port:    cfg.KafkaPort,
			Logger:  log,
		})
		if err := embedded.Start(); err != nil {
			return err
		}
		defer embedded.Close()
		brokers = embedded.Addrs()
		log.Info("embedded Kafka broker started", "addrs", brokers, "data_dir", cfg.DataDir)
	} else {
		log.Info("using external Kafka", "brokers", brokers)
	}

	// 2. Topics.
	if err := ensureTopics(ctx, cfg, brokers, log); err != nil {
		return err
	}

	// 3. The schema registry, with Spine's contracts under FULL_TRANSITIVE.
	registryURL, runRegistry, err := upRegistry(ctx, cfg, brokers, log, metrics)
	if err != nil {
		return err
	}
	runs = append(runs, runRegistry)
	stopRegistry := func() {
		stopped, cancel := context.WithCancel(ctx)
		cancel()
		_ = runRegistry(stopped)
	}

	// 4. Every part of the stack.
	st, err := stack.Build(stack.Env{Config: cfg, Brokers: brokers, RegistryURL: registryURL, Log: log, Metrics: metrics})
	if err != nil {
		stopRegistry()
		return err
	}
	runs = append(runs, st.Run)

	// 5. HTTP: the parts' routes, /healthz and /metrics.
	mountOps(st.Routes, metrics, map[string]string{})
	api := &pipeline.HTTPServer{Name: "api", Addr: cfg.HTTPAddr, Handler: st.Routes, ShutdownTimeout: cfg.ShutdownTimeout, Log: log}
	if err := api.Listen(); err != nil {
		st.Close()
		stopRegistry()
		return err
	}
	runs = append(runs, api.Run)

	log.Info("spine is up", "kafka", brokers, "http", "http://"+hostport(api.BoundAddr())+"/", "metrics", "http://"+hostport(api.BoundAddr())+"/metrics")
	g, gctx := errgroup.WithContext(ctx)
	for _, run := range runs {
		g.Go(func() error { return run(gctx) })
	}
	err = g.Wait()
	log.Info("shutting down")
	return err
}

// ensureTopics creates the layout's topics with a bounded retry while the
// cluster comes up (`spine up`, and every `spine run`, idempotently).
func ensureTopics(ctx context.Context, cfg *stack.Config, brokers []string, log *slog.Logger) error {
	opts, err := cfg.KafkaOpts(brokers...)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	l := pipeline.NewLayout(&cfg.Config)
	if err := pipeline.EnsureTopics(tctx, adm, l, cfg.ReplicationFactor); err != nil {
		return fmt.Errorf("create topics on %v: %w", brokers, err)
	}
	log.Info("topics ready", "count", len(l.Specs()), "partitions", l.Partitions, "prefix", l.Prefix)
	return nil
}

// hostport turns a bound address such as "[::]:8080" into "localhost:8080"
// for printing.
func hostport(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "::" || host == "0.0.0.0" {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
