// Package loadtest drives intents through a running Spine stack at a fixed
// rate with a share of them routed to the v2 canary, watches the thread
// while it runs (progress once a second), and reports what happened:
// throughput achieved against asked, per-route latency, gate pass rates, the
// canary analyzer's decisions over time, and the ratio to a raw franz-go
// transactional chain measured on the same broker in the same run. The
// report is written as JSON and as one self-contained HTML page.
//
// Goroutines: Run starts a collector (reads the thread) and a sender
// (produces intents), both stopped before it returns; the collector is the
// only writer of the run state, guarded by a mutex the progress printer and
// the report read under.
package loadtest

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/canary"
	"github.com/spinerun/spine/projections"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// FlagStore is the rollout flag (a *canary.Rollouts, running).
type FlagStore interface {
	Rollout() canary.Rollout
	SetRollout(ctx context.Context, r canary.Rollout, who, why string) (pipeline.FlagChange, error)
	History(flag string) []pipeline.FlagChange
}

// Params are what the user asked for, recorded in the report.
type Params struct {
	Rate          float64 `json:"rate"`
	Duration      string  `json:"duration"`
	CanaryPct     float64 `json:"canary_pct"`
	V2LatencyMs   float64 `json:"v2_latency_ms"`
	V2FailureRate float64 `json:"v2_failure_rate"`
	V2ScoreShift  float64 `json:"v2_score_shift"`
	Partitions    int32   `json:"partitions"`
	Target        string  `json:"target"`
}

// Config configures a load test.
type Config struct {
	// Rate is the intents per second to send. Required.
	Rate float64
	// Duration is how long to send. Required.
	Duration time.Duration
	// Drain bounds the wait for outstanding runs after sending (default
	// 30s).
	Drain time.Duration
	// Rollout is set as the v2_rollout flag when the test starts (its
	// Started is set to the start), so the test begins a fresh rollout.
	// A zero Rollout leaves the flag as it is.
	Rollout canary.Rollout
	// Kafka, Layout and Codec reach the stack. Required.
	Kafka  []kgo.Opt
	Layout pipeline.Layout
	Codec  pipeline.Codec
	// Flags is the running flag store. Required.
	Flags FlagStore
	// Actors is the number of distinct actors intents come from (default
	// 1000), so per-actor concurrency limits do not throttle the test.
	Actors int
	// Kind is the intent kind (default "summarize").
	Kind string
	// Progress receives one line a second; nil prints nothing.
	Progress io.Writer
	// UntilDecided, when above Duration, keeps sending after Duration until
	// the rollout is promoted or rolled back, for at most UntilDecided in
	// all.
	UntilDecided time.Duration
	// Chain, when set, measures the raw franz-go chain before the load;
	// paced at Rate, the report compares its latency with the runs'
	// (Report.RawComparison).
	Chain *ChainConfig
	// Memory, when set, samples the stack's memory once a second (an
	// in-process stack: ProcessMemory); nil leaves it out of the report.
	Memory func() Memory
	// Params are recorded in the report.
	Params Params
	// Logger defaults to discard.
	Logger *slog.Logger
}

// state is the collector's view, guarded by mu.
type state struct {
	mu sync.Mutex
	// pending are the runs sent that have no outcome yet: a run leaves
	// when its outcome is counted, so the collector's memory is the runs
	// in flight, not every run ever sent.
	pending   map[string]struct{}
	sent      int64
	done      map[string]int64 // by route
	events    int64            // thread records of this test's runs
	routes    map[string]*RouteReport
	lat       map[string]*projections.Histogram // by route, end to end
	execLat   map[string]*projections.Histogram // by route, executor-reported
	decisions []Decision
	series    []Point
	firstSent time.Time
	lastDone  time.Time
	dlq       int64
}

// route returns the report of route name, making it the first time. Its
// keys are copies: an event's strings pin the record they were cut from.
func (s *state) route(name string) *RouteReport {
	r := s.routes[name]
	if r == nil {
		name = strings.Clone(name)
		s.done[name] = 0 // the copy is the key: later increments keep it
		r = &RouteReport{Outcomes: map[string]int64{}, Gates: map[string]*GateRate{}}
		s.routes[name] = r
		s.lat[name] = &projections.Histogram{}
		s.execLat[name] = &projections.Histogram{}
	}
	return r
}

// Run runs the load test and returns its report. It returns early with an
// error if ctx ends or the stack cannot be reached.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Rate <= 0 || cfg.Duration <= 0 || len(cfg.Kafka) == 0 || cfg.Codec == nil || cfg.Flags == nil {
		return nil, errors.New("loadtest: Rate, Duration, Kafka, Codec and Flags are required")
	}
	if cfg.Drain <= 0 {
		cfg.Drain = 30 * time.Second
	}
	if cfg.Actors <= 0 {
		cfg.Actors = 1000
	}
	if cfg.Kind == "" {
		cfg.Kind = "summarize"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	// The test's runs have trace ids as Spine mints them (thread.TraceIDAt:
	// 32 hex digits, so their records carry a traceparent, and the time
	// first, so spine trace starts at the run): the time, the test's id (8
	// random hex digits), then the run's number. The collector knows its
	// runs by the test's id.
	var idb [4]byte
	_, _ = rand.Read(idb[:])
	id := hex.EncodeToString(idb[:])
	chainPrefix := "lt-" + id + "-"
	st := &state{pending: map[string]struct{}{}, done: map[string]int64{}, routes: map[string]*RouteReport{}, lat: map[string]*projections.Histogram{}, execLat: map[string]*projections.Histogram{}}

	// 0. The raw franz-go chain, on the same broker, before the load: the
	// stack is idle then, so the chain does not compete with the stack's
	// catching up after the load.
	var chain *ChainResult
	if cfg.Chain != nil {
		cc := *cfg.Chain
		if cc.Prefix == "" {
			cc.Prefix = cfg.Layout.Prefix + chainPrefix
		}
		if len(cc.Kafka) == 0 {
			cc.Kafka = cfg.Kafka
		}
		if cc.Records <= 0 {
			cc.Records = 20000
		}
		if cfg.Progress != nil {
			pace := "unpaced"
			if cc.Rate > 0 {
				pace = "at " + strconv.FormatFloat(cc.Rate, 'f', -1, 64) + " records/s"
			}
			fmt.Fprintf(cfg.Progress, "measuring the raw franz-go transactional 3-hop chain (%d records, %s)...\n", cc.Records, pace)
		}
		res, err := Chain(ctx, cc)
		if err != nil {
			cfg.Logger.Warn("raw franz-go chain failed; the report has no comparison", "err", err)
		} else {
			chain = &res
		}
	}
	// 1. The collector, positioned at the current end of every thread topic
	// before anything is sent, so it misses nothing of this test.
	topics := []pipeline.Topic{cfg.Layout.Control(), cfg.Layout.Dataplane(), cfg.Layout.DLQ()}
	for _, g := range thread.GateNames {
		topics = append(topics, cfg.Layout.Gate(g))
	}
	coll, err := newCollector(ctx, cfg, topics)
	if err != nil {
		return nil, err
	}
	defer coll.Close()
	cctx, stopColl := context.WithCancel(ctx)
	collDone := make(chan struct{})
	go func() {
		defer close(collDone)
		collect(cctx, cfg, coll, st, id)
	}()
	defer func() { stopColl(); <-collDone }()

	// 2. A fresh rollout.
	start := time.Now()
	if cfg.Rollout.Phase != "" {
		r := cfg.Rollout
		r.Started = start.UTC()
		if _, err := cfg.Flags.SetRollout(ctx, r, "loadtest", fmt.Sprintf("load test %s: %g intents/s for %s, canary %s", id, cfg.Rate, cfg.Duration, pct(r.Weight))); err != nil {
			return nil, fmt.Errorf("loadtest: set the rollout: %w", err)
		}
	}

	// 3. Send, printing progress once a second.
	prod, err := kgo.NewClient(append(slices.Clone(cfg.Kafka), kgo.ProducerLinger(2*time.Millisecond), kgo.MaxBufferedRecords(100000))...)
	if err != nil {
		return nil, err
	}
	defer prod.Close()
	var produceErrs atomic.Int64
	var firstErr atomic.Value
	total := cfg.Duration
	if cfg.UntilDecided > total {
		total = cfg.UntilDecided
	}
	sendCtx, stopSend := context.WithTimeout(ctx, total)
	defer stopSend()
	progress := time.NewTicker(time.Second)
	defer progress.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	sendStart := time.Now()
	var n int64
sending:
	for {
		select {
		case <-sendCtx.Done():
			break sending
		case <-progress.C:
			report(cfg, st, start)
		case now := <-tick.C:
			if now.Sub(sendStart) >= cfg.Duration && (cfg.UntilDecided <= 0 || decided(cfg.Flags.Rollout())) {
				break sending
			}
			due := int64(now.Sub(sendStart).Seconds() * cfg.Rate)
			for ; n < due; n++ {
				trace := traceID(now, idb, n)
				it := &schemas.Intent{
					IntentID: trace, TraceID: trace, Actor: "actor-" + strconv.FormatInt(n%int64(cfg.Actors), 10),
					Kind: cfg.Kind, Input: "load test " + id, SchemaVersion: schemas.V2, Timestamp: now.UTC(),
				}
				b, err := cfg.Codec.Encode(ctx, cfg.Layout.Intents(), schemas.V2, it)
				if err != nil {
					return nil, fmt.Errorf("loadtest: encode intent: %w", err)
				}
				st.mu.Lock()
				st.pending[trace] = struct{}{}
				st.sent++
				if st.firstSent.IsZero() {
					st.firstSent = now
				}
				st.mu.Unlock()
				rec := &kgo.Record{Topic: string(cfg.Layout.Intents()), Key: []byte(trace), Value: b}
				if tp := pipeline.Traceparent(trace, thread.RunSpanID(trace)); tp != nil {
					rec.Headers = []kgo.RecordHeader{{Key: thread.HeaderTraceparent, Value: tp}}
				}
				prod.Produce(ctx, rec, func(_ *kgo.Record, err error) {
					if err != nil {
						produceErrs.Add(1)
						firstErr.CompareAndSwap(nil, err)
					}
				})
			}
		}
	}
	sendEnd := time.Now()
	if err := prod.Flush(ctx); err != nil {
		return nil, fmt.Errorf("loadtest: flush intents: %w", err)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if c := produceErrs.Load(); c > 0 {
		return nil, fmt.Errorf("loadtest: %d intents were not written: %v", c, firstErr.Load())
	}

	// 4. Drain: wait for every run's terminal event, or the drain bound.
	drainEnd := time.Now().Add(cfg.Drain)
	for time.Now().Before(drainEnd) && ctx.Err() == nil {
		st.mu.Lock()
		var fin int64
		for _, d := range st.done {
			fin += d
		}
		all := fin >= st.sent
		st.mu.Unlock()
		if all {
			break
		}
		select {
		case <-progress.C:
			report(cfg, st, start)
		case <-time.After(50 * time.Millisecond):
		}
	}
	report(cfg, st, start)

	// 5. The decision that ended the rollout, if the analyzer ended it,
	// so the report agrees with the flag (an operator's end has none).
	if endedByAnalyzer(cfg.Flags) {
		awaitDecision(ctx, st, cfg.Flags.Rollout(), decisionWait)
	}
	stopColl()
	<-collDone

	return buildReport(cfg, st, id, start, sendStart, sendEnd, chain), nil
}

// decided reports whether the rollout reached an end: promoted or rolled
// back.
func decided(r canary.Rollout) bool {
	return r.Phase == canary.PhasePromoted || r.Phase == canary.PhaseRolledBack
}

// endedByAnalyzer reports whether the canary analyzer made the rollout's
// last change.
func endedByAnalyzer(f FlagStore) bool {
	h := f.History(canary.FlagV2Rollout)
	return len(h) > 0 && h[len(h)-1].Who == canary.AnalyzerActor
}

// decisionWait bounds awaitDecision.
const decisionWait = 15 * time.Second

// awaitDecision returns once the collector has read a decision that leaves
// the rollout as r (r's phase and weight), if r is promoted or rolled back;
// at the latest after d, or when ctx ends. The canary analyzer publishes
// its gate.canary record before it writes the flag, so by the time the
// flag store shows the end, the record is on the thread, but the collector
// reads that topic at its own pace.
func awaitDecision(ctx context.Context, st *state, r canary.Rollout, d time.Duration) {
	if !decided(r) {
		return
	}
	seen := func() bool {
		st.mu.Lock()
		defer st.mu.Unlock()
		return slices.ContainsFunc(st.decisions, func(dc Decision) bool {
			return dc.Phase == string(r.Phase) && dc.WeightAfter == r.Weight
		})
	}
	timeout := time.NewTimer(d)
	defer timeout.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !seen() {
		select {
		case <-ctx.Done():
			return
		case <-timeout.C:
			return
		case <-tick.C:
		}
	}
}

// newCollector returns a client consuming topics from their current ends.
func newCollector(ctx context.Context, cfg Config, topics []pipeline.Topic) (*kgo.Client, error) {
	adm, err := kgo.NewClient(cfg.Kafka...)
	if err != nil {
		return nil, err
	}
	defer adm.Close()
	names := make([]string, len(topics))
	for i, t := range topics {
		names[i] = string(t)
	}
	ends, err := kadm.NewClient(adm).ListEndOffsets(ctx, names...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("loadtest: read the thread's end offsets: %w (is the stack up?)", err)
	}
	offs := map[string]map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		if offs[o.Topic] == nil {
			offs[o.Topic] = map[int32]kgo.Offset{}
		}
		offs[o.Topic][o.Partition] = kgo.NewOffset().At(o.Offset)
	})
	return kgo.NewClient(append(slices.Clone(cfg.Kafka),
		kgo.ConsumePartitions(offs),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(100*time.Millisecond),
	)...)
}

// collect folds thread records into st until ctx ends.
func collect(ctx context.Context, cfg Config, cl *kgo.Client, st *state, id string) {
	ours := func(trace string) bool { return len(trace) == 32 && trace[8:16] == id }
	canaryTopic := string(cfg.Layout.Gate("canary"))
	dlq := string(cfg.Layout.DLQ())
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return
		}
		fs.EachError(func(t string, p int32, err error) {
			cfg.Logger.Warn("loadtest: fetch error", "topic", t, "partition", p, "err", err)
		})
		fs.EachRecord(func(r *kgo.Record) {
			if r.Topic == dlq {
				if ours(string(r.Key)) {
					st.mu.Lock()
					st.dlq++
					st.mu.Unlock()
				}
				return
			}
			v, _, err := cfg.Codec.Decode(ctx, pipeline.Topic(r.Topic), r.Value)
			if err != nil {
				return
			}
			ev, ok := v.(*schemas.RuntimeEvent)
			if !ok {
				return
			}
			if r.Topic == canaryTopic {
				st.mu.Lock()
				st.decisions = append(st.decisions, decisionOf(ev))
				st.mu.Unlock()
				return
			}
			if !ours(ev.TraceID) {
				return
			}
			fold(st, ev)
		})
	}
}

// fold applies one event of a run of this test.
func fold(st *state, ev *schemas.RuntimeEvent) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.events++
	_, pending := st.pending[ev.TraceID]
	route := ev.Route
	if route == "" {
		route = thread.RouteBaseline
	}
	rr := st.route(route)
	switch ev.EventType {
	case thread.DataplaneFailed:
		rr.Executions++
		rr.ExecFailed++
	case thread.ArtifactDelivered:
		rr.Executions++
		if ev.Artifact != nil {
			rr.scoreSum += ev.Artifact.Score
			rr.scoreN++
			st.execLat[route].Record(ev.Artifact.LatencyMs)
		}
	case thread.GatePassed, thread.GateFailed:
		if g := ev.Gate; g != nil && g.Name != thread.VerdictGate {
			gr := rr.Gates[g.Name]
			if gr == nil {
				gr = &GateRate{}
				rr.Gates[strings.Clone(g.Name)] = gr
			}
			if g.Passed {
				gr.Passed++
			} else {
				gr.Failed++
			}
		}
	}
	if o, ok := thread.Outcome(ev.EventType); ok && pending {
		delete(st.pending, ev.TraceID)
		rr.Runs++
		rr.Outcomes[o]++
		st.done[route]++
		if !ev.RunStarted.IsZero() {
			st.lat[route].Record(ev.Timestamp.Sub(ev.RunStarted).Milliseconds())
		}
		if now := time.Now(); now.After(st.lastDone) {
			st.lastDone = now
		}
	}
}

func decisionOf(ev *schemas.RuntimeEvent) Decision {
	a := ev.Attributes
	atoi := func(k string) int { v, _ := strconv.Atoi(a[k]); return v }
	atoi64 := func(k string) int64 { v, _ := strconv.ParseInt(a[k], 10, 64); return v }
	d := Decision{
		At: ev.Timestamp, Action: a["decision"], EventType: string(ev.EventType), Phase: ev.State,
		WeightBefore: atoi("weight_before_bp"), WeightAfter: atoi("weight_after_bp"), Failures: atoi("failures"),
		CanaryRuns: atoi64("canary.runs"), BaselineRuns: atoi64("baseline.runs"), Checks: map[string]string{},
	}
	if ev.Gate != nil {
		d.Reason, d.Passed = ev.Gate.Reason, ev.Gate.Passed
	}
	for _, k := range slices.Sorted(maps.Keys(a)) {
		if strings.HasPrefix(k, "check.") || strings.HasSuffix(k, "_ms") || strings.HasSuffix(k, "_rate") {
			d.Checks[k] = a[k]
		}
	}
	return d
}

// report prints one progress line and records a series point.
func report(cfg Config, st *state, start time.Time) {
	ro := cfg.Flags.Rollout()
	st.mu.Lock()
	el := time.Since(start)
	var fin int64
	for _, d := range st.done {
		fin += d
	}
	p := Point{T: el.Seconds(), Sent: st.sent, Done: fin, Baseline: st.done[thread.RouteBaseline], Canary: st.done[thread.RouteCanary], WeightBP: ro.Weight, Phase: string(ro.Phase)}
	var rate float64
	if k := len(st.series); k > 0 {
		prev := st.series[k-1]
		if dt := p.T - prev.T; dt > 0 {
			rate = float64(p.Done-prev.Done) / dt
		}
	}
	p.DoneRate = rate
	if cfg.Memory != nil {
		m := cfg.Memory()
		p.RSSBytes, p.HeapBytes = m.RSS, m.Heap
	}
	st.series = append(st.series, p)
	last := ""
	if k := len(st.decisions); k > 0 {
		last = " | last decision: " + st.decisions[k-1].Action
	}
	st.mu.Unlock()
	if cfg.Progress != nil {
		mem := ""
		if p.RSSBytes > 0 {
			mem = fmt.Sprintf("  rss %dMiB heap %dMiB", p.RSSBytes>>20, p.HeapBytes>>20)
		}
		fmt.Fprintf(cfg.Progress, "[%5.1fs] sent %d  completed %d (baseline %d, canary %d)  in flight %d  %.0f runs/s  canary weight %s %s%s%s\n",
			el.Seconds(), p.Sent, p.Done, p.Baseline, p.Canary, p.Sent-p.Done, rate, pct(ro.Weight), ro.Phase, mem, last)
	}
}

func pct(bp int) string { return strconv.FormatFloat(float64(bp)/100, 'f', -1, 64) + "%" }

// traceID is the trace id of the load test id's run n, asked for at now.
func traceID(now time.Time, id [4]byte, n int64) string {
	var rest [12]byte
	copy(rest[:4], id[:])
	binary.BigEndian.PutUint64(rest[4:], uint64(n))
	return thread.TraceIDAt(now, rest)
}
