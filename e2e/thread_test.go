package e2e

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
	"github.com/spinerun/spine/processors/orchestrator"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// event is one RuntimeEvent read back from the thread, with where it was.
type event struct {
	topic     string
	partition int32
	offset    int64
	seen      time.Time
	ev        *schemas.RuntimeEvent
}

func (e event) String() string {
	return fmt.Sprintf("%s[%d]@%d %s state=%s attempt=%d", e.topic, e.partition, e.offset, e.ev.EventType, e.ev.State, e.ev.Attempt)
}

// terminalTypes are the terminal run events.
var terminalTypes = map[schemas.EventType]bool{
	thread.RunCompleted: true, thread.RunRejected: true, thread.RunFailed: true, thread.RunTimedOut: true,
}

// collector tails every thread topic but the intents (decoding each value
// with the writer schema) and the DLQ (raw), at one isolation level.
type collector struct {
	mu        sync.Mutex
	events    []event
	byTrace   map[string][]int
	terminals map[string]int
	verdicts  map[string]time.Time
	dlq       []*kgo.Record
	bad       []string // thread records that did not decode
	records   int
	// skipKeyPrefix: thread records keyed with it (poison a test wrote
	// itself) are not events of the thread.
	skipKeyPrefix string
	// windows are the drift monitor's gate.drift window events: about no
	// run, kept apart from the runs' events.
	windows []event
}

// collect starts a collector on s; committed selects read_committed.
func (s *rig) collect(tb testing.TB, committed bool) *collector {
	return s.collectSkipping(tb, committed, "")
}

// collectSkipping is collect ignoring thread records keyed with
// skipKeyPrefix (poison a test wrote itself).
func (s *rig) collectSkipping(tb testing.TB, committed bool, skipKeyPrefix string) *collector {
	c := &collector{byTrace: map[string][]int{}, terminals: map[string]int{}, verdicts: map[string]time.Time{}, skipKeyPrefix: skipKeyPrefix}
	var topics []string
	for _, t := range s.layout.ThreadTopics() {
		if t != s.layout.Intents() {
			topics = append(topics, string(t))
		}
	}
	topics = append(topics, string(s.layout.DLQ()))
	iso := kgo.ReadUncommitted()
	if committed {
		iso = kgo.ReadCommitted()
	}
	cl := kafkatest.Client(tb, s.brokers, kgo.ConsumeTopics(topics...), kgo.FetchIsolationLevel(iso),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	dlq := string(s.layout.DLQ())
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			now := time.Now()
			var evs []event
			var dls []*kgo.Record
			var bad []string
			n := 0
			fs.EachRecord(func(r *kgo.Record) {
				n++
				if r.Topic == dlq {
					dls = append(dls, r)
					return
				}
				if c.skipKeyPrefix != "" && strings.HasPrefix(string(r.Key), c.skipKeyPrefix) {
					return
				}
				v, _, err := s.codec.Decode(ctx, pipeline.Topic(r.Topic), r.Value)
				ev, ok := v.(*schemas.RuntimeEvent)
				if err != nil || !ok {
					if ctx.Err() == nil {
						bad = append(bad, fmt.Sprintf("%s[%d]@%d: %v", r.Topic, r.Partition, r.Offset, err))
					}
					return
				}
				evs = append(evs, event{topic: r.Topic, partition: r.Partition, offset: r.Offset, seen: now, ev: ev})
			})
			c.mu.Lock()
			c.records += n
			c.dlq = append(c.dlq, dls...)
			c.bad = append(c.bad, bad...)
			for _, e := range evs {
				if thread.IsDriftTrace(e.ev.TraceID) {
					c.windows = append(c.windows, e)
					continue
				}
				c.byTrace[e.ev.TraceID] = append(c.byTrace[e.ev.TraceID], len(c.events))
				c.events = append(c.events, e)
				if terminalTypes[e.ev.EventType] {
					c.terminals[e.ev.TraceID]++
				}
				if e.ev.EventType == thread.GateVerdict {
					if _, ok := c.verdicts[e.ev.TraceID]; !ok {
						c.verdicts[e.ev.TraceID] = e.seen
					}
				}
			}
			c.mu.Unlock()
		}
	}()
	tb.Cleanup(func() { cancel(); <-done })
	return c
}

// terminalCount is the number of runs with at least one terminal event.
func (c *collector) terminalCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.terminals)
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.records
}

// countType is the number of events of type typ read so far.
func (c *collector) countType(typ schemas.EventType) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, e := range c.events {
		if e.ev.EventType == typ {
			n++
		}
	}
	return n
}

func (c *collector) dlqLen() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.dlq)
}

// settle waits until the collector has read nothing new for quiet, so late
// duplicates would be seen.
func (c *collector) settle(quiet time.Duration) {
	last, since := c.count(), time.Now()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		if n := c.count(); n != last {
			last, since = n, time.Now()
		} else if time.Since(since) >= quiet {
			return
		}
	}
}

// snapshot returns the events of the thread, per trace in read order.
func (c *collector) snapshot() (all []event, byTrace map[string][]event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	all = append([]event(nil), c.events...)
	byTrace = make(map[string][]event, len(c.byTrace))
	for tr, idx := range c.byTrace {
		evs := make([]event, len(idx))
		for i, j := range idx {
			evs[i] = c.events[j]
		}
		byTrace[tr] = evs
	}
	return all, byTrace
}

// threadReport is what checkThread found, for further assertions.
type threadReport struct {
	events    int
	outcomes  map[schemas.EventType]int // terminal event type → runs
	perTrace  map[string][]event
	dispatchN map[string]int // run.dispatch events per trace
	// stale counts run.stale_event: a data-plane answer to an attempt the
	// run already gave up on (legal, recorded).
	stale int
	// illegal counts run.illegal_transition: an input the stateflow does
	// not accept in the run's state (say, an answer after the run ended),
	// refused and recorded.
	illegal int
}

// checkThread asserts the invariants of the committed thread for the runs
// in traces: exactly one terminal outcome each and none for other runs, no
// event_id twice, every run's control events a path through the stateflow
// (from nothing to its terminal state, then nothing but refused inputs;
// retries, stale answers and refused inputs recorded in the run's state
// at the time, recorded in the state they were refused in),
// every
// data-plane event answering one of the run's dispatches and every gate
// event one of its artifacts, and no thread record that fails to decode.
func checkThread(t testing.TB, c *collector, flow *orchestrator.Stateflow, traces map[string]bool) threadReport {
	t.Helper()
	all, byTrace := c.snapshot()
	c.mu.Lock()
	bad := append([]string(nil), c.bad...)
	c.mu.Unlock()
	for _, b := range bad {
		t.Errorf("thread record does not decode: %s", b)
	}
	rep := threadReport{events: len(all), outcomes: map[schemas.EventType]int{}, perTrace: byTrace, dispatchN: map[string]int{}}

	ids := make(map[string]event, len(all))
	dups := 0
	for _, e := range all {
		if prev, ok := ids[e.ev.EventID]; ok {
			if dups++; dups <= 5 {
				t.Errorf("event_id %s twice: %v and %v", e.ev.EventID, prev, e)
			}
			continue
		}
		ids[e.ev.EventID] = e
	}
	if dups > 0 {
		t.Errorf("%d duplicate event_ids in the committed thread", dups)
	}

	errs := 0
	fail := func(format string, args ...any) {
		if errs++; errs <= 10 {
			t.Errorf(format, args...)
		}
	}
	for tr := range byTrace {
		if !traces[tr] && !strings.HasPrefix(tr, thread.ActorKeyPrefix) {
			fail("events of unknown run %q", tr)
		}
	}
	for tr := range traces {
		evs := byTrace[tr]
		var control []event
		dispatches, artifacts := map[string]bool{}, map[string]bool{}
		for _, e := range evs {
			switch e.ev.Phase {
			case schemas.PhaseControl:
				control = append(control, e)
				if e.ev.EventType == thread.RunDispatch {
					dispatches[e.ev.SpanID] = true
					rep.dispatchN[tr]++
				}
			case schemas.PhaseData:
				if e.ev.EventType == thread.ArtifactDelivered {
					artifacts[e.ev.SpanID] = true
				}
			}
		}
		for _, e := range evs {
			switch e.ev.Phase {
			case schemas.PhaseData:
				if !dispatches[e.ev.ParentSpanID] {
					fail("run %s: %v answers no dispatch of the run (parent %s)", tr, e, e.ev.ParentSpanID)
				}
			case schemas.PhaseGate:
				if !artifacts[e.ev.ParentSpanID] {
					fail("run %s: %v judges no artifact of the run (parent %s)", tr, e, e.ev.ParentSpanID)
				}
			}
		}
		terminals := 0
		state := orchestrator.StateNone
		for i, e := range control {
			to := orchestrator.State(e.ev.State)
			spec, ok := flow.Spec(to)
			switch {
			case !ok:
				fail("run %s: %v enters undeclared state %q", tr, e, to)
			case e.ev.EventType == spec.Event:
				if !canEnter(flow, state, to) {
					fail("run %s: %v: no transition %q → %q in the stateflow (events %v)", tr, e, state, to, control)
				}
				state = to
			case e.ev.EventType == thread.RunRetryScheduled || e.ev.EventType == thread.RunStale || e.ev.EventType == thread.RunIllegal:
				switch e.ev.EventType {
				case thread.RunStale:
					rep.stale++
				case thread.RunIllegal:
					rep.illegal++
				}
				if to != state {
					fail("run %s: %v in state %q, the run is in %q", tr, e, to, state)
				}
			default:
				fail("run %s: unexpected control event %v (events %v)", tr, e, control)
			}
			if terminalTypes[e.ev.EventType] {
				terminals++
				rep.outcomes[e.ev.EventType]++
				for _, later := range control[i+1:] {
					if later.ev.EventType != thread.RunIllegal && later.ev.EventType != thread.RunStale {
						fail("run %s: %v after the terminal %v (events %v)", tr, later, e, control)
					}
				}
			}
		}
		if terminals != 1 {
			fail("run %s: %d terminal events, want exactly 1 (events %v)", tr, terminals, control)
		}
		if len(control) > 0 && control[0].ev.EventType != thread.IntentReceived {
			fail("run %s: first control event %v, want %s", tr, control[0], thread.IntentReceived)
		}
	}
	if errs > 10 {
		t.Errorf("... %d thread errors in all", errs)
	}
	return rep
}

// canEnter reports whether some trigger moves a run from to to.
func canEnter(flow *orchestrator.Stateflow, from, to orchestrator.State) bool {
	for _, on := range []orchestrator.Trigger{orchestrator.OnIntent, orchestrator.OnRouted, orchestrator.OnQueue, orchestrator.OnAdmit,
		orchestrator.OnStarted, orchestrator.OnDelivered, orchestrator.OnFailure, orchestrator.OnRetry, orchestrator.OnGate,
		orchestrator.OnPassed, orchestrator.OnRejected, orchestrator.OnTimeout, orchestrator.OnRunTimeout} {
		if next, ok := flow.Next(from, on); ok && next == to {
			return true
		}
	}
	return false
}

// metricCounts sums a counter (or a histogram's sample count) of reg by the
// values of labels, joined with "|".
func metricCounts(t testing.TB, reg prometheus.Gatherer, name string, labels ...string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			key := labelKey(m, labels)
			switch {
			case m.Counter != nil:
				out[key] += m.Counter.GetValue()
			case m.Histogram != nil:
				out[key] += float64(m.Histogram.GetSampleCount())
			case m.Gauge != nil:
				out[key] += m.Gauge.GetValue()
			}
		}
	}
	return out
}

func labelKey(m *dto.Metric, labels []string) string {
	vals := make([]string, len(labels))
	for i, l := range labels {
		for _, lp := range m.GetLabel() {
			if lp.GetName() == l {
				vals[i] = lp.GetValue()
			}
		}
	}
	return strings.Join(vals, "|")
}

// routeLabel and versionLabel are the GoldenPath's label rules.
func routeLabel(r string) string {
	switch r {
	case "", thread.RouteBaseline:
		return thread.RouteBaseline
	case thread.RouteCanary:
		return thread.RouteCanary
	}
	return "other"
}

func versionLabel(v schemas.ContractVersion) string {
	if v.Valid() {
		return v.String()
	}
	return "unknown"
}

// threadCounts counts the committed thread the way the golden-path metrics
// are labelled.
func threadCounts(all []event) (hops, runs, gates, latency map[string]float64) {
	hops, runs, gates, latency = map[string]float64{}, map[string]float64{}, map[string]float64{}, map[string]float64{}
	outcome := map[schemas.EventType]string{thread.RunCompleted: "completed", thread.RunRejected: "rejected", thread.RunFailed: "failed", thread.RunTimedOut: "timed_out"}
	for _, e := range all {
		ev := e.ev
		cv, route := versionLabel(ev.SchemaVersion), routeLabel(ev.Route)
		switch ev.EventType {
		case thread.IntentReceived, thread.DataplaneDispatched, thread.ArtifactDelivered, thread.GatePassed, thread.GateFailed:
			k := string(ev.EventType) + "|" + cv + "|" + route
			hops[k]++
			if !ev.RunStarted.IsZero() && !ev.Timestamp.IsZero() {
				latency[k]++
			}
		}
		if o, ok := outcome[ev.EventType]; ok {
			runs[cv+"|"+route+"|"+o]++
		}
		if ev.EventType == thread.GatePassed || ev.EventType == thread.GateFailed {
			name := "other"
			if ev.Gate != nil {
				for _, g := range thread.GateNames {
					if g == ev.Gate.Name {
						name = g
					}
				}
			}
			o := "passed"
			if ev.EventType == thread.GateFailed {
				o = "failed"
			}
			gates[name+"|"+cv+"|"+route+"|"+o]++
		}
	}
	return hops, runs, gates, latency
}

// countPair is a metric's counts by label and the same counted from the
// thread.
type countPair struct {
	what               string
	metric, fromThread map[string]float64
}

// diffCounts lists every key where the metric and the thread disagree.
func diffCounts(p countPair) []string {
	keys := map[string]bool{}
	for k := range p.metric {
		keys[k] = true
	}
	for k := range p.fromThread {
		keys[k] = true
	}
	if len(keys) == 0 {
		return []string{p.what + ": no series at all"}
	}
	var diffs []string
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		if p.metric[k] != p.fromThread[k] {
			diffs = append(diffs, fmt.Sprintf("%s{%s}: metric %v, thread %v", p.what, k, p.metric[k], p.fromThread[k]))
		}
	}
	return diffs
}

// equalCounts polls counts until every metric equals its count from the
// thread, or d passes, then reports every key that still disagrees. The
// pipeline updates metrics only after a transaction's commit returns, so a
// reader can see its outputs a moment before the metrics count them.
func equalCounts(t testing.TB, d time.Duration, counts func() []countPair) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		var diffs []string
		for _, p := range counts() {
			diffs = append(diffs, diffCounts(p)...)
		}
		if len(diffs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, d := range diffs {
				t.Error(d)
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}
