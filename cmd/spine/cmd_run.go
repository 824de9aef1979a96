package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/pipeline"
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
			names := stack.Parts
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
			if err := ensureTopics(cmd.Context(), cfg, cliBrokers(cfg), a.log); err != nil {
				return err
			}
			return runPart(cmd.Context(), a, cfg, args[0])
		},
	}
}

// runPart runs one part of the stack (a thread processor, the projections
// with their API and dashboard, or the canary analyzer with /v1/flags and
// /v1/canary/analyses) and its HTTP endpoints, /healthz and /metrics, until
// ctx ends. A thread processor serves on SPINE_METRICS_ADDR when set.
func runPart(ctx context.Context, a *app, cfg *stack.Config, name string) error {
	metrics := newMetricsRegistry()
	st, err := stack.Build(stack.Env{Config: cfg, Brokers: cliBrokers(cfg), RegistryURL: cliRegistryURL(cfg), Log: a.log, Metrics: metrics}, name)
	if err != nil {
		return err
	}
	mountOps(st.Routes, metrics, map[string]string{"processor": name})
	addr := cfg.HTTPAddr
	if slices.Contains(stack.ThreadProcessors, name) && cfg.MetricsAddr != "" {
		addr = cfg.MetricsAddr
	}
	srv := &pipeline.HTTPServer{Name: name, Addr: addr, Handler: st.Routes, ShutdownTimeout: cfg.ShutdownTimeout, Log: a.log}
	if err := srv.Listen(); err != nil {
		st.Close()
		return err
	}
	attrs := []any{"processor", name, "kafka", cliBrokers(cfg), "http", "http://" + hostport(srv.BoundAddr()) + "/"}
	for _, p := range st.Processors {
		attrs = append(attrs, "transactional_id", p.TransactionalID())
	}
	a.log.Info("processor running", attrs...)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return st.Run(gctx) })
	g.Go(func() error { return srv.Run(gctx) })
	return g.Wait()
}
