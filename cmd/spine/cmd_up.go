package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"golang.org/x/sync/errgroup"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/projections"
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

// stack is everything `spine up` runs; each part is started in start order
// and runs under one errgroup until ctx ends.
type stack struct {
	cfg      *pipeline.Config
	a        *app
	reg      *prometheus.Registry
	mux      *http.ServeMux
	brokers  []string
	embedded *pipeline.Embedded
	runners  []func(context.Context) error
	// registryURL is the schema registry every part uses (set by
	// wireRegistry); sr is a client of it.
	registryURL string
	sr          *sr.Client
	// projections is the view of the spine.proj.* topics (set by
	// wireProjections), for parts that read the projections.
	projections *projections.Store
	// canary is the flag store and canary router (set by wireCanary).
	canary *canaryWiring
}

func runUp(ctx context.Context, a *app, cfg *pipeline.Config) error {
	log := a.log
	st := &stack{cfg: cfg, a: a, reg: newMetricsRegistry(), mux: http.NewServeMux()}

	// 1. The broker: embedded unless KAFKA_BROKERS names a cluster.
	if cfg.Embedded() {
		st.embedded = pipeline.NewEmbedded(pipeline.EmbeddedConfig{
			DataDir: cfg.DataDir,
			Brokers: cfg.EmbeddedBrokers,
			Port:    cfg.KafkaPort,
			Logger:  log,
		})
		if err := st.embedded.Start(); err != nil {
			return err
		}
		defer st.embedded.Close()
		st.brokers = st.embedded.Addrs()
		log.Info("embedded Kafka broker started", "addrs", st.brokers, "data_dir", cfg.DataDir)
	} else {
		st.brokers = cfg.Brokers
		log.Info("using external Kafka", "brokers", st.brokers)
	}

	// 2. Topics.
	if err := st.ensureTopics(ctx); err != nil {
		return err
	}

	// 3. Later parts (registry, processors, projections) add runners here.
	if err := st.wire(ctx); err != nil {
		return err
	}

	// 4. HTTP: /healthz and /metrics (and whatever the parts mounted).
	mountOps(st.mux, st.reg, map[string]string{})
	api := &pipeline.HTTPServer{Name: "api", Addr: cfg.HTTPAddr, Handler: st.mux, ShutdownTimeout: cfg.ShutdownTimeout, Log: log}
	if err := api.Listen(); err != nil {
		return err
	}
	st.runners = append(st.runners, api.Run)

	log.Info("spine is up", "kafka", st.brokers, "http", "http://"+hostport(api.BoundAddr())+"/", "metrics", "http://"+hostport(api.BoundAddr())+"/metrics")
	g, gctx := errgroup.WithContext(ctx)
	for _, r := range st.runners {
		g.Go(func() error { return r(gctx) })
	}
	err := g.Wait()
	log.Info("shutting down")
	return err
}

// ensureTopics creates the layout's topics with a bounded retry while the
// cluster comes up.
func (st *stack) ensureTopics(ctx context.Context) error {
	opts, err := st.cfg.KafkaOpts(st.brokers...)
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
	l := pipeline.NewLayout(st.cfg)
	if err := pipeline.EnsureTopics(tctx, adm, l, st.cfg.ReplicationFactor); err != nil {
		return fmt.Errorf("create topics on %v: %w", st.brokers, err)
	}
	st.a.log.Info("topics ready", "count", len(l.Specs()), "partitions", l.Partitions, "prefix", l.Prefix)
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
