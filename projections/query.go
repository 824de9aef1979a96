package projections

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// Run is a run's status merged from every thread topic's part.
type Run struct {
	RunPart
	// Sources lists the thread topics that carried the run's events.
	Sources []string `json:"sources"`
	// Terminal reports whether the run reached a terminal outcome.
	Terminal bool `json:"terminal"`
	// Timeline lists the first occurrence of each event type in time
	// order, with the time since run_started.
	Timeline []TimelineEntry `json:"timeline"`
	// DurationMs is run_started to the terminal event, when there is one.
	DurationMs int64 `json:"duration_ms,omitempty"`
}

// TimelineEntry is one hop of a run's timeline.
type TimelineEntry struct {
	EventType string    `json:"event_type"`
	At        time.Time `json:"at"`
	SinceMs   int64     `json:"since_start_ms"`
}

// MergeRun merges the parts of one run, keyed by source topic. The
// orchestrator's topic (spine.control) is the authority for state and
// outcome; hops keep their earliest time; gates their latest outcome.
func MergeRun(parts map[string]*RunPart) (Run, bool) {
	if len(parts) == 0 {
		return Run{}, false
	}
	var r Run
	topics := slices.Sorted(maps.Keys(parts))
	// Control last, so its fields win.
	slices.SortStableFunc(topics, func(a, b string) int {
		return boolInt(a == "spine.control") - boolInt(b == "spine.control")
	})
	for _, t := range topics {
		p := parts[t]
		r.Sources = append(r.Sources, t)
		if r.TraceID == "" {
			r.TraceID = p.TraceID
		}
		for _, f := range []struct {
			dst *string
			v   string
		}{
			{&r.Actor, p.Actor}, {&r.Intent, p.Intent}, {&r.Route, p.Route}, {&r.Version, p.Version},
			{&r.Tenant, p.Tenant}, {&r.ArtifactID, p.ArtifactID}, {&r.Error, p.Error},
		} {
			if f.v != "" {
				*f.dst = f.v
			}
		}
		if r.RunStarted.IsZero() || (!p.RunStarted.IsZero() && p.RunStarted.Before(r.RunStarted)) {
			r.RunStarted = p.RunStarted
		}
		if p.State != "" {
			r.State = p.State
		}
		if p.Outcome != "" {
			r.Outcome, r.OutcomeAt = p.Outcome, p.OutcomeAt
		}
		if !p.LastAt.Before(r.LastAt) {
			r.LastEvent, r.LastAt = p.LastEvent, p.LastAt
		}
		for h, at := range p.Hops {
			if r.Hops == nil {
				r.Hops = map[string]time.Time{}
			}
			if cur, ok := r.Hops[h]; !ok || at.Before(cur) {
				r.Hops[h] = at
			}
		}
		for g, res := range p.Gates {
			if r.Gates == nil {
				r.Gates = map[string]GateResult{}
			}
			if cur, ok := r.Gates[g]; !ok || !res.At.Before(cur.At) {
				r.Gates[g] = res
			}
		}
		if p.Score != nil {
			s := *p.Score
			r.Score = &s
		}
		r.Attempt = max(r.Attempt, p.Attempt)
		r.Events += p.Events
		r.Illegal += p.Illegal
	}
	r.Terminal = r.Outcome != ""
	r.Timeline = []TimelineEntry{}
	for h, at := range r.Hops {
		e := TimelineEntry{EventType: h, At: at}
		if !r.RunStarted.IsZero() {
			e.SinceMs = at.Sub(r.RunStarted).Milliseconds()
		}
		r.Timeline = append(r.Timeline, e)
	}
	sort.Slice(r.Timeline, func(i, j int) bool {
		a, b := r.Timeline[i], r.Timeline[j]
		if !a.At.Equal(b.At) {
			return a.At.Before(b.At)
		}
		return pathOrder(a.EventType) < pathOrder(b.EventType)
	})
	if r.Terminal && !r.RunStarted.IsZero() {
		r.DurationMs = r.OutcomeAt.Sub(r.RunStarted).Milliseconds()
	}
	return r, true
}

// pathOrder orders event types that share a millisecond along the thread:
// control-plane intake first, then data plane, gates, and terminals last.
func pathOrder(t string) int {
	et := schemas.EventType(t)
	_, terminal := thread.Outcome(et)
	switch {
	case et == thread.IntentReceived:
		return 0
	case terminal:
		return 5
	case strings.HasPrefix(t, "run."):
		return 1
	case strings.HasPrefix(t, "dataplane.") || et == thread.ArtifactDelivered:
		return 2
	case strings.HasPrefix(t, "gate."):
		return 3
	}
	return 4
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Range selects aggregate windows: From inclusive, To exclusive; a zero
// bound is open.
type Range struct {
	From, To time.Time
}

func (r Range) has(w time.Time) bool {
	return (r.From.IsZero() || !w.Before(r.From)) && (r.To.IsZero() || w.Before(r.To))
}

// Group names one contract version and route.
type Group struct {
	Version string `json:"contract_version"`
	Route   string `json:"route"`
}

// Aggregates are the aggregate cells merged across source partitions (and
// windows where a query asks for totals). Build them with Aggregate.
type Aggregates struct {
	Window    time.Duration
	Golden    map[Group]map[time.Time]*GoldenCell
	Gates     map[Group]map[time.Time]*GatesCell
	Artifacts map[Group]map[time.Time]*ArtifactsCell
	// First and Last are the earliest and latest windows seen.
	First, Last time.Time
}

// Aggregate merges every aggregate cell of cells inside rng by version,
// route and window. Merging is exact: counts add, histograms merge.
func Aggregate(cells Cells, rng Range, window time.Duration) *Aggregates {
	if window <= 0 {
		window = DefaultWindow
	}
	a := &Aggregates{
		Window:    window,
		Golden:    map[Group]map[time.Time]*GoldenCell{},
		Gates:     map[Group]map[time.Time]*GatesCell{},
		Artifacts: map[Group]map[time.Time]*ArtifactsCell{},
	}
	for key, c := range cells {
		if c.Projection() == thread.ProjRuns {
			continue
		}
		k, err := ParseKey(key)
		if err != nil || !rng.has(k.Window) {
			continue
		}
		g := Group{Version: k.Version, Route: k.Route}
		if a.First.IsZero() || k.Window.Before(a.First) {
			a.First = k.Window
		}
		if k.Window.After(a.Last) {
			a.Last = k.Window
		}
		switch c := c.(type) {
		case *GoldenCell:
			mergeGolden(cellAt(a.Golden, g, k.Window, func() *GoldenCell { return &GoldenCell{} }), c)
		case *GatesCell:
			mergeGates(cellAt(a.Gates, g, k.Window, func() *GatesCell { return &GatesCell{} }), c)
		case *ArtifactsCell:
			mergeArtifacts(cellAt(a.Artifacts, g, k.Window, func() *ArtifactsCell { return &ArtifactsCell{} }), c)
		}
	}
	return a
}

func cellAt[C any](m map[Group]map[time.Time]*C, g Group, w time.Time, mk func() *C) *C {
	byW := m[g]
	if byW == nil {
		byW = map[time.Time]*C{}
		m[g] = byW
	}
	c := byW[w]
	if c == nil {
		c = mk()
		byW[w] = c
	}
	return c
}

func mergeStats(dst map[string]*Stat, src map[string]*Stat) map[string]*Stat {
	for k, s := range src {
		if dst == nil {
			dst = map[string]*Stat{}
		}
		d := dst[k]
		if d == nil {
			d = &Stat{}
			dst[k] = d
		}
		d.Count += s.Count
		d.Latency.Merge(&s.Latency)
	}
	return dst
}

func mergeGolden(dst, src *GoldenCell) {
	dst.Hops = mergeStats(dst.Hops, src.Hops)
	dst.Outcomes = mergeStats(dst.Outcomes, src.Outcomes)
	for k, n := range src.Events {
		if dst.Events == nil {
			dst.Events = map[string]int64{}
		}
		dst.Events[k] += n
	}
}

func mergeGates(dst, src *GatesCell) {
	for name, s := range src.Gates {
		if dst.Gates == nil {
			dst.Gates = map[string]*GateStat{}
		}
		d := dst.Gates[name]
		if d == nil {
			d = &GateStat{}
			dst.Gates[name] = d
		}
		d.Passed += s.Passed
		d.Failed += s.Failed
		for r, n := range s.Reasons {
			if d.Reasons == nil {
				d.Reasons = map[string]int64{}
			}
			d.Reasons[r] += n
		}
	}
}

func mergeArtifacts(dst, src *ArtifactsCell) {
	dst.Count += src.Count
	dst.Bytes = satAdd(dst.Bytes, src.Bytes)
	dst.Failed += src.Failed
	dst.Score.Merge(&src.Score)
	dst.ExecLatency.Merge(&src.ExecLatency)
}

// Percentiles summarise a latency histogram, in milliseconds.
type Percentiles struct {
	Count int64   `json:"count"`
	P50   int64   `json:"p50_ms"`
	P95   int64   `json:"p95_ms"`
	P99   int64   `json:"p99_ms"`
	Max   int64   `json:"max_ms"`
	Mean  float64 `json:"mean_ms"`
}

// PercentilesOf summarises h.
func PercentilesOf(h *Histogram) Percentiles {
	p := Percentiles{Count: h.Count(), P50: h.Quantile(0.50), P95: h.Quantile(0.95), P99: h.Quantile(0.99), Max: h.Max()}
	if h.Count() > 0 {
		p.Mean = float64(h.Sum()) / float64(h.Count())
	}
	return p
}

// HopStats is one hop's count, throughput and latency.
type HopStats struct {
	Count      int64       `json:"count"`
	Throughput float64     `json:"throughput_per_s"`
	Latency    Percentiles `json:"latency"`
}

// SeriesPoint is one window's golden-path counts.
type SeriesPoint struct {
	Window time.Time        `json:"window"`
	Counts map[string]int64 `json:"counts"`
	// P99 is the window's end-to-end p99 (all outcomes), in milliseconds.
	P99 int64 `json:"e2e_p99_ms"`
}

// GoldenGroup is the golden-path report of one version and route.
type GoldenGroup struct {
	Group
	Hops      map[string]HopStats `json:"hops"`
	EndToEnd  map[string]HopStats `json:"end_to_end"`
	AllEnd    HopStats            `json:"end_to_end_all"`
	Events    map[string]int64    `json:"events"`
	Terminals int64               `json:"terminal_runs"`
	Series    []SeriesPoint       `json:"series,omitempty"`
}

// GoldenReport is the body of /v1/stats/golden-path.
type GoldenReport struct {
	WindowSeconds float64       `json:"window_seconds"`
	From          time.Time     `json:"from,omitzero"`
	To            time.Time     `json:"to,omitzero"`
	Seconds       float64       `json:"seconds"`
	Groups        []GoldenGroup `json:"groups"`
}

// span is the time the aggregates cover, at least one window.
func (a *Aggregates) span() float64 {
	if a.First.IsZero() {
		return a.Window.Seconds()
	}
	return a.Last.Sub(a.First).Seconds() + a.Window.Seconds()
}

func sortedGroups[C any](m map[Group]map[time.Time]*C) []Group {
	gs := slices.Collect(maps.Keys(m))
	sort.Slice(gs, func(i, j int) bool {
		if gs[i].Version != gs[j].Version {
			return gs[i].Version < gs[j].Version
		}
		return gs[i].Route < gs[j].Route
	})
	return gs
}

// Golden reports the golden path per version and route. With series set,
// each group carries its per-window counts.
func (a *Aggregates) GoldenReport(series bool) GoldenReport {
	rep := GoldenReport{WindowSeconds: a.Window.Seconds(), Seconds: a.span(), Groups: []GoldenGroup{}}
	if !a.First.IsZero() {
		rep.From, rep.To = a.First, a.Last.Add(a.Window)
	}
	for _, g := range sortedGroups(a.Golden) {
		byW := a.Golden[g]
		total := &GoldenCell{}
		ws := slices.SortedFunc(maps.Keys(byW), time.Time.Compare)
		gg := GoldenGroup{Group: g, Hops: map[string]HopStats{}, EndToEnd: map[string]HopStats{}, Events: map[string]int64{}}
		for _, w := range ws {
			c := byW[w]
			mergeGolden(total, c)
			if series {
				pt := SeriesPoint{Window: w, Counts: map[string]int64{}}
				all := &Histogram{}
				for h, s := range c.Hops {
					pt.Counts[h] = s.Count
				}
				for o, s := range c.Outcomes {
					pt.Counts[o] = s.Count
					all.Merge(&s.Latency)
				}
				pt.P99 = all.Quantile(0.99)
				gg.Series = append(gg.Series, pt)
			}
		}
		hs := func(s *Stat) HopStats {
			return HopStats{Count: s.Count, Throughput: float64(s.Count) / rep.Seconds, Latency: PercentilesOf(&s.Latency)}
		}
		for h, s := range total.Hops {
			gg.Hops[h] = hs(s)
		}
		all := &Stat{}
		for o, s := range total.Outcomes {
			gg.EndToEnd[o] = hs(s)
			all.Count += s.Count
			all.Latency.Merge(&s.Latency)
		}
		gg.AllEnd = hs(all)
		gg.Terminals = all.Count
		maps.Copy(gg.Events, total.Events)
		rep.Groups = append(rep.Groups, gg)
	}
	return rep
}

// GateReport is one gate's outcomes for one version and route.
type GateReport struct {
	Passed   int64            `json:"passed"`
	Failed   int64            `json:"failed"`
	PassRate float64          `json:"pass_rate"`
	Reasons  map[string]int64 `json:"failure_reasons"`
}

// GatesGroup is the gate report of one version and route.
type GatesGroup struct {
	Group
	Gates map[string]GateReport `json:"gates"`
}

// GatesReport is the body of /v1/gates.
type GatesReport struct {
	From   time.Time    `json:"from,omitzero"`
	To     time.Time    `json:"to,omitzero"`
	Groups []GatesGroup `json:"groups"`
}

func gateReport(s *GateStat) GateReport {
	r := GateReport{Passed: s.Passed, Failed: s.Failed, Reasons: map[string]int64{}}
	if n := s.Passed + s.Failed; n > 0 {
		r.PassRate = float64(s.Passed) / float64(n)
	}
	maps.Copy(r.Reasons, s.Reasons)
	return r
}

// GatesReport reports gate outcomes per version and route.
func (a *Aggregates) GatesReport() GatesReport {
	rep := GatesReport{Groups: []GatesGroup{}}
	if !a.First.IsZero() {
		rep.From, rep.To = a.First, a.Last.Add(a.Window)
	}
	for _, g := range sortedGroups(a.Gates) {
		total := &GatesCell{}
		for _, c := range a.Gates[g] {
			mergeGates(total, c)
		}
		gg := GatesGroup{Group: g, Gates: map[string]GateReport{}}
		for name, s := range total.Gates {
			gg.Gates[name] = gateReport(s)
		}
		rep.Groups = append(rep.Groups, gg)
	}
	return rep
}

// RouteSummary is one side of the canary comparison: everything the canary
// analysis compares, from the projections, with its sample sizes.
type RouteSummary struct {
	Route    string   `json:"route"`
	Versions []string `json:"contract_versions"`
	// Runs counts terminal runs by outcome; SuccessRate is
	// completed / terminal runs.
	Runs        map[string]int64 `json:"runs"`
	Terminal    int64            `json:"terminal_runs"`
	SuccessRate float64          `json:"success_rate"`
	Received    int64            `json:"intents_received"`
	// Gates by name, pass rate and sample size.
	Gates map[string]GateReport `json:"gates"`
	// Latency per golden-path hop and end to end (all outcomes).
	Latency  map[string]Percentiles `json:"latency"`
	EndToEnd Percentiles            `json:"end_to_end"`
	// Artifacts delivered, failed executions, and the score distribution
	// (buckets of score×1e4) for drift tests (PSI, KS).
	Artifacts      int64    `json:"artifacts"`
	ArtifactBytes  int64    `json:"artifact_bytes"`
	FailedExec     int64    `json:"failed_executions"`
	ScoreBuckets   []Bucket `json:"score_buckets_e4"`
	ScoreMean      float64  `json:"score_mean"`
	ExecLatencyP99 int64    `json:"exec_latency_p99_ms"`

	golden    *GoldenCell
	artifacts *ArtifactsCell
	gates     *GatesCell
}

// GoldenCell returns the merged golden-path cell behind the summary, for
// the canary analysis (histograms merge exactly).
func (s *RouteSummary) GoldenCell() *GoldenCell { return s.golden }

// GatesCell returns the merged gate outcomes of the route.
func (s *RouteSummary) GatesCell() *GatesCell { return s.gates }

// ArtifactsCell returns the merged artifact cell of the route (score
// histogram).
func (s *RouteSummary) ArtifactsCell() *ArtifactsCell { return s.artifacts }

// CanaryReport is the body of /v1/canary: baseline and canary side by side.
type CanaryReport struct {
	From     time.Time     `json:"from,omitzero"`
	To       time.Time     `json:"to,omitzero"`
	Baseline *RouteSummary `json:"baseline"`
	Canary   *RouteSummary `json:"canary"`
}

// Route summarises one route over every contract version.
func (a *Aggregates) Route(route string) *RouteSummary {
	s := &RouteSummary{Route: route, Versions: []string{}, Runs: map[string]int64{}, Gates: map[string]GateReport{}, Latency: map[string]Percentiles{},
		golden: &GoldenCell{}, artifacts: &ArtifactsCell{}, gates: &GatesCell{}}
	vers := map[string]bool{}
	for g, byW := range a.Golden {
		if g.Route != route {
			continue
		}
		vers[g.Version] = true
		for _, c := range byW {
			mergeGolden(s.golden, c)
		}
	}
	for g, byW := range a.Gates {
		if g.Route == route {
			vers[g.Version] = true
			for _, c := range byW {
				mergeGates(s.gates, c)
			}
		}
	}
	for g, byW := range a.Artifacts {
		if g.Route == route {
			vers[g.Version] = true
			for _, c := range byW {
				mergeArtifacts(s.artifacts, c)
			}
		}
	}
	s.Versions = slices.Sorted(maps.Keys(vers))
	all := &Histogram{}
	for o, st := range s.golden.Outcomes {
		s.Runs[o] = st.Count
		s.Terminal += st.Count
		all.Merge(&st.Latency)
	}
	if s.Terminal > 0 {
		s.SuccessRate = float64(s.Runs["completed"]) / float64(s.Terminal)
	}
	s.EndToEnd = PercentilesOf(all)
	for h, st := range s.golden.Hops {
		s.Latency[h] = PercentilesOf(&st.Latency)
	}
	if st := s.golden.Hops[string(thread.IntentReceived)]; st != nil {
		s.Received = st.Count
	}
	for name, gs := range s.gates.Gates {
		s.Gates[name] = gateReport(gs)
	}
	s.Artifacts, s.ArtifactBytes, s.FailedExec = s.artifacts.Count, s.artifacts.Bytes, s.artifacts.Failed
	s.ScoreBuckets = s.artifacts.Score.Buckets()
	if n := s.artifacts.Score.Count(); n > 0 {
		s.ScoreMean = float64(s.artifacts.Score.Sum()) / float64(n) / 1e4
	}
	s.ExecLatencyP99 = s.artifacts.ExecLatency.Quantile(0.99)
	return s
}

// CanaryReport puts the baseline and canary routes side by side.
func (a *Aggregates) CanaryReport() CanaryReport {
	rep := CanaryReport{Baseline: a.Route("baseline"), Canary: a.Route("canary")}
	if !a.First.IsZero() {
		rep.From, rep.To = a.First, a.Last.Add(a.Window)
	}
	return rep
}

// RunsOf collects the parts of trace's run from cells.
func RunsOf(cells Cells, trace string) map[string]*RunPart {
	parts := map[string]*RunPart{}
	for key, c := range cells {
		if p, ok := c.(*RunPart); ok && p.TraceID == trace {
			k, err := ParseKey(key)
			if err != nil {
				continue
			}
			parts[k.Source.Topic] = p
		}
	}
	return parts
}

// errRunNotFound is the error a query returns for an unknown run.
func errRunNotFound(trace string) error { return fmt.Errorf("run %q: %w", trace, ErrNotFound) }
