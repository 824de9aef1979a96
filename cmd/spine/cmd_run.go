package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors"
	"github.com/spinerun/spine/processors/orchestrator"
)

func newRunCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "run orchestrator|dataplane|gates|projections",
		Short: "Run one processor against an external cluster",
		Long: `Run one processor of the thread on its transactional loop against the
cluster KAFKA_BROKERS names (or a running 'spine up' on localhost) and the
schema registry SCHEMA_REGISTRY_URL names. Any number of instances of one
processor share the work through its consumer group; give each a stable,
unique SPINE_INSTANCE_ID (its transactional id). /healthz and /metrics are
served on SPINE_METRICS_ADDR, or SPINE_HTTP_ADDR when that is empty.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{fmt.Errorf("name one processor: %s", strings.Join(append(slices.Clone(processors.Names), "projections"), ", "))}
			}
			if !slices.Contains(processors.Names, args[0]) && args[0] != "projections" {
				return usageError{fmt.Errorf("unknown processor %q (want one of %s)", args[0], strings.Join(append(slices.Clone(processors.Names), "projections"), ", "))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := a.config(cmd.Context())
			if err != nil {
				return err
			}
			// A split deployment has no `spine up` to create the topic
			// layout: each instance ensures it (idempotent) before consuming.
			if err := (&stack{cfg: cfg, a: a, brokers: cliBrokers(cfg)}).ensureTopics(cmd.Context()); err != nil {
				return err
			}
			if args[0] == "projections" {
				return runProjections(cmd.Context(), a, cfg)
			}
			return runProcessor(cmd.Context(), a, cfg, args[0])
		},
	}
}

// runProcessor runs one thread processor and its HTTP endpoints until ctx
// ends.
func runProcessor(ctx context.Context, a *app, cfg *pipeline.Config, name string) error {
	reg := newMetricsRegistry()
	codec, err := cliCodec(cfg)
	if err != nil {
		return err
	}
	golden, err := pipeline.NewGoldenPath(reg)
	if err != nil {
		return err
	}
	router, flagsRun := orchestrator.Baseline, func(ctx context.Context) error { <-ctx.Done(); return nil }
	if name == orchestrator.Name {
		if router, flagsRun, err = newFlagRouter(cfg, cliBrokers(cfg), a.log, reg); err != nil {
			return err
		}
	}
	p, err := processors.New(cfg, name, processors.Deps{Brokers: cliBrokers(cfg), Codec: codec, Log: a.log, Reg: reg, Golden: golden, Router: router})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mountOps(mux, reg, map[string]string{"processor": name})
	addr := cfg.MetricsAddr
	if addr == "" {
		addr = cfg.HTTPAddr
	}
	srv := &pipeline.HTTPServer{Name: name, Addr: addr, Handler: mux, ShutdownTimeout: cfg.ShutdownTimeout, Log: a.log}
	if err := srv.Listen(); err != nil {
		return err
	}
	a.log.Info("processor running", "processor", name, "transactional_id", p.TransactionalID(), "kafka", cliBrokers(cfg), "http", srv.BoundAddr())
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return p.Run(gctx) })
	g.Go(func() error { return srv.Run(gctx) })
	g.Go(func() error { return flagsRun(gctx) })
	return g.Wait()
}
