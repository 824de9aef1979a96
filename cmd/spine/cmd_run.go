package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/spinerun/spine/cmd/spine/stack"
)

func newRunCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "run orchestrator|dataplane|gates|projections|canary|ingress|pgsink",
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
/v1/canary/analyses on SPINE_HTTP_ADDR.

'drift' runs the drift monitor: it reads the artifact samples the gates
write to spine.drift.samples, keeps each intent kind and route's reference
and current windows in spine.state.drift, and publishes every evaluated
window on gate.drift and spine.drift.status (SPINE_DRIFT_MODE=off: it
does nothing and the gates neither sample nor check drift).

'ingress' serves POST /v1/intents on SPINE_HTTP_ADDR: intents over HTTP,
with bearer tokens verified against SPINE_OIDC_ISSUER when it is set. Any
number may run behind a load balancer.

'pgsink' writes the thread into the PostgreSQL database SPINE_PG_URL names
(tables runs, events, gates, artifacts in schema SPINE_PG_SCHEMA, created
and migrated on start), exactly once: rows and offsets commit in one
database transaction. Any number of instances share the partitions.
'spine up' runs it too when SPINE_PG_URL is set.`,
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
	tracer, stopTracing, err := startTracing(ctx, a.log, cfg)
	if err != nil {
		return err
	}
	defer stopTracing()
	st, err := stack.Build(stack.Env{Config: cfg, Brokers: cliBrokers(cfg), RegistryURL: cliRegistryURL(cfg), Log: a.log, Metrics: metrics, Tracer: tracer}, name)
	if err != nil {
		return err
	}
	mountOps(st.Routes, metrics, map[string]string{"processor": name})
	addr := cfg.HTTPAddr
	if (slices.Contains(stack.ThreadProcessors, name) || name == stack.PGSink) && cfg.MetricsAddr != "" {
		addr = cfg.MetricsAddr
	}
	srv := cfg.HTTPServer(name, addr, st.Routes, a.log)
	if err := srv.Listen(); err != nil {
		st.Close()
		return err
	}
	attrs := []any{"processor", name, "kafka", cliBrokers(cfg), "http", srv.Scheme() + "://" + hostport(srv.BoundAddr()) + "/"}
	for _, p := range st.Processors {
		attrs = append(attrs, "transactional_id", p.TransactionalID())
	}
	a.log.Info("processor running", attrs...)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return st.Run(gctx) })
	g.Go(func() error { return srv.Run(gctx) })
	return g.Wait()
}
