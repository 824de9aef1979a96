package main

import (
	"cmp"
	"context"
	"errors"
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
With SPINE_PG_URL set, the PostgreSQL sink writes the thread into that
database too (see 'spine run pgsink').
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
			Host:    cfg.BindHost,
			// AdvertisedHost: see SPINE_KAFKA_ADVERTISED_HOST.
			AdvertisedHost: cfg.KafkaAdvertisedHost,
			Logger:         log,
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

	// The embedded broker's data, the state and the views share this
	// process's heap: the runtime's soft memory limit follows the budget
	// (SPINE_MEMORY_LIMIT).
	if cfg.Embedded() {
		stack.ApplyMemoryLimit(cfg)
	}

	// 2. Topics.
	if err := ensureTopics(ctx, cfg, brokers, log); err != nil {
		return err
	}

	// 3. The schema registry, with Spine's contracts under FULL_TRANSITIVE.
	verifier, err := stack.NewVerifier(cfg, log, metrics)
	if err != nil {
		return err
	}
	registryURL, runRegistry, err := upRegistry(ctx, cfg, brokers, log, metrics, verifier)
	if err != nil {
		return err
	}
	runs = append(runs, runRegistry)
	stopRegistry := func() {
		stopped, cancel := context.WithCancel(ctx)
		cancel()
		_ = runRegistry(stopped)
	}

	// 4. Every part of the stack, traced when OTEL_EXPORTER_OTLP_ENDPOINT is set.
	tracer, stopTracing, err := startTracing(ctx, log, cfg)
	if err != nil {
		stopRegistry()
		return err
	}
	defer stopTracing()
	st, err := stack.Build(stack.Env{Config: cfg, Brokers: brokers, RegistryURL: registryURL, Log: log, Metrics: metrics, Verifier: verifier, Tracer: tracer})
	if err != nil {
		stopRegistry()
		return err
	}
	runs = append(runs, st.Run)

	// 5. HTTP: the parts' routes, the memory plan, /healthz and /metrics.
	st.Routes.Handle("GET /v1/stack", stack.MemoryHandler(stack.Memory(cfg)))
	if cfg.Pprof {
		mountPprof(st.Routes)
	}
	mountOps(st.Routes, metrics, map[string]string{})
	api := cfg.HTTPServer("api", cfg.HTTPAddr, st.Routes, log)
	if err := api.Listen(); err != nil {
		st.Close()
		stopRegistry()
		return err
	}
	runs = append(runs, api.Run)

	base := api.Scheme() + "://" + hostport(api.BoundAddr())
	log.Info("spine is up", "kafka", brokers, "http", base+"/", "metrics", base+"/metrics")
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
	// A broker that cannot be dialled yet (starting, restarting) is waited
	// for until the 30s are up; any other error is final at once.
	for {
		err := pipeline.EnsureTopics(tctx, adm, l, cfg.ReplicationFactor)
		if err == nil {
			break
		}
		var dial *net.OpError
		if !errors.As(err, &dial) || tctx.Err() != nil {
			return fmt.Errorf("create topics on %v: %w", brokers, err)
		}
		log.Warn("Kafka not reachable yet; trying again", "brokers", brokers, "err", err)
		select {
		case <-tctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
	if l.Budget > 0 {
		// The embedded broker's topics follow the budget, also those a
		// data directory holds from an earlier start.
		if err := pipeline.AlignTopicConfigs(tctx, adm, l); err != nil {
			return err
		}
	}
	log.Info("topics ready", "count", len(l.Specs()), "partitions", l.Partitions, "prefix", l.Prefix)
	logMemoryPlan(log, stack.Memory(cfg))
	return nil
}

// logMemoryPlan prints the memory budget and what each topic gets of it
// (also served at GET /v1/stack).
func logMemoryPlan(log *slog.Logger, p stack.MemoryPlan) {
	if !p.Embedded || p.Budget == 0 {
		log.Info("no memory budget: the cluster's topic settings apply", "embedded", p.Embedded,
			"run_retention", p.RunRetention, "projection_retention", p.ProjectionRetention, "view_max_runs", p.ViewMaxRuns)
		return
	}
	log.Info("embedded broker memory budget (SPINE_EMBEDDED_MEMORY)", "budget", p.BudgetText, "reserve_percent", p.ReservePercent,
		"memory_limit", cmp.Or(p.MemoryLimitText, "none"), "memory_limit_source", p.MemoryLimitSource,
		"run_retention", p.RunRetention, "thread_retention", p.ThreadRetention, "projection_retention", p.ProjectionRetention,
		"view_max_runs", p.ViewMaxRuns, "detail", "/v1/stack")
	for _, a := range p.Topics {
		log.Info("topic budget", "topic", a.Topic, "policy", a.Policy, "share", pipeline.ByteSize(a.Budget).String(),
			"partitions", a.Partitions, "retention_bytes", a.RetentionBytes, "segment_bytes", a.SegmentBytes, "retention_ms", a.RetentionMs)
	}
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
