package postgres

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	rows     *prometheus.CounterVec
	skipped  *prometheus.CounterVec
	batch    prometheus.Histogram
	restarts prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spine_pgsink_rows_total",
			Help: "Rows the PostgreSQL sink wrote (runs: rows upserted), by table."}, []string{"table"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spine_pgsink_skipped_total",
			Help: "Records or batches the PostgreSQL sink did not write, by reason (not_owned, undecodable, fenced)."}, []string{"reason"}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "spine_pgsink_batch_seconds",
			Help: "Time to write one batch and its offsets in one transaction.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 15)}),
		restarts: prometheus.NewCounter(prometheus.CounterOpts{Name: "spine_pgsink_session_restarts_total",
			Help: "Sessions of the PostgreSQL sink that ended on an error and started again."}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.rows, m.skipped, m.batch, m.restarts} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
		}
	}
	return m, nil
}
