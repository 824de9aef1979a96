package oidc

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spinerun/spine/internal/promreg"
)

// metrics are the verifier's counters, registered on Config.Registerer.
// Labels are bounded: the fixed reasons, "ok" and "unavailable".
type metrics struct {
	verifications *prometheus.CounterVec // result
	fetches       *prometheus.CounterVec // outcome
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		verifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spine_oidc_verifications_total",
			Help: "Tokens verified, by result: ok, a refusal reason, or unavailable (the issuer's keys could not be fetched).",
		}, []string{"result"}),
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spine_oidc_jwks_fetches_total",
			Help: "Fetches of the issuer's discovery document and keys, by outcome: ok or error.",
		}, []string{"outcome"}),
	}
	var err error
	if m.verifications, err = promreg.RegisterOrGet(reg, m.verifications); err != nil {
		return nil, err
	}
	if m.fetches, err = promreg.RegisterOrGet(reg, m.fetches); err != nil {
		return nil, err
	}
	return m, nil
}
