package stack

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/adapters/ingress"
	"github.com/spinerun/spine/adapters/oidc"
	"github.com/spinerun/spine/pipeline"
)

// buildIngress makes POST /v1/intents: a producer on the stack's codec,
// the OIDC verifier when SPINE_OIDC_ISSUER is set, the orchestrator's
// intent kinds and input limit. Its run closes the producer when ctx ends;
// the closer does when Run never runs.
func (s *Stack) buildIngress(kafka []kgo.Opt, env Env) (func(context.Context) error, func(), error) {
	cfg := s.Config
	opts := []ingress.Option{
		ingress.WithTopic(s.Layout.Intents()),
		ingress.WithKinds(cfg.Orchestrator.Kinds()...),
		ingress.WithMaxInputBytes(cfg.Orchestrator.MaxInputBytes),
		ingress.WithLogger(env.Log.With("part", Ingress)),
		ingress.WithRegisterer(env.Metrics),
	}
	v, err := s.verifier(env)
	if err != nil {
		return nil, nil, err
	}
	if v != nil {
		opts = append(opts, ingress.WithVerifier(v))
	}
	p, err := pipeline.NewProducer(s.Codec, append(kafka, clientID(cfg, Ingress))...)
	if err != nil {
		return nil, nil, err
	}
	if s.Ingress, err = ingress.New(cfg.Ingress, p, opts...); err != nil {
		p.Close()
		return nil, nil, err
	}
	s.Ingress.Mount(s.Routes)
	run := func(ctx context.Context) error {
		defer p.Close()
		if s.Verifier != nil {
			// Warm the issuer's keys; an issuer down now is retried by
			// the first requests (503 until then).
			if err := s.Verifier.Ready(ctx); err != nil {
				s.log.Warn("OIDC issuer not reachable yet: bearer tokens are answered 503 until it is", "issuer", s.Verifier.Issuer(), "err", err)
			}
		}
		<-ctx.Done()
		return nil
	}
	return run, p.Close, nil
}

// verifier returns the stack's one OIDC verifier (made on first use), nil
// when SPINE_OIDC_ISSUER is unset: the ingress checks bearer tokens with it
// and the orchestrator an intent record's x-spine-id-token header.
func (s *Stack) verifier(env Env) (*oidc.Verifier, error) {
	if s.Verifier != nil || !s.Config.OIDC.Enabled() {
		return s.Verifier, nil
	}
	if env.Verifier != nil {
		s.Verifier = env.Verifier
		return s.Verifier, nil
	}
	v, err := NewVerifier(s.Config, env.Log, env.Metrics)
	if err != nil {
		return nil, err
	}
	s.Verifier = v
	return v, nil
}

// NewVerifier makes the process's OIDC verifier from SPINE_OIDC_*, nil
// when SPINE_OIDC_ISSUER is unset. Make one per process: it registers its
// metrics on reg.
func NewVerifier(cfg *Config, log *slog.Logger, reg prometheus.Registerer) (*oidc.Verifier, error) {
	if !cfg.OIDC.Enabled() {
		return nil, nil
	}
	oc := cfg.OIDC
	oc.Logger = log.With("adapter", "oidc")
	oc.Registerer = reg
	return oidc.New(oc)
}

// WriteAuth is the check Spine's schema registry applies to writes when
// the OIDC verifier v is set: a token v verifies.
func WriteAuth(v *oidc.Verifier) func(ctx context.Context, token string) error {
	return func(ctx context.Context, token string) error {
		_, err := v.Verify(ctx, token)
		return err
	}
}
