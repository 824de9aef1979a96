package postgres_test

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/adapters/postgres"
	"github.com/spinerun/spine/internal/spinetest"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// BenchmarkSinkLag runs the thread's processors and the sink on one broker
// and one PostgreSQL, paces PG_BENCH_INTENTS intents (default 5000) at
// PG_BENCH_RATE intents/s (default 500), and reports:
//
//   - rows/s: rows the sink wrote (events, gates, artifacts, runs upserts)
//     per second from its first write to its last;
//   - lag behind the golden path: per run, from its terminal event being
//     visible to a read_committed consumer of spine.control to its runs
//     row showing the outcome (polled every 20ms), p50 / p99 / max.
//
// Run it once: go test -run '^$' -bench SinkLag -benchtime 1x ./adapters/postgres
func BenchmarkSinkLag(b *testing.B) {
	n := envInt("PG_BENCH_INTENTS", 5000)
	rate := envInt("PG_BENCH_RATE", 500)
	for b.Loop() {
		benchSinkLag(b, n, rate)
	}
}

func benchSinkLag(b *testing.B, n, rate int) {
	r := newRig(b, nil, map[string]string{"SPINE_SYNTHETIC_FAILURE_RATE": "0"})
	r.startThread()
	reg := prometheus.NewRegistry()
	s, err := postgres.New(postgres.SinkConfig{Config: r.cfg.Postgres, Kafka: r.kopts, Layout: r.layout, Codec: r.codec,
		Logger: benchLog(), Registerer: reg})
	if err != nil {
		b.Fatal(err)
	}
	spinetest.Start(b, "pgsink", s.Run)
	conn := r.db()

	// The golden path's end: terminal events as a read_committed reader
	// sees them.
	var mu sync.Mutex
	ended := map[string]time.Time{}
	cl := kafkatest.Client(b, r.brokers, kgo.ConsumeTopics(string(r.layout.Control())), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(20*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			now := time.Now()
			fs.EachRecord(func(rec *kgo.Record) {
				v, _, err := r.codec.Decode(ctx, pipeline.Topic(rec.Topic), rec.Value)
				if ev, ok := v.(*schemas.RuntimeEvent); err == nil && ok {
					if _, end := thread.Outcome(ev.EventType); end {
						mu.Lock()
						if _, seen := ended[ev.TraceID]; !seen {
							ended[ev.TraceID] = now
						}
						mu.Unlock()
					}
				}
			})
		}
	}()

	outs := intents("bench", n)
	start := time.Now()
	go func() {
		const step = 20 * time.Millisecond
		per := max(1, rate*int(step)/int(time.Second))
		next := time.Now()
		for i := 0; i < n; i += per {
			r.produce(outs[i:min(i+per, n)])
			next = next.Add(step)
			time.Sleep(time.Until(next))
		}
	}()

	// The database's end: runs rows with an outcome, polled.
	inDB := map[string]time.Time{}
	deadline := time.Now().Add(time.Duration(n/rate)*time.Second + 5*time.Minute)
	for len(inDB) < n {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d runs ended in the database", len(inDB), n)
		}
		rows, err := conn.Query(context.Background(), "SELECT trace_id FROM runs WHERE outcome IS NOT NULL AND last_at > now() - interval '10 minutes'")
		if err != nil { // not migrated yet
			time.Sleep(20 * time.Millisecond)
			continue
		}
		now := time.Now()
		for rows.Next() {
			var tr string
			if err := rows.Scan(&tr); err != nil {
				b.Fatal(err)
			}
			if _, ok := inDB[tr]; !ok {
				inDB[tr] = now
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(start)
	mu.Lock()
	var lags []float64
	for tr, at := range inDB {
		if k, ok := ended[tr]; ok {
			lags = append(lags, float64(max(0, at.Sub(k).Milliseconds())))
		}
	}
	mu.Unlock()
	slices.Sort(lags)
	q := func(p float64) float64 {
		if len(lags) == 0 {
			return 0
		}
		return lags[min(len(lags)-1, int(p*float64(len(lags))))]
	}
	var rowsWritten float64
	for _, t := range []string{"events", "gates", "artifacts", "runs"} {
		rowsWritten += spinetest.MetricValue(b, reg, "spine_pgsink_rows_total", t)
	}
	events := spinetest.MetricValue(b, reg, "spine_pgsink_rows_total", "events")
	b.ReportMetric(rowsWritten/elapsed.Seconds(), "rows/s")
	b.ReportMetric(events/elapsed.Seconds(), "events/s")
	b.ReportMetric(q(0.5), "lag-p50-ms")
	b.ReportMetric(q(0.99), "lag-p99-ms")
	b.ReportMetric(q(1), "lag-max-ms")
	b.ReportMetric(float64(n)/elapsed.Seconds(), "intents/s")
	var inTx float64
	if mfs, err := reg.Gather(); err == nil {
		for _, mf := range mfs {
			if mf.GetName() == "spine_pgsink_batch_seconds" {
				inTx = mf.GetMetric()[0].GetHistogram().GetSampleSum()
			}
		}
	}
	b.Logf("%d intents at %d/s: %.0f rows (%.0f events) in %s; lag behind the golden path p50 %.0f ms, p99 %.0f ms, max %.0f ms (%d runs measured); %d batches, %.1fs in their transactions",
		n, rate, rowsWritten, events, elapsed.Round(time.Millisecond), q(0.5), q(0.99), q(1), len(lags),
		spinetest.HistogramCount(b, reg, "spine_pgsink_batch_seconds"), inTx)
}

// benchLog prints the sink's debug log (statement timings) with PG_VERBOSE.
func benchLog() *slog.Logger {
	if os.Getenv("PG_VERBOSE") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}
