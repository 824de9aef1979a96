package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/registry"
)

// registryReadyTimeout bounds the replay of _schemas at start.
const registryReadyTimeout = 60 * time.Second

// wireRegistry gives the stack a schema registry: Spine's own, served on
// SPINE_REGISTRY_ADDR and stored in the stack's Kafka, unless
// SCHEMA_REGISTRY_URL names another one. Either way it sets st.registryURL
// and st.sr and registers Spine's contracts under FULL_TRANSITIVE.
func (st *stack) wireRegistry(ctx context.Context) error {
	cfg, log := st.cfg, st.a.log
	st.registryURL = cfg.RegistryURL
	if st.registryURL == "" {
		url, err := st.startRegistry(ctx)
		if err != nil {
			return err
		}
		st.registryURL = url
	} else {
		log.Info("using external schema registry", "url", st.registryURL)
	}
	cl, err := newSRClient(cfg, st.registryURL)
	if err != nil {
		return err
	}
	st.sr = cl

	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ids, err := schemas.RegisterContracts(rctx, cl, pipeline.NewLayout(cfg).ContractSubjects())
	if err != nil {
		return fmt.Errorf("register Spine's contracts with the schema registry at %s: %w", st.registryURL, err)
	}
	logContractIDs(log, ids)
	return nil
}

// startRegistry runs Spine's registry for the stack and returns its URL
// once it has replayed its topic.
func (st *stack) startRegistry(ctx context.Context) (string, error) {
	cfg, log := st.cfg, st.a.log
	reg, err := newRegistry(cfg, st.brokers, log, st.reg)
	if err != nil {
		return "", err
	}
	srv := &pipeline.HTTPServer{Name: "registry", Addr: cfg.RegistryAddr, Handler: reg.Handler(), ShutdownTimeout: cfg.ShutdownTimeout, Log: log}
	if err := srv.Listen(); err != nil {
		return "", err
	}
	// The registry must serve before the rest of the stack is wired (the
	// contracts register through it), so it starts now; its runner stops
	// it with the stack.
	rctx, cancel := context.WithCancel(ctx)
	g, gctx := errgroup.WithContext(rctx)
	g.Go(func() error { return reg.Run(gctx) })
	g.Go(func() error { return srv.Run(gctx) })
	stop := func() error { cancel(); return g.Wait() }
	st.runners = append(st.runners, func(sctx context.Context) error {
		select {
		case <-sctx.Done():
		case <-gctx.Done():
		}
		return stop()
	})
	select {
	case <-reg.Ready():
	case <-gctx.Done():
		if err := stop(); err != nil {
			return "", err
		}
		return "", fmt.Errorf("schema registry stopped before it was ready")
	case <-time.After(registryReadyTimeout):
		_ = stop()
		return "", fmt.Errorf("schema registry: %s not replayed within %s (is Kafka at %v healthy?)", reg.Topic(), registryReadyTimeout, st.brokers)
	}
	url := "http://" + hostport(srv.BoundAddr())
	log.Info("schema registry ready", "url", url, "topic", reg.Topic())
	return url, nil
}

// newRegistry builds Spine's registry on the configured cluster, storing in
// the layout's _schemas topic. `spine up` and `spine registry` build it the
// same way, so instances on one cluster share the topic and the writer id.
func newRegistry(cfg *pipeline.Config, brokers []string, log *slog.Logger, reg prometheus.Registerer) (*registry.Registry, error) {
	opts, err := cfg.KafkaOpts(brokers...)
	if err != nil {
		return nil, err
	}
	layout := pipeline.NewLayout(cfg)
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
