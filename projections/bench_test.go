package projections

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// BenchmarkFold measures folding thread events into cells (the runner's
// hot path, before encoding).
func BenchmarkFold(b *testing.B) {
	recs := interleave(1, synth(1, 1000, "canary", schemas.V2, 5))
	b.ReportAllocs()
	b.ResetTimer()
	cells := Cells{}
	for i := range b.N {
		r := recs[i%len(recs)]
		if i%len(recs) == 0 {
			cells = Cells{}
		}
		Folder{}.Fold(cells, r.src, r.ev, schemas.V2)
	}
}

// BenchmarkEncodeGoldenCell measures encoding an aggregate cell, which the
// runner does once per changed cell per transaction.
func BenchmarkEncodeGoldenCell(b *testing.B) {
	cells := foldAll(Folder{}, interleave(1, synth(2, 1000, "canary", schemas.V2, 5)))
	var g Cell
	for k, c := range cells {
		if c.Projection() == thread.ProjGolden && len(k) > 0 {
			g = c
			break
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := EncodeCell(g); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRunner measures the projections processor end to end on the
// test cluster: thread events folded and committed per second, from a
// backlog of complete runs (13 events each), until the view shows them all.
// Run with -benchtime=1x; each iteration uses fresh topics.
func BenchmarkRunner(b *testing.B) {
	const nRuns = 5000
	for range b.N {
		b.StopTimer()
		e := newEnvTB(b)
		runs := synth(61, nRuns, "baseline", schemas.V1, 10)
		events := e.produceTB(b, runs)
		store, err := NewStore(StoreConfig{Kafka: []kgo.Opt{kgo.SeedBrokers(e.brokers...)}, Layout: e.layout})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() { _ = store.Run(ctx) }()
		r, err := NewRunner(RunnerConfig{Kafka: []kgo.Opt{kgo.SeedBrokers(e.brokers...)}, Layout: e.layout, Codec: e.codec})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		for {
			rep := store.Aggregate(Range{}).CanaryReport()
			if rep.Baseline.Terminal == nRuns && rep.Baseline.Artifacts == nRuns && rep.Baseline.Gates["verdict"].Passed+rep.Baseline.Gates["verdict"].Failed == nRuns {
				break
			}
			if time.Since(start) > 2*time.Minute {
				b.Fatal("runner did not fold the backlog within 2m")
			}
			time.Sleep(20 * time.Millisecond)
		}
		el := time.Since(start)
		b.StopTimer()
		b.ReportMetric(float64(events)/el.Seconds(), "events/s")
		cancel()
		<-done
	}
}

// BenchmarkLiveObserve measures what the runner adds per committed event
// when it feeds the dashboard's live view (RunnerConfig.Live).
func BenchmarkLiveObserve(b *testing.B) {
	recs := interleave(1, synth(1, 1000, "canary", schemas.V2, 5))
	items := make([]item, len(recs))
	for i, r := range recs {
		items[i] = item{src: r.src, ev: r.ev, writer: schemas.V2}
	}
	l := newLive(func() time.Time { return t0 })
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(items) {
		l.observe(items[:min(len(items), b.N-i)])
	}
}
