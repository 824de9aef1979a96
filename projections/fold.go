package projections

import (
	"math"
	"strings"
	"time"
	"unicode"
	"unique"

	"github.com/spinerun/spine/internal/textclip"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// DefaultWindow is the width of aggregate windows.
const DefaultWindow = 10 * time.Second

// Bounds that keep a cell small whatever the events say.
const (
	maxReasons   = 32  // distinct failure reasons per gate per cell
	maxReasonLen = 100 // bytes of a normalized reason
	maxEventKind = 64  // distinct event types per golden cell
	maxRunHops   = 64  // distinct event types per run part
	maxRunGates  = 32  // distinct gates per run part
	maxFieldLen  = 256 // bytes of a copied string field
)

// Cells is a projection state: encoded key → cell.
type Cells map[string]Cell

// Folder folds thread events into projection cells. It is pure and
// deterministic: the cells depend only on the events of each source
// partition, in offset order, never on processing time, so a replay of
// the thread rebuilds the same cells. The zero Folder uses DefaultWindow.
type Folder struct {
	// Window is the width of aggregate windows (default DefaultWindow).
	Window time.Duration

	// last, when set, remembers the aggregate keys of the last window
	// planned: consecutive events of a source partition mostly share their
	// window, version and route, so their keys are built once. A Folder
	// with last belongs to one goroutine (see Replay).
	last *aggKeys
	// canon, when set, maps short strings to their kept copies: a
	// thread's event types, states, routes and gate names are a handful of
	// values, and a map lookup costs a fraction of unique.Make. Like last,
	// it belongs to one goroutine.
	canon map[string]string
}

// canonLen and canonMax bound Folder.canon: only strings no kept call
// clips (every limit is at least canonLen) and at most canonMax of them.
const canonLen, canonMax = 32, 4096

// keep is kept(s, n), through f.canon when f has one.
func (f Folder) keep(s string, n int) string {
	if f.canon == nil || s == "" || len(s) > canonLen {
		return kept(s, n)
	}
	if v, ok := f.canon[s]; ok {
		return v
	}
	v := kept(s, n)
	if v == s && len(f.canon) < canonMax {
		f.canon[v] = v // v is the kept copy: the key pins no record
	}
	return v
}

// aggKeys are the aggregate keys of one source partition, version, route
// and window.
type aggKeys struct {
	src                      Source
	ver, route               string
	win                      time.Time
	golden, gates, artifacts string
}

// aggKey returns the key of aggregate projection proj (golden, gates or
// artifacts) for src, ver, route and win.
func (f Folder) aggKey(proj string, src Source, ver, route string, win time.Time) string {
	if f.last == nil {
		return Key{Projection: proj, Source: src, Version: ver, Route: route, Window: win}.String()
	}
	l := f.last
	if l.src != src || l.ver != ver || l.route != route || !l.win.Equal(win) {
		*l = aggKeys{src: src, ver: ver, route: route, win: win}
	}
	var k *string
	switch proj {
	case thread.ProjGolden:
		k = &l.golden
	case thread.ProjGates:
		k = &l.gates
	default:
		k = &l.artifacts
	}
	if *k == "" {
		*k = Key{Projection: proj, Source: src, Version: ver, Route: route, Window: win}.String()
	}
	return *k
}

func (f Folder) window(t time.Time) time.Time {
	w := f.Window
	if w <= 0 {
		w = DefaultWindow
	}
	return t.Truncate(w).UTC()
}

// A cell outlives the event folded into it, whose strings are cut out of
// the record they were decoded from: a string kept as it is pins that
// whole record (every event of a run, for a run in memory). So a cell
// keeps its strings as kept (the few values of a kind: one shared copy of
// each, unique.Make) or owned (a run's own: a copy) makes them.

// kept is s clipped to n bytes of valid UTF-8, canonical: one copy of each
// distinct value, which pins no record.
func kept(s string, n int) string {
	if s == "" {
		return ""
	}
	return unique.Make(textclip.Clip(s, n)).Value()
}

// owned is s clipped to n bytes of valid UTF-8, in a copy of its own.
func owned(s string, n int) string { return strings.Clone(textclip.Clip(s, n)) }

// routeOf returns the event's route, "baseline" when a v1 event has none.
func routeOf(ev *schemas.RuntimeEvent) string { return Folder{}.routeOf(ev) }

func (f Folder) routeOf(ev *schemas.RuntimeEvent) string {
	if r := strings.TrimSpace(ev.Route); r != "" {
		return f.keep(r, 32)
	}
	return "baseline"
}

// versionOf returns the event's contract version, falling back to the
// writer's.
func versionOf(ev *schemas.RuntimeEvent, writer schemas.ContractVersion) string {
	if ev.SchemaVersion.Valid() {
		return ev.SchemaVersion.String()
	}
	if writer.Valid() {
		return writer.String()
	}
	return schemas.V1.String()
}

// latencyMs is ev.Timestamp - ev.RunStarted in milliseconds, false when the
// event carries no run_started.
func latencyMs(ev *schemas.RuntimeEvent) (int64, bool) {
	if ev.RunStarted.IsZero() || ev.RunStarted.UnixMilli() <= 0 {
		return 0, false
	}
	d := ev.Timestamp.UnixMilli() - ev.RunStarted.UnixMilli()
	return max(d, 0), true
}

func ms(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return time.UnixMilli(t.UnixMilli()).UTC()
}

// NormalizeReason bounds the cardinality of gate failure reasons: digits
// become '#', whitespace collapses, and the text is cut to 100 bytes. So
// "latency 123ms > 100ms" and "latency 250ms > 100ms" count together.
func NormalizeReason(r string) string {
	var b strings.Builder
	space := false
	for _, c := range strings.TrimSpace(textclip.Clip(r, 4*maxReasonLen)) {
		switch {
		case unicode.IsDigit(c):
			if s := b.String(); len(s) > 0 && s[len(s)-1] == '#' {
				continue
			}
			b.WriteByte('#')
			space = false
		case unicode.IsSpace(c):
			if !space {
				b.WriteByte(' ')
			}
			space = true
		default:
			b.WriteRune(c)
			space = false
		}
	}
	s := textclip.Clip(b.String(), maxReasonLen)
	if s == "" {
		s = "unspecified"
	}
	return s
}

// Plan is the set of cells one event changes, by encoded key; an empty
// key means the event does not touch that projection. Fold changes exactly
// these cells, so a runner can make sure they are in memory first.
type Plan struct {
	Runs, Golden, Gates, Artifacts string
}

// Keys lists the plan's non-empty keys.
func (p Plan) Keys() []string {
	var ks []string
	for _, k := range []string{p.Runs, p.Golden, p.Gates, p.Artifacts} {
		if k != "" {
			ks = append(ks, k)
		}
	}
	return ks
}

// Plan returns the keys Fold changes for ev read from src.
func (f Folder) Plan(src Source, ev *schemas.RuntimeEvent, writer schemas.ContractVersion) Plan {
	p, _, _ := f.plan(src, ev, writer)
	return p
}

// plan is Plan, with the event's contract version and route it used.
func (f Folder) plan(src Source, ev *schemas.RuntimeEvent, writer schemas.ContractVersion) (p Plan, ver, route string) {
	p, ver, route, run := f.planAgg(src, ev, writer)
	if run {
		p.Runs = Key{Projection: thread.ProjRuns, Source: src, TraceID: ev.TraceID}.String()
	}
	return p, ver, route
}

// planAgg is plan without the run's key: run reports whether the event
// changes its run's part.
func (f Folder) planAgg(src Source, ev *schemas.RuntimeEvent, writer schemas.ContractVersion) (p Plan, ver, route string, run bool) {
	if ev == nil {
		return Plan{}, "", "", false
	}
	ver, route = versionOf(ev, writer), f.routeOf(ev)
	win := f.window(ev.Timestamp)
	agg := func(proj string) string { return f.aggKey(proj, src, ver, route, win) }
	// Canary analysis events and drift windows are not about one run, nor
	// a golden-path hop.
	canary := src.Topic == thread.TopicGatePrefix+thread.CanaryGate || thread.IsDriftTrace(ev.TraceID)
	run = ev.TraceID != "" && !canary
	if !canary {
		p.Golden = agg(thread.ProjGolden)
	}
	if ev.Gate != nil && (ev.Phase == schemas.PhaseGate || strings.HasPrefix(src.Topic, thread.TopicGatePrefix)) {
		p.Gates = agg(thread.ProjGates)
	}
	if ev.EventType == thread.ArtifactDelivered || ev.EventType == thread.DataplaneFailed {
		p.Artifacts = agg(thread.ProjArtifacts)
	}
	return p, ver, route, run
}

// Fold folds one event read from src into cells and returns the keys it
// changed (those of Plan). writer is the contract version the record was
// written with. An event without trace_id changes no run.
func (f Folder) Fold(cells Cells, src Source, ev *schemas.RuntimeEvent, writer schemas.ContractVersion) []string {
	if ev == nil {
		return nil
	}
	plan, ver, route := f.plan(src, ev, writer)

	// runs: per-run parts.
	if k := plan.Runs; k != "" {
		p, _ := cells[k].(*RunPart)
		if p == nil {
			p = &RunPart{TraceID: strings.Clone(ev.TraceID)}
			cells[k] = p
		}
		f.foldRun(p, src, ev, ver, route)
	}
	f.foldAgg(cells, plan, src, ev)
	return plan.Keys()
}

// foldAgg folds ev into the aggregate cells of plan (golden, gates,
// artifacts).
func (f Folder) foldAgg(cells Cells, plan Plan, src Source, ev *schemas.RuntimeEvent) {
	// golden: counts and latencies per hop and per terminal outcome.
	if k := plan.Golden; k != "" {
		g, _ := cells[k].(*GoldenCell)
		if g == nil {
			g = &GoldenCell{}
			cells[k] = g
		}
		lat, hasLat := latencyMs(ev)
		et := f.keep(string(ev.EventType), 64)
		if _, ok := g.Events[et]; ok || len(g.Events) < maxEventKind {
			if g.Events == nil {
				g.Events = map[string]int64{}
			}
			g.Events[et]++
		}
		if thread.IsGoldenHop(ev.EventType) {
			g.Hops = addStat(g.Hops, et, lat, hasLat)
		}
		if o, ok := thread.Outcome(ev.EventType); ok {
			g.Outcomes = addStat(g.Outcomes, o, lat, hasLat)
		}
	}

	// gates: outcomes by gate and reason.
	if k := plan.Gates; k != "" {
		c, _ := cells[k].(*GatesCell)
		if c == nil {
			c = &GatesCell{}
			cells[k] = c
		}
		name := f.keep(ev.Gate.Name, 64)
		if name == "" {
			name = strings.TrimPrefix(src.Topic, thread.TopicGatePrefix)
		}
		if thread.IsDriftTrace(ev.TraceID) {
			// A drift window's outcome, counted apart from the runs'
			// drift gate.
			name = thread.DriftWindowStat
		}
		if c.Gates == nil {
			c.Gates = map[string]*GateStat{}
		}
		s := c.Gates[name]
		if s == nil {
			s = &GateStat{}
			c.Gates[name] = s
		}
		if ev.Gate.Passed {
			s.Passed++
		} else {
			s.Failed++
			r := NormalizeReason(ev.Gate.Reason)
			if _, ok := s.Reasons[r]; !ok && len(s.Reasons) >= maxReasons {
				r = "other"
			}
			if s.Reasons == nil {
				s.Reasons = map[string]int64{}
			}
			s.Reasons[r]++
		}
	}

	// artifacts: delivered artifacts and failed executions.
	if k := plan.Artifacts; k != "" {
		a := artifactsCell(cells, k)
		if ev.EventType == thread.ArtifactDelivered {
			a.Count++
			if ev.Artifact != nil {
				a.Bytes = satAdd(a.Bytes, max(ev.Artifact.SizeBytes, 0))
				sc := ev.Artifact.Score
				if !math.IsNaN(sc) {
					a.Score.Record(int64(math.Round(math.Max(0, math.Min(1e12, sc)) * 1e4)))
				}
				a.ExecLatency.Record(ev.Artifact.LatencyMs)
			}
		} else {
			a.Failed++
		}
	}
}

func artifactsCell(cells Cells, k string) *ArtifactsCell {
	a, _ := cells[k].(*ArtifactsCell)
	if a == nil {
		a = &ArtifactsCell{}
		cells[k] = a
	}
	return a
}

func addStat(m map[string]*Stat, name string, lat int64, hasLat bool) map[string]*Stat {
	if m == nil {
		m = map[string]*Stat{}
	}
	s := m[name]
	if s == nil {
		s = &Stat{}
		m[name] = s
	}
	s.Count++
	if hasLat {
		s.Latency.Record(lat)
	}
	return m
}

func (f Folder) foldRun(p *RunPart, src Source, ev *schemas.RuntimeEvent, ver, route string) {
	p.Events++
	set := func(dst *string, v string) {
		if v != "" && *dst != v {
			*dst = f.keep(v, maxFieldLen)
		}
	}
	set(&p.Actor, ev.Actor)
	set(&p.Intent, ev.Intent)
	set(&p.Tenant, ev.Tenant)
	if ev.ArtifactID != "" && p.ArtifactID != ev.ArtifactID {
		p.ArtifactID = owned(ev.ArtifactID, maxFieldLen)
	}
	p.Route, p.Version = route, ver
	if _, ok := latencyMs(ev); ok && p.RunStarted.IsZero() {
		p.RunStarted = ms(ev.RunStarted)
	}
	at := ms(ev.Timestamp)
	et := f.keep(string(ev.EventType), 64)
	p.LastEvent, p.LastAt = et, at
	if ev.Phase == schemas.PhaseControl || src.Topic == thread.TopicControl {
		p.State = f.keep(ev.State, 64)
	}
	if ev.Attempt > p.Attempt {
		p.Attempt = ev.Attempt
	}
	if ev.Error != nil {
		p.Error = owned(*ev.Error, maxFieldLen)
	}
	if _, ok := p.Hops[et]; !ok && len(p.Hops) < maxRunHops {
		if p.Hops == nil {
			p.Hops = map[string]time.Time{}
		}
		p.Hops[et] = at
	}
	if o, ok := thread.Outcome(ev.EventType); ok && p.Outcome == "" {
		p.Outcome, p.OutcomeAt = o, at
	}
	if ev.EventType == thread.RunIllegal {
		p.Illegal++
	}
	if ev.Artifact != nil && !math.IsNaN(ev.Artifact.Score) && !math.IsInf(ev.Artifact.Score, 0) {
		s := ev.Artifact.Score
		p.Score = &s
	}
	if g := ev.Gate; g != nil {
		name := f.keep(g.Name, 64)
		if _, ok := p.Gates[name]; ok || len(p.Gates) < maxRunGates {
			if p.Gates == nil {
				p.Gates = map[string]GateResult{}
			}
			p.Gates[name] = GateResult{Passed: g.Passed, Reason: owned(g.Reason, maxFieldLen), Measured: finite(g.Measured), Threshold: finite(g.Threshold), At: at}
		}
	}
}

// finite maps NaN and ±Inf to 0, which JSON cannot carry.
func finite(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return f
}
