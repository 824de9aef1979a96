package pipeline

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spinerun/spine/schemas"
)

// Observer is told about every transaction the loop commits, after the
// commit, with the outputs it made visible. Because it sees only committed
// outputs, counts it keeps equal counts read back from the thread. It is
// called from the processor's loop goroutine and must not block for long.
type Observer interface {
	Committed(outputs []Output)
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(outputs []Output)

// Committed calls f.
func (f ObserverFunc) Committed(outputs []Output) { f(outputs) }

// Golden-path hops: the event types counted in spine_golden_path_events_total.
const (
	HopIntentReceived      = "intent.received"
	HopDataplaneDispatched = "dataplane.dispatched"
	HopArtifactDelivered   = "artifact.delivered"
	HopGatePassed          = "gate.passed"
	HopGateFailed          = "gate.failed"
)

// terminalOutcomes maps the terminal run events to the outcome label of
// spine_runs_total.
var terminalOutcomes = map[string]string{
	"run.completed": "completed",
	"run.rejected":  "rejected",
	"run.failed":    "failed",
	"run.timed_out": "timed_out",
}

var goldenHops = map[string]bool{
	HopIntentReceived: true, HopDataplaneDispatched: true, HopArtifactDelivered: true,
	HopGatePassed: true, HopGateFailed: true,
}

// latencyBuckets spans 1 ms to ~30 s.
var latencyBuckets = prometheus.ExponentialBuckets(0.001, 2, 16)

// GoldenPath is the Observer that feeds the golden-path metrics from
// committed RuntimeEvents:
//
//	spine_golden_path_events_total{hop,contract_version,route}
//	spine_golden_path_latency_seconds{hop,contract_version,route}
//	spine_runs_total{contract_version,route,outcome}
//	spine_run_duration_seconds{contract_version,route,outcome}
//	spine_gate_checks_total{gate,contract_version,route,outcome}
//
// Latencies are the event's timestamp minus its envelope's run_started. Every
// label is bounded: route is baseline, canary or other; gate names outside
// GateNames count as "other". A GoldenPath is safe for concurrent use; one
// may be shared by every processor of a process.
type GoldenPath struct {
	events   *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	runs     *prometheus.CounterVec
	duration *prometheus.HistogramVec
	gates    *prometheus.CounterVec
}

var _ Observer = (*GoldenPath)(nil)

// NewGoldenPath registers the golden-path metrics on reg (nil: not
// registered, still counted). Registering twice on one registry reuses the
// collectors already there, so several processors may each call it.
func NewGoldenPath(reg prometheus.Registerer) (*GoldenPath, error) {
	g := &GoldenPath{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spine_golden_path_events_total",
			Help: "Committed golden-path events per hop (intent.received, dataplane.dispatched, artifact.delivered, gate.passed, gate.failed).",
		}, []string{"hop", "contract_version", "route"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "spine_golden_path_latency_seconds",
			Help:    "Time from the run's start (the orchestrator receiving the intent) to each committed golden-path event.",
			Buckets: latencyBuckets,
		}, []string{"hop", "contract_version", "route"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spine_runs_total",
			Help: "Runs that reached a terminal state, by outcome (completed, rejected, failed, timed_out).",
		}, []string{"contract_version", "route", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "spine_run_duration_seconds",
			Help:    "Run duration from intent received to the terminal event.",
			Buckets: latencyBuckets,
		}, []string{"contract_version", "route", "outcome"}),
		gates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spine_gate_checks_total",
			Help: "Committed gate checks by gate and outcome (passed, failed).",
		}, []string{"gate", "contract_version", "route", "outcome"}),
	}
	var err error
	if g.events, err = registerOrGet(reg, g.events); err != nil {
		return nil, err
	}
	if g.latency, err = registerOrGet(reg, g.latency); err != nil {
		return nil, err
	}
	if g.runs, err = registerOrGet(reg, g.runs); err != nil {
		return nil, err
	}
	if g.duration, err = registerOrGet(reg, g.duration); err != nil {
		return nil, err
	}
	if g.gates, err = registerOrGet(reg, g.gates); err != nil {
		return nil, err
	}
	return g, nil
}

// Committed counts the committed RuntimeEvents among outputs; other values
// are ignored.
func (g *GoldenPath) Committed(outputs []Output) {
	for _, o := range outputs {
		ev, ok := o.Value.(*schemas.RuntimeEvent)
		if !ok || ev == nil {
			continue
		}
		g.observe(ev)
	}
}

func (g *GoldenPath) observe(ev *schemas.RuntimeEvent) {
	cv := versionLabel(ev.SchemaVersion)
	route := routeLabel(ev.Route)
	var since float64
	hasSince := !ev.RunStarted.IsZero() && !ev.Timestamp.IsZero()
	if hasSince {
		since = max(ev.Timestamp.Sub(ev.RunStarted).Seconds(), 0)
	}
	if goldenHops[ev.EventType] {
		g.events.WithLabelValues(ev.EventType, cv, route).Inc()
		if hasSince {
			g.latency.WithLabelValues(ev.EventType, cv, route).Observe(since)
		}
	}
	if outcome, ok := terminalOutcomes[ev.EventType]; ok {
		g.runs.WithLabelValues(cv, route, outcome).Inc()
		if hasSince {
			g.duration.WithLabelValues(cv, route, outcome).Observe(since)
		}
	}
	if ev.EventType == HopGatePassed || ev.EventType == HopGateFailed {
		name := "other"
		if ev.Gate != nil && knownGate(ev.Gate.Name) {
			name = ev.Gate.Name
		}
		outcome := "passed"
		if ev.EventType == HopGateFailed {
			outcome = "failed"
		}
		g.gates.WithLabelValues(name, cv, route, outcome).Inc()
	}
}

func knownGate(name string) bool {
	for _, g := range GateNames {
		if g == name {
			return true
		}
	}
	return false
}

func versionLabel(v schemas.ContractVersion) string {
	if v.Valid() {
		return v.String()
	}
	return "unknown"
}

// routeLabel bounds the route label: V1 events carry no route and run the
// baseline.
func routeLabel(r string) string {
	switch r {
	case "", "baseline":
		return "baseline"
	case "canary":
		return "canary"
	}
	return "other"
}

// loopMetrics is the processor plumbing:
//
//	spine_processor_records_total{processor,outcome}   outcome: ok, dlq, retry, skipped
//	spine_processor_transactions_total{processor,outcome} outcome: committed, aborted
//	spine_processor_transaction_seconds{processor}
//	spine_processor_blocked{processor}                  1 while a transient error blocks the loop
//	spine_dlq_records_total{processor,code}
type loopMetrics struct {
	records      *prometheus.CounterVec
	transactions *prometheus.CounterVec
	txnSeconds   *prometheus.HistogramVec
	blocked      *prometheus.GaugeVec
	dlq          *prometheus.CounterVec
}

func newLoopMetrics(reg prometheus.Registerer) (*loopMetrics, error) {
	m := &loopMetrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spine_processor_records_total",
			Help: "Input records and timers handled by a processor, by outcome: ok (committed), dlq (dead-lettered), retry (a transient error; retried), skipped (another event type than the processor handles; committed undecoded).",
		}, []string{"processor", "outcome"}),
		transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spine_processor_transactions_total",
			Help: "Transactions a processor ended, by outcome: committed or aborted.",
		}, []string{"processor", "outcome"}),
		txnSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "spine_processor_transaction_seconds",
			Help:    "Time from beginning a transaction to its end (commit or abort).",
			Buckets: latencyBuckets,
		}, []string{"processor"}),
		blocked: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "spine_processor_blocked",
			Help: "1 while a transient error (registry outage, handler error without a code) blocks the processor; it retries with backoff.",
		}, []string{"processor"}),
		dlq: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spine_dlq_records_total",
			Help: "Records a processor committed to the dead-letter topic, by stable error code.",
		}, []string{"processor", "code"}),
	}
	var err error
	if m.records, err = registerOrGet(reg, m.records); err != nil {
		return nil, err
	}
	if m.transactions, err = registerOrGet(reg, m.transactions); err != nil {
		return nil, err
	}
	if m.txnSeconds, err = registerOrGet(reg, m.txnSeconds); err != nil {
		return nil, err
	}
	if m.blocked, err = registerOrGet(reg, m.blocked); err != nil {
		return nil, err
	}
	if m.dlq, err = registerOrGet(reg, m.dlq); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *loopMetrics) txn(processor string, committed bool, d time.Duration) {
	outcome := "aborted"
	if committed {
		outcome = "committed"
	}
	m.transactions.WithLabelValues(processor, outcome).Inc()
	m.txnSeconds.WithLabelValues(processor).Observe(d.Seconds())
}

// registerOrGet registers c on reg, or returns the identical collector
// already registered there, so processors sharing a registry share series.
func registerOrGet[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if reg == nil {
		return c, nil
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}

// tolerantRegisterer lets kprom (which MustRegisters through promauto)
// share a registry: a collector registered twice keeps the first one.
type tolerantRegisterer struct{ prometheus.Registerer }

func (r tolerantRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				continue
			}
			panic(err)
		}
	}
}
