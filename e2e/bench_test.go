package e2e

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/spinerun/spine/loadtest"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// watcher follows the committed thread cheaply — it decodes nothing: it
// counts the records of every thread topic but the intents and notes when
// each run's gate.verdict (keyed by trace id) became visible.
type watcher struct {
	mu       sync.Mutex
	records  int
	verdicts map[string]time.Time
}

func (s *rig) watch(tb testing.TB) *watcher {
	w := &watcher{verdicts: map[string]time.Time{}}
	var topics []string
	for _, t := range s.layout.ThreadTopics() {
		if t != s.layout.Intents() {
			topics = append(topics, string(t))
		}
	}
	verdict := string(s.layout.Gate("verdict"))
	cl := kafkatest.Client(tb, s.brokers, kgo.ConsumeTopics(topics...), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(20*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			now := time.Now()
			w.mu.Lock()
			fs.EachRecord(func(r *kgo.Record) {
				w.records++
				if r.Topic == verdict {
					if _, ok := w.verdicts[string(r.Key)]; !ok {
						w.verdicts[string(r.Key)] = now
					}
				}
			})
			w.mu.Unlock()
		}
	}()
	tb.Cleanup(func() { cancel(); <-done })
	return w
}

func (w *watcher) counts() (records, verdicts int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.records, len(w.verdicts)
}

// encoded returns n intents (run prefix run) encoded for the intents topic,
// so producing them costs the benchmark no encoding.
func (s *rig) encoded(tb testing.TB, run string, n int) []*kgo.Record {
	tb.Helper()
	outs := intents(run, n)
	recs := make([]*kgo.Record, n)
	for i, o := range outs {
		// W3C trace ids, as `spine produce`, HTTP ingress and the load
		// test make them: each record of the run then carries a traceparent.
		it := o.Value.(*schemas.Intent)
		it.TraceID = thread.ID(it.TraceID)
		o.Key = []byte(it.TraceID)
		b, err := s.codec.Encode(context.Background(), s.layout.Intents(), o.Version, o.Value)
		if err != nil {
			tb.Fatal(err)
		}
		recs[i] = &kgo.Record{Topic: string(s.layout.Intents()), Key: o.Key, Value: b}
	}
	return recs
}

// benchStack starts the in-process stack on brokers, warmed up: groups
// joined, schema ids cached, a first 200 runs through.
func benchStack(b *testing.B, brokers []string) (*rig, *watcher, *kgo.Client) {
	b.Helper()
	s := newStack(b, brokers, nil)
	if os.Getenv("E2E_TRACE") != "" {
		// Tracing on, spans batched to an exporter that drops them: the
		// cost of recording the thread's spans.
		tp := pipeline.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
		b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		s.tracer = tp
	}
	w := s.watch(b)
	s.startAll(nil)
	cl := kafkatest.Client(b, brokers, kgo.ProducerLinger(0), kgo.ProducerBatchCompression(kgo.NoCompression()))
	warm := s.encoded(b, "warm", 200)
	if err := cl.ProduceSync(context.Background(), warm...).FirstErr(); err != nil {
		b.Fatal(err)
	}
	waitFor(b, 60*time.Second, func() bool { _, v := w.counts(); return v >= 200 }, func() string { return "warm-up runs" })
	return s, w, cl
}

// cpuTime is the CPU time (user and system) this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuPressure is the machine's total CPU stall time ("some" line of
// /proc/pressure/cpu: time at least one runnable task waited for a CPU), or
// -1 where PSI is not available.
func cpuPressure() time.Duration {
	b, err := os.ReadFile("/proc/pressure/cpu")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "some ") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "total="); ok {
				if us, err := strconv.ParseInt(v, 10, 64); err == nil {
					return time.Duration(us) * time.Microsecond
				}
			}
		}
	}
	return -1
}

// reportPressure reports the share of the run's wall time in which some
// runnable task on the machine waited for a CPU: the contention the
// figures were measured under (other engineers' builds and tests share the
// two cores).
func reportPressure(b *testing.B, since time.Duration, wall time.Duration) {
	now := cpuPressure()
	if since < 0 || now < 0 || wall <= 0 {
		return
	}
	b.ReportMetric(100*float64(now-since)/float64(wall), "cpu-stall-%")
}

// pct returns the q-quantile of sorted durations, in ms.
func pct(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := min(int(q*float64(len(sorted))), len(sorted)-1)
	return float64(sorted[i].Microseconds()) / 1000
}

// BenchmarkGoldenPath measures the golden path on the in-process stack
// (embedded broker or KAFKA_BROKERS, Spine's registry, the three
// processors wired as `spine up` wires them) and, on the same broker in the
// same run, the raw franz-go transactional 3-hop chain of package loadtest:
//
//   - throughput: b.N intents produced at once; intents/s from the first
//     produce to the last gate.verdict visible read_committed, and thread
//     events/s (every committed record of the thread but the intents).
//   - paced-2500: b.N intents paced at 2,500/s; p50/p99 of intent produce →
//     its gate.verdict visible read_committed.
//   - raw-chain: the chain pushing as fast as it can as many hop outputs as
//     the thread's events for b.N intents (events/s), and b.N records paced
//     at 2,500/s (p50/p99 source → last hop), with the ratio of Spine's
//     thread events/s to the chain's.
//
// Run it with a fixed count: make bench, or
// go test -run '^$' -bench GoldenPath -benchtime 10000x ./e2e
func BenchmarkGoldenPath(b *testing.B) {
	brokers := kafkatest.Brokers(b)
	var spineEventsPerSec float64
	b.Run("throughput", func(b *testing.B) {
		s, w, cl := benchStack(b, brokers)
		recs := s.encoded(b, fmt.Sprintf("tp%d", b.N), b.N)
		rec0, v0 := w.counts()
		b.ResetTimer()
		stopProfile := windowProfile(b)
		var ms0 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		cpu0 := cpuTime()
		start := time.Now()
		for i := 0; i < len(recs); i += 1000 {
			cl.Produce(context.Background(), recs[i], nil)
			for _, r := range recs[i+1 : min(i+1000, len(recs))] {
				cl.Produce(context.Background(), r, nil)
			}
		}
		if err := cl.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
		waitFor(b, time.Duration(60+b.N/100)*time.Second, func() bool { _, v := w.counts(); return v-v0 >= b.N },
			func() string { _, v := w.counts(); return fmt.Sprintf("%d verdicts (have %d)", b.N, v-v0) })
		elapsed := time.Since(start)
		cpu := cpuTime() - cpu0
		var ms1 runtime.MemStats
		runtime.ReadMemStats(&ms1)
		stopProfile()
		b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(b.N), "allocs/intent")
		b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/float64(b.N), "B/intent")
		b.StopTimer()
		// The runs' last events (run.completed) follow their verdicts:
		// count the thread's events once it is quiet.
		for last := -1; ; time.Sleep(300 * time.Millisecond) {
			if r, _ := w.counts(); r != last {
				last = r
				continue
			}
			break
		}
		rec1, _ := w.counts()
		perIntent := float64(rec1-rec0) / float64(b.N)
		intentsPerSec := float64(b.N) / elapsed.Seconds()
		b.ReportMetric(intentsPerSec, "intents/s")
		b.ReportMetric(perIntent, "events/intent")
		b.ReportMetric(perIntent*intentsPerSec, "events/s")
		// CPU of this process (broker, registry, processors, watcher) per
		// intent: the figure other load on the machine does not change.
		b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/intent")
		spineEventsPerSec = perIntent * intentsPerSec
	})
	b.Run("paced-2500", func(b *testing.B) {
		const rate = 2500
		s, w, cl := benchStack(b, brokers)
		recs := s.encoded(b, fmt.Sprintf("pc%d", b.N), b.N)
		sent := make(map[string]time.Time, b.N)
		b.ResetTimer()
		psi0 := cpuPressure()
		cpu0 := cpuTime()
		start := time.Now()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		next := 0
		for next < len(recs) {
			<-tick.C
			due := min(int(time.Since(start).Seconds()*rate)+1, len(recs))
			now := time.Now()
			for ; next < due; next++ {
				sent[string(recs[next].Key)] = now
				cl.Produce(context.Background(), recs[next], nil)
			}
		}
		if err := cl.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
		waitFor(b, time.Duration(60+b.N/100)*time.Second, func() bool {
			w.mu.Lock()
			defer w.mu.Unlock()
			for k := range sent {
				if _, ok := w.verdicts[k]; !ok {
					return false
				}
			}
			return true
		}, func() string { return fmt.Sprintf("verdicts of %d paced intents", b.N) })
		cpu := cpuTime() - cpu0
		b.StopTimer()
		lat := make([]time.Duration, 0, len(sent))
		w.mu.Lock()
		for k, t0 := range sent {
			lat = append(lat, w.verdicts[k].Sub(t0))
		}
		w.mu.Unlock()
		slices.Sort(lat)
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "intents/s")
		b.ReportMetric(pct(lat, 0.50), "p50-ms")
		b.ReportMetric(pct(lat, 0.99), "p99-ms")
		b.ReportMetric(pct(lat, 1), "max-ms")
		// CPU per intent at a fixed rate: the work of a run, apart from how
		// large the batches grow when the stack falls behind.
		b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/intent")
		reportPressure(b, psi0, time.Since(start))
	})
	b.Run("raw-chain", func(b *testing.B) {
		kopts := []kgo.Opt{kgo.SeedBrokers(brokers...)}
		ctx := context.Background()
		b.ResetTimer()
		cpu0 := cpuTime()
		// As many hop outputs as Spine's thread writes for b.N intents
		// (13 events per run, 3 per chain record).
		tp, err := loadtest.Chain(ctx, loadtest.ChainConfig{Kafka: kopts, Prefix: kafkatest.Prefix(b), Partitions: 6, Records: max(b.N*13/3, 1000)})
		if err != nil {
			b.Fatal(err)
		}
		cpu := cpuTime() - cpu0
		paced, err := loadtest.Chain(ctx, loadtest.ChainConfig{Kafka: kopts, Prefix: kafkatest.Prefix(b), Partitions: 6, Records: max(b.N, 1000), Rate: 2500})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		b.ReportMetric(tp.EventsPerSec, "events/s")
		b.ReportMetric(float64(cpu.Microseconds())/float64(tp.Events), "cpu-µs/event")
		b.ReportMetric(float64(paced.Latency.P50), "p50-ms@2500/s")
		b.ReportMetric(float64(paced.Latency.P99), "p99-ms@2500/s")
		if spineEventsPerSec > 0 && tp.EventsPerSec > 0 {
			b.ReportMetric(spineEventsPerSec/tp.EventsPerSec, "spine/raw-events")
		}
	})
}

// windowProfile starts a CPU profile of the measured window alone when
// E2E_WINDOW_PROFILE names a file (the -cpuprofile flag also profiles the
// stack's start and warm-up); the returned func stops it.
func windowProfile(b *testing.B) func() {
	path := os.Getenv("E2E_WINDOW_PROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}
}
