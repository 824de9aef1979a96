package thread

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spinerun/spine/internal/promreg"
	"github.com/spinerun/spine/schemas"
)

// LatencyBuckets span 1 ms to ~30 s, for every latency of the thread.
var LatencyBuckets = prometheus.ExponentialBuckets(0.001, 2, 16)

// GoldenPath feeds the golden-path metrics from committed RuntimeEvents
// (it is a pipeline.Observer):
//
//	spine_golden_path_events_total{hop,contract_version,route}
//	spine_golden_path_latency_seconds{hop,contract_version,route}
//	spine_runs_total{contract_version,route,outcome}
//	spine_run_duration_seconds{contract_version,route,outcome}
//	spine_gate_checks_total{gate,contract_version,route,outcome}
//
// Latencies are the event's timestamp minus its envelope's run_started. Every
// label is bounded: route is baseline, canary or other; a gate outside the
// names given to NewGoldenPath counts as "other". A GoldenPath is safe for
// concurrent use; one may be shared by every processor of a process.
type GoldenPath struct {
	gates    []string
	events   *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	runs     *prometheus.CounterVec
	duration *prometheus.HistogramVec
	checks   *prometheus.CounterVec
}

// NewGoldenPath registers the golden-path metrics on reg (nil: not
// registered, still counted); gates are the gate names a gate check may
// carry as its label. Registering twice on one registry reuses the
// collectors already there, so several processors may each call it.
func NewGoldenPath(reg prometheus.Registerer, gates ...string) (*GoldenPath, error) {
	g := &GoldenPath{
		gates: slices.Clone(gates),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spine_golden_path_events_total",
			Help: "Committed golden-path events per hop (intent.received, dataplane.dispatched, artifact.delivered, gate.passed, gate.failed).",
		}, []string{"hop", "contract_version", "route"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "spine_golden_path_latency_seconds",
			Help:    "Time from the run's start (the orchestrator receiving the intent) to each committed golden-path event.",
			Buckets: LatencyBuckets,
		}, []string{"hop", "contract_version", "route"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spine_runs_total",
			Help: "Runs that reached a terminal state, by outcome (completed, rejected, failed, timed_out).",
		}, []string{"contract_version", "route", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "spine_run_duration_seconds",
			Help:    "Run duration from intent received to the terminal event.",
			Buckets: LatencyBuckets,
		}, []string{"contract_version", "route", "outcome"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spine_gate_checks_total",
			Help: "Committed gate checks by gate and outcome (passed, failed).",
		}, []string{"gate", "contract_version", "route", "outcome"}),
	}
	var err error
	if g.events, err = promreg.RegisterOrGet(reg, g.events); err != nil {
		return nil, err
	}
	if g.latency, err = promreg.RegisterOrGet(reg, g.latency); err != nil {
		return nil, err
	}
	if g.runs, err = promreg.RegisterOrGet(reg, g.runs); err != nil {
		return nil, err
	}
	if g.duration, err = promreg.RegisterOrGet(reg, g.duration); err != nil {
		return nil, err
	}
	if g.checks, err = promreg.RegisterOrGet(reg, g.checks); err != nil {
		return nil, err
	}
	return g, nil
}

// Committed counts the committed events.
func (g *GoldenPath) Committed(events []*schemas.RuntimeEvent) {
	for _, ev := range events {
		if ev != nil {
			g.observe(ev)
		}
	}
}

func (g *GoldenPath) observe(ev *schemas.RuntimeEvent) {
	cv := versionLabel(ev.SchemaVersion)
	route := RouteLabel(ev.Route)
	var since float64
	hasSince := !ev.RunStarted.IsZero() && !ev.Timestamp.IsZero()
	if hasSince {
		since = max(ev.Timestamp.Sub(ev.RunStarted).Seconds(), 0)
	}
	if IsGoldenHop(ev.EventType) {
		g.events.WithLabelValues(string(ev.EventType), cv, route).Inc()
		if hasSince {
			g.latency.WithLabelValues(string(ev.EventType), cv, route).Observe(since)
		}
	}
	if outcome, ok := Outcome(ev.EventType); ok {
		g.runs.WithLabelValues(cv, route, outcome).Inc()
		if hasSince {
			g.duration.WithLabelValues(cv, route, outcome).Observe(since)
		}
	}
	if ev.EventType == GatePassed || ev.EventType == GateFailed {
		name := "other"
		if ev.Gate != nil && slices.Contains(g.gates, ev.Gate.Name) {
			name = ev.Gate.Name
		}
		outcome := "passed"
		if ev.EventType == GateFailed {
			outcome = "failed"
		}
		g.checks.WithLabelValues(name, cv, route, outcome).Inc()
	}
}

func versionLabel(v schemas.ContractVersion) string {
	if v.Valid() {
		return v.String()
	}
	return "unknown"
}

// RouteLabel bounds a route for a metric label: V1 events carry no route
// and run the baseline; an unknown route is "other".
func RouteLabel(r string) string {
	switch r {
	case "", RouteBaseline:
		return RouteBaseline
	case RouteCanary:
		return RouteCanary
	}
	return "other"
}
