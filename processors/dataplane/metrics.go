package dataplane

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spinerun/spine/internal/promreg"
)

// metrics of the dataplane's calls:
//
//	spine_dataplane_calls_in_flight            calls running now
//	spine_dataplane_calls_total{outcome}       calls ended: delivered, failed, no_answer, interrupted
type metrics struct {
	inFlight  prometheus.Gauge
	completed *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spine_dataplane_calls_in_flight",
			Help: "Executor calls running on this dataplane instance.",
		}),
		completed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spine_dataplane_calls_total",
			Help: "Executor calls ended, by outcome: delivered, failed, no_answer (the executor never answers), interrupted (cancelled by a rebalance, a shutdown or a newer dispatch; run again by the partition's owner when still pending).",
		}, []string{"outcome"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.inFlight, err = promreg.RegisterOrGet(reg, m.inFlight); err != nil {
		return nil, err
	}
	if m.completed, err = promreg.RegisterOrGet(reg, m.completed); err != nil {
		return nil, err
	}
	return m, nil
}
