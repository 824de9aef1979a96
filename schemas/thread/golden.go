package thread

import (
	"slices"
	"sync/atomic"

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

	// The children of the vectors, looked up once per label set: the
	// labels are bounded, and WithLabelValues checks, hashes and looks
	// up its labels under a lock on every call (observe runs for every
	// committed event). Indexed by hopIndex, outcomeIndex, the gate's
	// index in gates (len(gates): "other"), versionIndex, routeIndex.
	hopEvents  [len(goldenHops)][3][3]child[prometheus.Counter]
	hopLatency [len(goldenHops)][3][3]child[prometheus.Observer]
	runsC      [len(outcomes)][3][3]child[prometheus.Counter]
	durationH  [len(outcomes)][3][3]child[prometheus.Observer]
	checksC    [][3][3][2]child[prometheus.Counter]
}

// child is a metric vector's child for one label set, made on first use.
type child[T any] struct{ p atomic.Pointer[T] }

func (c *child[T]) get(make func() T) T {
	if m := c.p.Load(); m != nil {
		return *m
	}
	m := make() // racing makers get the same child from the vector
	c.p.Store(&m)
	return m
}

// goldenHops and outcomes are GoldenHops and Outcomes as arrays, for the
// sizes of GoldenPath's tables.
var (
	goldenHops = [...]schemas.EventType{IntentReceived, DataplaneDispatched, ArtifactDelivered, GatePassed, GateFailed}
	outcomes   = [...]string{OutcomeCompleted, OutcomeRejected, OutcomeFailed, OutcomeTimedOut}
)

func hopIndex(t schemas.EventType) (int, bool) {
	switch t {
	case IntentReceived:
		return 0, true
	case DataplaneDispatched:
		return 1, true
	case ArtifactDelivered:
		return 2, true
	case GatePassed:
		return 3, true
	case GateFailed:
		return 4, true
	}
	return 0, false
}

func outcomeIndex(t schemas.EventType) (int, bool) {
	switch t {
	case RunCompleted:
		return 0, true
	case RunRejected:
		return 1, true
	case RunFailed:
		return 2, true
	case RunTimedOut:
		return 3, true
	}
	return 0, false
}

// versionIndex indexes versionLabel's labels: V1, V2, unknown.
func versionIndex(v schemas.ContractVersion) int {
	switch v {
	case schemas.V1:
		return 0
	case schemas.V2:
		return 1
	}
	return 2
}

// routeIndex indexes RouteLabel's labels: baseline, canary, other.
func routeIndex(r string) int {
	switch RouteLabel(r) {
	case RouteBaseline:
		return 0
	case RouteCanary:
		return 1
	}
	return 2
}

// NewGoldenPath registers the golden-path metrics on reg (nil: not
// registered, still counted); gates are the gate names a gate check may
// carry as its label. Registering twice on one registry reuses the
// collectors already there, so several processors may each call it.
func NewGoldenPath(reg prometheus.Registerer, gates ...string) (*GoldenPath, error) {
	g := &GoldenPath{
		gates:   slices.Clone(gates),
		checksC: make([][3][3][2]child[prometheus.Counter], len(gates)+1),
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
	vi, ri := versionIndex(ev.SchemaVersion), routeIndex(ev.Route)
	labels := func() (cv, route string) { return versionLabel(ev.SchemaVersion), RouteLabel(ev.Route) }
	var since float64
	hasSince := !ev.RunStarted.IsZero() && !ev.Timestamp.IsZero()
	if hasSince {
		since = max(ev.Timestamp.Sub(ev.RunStarted).Seconds(), 0)
	}
	if h, ok := hopIndex(ev.EventType); ok {
		g.hopEvents[h][vi][ri].get(func() prometheus.Counter {
			cv, route := labels()
			return g.events.WithLabelValues(string(ev.EventType), cv, route)
		}).Inc()
		if hasSince {
			g.hopLatency[h][vi][ri].get(func() prometheus.Observer {
				cv, route := labels()
				return g.latency.WithLabelValues(string(ev.EventType), cv, route)
			}).Observe(since)
		}
	}
	if o, ok := outcomeIndex(ev.EventType); ok {
		g.runsC[o][vi][ri].get(func() prometheus.Counter {
			cv, route := labels()
			return g.runs.WithLabelValues(cv, route, outcomes[o])
		}).Inc()
		if hasSince {
			g.durationH[o][vi][ri].get(func() prometheus.Observer {
				cv, route := labels()
				return g.duration.WithLabelValues(cv, route, outcomes[o])
			}).Observe(since)
		}
	}
	if ev.EventType == GatePassed || ev.EventType == GateFailed {
		gi, name := len(g.gates), "other"
		if ev.Gate != nil {
			if i := slices.Index(g.gates, ev.Gate.Name); i >= 0 {
				gi, name = i, ev.Gate.Name
			}
		}
		oi, outcome := 0, "passed"
		if ev.EventType == GateFailed {
			oi, outcome = 1, "failed"
		}
		g.checksC[gi][vi][ri][oi].get(func() prometheus.Counter {
			cv, route := labels()
			return g.checks.WithLabelValues(name, cv, route, outcome)
		}).Inc()
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
