package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
	"github.com/spinerun/spine/schemas"
)

// rawCodec passes bytes through, so the benchmark measures the loop, not a
// serde.
type rawCodec struct{}

func (rawCodec) Decode(_ context.Context, _ pipeline.Topic, b []byte) (any, schemas.ContractVersion, error) {
	return b, schemas.V1, nil
}

func (rawCodec) Encode(_ context.Context, _ pipeline.Topic, _ schemas.ContractVersion, v any) ([]byte, error) {
	b, ok := v.([]byte)
	if !ok {
		return nil, errors.New("rawCodec encodes []byte only")
	}
	return b, nil
}

// hop forwards every input to out; stateful hops also count per key.
type hop struct {
	out      pipeline.Topic
	stateful bool
}

func (h hop) Handle(_ context.Context, state []byte, in pipeline.Input) (pipeline.Result, error) {
	res := pipeline.Result{Outputs: []pipeline.Output{{Topic: h.out, Key: in.Key, Value: in.Value}}}
	if h.stateful {
		n, _ := strconv.Atoi(string(state))
		res.State, res.StateChanged = strconv.AppendInt(nil, int64(n+1), 10), true
	}
	return res, nil
}

// counterTail counts read_committed records on topic and their latency
// from the input's produce timestamp (carried in the value).
type counterTail struct {
	n   atomic.Int64
	mu  sync.Mutex
	lat []time.Duration
}

func tailCount(b *testing.B, ctx context.Context, brokers []string, topic string) *counterTail {
	ct := &counterTail{}
	cl := kafkatest.Client(b, brokers, kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50*time.Millisecond))
	go func() {
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			now := time.Now()
			var lats []time.Duration
			fs.EachRecord(func(r *kgo.Record) {
				if ns, err := strconv.ParseInt(string(r.Value), 10, 64); err == nil {
					lats = append(lats, now.Sub(time.Unix(0, ns)))
				}
			})
			ct.mu.Lock()
			ct.lat = append(ct.lat, lats...)
			ct.mu.Unlock()
			ct.n.Add(int64(fs.NumRecords()))
		}
	}()
	return ct
}

func (ct *counterTail) p(q float64) time.Duration {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	if len(ct.lat) == 0 {
		return 0
	}
	s := slices.Clone(ct.lat)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// drive produces n records to topic (values: the produce time in ns) as
// fast as the client takes them and waits until the tail counted want.
func drive(b *testing.B, brokers []string, topic string, n int, ct *counterTail, want int64, rate int) time.Duration {
	cl := kafkatest.Client(b, brokers, kgo.ProducerLinger(time.Millisecond), kgo.MaxBufferedRecords(20000))
	start := time.Now()
	for i := range n {
		if rate > 0 {
			// Paced: record i is due at start + i/rate.
			if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); d > 0 {
				time.Sleep(d)
			}
		}
		cl.Produce(context.Background(), &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "trace-%d", i%997),
			Value: strconv.AppendInt(nil, time.Now().UnixNano(), 10)}, func(_ *kgo.Record, err error) {
			if err != nil {
				b.Error(err)
			}
		})
	}
	if err := cl.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(2*time.Minute + time.Duration(n)*time.Millisecond)
	for ct.n.Load() < want {
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d records arrived", ct.n.Load(), want)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}

func benchLayout(b *testing.B, brokers []string) pipeline.Layout {
	l := pipeline.Layout{Prefix: kafkatest.Prefix(b), Partitions: 6}
	adm := kadm.NewClient(kafkatest.Client(b, brokers))
	if err := pipeline.EnsureTopics(b.Context(), adm, l, -1); err != nil {
		b.Fatal(err)
	}
	return l
}

// spineChain runs three Spine processors intents → control → dataplane →
// gate.verdict and returns the last topic.
func spineChain(b *testing.B, ctx context.Context, wg *sync.WaitGroup, brokers []string, l pipeline.Layout, stateful bool) string {
	hops := []struct {
		name    string
		in, out pipeline.Topic
	}{
		{"orchestrator", l.Intents(), l.Control()},
		{"dataplane", l.Control(), l.Dataplane()},
		{"gates", l.Dataplane(), l.Gate("verdict")},
	}
	for _, h := range hops {
		p, err := pipeline.NewProcessor(h.name, hop{out: h.out, stateful: stateful},
			pipeline.WithKafka(kgo.SeedBrokers(brokers...)), pipeline.WithLayout(l), pipeline.WithInputs(h.in),
			pipeline.WithCodec(rawCodec{}), pipeline.WithInstanceID("bench"))
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Run(ctx); err != nil {
				b.Error(err)
			}
		}()
	}
	return string(l.Gate("verdict"))
}

// rawChain is the baseline: three franz-go GroupTransactSession stages
// A → B → C → D with no Spine code, configured as the loop is (linger 0,
// no compression, read_committed, batches of up to 1000).
func rawChain(b *testing.B, ctx context.Context, wg *sync.WaitGroup, brokers []string, prefix string) (first, last string) {
	topics := []string{prefix + "A", prefix + "B", prefix + "C", prefix + "D"}
	adm := kadm.NewClient(kafkatest.Client(b, brokers))
	if _, err := adm.CreateTopics(b.Context(), 6, -1, nil, topics...); err != nil {
		b.Fatal(err)
	}
	for i := range 3 {
		in, out := topics[i], topics[i+1]
		s, err := kgo.NewGroupTransactSession(kgo.SeedBrokers(brokers...), kgo.ConsumerGroup(prefix+"raw-"+in),
			kgo.ConsumeTopics(in), kgo.TransactionalID(prefix+"raw-"+in), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
			kgo.ProducerLinger(0), kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.TransactionTimeout(10*time.Second))
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.Close()
			for ctx.Err() == nil {
				fs := s.PollRecords(ctx, 1000)
				if fs.NumRecords() == 0 {
					continue
				}
				if err := s.Begin(); err != nil {
					b.Error(err)
					return
				}
				fs.EachRecord(func(r *kgo.Record) {
					s.Produce(ctx, &kgo.Record{Topic: out, Key: r.Key, Value: r.Value}, nil)
				})
				if _, err := s.End(context.WithoutCancel(ctx), kgo.TryCommit); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	return topics[0], topics[3]
}

type chainResult struct {
	rate     float64
	p50, p99 time.Duration
}

func runChain(b *testing.B, n, rate int, build func(ctx context.Context, wg *sync.WaitGroup, brokers []string) (first, last string)) chainResult {
	brokers := kafkatest.Brokers(b)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	first, last := build(ctx, &wg, brokers)
	ct := tailCount(b, ctx, brokers, last)
	drive(b, brokers, first, 1, ct, 1, 0) // warm up: groups joined, producers initialised
	ct.mu.Lock()
	ct.lat = nil
	ct.mu.Unlock()
	d := drive(b, brokers, first, n, ct, int64(n)+1, rate)
	return chainResult{rate: float64(n) / d.Seconds(), p50: ct.p(0.5), p99: ct.p(0.99)}
}

// BenchmarkLoop pushes b.N events through a three-hop chain of Spine
// processors on the embedded broker (kfake, or KAFKA_BROKERS) and, in the
// same run, through a raw franz-go transactional three-hop chain; it
// reports both rates (end-to-end events/s) and their ratio. Latencies are
// under full load (a saturation figure, not the 2,500/s SLO).
func BenchmarkLoop(b *testing.B) {
	for _, stateful := range []bool{false, true} {
		name := "stateless"
		if stateful {
			name = "stateful"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			n := max(b.N, 1000)
			spine := runChain(b, n, 0, func(ctx context.Context, wg *sync.WaitGroup, brokers []string) (string, string) {
				l := benchLayout(b, brokers)
				return string(l.Intents()), spineChain(b, ctx, wg, brokers, l, stateful)
			})
			b.StopTimer()
			raw := runChain(b, n, 0, func(ctx context.Context, wg *sync.WaitGroup, brokers []string) (string, string) {
				return rawChain(b, ctx, wg, brokers, kafkatest.Prefix(b))
			})
			b.ReportMetric(spine.rate, "events/s")
			b.ReportMetric(raw.rate, "raw_events/s")
			b.ReportMetric(spine.rate/raw.rate, "ratio")
			b.ReportMetric(float64(spine.p99.Milliseconds()), "p99_ms")
			b.ReportMetric(float64(raw.p99.Milliseconds()), "raw_p99_ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkLoopLatency paces 5,000 events/s for two seconds through the
// Spine three-hop chain (stateful) and the raw franz-go chain, and reports
// the end-to-end p50 and p99 of each (from the input's produce time to the
// last hop's output being readable, read_committed).
func BenchmarkLoopLatency(b *testing.B) {
	const rate, n = 5000, 10000
	for range b.N {
		spine := runChain(b, n, rate, func(ctx context.Context, wg *sync.WaitGroup, brokers []string) (string, string) {
			l := benchLayout(b, brokers)
			return string(l.Intents()), spineChain(b, ctx, wg, brokers, l, true)
		})
		raw := runChain(b, n, rate, func(ctx context.Context, wg *sync.WaitGroup, brokers []string) (string, string) {
			return rawChain(b, ctx, wg, brokers, kafkatest.Prefix(b))
		})
		b.ReportMetric(float64(spine.p50.Microseconds())/1000, "p50_ms")
		b.ReportMetric(float64(spine.p99.Microseconds())/1000, "p99_ms")
		b.ReportMetric(float64(raw.p50.Microseconds())/1000, "raw_p50_ms")
		b.ReportMetric(float64(raw.p99.Microseconds())/1000, "raw_p99_ms")
		b.ReportMetric(0, "ns/op")
	}
}
