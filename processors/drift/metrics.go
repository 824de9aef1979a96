package drift

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// Metrics is the monitor's pipeline.Observer: told of each committed
// transaction's outputs, it counts the evaluated windows
// (spine_drift_windows_total{kind,route,outcome}) and keeps each kind and
// route's last outcome (spine_drift_drifted{kind,route}, 1 when drifted).
// Kinds are the configured intent kinds, so the labels stay bounded. It is
// safe for concurrent use.
type Metrics struct {
	windows *prometheus.CounterVec
	drifted *prometheus.GaugeVec
	stat    *prometheus.GaugeVec
}

var _ pipeline.Observer = (*Metrics)(nil)

// NewMetrics registers the monitor's metrics on reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		windows: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spine_drift_windows_total",
			Help: "Drift windows evaluated, by intent kind, route and outcome (passed, drifted)."}, []string{"kind", "route", "outcome"}),
		drifted: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "spine_drift_drifted",
			Help: "1 when the last evaluated window of the intent kind and route drifted, else 0."}, []string{"kind", "route"}),
		stat: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "spine_drift_statistic_ratio",
			Help: "The last window's worst statistic over its threshold (above 1: drifted), by intent kind and route."}, []string{"kind", "route"}),
	}
	if reg != nil {
		reg.MustRegister(m.windows, m.drifted, m.stat)
	}
	return m
}

// Committed implements pipeline.Observer.
func (m *Metrics) Committed(outputs []pipeline.Output) {
	for _, o := range outputs {
		ev, ok := o.Value.(*schemas.RuntimeEvent)
		if !ok || ev == nil || ev.Gate == nil || !thread.IsDriftTrace(ev.TraceID) {
			continue
		}
		if ev.Gate.Rule == "reset" {
			m.drifted.WithLabelValues(ev.Intent, ev.Route).Set(0)
			m.stat.WithLabelValues(ev.Intent, ev.Route).Set(0)
			continue
		}
		outcome, d := "passed", 0.0
		if !ev.Gate.Passed {
			outcome, d = "drifted", 1
		}
		m.windows.WithLabelValues(ev.Intent, ev.Route, outcome).Inc()
		m.drifted.WithLabelValues(ev.Intent, ev.Route).Set(d)
		if ev.Gate.Threshold > 0 {
			m.stat.WithLabelValues(ev.Intent, ev.Route).Set(ev.Gate.Measured / ev.Gate.Threshold)
		}
	}
}
