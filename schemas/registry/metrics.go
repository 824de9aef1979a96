package registry

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	requests    *prometheus.CounterVec
	storeErrors prometheus.Counter
	badRecords  prometheus.Counter
	rejected    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spine_registry_requests_total",
			Help: "Schema registry HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spine_registry_store_errors_total",
			Help: "Writes to the _schemas topic that failed after retries.",
		}),
		badRecords: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spine_registry_bad_records_total",
			Help: "Records of the _schemas topic skipped because they could not be applied.",
		}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spine_registry_incompatible_total",
			Help: "Registrations refused as incompatible (409).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.storeErrors, m.badRecords, m.rejected)
	}
	return m
}
