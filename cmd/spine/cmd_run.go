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
	"github.com/spinerun/spine/schemas/thread"
)

func newRunCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "run orchestrator|dataplane|gates|projections|canary",
		Short: "Run one processor against an external cluster",
		Long: `Run one processor of the thread on its transactional loop against the
cluster KAFKA_BROKERS names (or a running 'spine up' on localhost) and the
schema registry SCHEMA_REGISTRY_URL names. Any number of instances of one
processor share the work through its consumer group; give each a stable,
unique SPINE_INSTANCE_ID (its transactional id). /healthz and /metrics are
served on SPINE_METRICS_ADDR, or SPINE_HTTP_ADDR when that is empty.

'canary' runs the canary analyzer, which 'spine up' runs itself: every
v2_rollout interval it compares canary with baseline on the projections
(served by 'spine run projections') and steps, promotes or rolls back the
rollout. Several may run; one leads and decides. It serves /v1/flags and
/v1/canary/analyses on SPINE_HTTP_ADDR.`,
		Args: func(_ *cobra.Command, args []string) error {
			names := append(slices.Clone(processors.Names), "projections", canaryName)
			if len(args) != 1 {
				return usageError{fmt.Errorf("name one processor: %s", strings.Join(names, ", "))}
			}
			if !slices.Contains(names, args[0]) {
				return usageError{fmt.Errorf("unknown processor %q (want one of %s)", args[0], strings.Join(names, ", "))}
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
			switch args[0] {
			case "projections":
				return runProjections(cmd.Context(), a, cfg)
			case canaryName:
				return runCanary(cmd.Context(), a, cfg)
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
	golden, err := thread.NewGoldenPath(reg, pipeline.GateNames...)
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
