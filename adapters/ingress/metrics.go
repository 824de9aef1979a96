package ingress

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spinerun/spine/internal/promreg"
)

// metrics are the ingress's series. The code label is bounded: the Code*
// constants, a verifier's reasons, "accepted" and "replayed".
type metrics struct {
	requests *prometheus.CounterVec   // code
	duration *prometheus.HistogramVec // outcome: accepted, refused
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spine_ingress_requests_total",
			Help: "Requests to POST /v1/intents by answer: accepted, replayed (an idempotent retry) or the refusal's code.",
		}, []string{"code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "spine_ingress_request_duration_seconds",
			Help:    "Time from a request's start to its answer (for accepted ones: until Kafka acknowledged the intent), by outcome.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"outcome"}),
	}
	var err error
	if m.requests, err = promreg.RegisterOrGet(reg, m.requests); err != nil {
		return nil, err
	}
	if m.duration, err = promreg.RegisterOrGet(reg, m.duration); err != nil {
		return nil, err
	}
	return m, nil
}
