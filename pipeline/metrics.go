package pipeline

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spinerun/spine/internal/promreg"
	"github.com/spinerun/spine/schemas/thread"

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

// EventObserver is told of the RuntimeEvents of each committed transaction
// (thread.GoldenPath is one).
type EventObserver interface {
	Committed(events []*schemas.RuntimeEvent)
}

// ObserveEvents returns the Observer that tells o of the RuntimeEvents among
// each committed transaction's outputs, in output order.
func ObserveEvents(o EventObserver) Observer {
	return ObserverFunc(func(outputs []Output) {
		evs := make([]*schemas.RuntimeEvent, 0, len(outputs))
		for _, out := range outputs {
			if ev, ok := out.Value.(*schemas.RuntimeEvent); ok && ev != nil {
				evs = append(evs, ev)
			}
		}
		o.Committed(evs)
	})
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
			Buckets: thread.LatencyBuckets,
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
	if m.records, err = promreg.RegisterOrGet(reg, m.records); err != nil {
		return nil, err
	}
	if m.transactions, err = promreg.RegisterOrGet(reg, m.transactions); err != nil {
		return nil, err
	}
	if m.txnSeconds, err = promreg.RegisterOrGet(reg, m.txnSeconds); err != nil {
		return nil, err
	}
	if m.blocked, err = promreg.RegisterOrGet(reg, m.blocked); err != nil {
		return nil, err
	}
	if m.dlq, err = promreg.RegisterOrGet(reg, m.dlq); err != nil {
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
