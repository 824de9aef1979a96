package main

import (
	"context"
	"errors"
	"net/http"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/spinerun/spine/cmd/spine/stack"
)

func newRegistryCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "registry",
		Short: "Run the schema registry alone against an external Kafka",
		Long: `Run Spine's schema registry on its own: the Confluent Schema Registry REST API
for Avro on SPINE_REGISTRY_ADDR (default :8081), with /metrics beside it, stored
in the compacted _schemas topic (under SPINE_TOPIC_PREFIX) of the cluster that
KAFKA_BROKERS names. Several instances may run on one cluster: any of them
serves reads, and writes go through one writer at a time. Optional basic auth
from SCHEMA_REGISTRY_USERNAME and SCHEMA_REGISTRY_PASSWORD.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			cfg, err := a.config(ctx)
			if err != nil {
				return err
			}
			if cfg.Embedded() {
				return usageError{errors.New("spine registry needs KAFKA_BROKERS (the registry stores its state in Kafka); `spine up` runs it with the embedded broker")}
			}
			return runRegistry(ctx, a, cfg)
		},
	}
}

func runRegistry(ctx context.Context, a *app, cfg *stack.Config) error {
	promReg := newMetricsRegistry()
	v, err := stack.NewVerifier(cfg, a.log, promReg)
	if err != nil {
		return err
	}
	reg, err := newRegistry(cfg, cfg.Brokers, a.log, promReg, v)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mountOps(mux, promReg, nil)
	mux.Handle("/", reg.Handler())
	srv := cfg.HTTPServer("registry", cfg.RegistryAddr, mux, a.log)
	if err := srv.Listen(); err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return reg.Run(gctx) })
	g.Go(func() error { return srv.Run(gctx) })
	g.Go(func() error {
		select {
		case <-reg.Ready():
			a.log.Info("schema registry ready", "url", srv.Scheme()+"://"+hostport(srv.BoundAddr()), "topic", reg.Topic(), "kafka", cfg.Brokers)
		case <-gctx.Done():
		}
		return nil
	})
	return g.Wait()
}
