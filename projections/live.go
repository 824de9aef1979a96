package projections

import (
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// LiveSpan is how much of the thread Live keeps in per-second buckets: the
// longest span the dashboard shows.
const LiveSpan = 15 * time.Minute

// Bounds of what Live keeps besides its buckets.
const (
	liveMaxRuns      = 5000 // runs whose events are kept for the run view
	liveRunEvents    = 64   // events kept per run
	liveAnalyses     = 200  // canary analyses kept
	liveDriftWindows = 50   // drift window outcomes kept
	liveExamples     = 512  // reasons with an example trace id
	liveRecentRuns   = 25   // runs listed in a snapshot
	liveTopReasons   = 5    // reasons per gate or funnel hop in a snapshot
	maxClockAhead    = 60   // seconds an event may be stamped ahead of now
)

// FunnelStages are the golden path's hops as the funnel counts them: the
// runs that reached each, once per run.
var FunnelStages = []schemas.EventType{thread.IntentReceived, thread.DataplaneDispatched, thread.ArtifactDelivered, thread.GateVerdict, thread.RunCompleted}

func funnelStage(t schemas.EventType) int {
	for i, s := range FunnelStages {
		if s == t {
			return i
		}
	}
	return -1
}

// Live is the dashboard's live view of the thread: the events the
// projections runner committed, folded by event time into per-second
// buckets for the last LiveSpan (golden-path counts and latency per contract
// version and route, the funnel with its drop-off reasons, gate outcomes),
// plus the recent runs' events (the run view), the canary analyses and the
// drift windows. It is fed by the runner once a batch is committed
// (RunnerConfig.Live), so it holds exactly the committed events, and only
// those of the source partitions this instance owns; it starts empty when
// the process starts (history stays in the 10s projections).
//
// The work per event is a few map updates and one histogram record; a
// snapshot merges at most LiveSpan seconds and is computed once per second
// however many clients read it. Live is safe for concurrent use.
type Live struct {
	now func() time.Time

	mu       sync.Mutex
	started  time.Time
	span     int64
	secs     map[int64]*liveSecond
	newest   int64
	runs     map[string]*liveRun
	order    []string // trace ids, oldest first from next
	next     int
	analyses []CanaryAnalysis
	drift    []DriftWindow
	policy   map[string]PolicySeen
	examples map[string]string // reason key → a trace id that had it
	observed int64
	seq      uint64

	cacheMu sync.Mutex
	cache   map[int64]cachedSnapshot
}

type cachedSnapshot struct {
	at   int64
	seq  uint64
	snap *LiveSnapshot
}

type liveSecond struct {
	groups map[Group]*liveGroupSecond
	gates  map[string]*GateStat
	// drops counts the runs that ended short of the path by the last
	// funnel stage they reached and their reason.
	drops map[int]map[string]int64
}

type liveGroupSecond struct {
	counts map[string]int64 // golden hops and outcomes
	funnel [5]int64
	e2e    Histogram
	score  Histogram
}

type liveRun struct {
	trace    string
	group    Group
	started  time.Time
	events   []RunEvent
	seen     uint8 // funnel stages reached, by bit
	lastFail string
	outcome  string
	end      time.Time
	// Where a run that ended short of the path was counted as dropped:
	// the second, funnel stage and reason (dropAt 0: not counted). Events
	// of other topics can be committed after the terminal one; a later
	// event of a further stage moves the drop there.
	dropAt     int64
	dropStage  int
	dropReason string
}

// RunEvent is one event of a run as the run view shows it.
type RunEvent struct {
	At           time.Time     `json:"at"`
	SinceMs      int64         `json:"since_start_ms"`
	Topic        string        `json:"topic"`
	Partition    int32         `json:"partition"`
	EventType    string        `json:"event_type"`
	Phase        string        `json:"phase"`
	State        string        `json:"state,omitempty"`
	Actor        string        `json:"actor,omitempty"`
	Route        string        `json:"route"`
	Version      string        `json:"contract_version"`
	Attempt      int32         `json:"attempt,omitempty"`
	Error        string        `json:"error,omitempty"`
	SpanID       string        `json:"span_id,omitempty"`
	ParentSpanID string        `json:"parent_span_id,omitempty"`
	ArtifactID   string        `json:"artifact_id,omitempty"`
	Artifact     *ArtifactView `json:"artifact,omitempty"`
	Gate         *GateView     `json:"gate,omitempty"`
}

// ArtifactView is an artifact.delivered event's summary of its artifact.
type ArtifactView struct {
	ContentType string  `json:"content_type"`
	SizeBytes   int64   `json:"size_bytes"`
	Score       float64 `json:"score"`
	LatencyMs   int64   `json:"latency_ms"`
}

// GateView is a gate decision as an event carries it.
type GateView struct {
	Name          string            `json:"name"`
	Passed        bool              `json:"passed"`
	Reason        string            `json:"reason,omitempty"`
	Rule          string            `json:"rule,omitempty"`
	PolicyVersion string            `json:"policy_version,omitempty"`
	Measured      float64           `json:"measured"`
	Threshold     float64           `json:"threshold"`
	Evidence      map[string]string `json:"evidence,omitempty"`
}

// CanaryAnalysis is one analysis of the canary analyzer, from its
// gate.canary event.
type CanaryAnalysis struct {
	At           time.Time         `json:"at"`
	TraceID      string            `json:"trace_id"`
	Action       string            `json:"action"`
	Passed       bool              `json:"passed"`
	Reason       string            `json:"reason,omitempty"`
	WeightBefore int               `json:"weight_before_bp"`
	WeightAfter  int               `json:"weight_after_bp"`
	PhaseBefore  string            `json:"phase_before,omitempty"`
	PhaseAfter   string            `json:"phase_after,omitempty"`
	Evidence     map[string]string `json:"evidence,omitempty"`
}

// DriftWindow is one drift window's outcome, from the drift monitor's
// gate.drift event.
type DriftWindow struct {
	At        time.Time         `json:"at"`
	TraceID   string            `json:"trace_id"`
	Passed    bool              `json:"passed"`
	Reason    string            `json:"reason,omitempty"`
	Rule      string            `json:"rule,omitempty"`
	Measured  float64           `json:"measured"`
	Threshold float64           `json:"threshold"`
	Evidence  map[string]string `json:"evidence,omitempty"`
}

// PolicySeen is the latest policy version a gate's decisions carried.
type PolicySeen struct {
	Version string    `json:"version"`
	At      time.Time `json:"at"`
}

// NewLive returns an empty Live.
func NewLive() *Live { return newLive(time.Now) }

func newLive(now func() time.Time) *Live {
	return &Live{now: now, started: now().UTC(), span: int64(LiveSpan / time.Second), secs: map[int64]*liveSecond{},
		runs: map[string]*liveRun{}, policy: map[string]PolicySeen{}, examples: map[string]string{}, cache: map[int64]cachedSnapshot{}}
}

// observe folds the committed items of one batch.
func (l *Live) observe(items []item) {
	if l == nil || len(items) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, it := range items {
		l.fold(it.src, it.ev, it.writer)
	}
	l.seq++
}

// Observe folds one event read from src, as the runner does once its batch
// is committed (for tests and tools that feed Live themselves).
func (l *Live) Observe(src Source, ev *schemas.RuntimeEvent, writer schemas.ContractVersion) {
	l.observe([]item{{src: src, ev: ev, writer: writer}})
}

func (l *Live) second(sec int64) *liveSecond {
	if sec > l.newest {
		old := l.newest
		l.newest = sec
		if old != 0 {
			for s := range l.secs {
				if s <= sec-l.span {
					delete(l.secs, s)
				}
			}
		}
	}
	if sec <= l.newest-l.span {
		return nil // older than the span
	}
	b := l.secs[sec]
	if b == nil {
		b = &liveSecond{groups: map[Group]*liveGroupSecond{}, gates: map[string]*GateStat{}, drops: map[int]map[string]int64{}}
		l.secs[sec] = b
	}
	return b
}

func gateView(g *schemas.GateOutcome) *GateView {
	return &GateView{Name: owned(g.Name, 64), Passed: g.Passed, Reason: owned(g.Reason, maxFieldLen), Rule: owned(g.Rule, 128),
		PolicyVersion: owned(g.PolicyVersion, 128), Measured: finite(g.Measured), Threshold: finite(g.Threshold), Evidence: clipMap(g.Evidence)}
}

func clipMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, min(len(m), 64))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if len(out) == 64 {
			break
		}
		out[owned(k, 128)] = owned(m[k], maxFieldLen)
	}
	return out
}

func (l *Live) fold(src Source, ev *schemas.RuntimeEvent, writer schemas.ContractVersion) {
	if ev == nil {
		return
	}
	l.observed++
	at := ms(ev.Timestamp)
	ver, route := versionOf(ev, writer), routeOf(ev)
	et := ev.EventType

	if src.Topic == thread.TopicGatePrefix+thread.CanaryGate {
		l.foldAnalysis(ev, at)
		return
	}
	// An event stamped more than a minute ahead of this clock (a producer's
	// skewed clock) would push the span past every other: it is kept in the
	// run view, not in the buckets.
	var b *liveSecond
	if sec := at.Unix(); sec <= l.now().Unix()+maxClockAhead {
		b = l.second(sec)
	}
	if thread.IsDriftTrace(ev.TraceID) {
		if ev.Gate != nil {
			g := gateView(ev.Gate)
			l.drift = appendRing(l.drift, DriftWindow{At: at, TraceID: owned(ev.TraceID, maxFieldLen), Passed: g.Passed, Reason: g.Reason,
				Rule: g.Rule, Measured: g.Measured, Threshold: g.Threshold, Evidence: g.Evidence}, liveDriftWindows)
			if b != nil {
				countGate(b.gates, thread.DriftWindowStat, ev.Gate)
			}
		}
		return
	}

	var gs *liveGroupSecond
	if b != nil {
		g := Group{Version: ver, Route: route}
		gs = b.groups[g]
		if gs == nil {
			gs = &liveGroupSecond{counts: map[string]int64{}}
			b.groups[g] = gs
		}
		if thread.IsGoldenHop(et) {
			gs.counts[string(et)]++
		}
		if o, ok := thread.Outcome(et); ok {
			gs.counts[o]++
			if lat, ok := latencyMs(ev); ok {
				gs.e2e.Record(lat)
			}
		}
		if et == thread.ArtifactDelivered && ev.Artifact != nil && !math.IsNaN(ev.Artifact.Score) {
			gs.score.Record(int64(math.Round(math.Max(0, math.Min(1e12, ev.Artifact.Score)) * 1e4)))
		}
	}
	if g := ev.Gate; g != nil && (ev.Phase == schemas.PhaseGate || strings.HasPrefix(src.Topic, thread.TopicGatePrefix)) {
		name := owned(g.Name, 64)
		if b != nil {
			countGate(b.gates, name, g)
		}
		if g.PolicyVersion != "" {
			l.policy[name] = PolicySeen{Version: owned(g.PolicyVersion, 128), At: at}
		}
		if !g.Passed && et != thread.GateVerdict {
			l.examples["gate|"+name+"|"+NormalizeReason(g.Reason)] = owned(ev.TraceID, maxFieldLen)
		}
	}
	if ev.TraceID == "" {
		return
	}

	// The run: its events, the funnel stages it reached, where it dropped.
	r := l.run(ev.TraceID)
	if r.started.IsZero() && !ev.RunStarted.IsZero() && ev.RunStarted.UnixMilli() > 0 {
		r.started = ms(ev.RunStarted)
	}
	r.group = Group{Version: ver, Route: route}
	if len(r.events) < liveRunEvents {
		re := RunEvent{At: at, Topic: src.Topic, Partition: src.Partition, EventType: owned(string(et), 64), Phase: string(ev.Phase),
			State: owned(ev.State, 64), Actor: owned(ev.Actor, 128), Route: route, Version: ver, Attempt: ev.Attempt,
			SpanID: owned(ev.SpanID, 64), ParentSpanID: owned(ev.ParentSpanID, 64), ArtifactID: owned(ev.ArtifactID, 128)}
		if ev.Error != nil {
			re.Error = owned(*ev.Error, maxFieldLen)
		}
		if a := ev.Artifact; a != nil {
			re.Artifact = &ArtifactView{ContentType: owned(a.ContentType, 128), SizeBytes: a.SizeBytes, Score: finite(a.Score), LatencyMs: a.LatencyMs}
		}
		if ev.Gate != nil {
			re.Gate = gateView(ev.Gate)
		}
		r.events = append(r.events, re)
	}
	if i := funnelStage(et); i >= 0 && r.seen&(1<<i) == 0 {
		r.seen |= 1 << i
		if gs != nil {
			gs.funnel[i]++
		}
		if r.dropAt != 0 && i > r.dropStage && FunnelStages[i] != thread.RunCompleted {
			l.moveDrop(r, i)
		}
	}
	if g := ev.Gate; g != nil && !g.Passed && et != thread.GateVerdict {
		r.lastFail = owned(g.Name, 64) + ": " + g.Reason
	}
	if o, ok := thread.Outcome(et); ok && r.outcome == "" {
		r.outcome, r.end = o, at
		if o != thread.OutcomeCompleted {
			reached := 0
			for i := range FunnelStages {
				if r.seen&(1<<i) != 0 {
					reached = i
				}
			}
			why := ""
			switch {
			case ev.Error != nil && *ev.Error != "":
				why = *ev.Error
			case r.lastFail != "":
				why = r.lastFail
			default:
				why = "in state " + ev.State
			}
			reason := o + ": " + NormalizeReason(why)
			if b != nil && addDrop(b, reached, reason, 1) {
				r.dropAt, r.dropStage, r.dropReason = at.Unix(), reached, reason
			}
			l.examples["drop|"+strconv.Itoa(reached)+"|"+reason] = owned(ev.TraceID, maxFieldLen)
		}
	}
	if len(l.examples) > liveExamples {
		for k := range l.examples { // drop an arbitrary one; examples are hints
			delete(l.examples, k)
			break
		}
	}
}

// addDrop adds n runs dropped at stage for reason to b, reporting whether
// it counted them (a new reason past maxReasons is not).
func addDrop(b *liveSecond, stage int, reason string, n int64) bool {
	m := b.drops[stage]
	if m == nil {
		m = map[string]int64{}
		b.drops[stage] = m
	}
	if _, ok := m[reason]; !ok && len(m) >= maxReasons {
		return false
	}
	m[reason] += n
	if m[reason] == 0 {
		delete(m, reason)
	}
	return true
}

// moveDrop moves a run's drop to the further stage it turned out to have
// reached; l.mu is held.
func (l *Live) moveDrop(r *liveRun, stage int) {
	b := l.secs[r.dropAt]
	if b == nil {
		r.dropAt = 0 // its second left the span
		return
	}
	addDrop(b, r.dropStage, r.dropReason, -1)
	if !addDrop(b, stage, r.dropReason, 1) {
		r.dropAt = 0
		return
	}
	r.dropStage = stage
	l.examples["drop|"+strconv.Itoa(stage)+"|"+r.dropReason] = r.trace
}

func countGate(m map[string]*GateStat, name string, g *schemas.GateOutcome) {
	s := m[name]
	if s == nil {
		s = &GateStat{}
		m[name] = s
	}
	if g.Passed {
		s.Passed++
		return
	}
	s.Failed++
	r := NormalizeReason(g.Reason)
	if _, ok := s.Reasons[r]; !ok && len(s.Reasons) >= maxReasons {
		r = "other"
	}
	if s.Reasons == nil {
		s.Reasons = map[string]int64{}
	}
	s.Reasons[r]++
}

func (l *Live) run(trace string) *liveRun {
	if r := l.runs[trace]; r != nil {
		return r
	}
	key := strings.Clone(trace) // not the event's: that pins its record
	r := &liveRun{trace: owned(trace, maxFieldLen)}
	l.runs[key] = r
	// order is a ring of liveMaxRuns once full: next is the oldest.
	if len(l.order) < liveMaxRuns {
		l.order = append(l.order, key)
	} else {
		delete(l.runs, l.order[l.next])
		l.order[l.next] = key
		l.next = (l.next + 1) % liveMaxRuns
	}
	return r
}

func appendRing[T any](s []T, v T, n int) []T {
	s = append(s, v)
	if len(s) > n {
		s = append(s[:0:0], s[len(s)-n:]...)
	}
	return s
}

func (l *Live) foldAnalysis(ev *schemas.RuntimeEvent, at time.Time) {
	a := CanaryAnalysis{At: at, TraceID: owned(ev.TraceID, maxFieldLen), Action: owned(strings.TrimPrefix(string(ev.EventType), "canary."), 64)}
	attr := ev.Attributes
	a.WeightBefore, _ = strconv.Atoi(attr["weight_before_bp"])
	a.WeightAfter, _ = strconv.Atoi(attr["weight_after_bp"])
	a.PhaseBefore, a.PhaseAfter = owned(attr["phase_before"], 32), owned(attr["phase_after"], 32)
	if ev.Gate != nil {
		a.Passed, a.Reason = ev.Gate.Passed, owned(ev.Gate.Reason, maxFieldLen)
	}
	a.Evidence = clipMap(attr)
	l.analyses = appendRing(l.analyses, a, liveAnalyses)
}

// RunEvents returns the events Live kept of one run, in time order (then
// along the path for events of one millisecond), and whether it has the
// run at all. It keeps the last 5000 runs' first 64 events each.
func (l *Live) RunEvents(trace string) ([]RunEvent, bool) {
	l.mu.Lock()
	r := l.runs[trace]
	var evs []RunEvent
	var started time.Time
	if r != nil {
		evs = slices.Clone(r.events)
		started = r.started
	}
	l.mu.Unlock()
	if r == nil {
		return nil, false
	}
	sort.SliceStable(evs, func(i, j int) bool {
		if !evs[i].At.Equal(evs[j].At) {
			return evs[i].At.Before(evs[j].At)
		}
		return pathOrder(evs[i].EventType) < pathOrder(evs[j].EventType)
	})
	if started.IsZero() && len(evs) > 0 {
		started = evs[0].At
	}
	for i := range evs {
		evs[i].SinceMs = evs[i].At.Sub(started).Milliseconds()
	}
	return evs, true
}

// LiveSnapshot is what the dashboard shows of Live over a span ending now:
// GET /v1/live and the dashboard's event stream. Every series has one value
// per second of Times (null where a second has no sample).
type LiveSnapshot struct {
	// From and To bound the span (To exclusive), in whole seconds; Times
	// are the seconds' starts, in Unix seconds.
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
	Seconds int       `json:"seconds"`
	Times   []int64   `json:"times"`
	// Since is when this Live started: the span holds nothing before it.
	Since    time.Time `json:"since"`
	Observed int64     `json:"events_observed"`

	Groups  []LiveGroup           `json:"groups"`
	Totals  map[string]int64      `json:"totals"`
	Funnel  []FunnelStage         `json:"funnel"`
	Gates   []LiveGate            `json:"gates"`
	Compare []RouteCompare        `json:"compare"`
	Recent  []RunSummary          `json:"recent_runs"`
	Canary  []CanaryAnalysis      `json:"canary_analyses"`
	Drift   []DriftWindow         `json:"drift_windows"`
	Policy  map[string]PolicySeen `json:"policy_versions"`
}

// LiveGroup is one contract version and route over the span.
type LiveGroup struct {
	Group
	// Received and Terminal are runs received and finished per second.
	Received []int64 `json:"received_per_s"`
	Terminal []int64 `json:"terminal_per_s"`
	// P50, P95, P99 are each second's end-to-end latency quantiles of the
	// runs that finished in it, in milliseconds.
	P50 []*int64 `json:"p50_ms"`
	P95 []*int64 `json:"p95_ms"`
	P99 []*int64 `json:"p99_ms"`
	// Counts are the span's golden-hop and outcome counts; Latency its
	// end-to-end percentiles.
	Counts  map[string]int64 `json:"counts"`
	Latency Percentiles      `json:"latency"`
}

// FunnelStage is one hop of the funnel over the span: the runs that
// reached it, those that ended there short of the path (by reason, with an
// example trace) and those still on their way.
type FunnelStage struct {
	Stage    string        `json:"stage"`
	Reached  int64         `json:"reached"`
	Dropped  int64         `json:"dropped"`
	Reasons  []ReasonCount `json:"reasons"`
	InFlight int64         `json:"in_flight"`
}

// ReasonCount is a reason, how often it occurred and one trace that had it.
type ReasonCount struct {
	Reason  string `json:"reason"`
	Count   int64  `json:"count"`
	Example string `json:"example_trace_id,omitempty"`
}

// LiveGate is one gate over the span.
type LiveGate struct {
	Name     string        `json:"name"`
	Passed   int64         `json:"passed"`
	Failed   int64         `json:"failed"`
	PassRate float64       `json:"pass_rate"`
	Series   []*float64    `json:"pass_rate_per_s"`
	Reasons  []ReasonCount `json:"top_failure_reasons"`
	Policy   string        `json:"policy_version,omitempty"`
}

// RouteCompare is one route's latency and score distributions over the
// span, for the canary's compare view.
type RouteCompare struct {
	Route     string      `json:"route"`
	Runs      int64       `json:"terminal_runs"`
	Completed int64       `json:"completed"`
	Latency   Percentiles `json:"latency"`
	LatencyB  []Bucket    `json:"latency_buckets_ms"`
	Scores    int64       `json:"scores"`
	ScoreMean float64     `json:"score_mean"`
	ScoreB    []Bucket    `json:"score_buckets_e4"`
}

// RunSummary is one recent run.
type RunSummary struct {
	TraceID    string    `json:"trace_id"`
	Route      string    `json:"route"`
	Version    string    `json:"contract_version"`
	Started    time.Time `json:"run_started,omitzero"`
	Outcome    string    `json:"outcome,omitempty"`
	DurationMs int64     `json:"duration_ms,omitempty"`
	Events     int       `json:"events"`
}

// Snapshot returns the span of length last (at most LiveSpan, at least a
// second) ending with the current second. Snapshots are computed at most
// once per second and span, and shared: treat them as read-only.
func (l *Live) Snapshot(last time.Duration) *LiveSnapshot {
	n := int64(min(max(last, time.Second), LiveSpan) / time.Second)
	now := l.now().Unix()
	l.mu.Lock()
	seq := l.seq
	l.mu.Unlock()
	l.cacheMu.Lock()
	defer l.cacheMu.Unlock()
	if c, ok := l.cache[n]; ok && c.at == now && c.seq == seq {
		return c.snap
	}
	s := l.snapshot(n, now)
	l.cache[n] = cachedSnapshot{at: now, seq: seq, snap: s}
	return s
}

func (l *Live) snapshot(n, now int64) *LiveSnapshot {
	l.mu.Lock()
	defer l.mu.Unlock()
	end := max(now, l.newest) + 1
	from := end - n
	s := &LiveSnapshot{From: time.Unix(from, 0).UTC(), To: time.Unix(end, 0).UTC(), Seconds: int(n), Times: make([]int64, n),
		Since: l.started, Observed: l.observed, Totals: map[string]int64{}, Policy: maps.Clone(l.policy)}
	for i := range s.Times {
		s.Times[i] = from + int64(i)
	}
	groups := map[Group]*LiveGroup{}
	hists := map[Group]*Histogram{}
	routes := map[string]*RouteCompare{}
	routeLat, routeScore := map[string]*Histogram{}, map[string]*Histogram{}
	var funnel [5]int64
	drops := map[int]map[string]int64{}
	gates := map[string]*LiveGate{}
	gateStats := map[string]*GateStat{}
	gateSeries := func(name string) *LiveGate {
		g := gates[name]
		if g == nil {
			g = &LiveGate{Name: name, Series: make([]*float64, n)}
			gates[name] = g
			gateStats[name] = &GateStat{}
		}
		return g
	}
	for sec := from; sec < end; sec++ {
		b := l.secs[sec]
		if b == nil {
			continue
		}
		i := sec - from
		for g, gs := range b.groups {
			lg := groups[g]
			if lg == nil {
				lg = &LiveGroup{Group: g, Received: make([]int64, n), Terminal: make([]int64, n), P50: make([]*int64, n), P95: make([]*int64, n), P99: make([]*int64, n), Counts: map[string]int64{}}
				groups[g] = lg
				hists[g] = &Histogram{}
			}
			lg.Received[i] = gs.counts[string(thread.IntentReceived)]
			for k, v := range gs.counts {
				lg.Counts[k] += v
				s.Totals[k] += v
				if _, ok := thread.Outcome(schemas.EventType("run." + k)); ok {
					lg.Terminal[i] += v
				}
			}
			if gs.e2e.Count() > 0 {
				p50, p95, p99 := gs.e2e.Quantile(0.5), gs.e2e.Quantile(0.95), gs.e2e.Quantile(0.99)
				lg.P50[i], lg.P95[i], lg.P99[i] = &p50, &p95, &p99
				hists[g].Merge(&gs.e2e)
			}
			for j, c := range gs.funnel {
				funnel[j] += c
			}
			rc := routes[g.Route]
			if rc == nil {
				rc = &RouteCompare{Route: g.Route}
				routes[g.Route] = rc
				routeLat[g.Route], routeScore[g.Route] = &Histogram{}, &Histogram{}
			}
			routeLat[g.Route].Merge(&gs.e2e)
			routeScore[g.Route].Merge(&gs.score)
			rc.Completed += gs.counts[thread.OutcomeCompleted]
		}
		for stage, m := range b.drops {
			if drops[stage] == nil {
				drops[stage] = map[string]int64{}
			}
			for r, c := range m {
				drops[stage][r] += c
			}
		}
		for name, st := range b.gates {
			g := gateSeries(name)
			mergeGates(&GatesCell{Gates: gateStats}, &GatesCell{Gates: map[string]*GateStat{name: st}}) // adds st to gateStats[name]
			if t := st.Passed + st.Failed; t > 0 {
				r := float64(st.Passed) / float64(t)
				g.Series[i] = &r
			}
		}
	}
	for _, g := range slices.SortedFunc(maps.Keys(groups), func(a, b Group) int {
		return strings.Compare(a.Version+"|"+a.Route, b.Version+"|"+b.Route)
	}) {
		lg := groups[g]
		lg.Latency = PercentilesOf(hists[g])
		s.Groups = append(s.Groups, *lg)
	}
	for i, st := range FunnelStages {
		fs := FunnelStage{Stage: string(st), Reached: funnel[i], Reasons: []ReasonCount{}}
		for r, c := range drops[i] {
			fs.Dropped += c
			fs.Reasons = append(fs.Reasons, ReasonCount{Reason: r, Count: c, Example: l.examples["drop|"+strconv.Itoa(i)+"|"+r]})
		}
		fs.Reasons = topReasons(fs.Reasons)
		if i+1 < len(FunnelStages) {
			fs.InFlight = max(0, funnel[i]-funnel[i+1]-fs.Dropped)
		}
		s.Funnel = append(s.Funnel, fs)
	}
	for _, name := range slices.Sorted(maps.Keys(gates)) {
		g, st := gates[name], gateStats[name]
		g.Passed, g.Failed = st.Passed, st.Failed
		if t := st.Passed + st.Failed; t > 0 {
			g.PassRate = float64(st.Passed) / float64(t)
		}
		g.Reasons = []ReasonCount{}
		for r, c := range st.Reasons {
			g.Reasons = append(g.Reasons, ReasonCount{Reason: r, Count: c, Example: l.examples["gate|"+name+"|"+r]})
		}
		g.Reasons = topReasons(g.Reasons)
		g.Policy = l.policy[name].Version
		s.Gates = append(s.Gates, *g)
	}
	for _, r := range slices.Sorted(maps.Keys(routes)) {
		rc := routes[r]
		rc.Latency, rc.LatencyB = PercentilesOf(routeLat[r]), routeLat[r].Buckets()
		rc.Runs = routeLat[r].Count()
		rc.Scores, rc.ScoreB = routeScore[r].Count(), routeScore[r].Buckets()
		if rc.Scores > 0 {
			rc.ScoreMean = float64(routeScore[r].Sum()) / float64(rc.Scores) / 1e4
		}
		s.Compare = append(s.Compare, *rc)
	}
	for j := len(l.order) - 1; j >= 0 && len(s.Recent) < liveRecentRuns; j-- {
		r := l.runs[l.order[(l.next+j)%len(l.order)]]
		rs := RunSummary{TraceID: r.trace, Route: r.group.Route, Version: r.group.Version, Started: r.started, Outcome: r.outcome, Events: len(r.events)}
		if r.outcome != "" && !r.started.IsZero() {
			rs.DurationMs = r.end.Sub(r.started).Milliseconds()
		}
		s.Recent = append(s.Recent, rs)
	}
	s.Canary = slices.Clone(l.analyses)
	s.Drift = slices.Clone(l.drift)
	if s.Groups == nil {
		s.Groups = []LiveGroup{}
	}
	if s.Gates == nil {
		s.Gates = []LiveGate{}
	}
	if s.Compare == nil {
		s.Compare = []RouteCompare{}
	}
	if s.Recent == nil {
		s.Recent = []RunSummary{}
	}
	if s.Canary == nil {
		s.Canary = []CanaryAnalysis{}
	}
	if s.Drift == nil {
		s.Drift = []DriftWindow{}
	}
	return s
}

// topReasons sorts rs by count, then reason, and keeps the first few.
func topReasons(rs []ReasonCount) []ReasonCount {
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].Count != rs[j].Count {
			return rs[i].Count > rs[j].Count
		}
		return rs[i].Reason < rs[j].Reason
	})
	return rs[:min(len(rs), liveTopReasons)]
}
