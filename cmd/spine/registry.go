package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"golang.org/x/sync/errgroup"

	"github.com/spinerun/spine/adapters/oidc"
	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/registry"
)

// registryReadyTimeout bounds the replay of _schemas at start.
const registryReadyTimeout = 60 * time.Second

// upRegistry gives `spine up` its schema registry — Spine's own
// (startRegistry) unless SCHEMA_REGISTRY_URL names another one — and
// registers Spine's contracts there under FULL_TRANSITIVE. It returns the
// registry's URL and what runs it with the stack.
func upRegistry(ctx context.Context, cfg *stack.Config, brokers []string, log *slog.Logger, metrics prometheus.Registerer, v *oidc.Verifier) (string, func(context.Context) error, error) {
	url, run := cfg.RegistryURL, func(context.Context) error { return nil }
	var local http.RoundTripper
	if url == "" {
		var (
			reg *registry.Registry
			err error
		)
		if reg, url, run, err = startRegistry(ctx, cfg, brokers, log, metrics, v); err != nil {
			return "", nil, err
		}
		// Spine's own contracts register in process: its registry's
		// writes may need a bearer token the stack does not have.
		local = reg.InProcess()
	} else {
		log.Info("using external schema registry", "url", url)
	}
	fail := func(err error) (string, func(context.Context) error, error) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_ = run(cctx) // stop Spine's registry
		return "", nil, err
	}
	cl, err := newSRClient(cfg, url)
	if local != nil {
		cl, err = sr.NewClient(append(registryAuth(cfg), sr.URLs(url), sr.HTTPClient(&http.Client{Transport: local, Timeout: 15 * time.Second}))...)
	}
	if err != nil {
		return fail(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ids, err := schemas.RegisterContracts(rctx, cl, pipeline.NewLayout(&cfg.Config).ContractSubjects())
	if err != nil {
		return fail(fmt.Errorf("register Spine's contracts with the schema registry at %s: %w", url, err))
	}
	logContractIDs(log, ids)
	return url, run, nil
}

// startRegistry runs Spine's own schema registry, served on
// SPINE_REGISTRY_ADDR and stored in the cluster's _schemas topic, and
// returns its URL once it has replayed that topic. It serves from now on
// (the contracts register through it before the rest of the stack runs);
// run, which must run with the stack, stops it when its context ends.
func startRegistry(ctx context.Context, cfg *stack.Config, brokers []string, log *slog.Logger, metrics prometheus.Registerer, v *oidc.Verifier) (reg *registry.Registry, url string, run func(context.Context) error, err error) {
	reg, err = newRegistry(cfg, brokers, log, metrics, v)
	if err != nil {
		return nil, "", nil, err
	}
	srv := cfg.HTTPServer("registry", cfg.RegistryAddr, reg.Handler(), log)
	if err := srv.Listen(); err != nil {
		return nil, "", nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	g, gctx := errgroup.WithContext(rctx)
	g.Go(func() error { return reg.Run(gctx) })
	g.Go(func() error { return srv.Run(gctx) })
	stop := func() error { cancel(); return g.Wait() }
	run = func(sctx context.Context) error {
		select {
		case <-sctx.Done():
		case <-gctx.Done():
		}
		return stop()
	}
	select {
	case <-reg.Ready():
	case <-gctx.Done():
		if err := stop(); err != nil {
			return nil, "", nil, err
		}
		return nil, "", nil, fmt.Errorf("schema registry stopped before it was ready")
	case <-time.After(registryReadyTimeout):
		_ = stop()
		return nil, "", nil, fmt.Errorf("schema registry: %s not replayed within %s (is Kafka at %v healthy?)", reg.Topic(), registryReadyTimeout, brokers)
	}
	url = srv.Scheme() + "://" + hostport(srv.BoundAddr())
	log.Info("schema registry ready", "url", url, "topic", reg.Topic())
	return reg, url, run, nil
}

// registryAuth is the client's basic auth from SCHEMA_REGISTRY_USERNAME
// and SCHEMA_REGISTRY_PASSWORD, if any.
func registryAuth(cfg *stack.Config) []sr.ClientOpt {
	if cfg.RegistryUsername == "" {
		return nil
	}
	return []sr.ClientOpt{sr.BasicAuth(cfg.RegistryUsername, cfg.RegistryPassword)}
}

// newRegistry builds Spine's registry on the configured cluster, storing in
// the layout's _schemas topic. `spine up` and `spine registry` build it the
// same way, so instances on one cluster share the topic and the writer id.
func newRegistry(cfg *stack.Config, brokers []string, log *slog.Logger, reg prometheus.Registerer, v *oidc.Verifier) (*registry.Registry, error) {
	opts, err := cfg.KafkaOpts(brokers...)
	if err != nil {
		return nil, err
	}
	layout := pipeline.NewLayout(&cfg.Config)
	ropts := []registry.Opt{
		registry.WithKafka(append(opts, kgo.ClientID(cfg.ServiceName+"-registry"))...),
		registry.WithTopic(string(layout.Schemas())),
		registry.WithTransactionalID(layout.Group("schema-registry")),
		registry.WithReplicationFactor(cfg.ReplicationFactor),
		registry.WithLogger(log),
		registry.WithRegisterer(reg),
	}
	if cfg.RegistryUsername != "" {
		ropts = append(ropts, registry.WithBasicAuth(cfg.RegistryUsername, cfg.RegistryPassword))
	}
	if v != nil {
		ropts = append(ropts, registry.WithWriteAuth(stack.WriteAuth(v)))
	}
	return registry.New(ropts...)
}

func logContractIDs(log *slog.Logger, ids map[string]map[schemas.ContractVersion]int) {
	for subject, vs := range ids {
		log.Debug("contract registered", "subject", subject, "v1_id", vs[schemas.V1], "v2_id", vs[schemas.V2])
	}
	seen := map[[2]int]bool{}
	for subject, vs := range ids {
		k := [2]int{vs[schemas.V1], vs[schemas.V2]}
		if seen[k] {
			continue
		}
		seen[k] = true
		log.Info("contracts registered under FULL_TRANSITIVE", "example_subject", subject, "v1_id", vs[schemas.V1], "v2_id", vs[schemas.V2], "subjects", len(ids))
	}
}
