package projections

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// rec is one event as read from one source partition.
type rec struct {
	src Source
	ev  *schemas.RuntimeEvent
}

// runSpec describes one synthetic run.
type runSpec struct {
	trace   string
	route   string
	version schemas.ContractVersion
	start   time.Time
	// latencies from run_started, in ms, of dispatched, delivered, gates, verdict
	dispatched, delivered, gated, verdict int64
	fail                                  bool // the performance gate fails
	execFail                              bool // dataplane.failed, then run.failed
	score                                 float64
}

const testPartitions = 4

func partOf(trace string) int32 {
	h := fnv.New32a()
	h.Write([]byte(trace))
	return int32(h.Sum32() % testPartitions)
}

// events returns the run's events in thread order, each with its source.
func (r runSpec) events() []rec {
	p := partOf(r.trace)
	at := func(ms int64) time.Time { return r.start.Add(time.Duration(ms) * time.Millisecond) }
	n := 0
	ev := func(phase schemas.Phase, typ schemas.EventType, state string, ms int64) *schemas.RuntimeEvent {
		n++
		return &schemas.RuntimeEvent{
			EventID: fmt.Sprintf("%s-%d", r.trace, n), TraceID: r.trace, SpanID: fmt.Sprintf("s%d", n),
			Actor: "actor-" + r.trace[len(r.trace)-1:], Intent: "summarize", SchemaVersion: r.version,
			Timestamp: at(ms), RunStarted: r.start, Phase: phase, EventType: typ, State: state, Route: r.route,
		}
	}
	ctl := Source{"spine.control", p}
	dp := Source{"spine.dataplane", p}
	out := []rec{
		{ctl, ev(schemas.PhaseControl, "intent.received", "received", 0)},
		{ctl, ev(schemas.PhaseControl, "run.routed", "routed", 0)},
		{ctl, ev(schemas.PhaseControl, "run.dispatch", "dispatched", 1)},
		{dp, ev(schemas.PhaseData, "dataplane.dispatched", "dispatched", r.dispatched)},
		{dp, ev(schemas.PhaseData, "dataplane.started", "executing", r.dispatched+1)},
		{ctl, ev(schemas.PhaseControl, "run.executing", "executing", r.dispatched+2)},
	}
	if r.execFail {
		e := ev(schemas.PhaseData, "dataplane.failed", "failed", r.delivered)
		msg := "synthetic failure"
		e.Error = &msg
		return append(out, rec{dp, e}, rec{ctl, ev(schemas.PhaseControl, "run.failed", "failed", r.verdict)})
	}
	d := ev(schemas.PhaseData, "artifact.delivered", "delivered", r.delivered)
	d.ArtifactID = "art-" + r.trace
	d.Artifact = &schemas.ArtifactSummary{ContentType: "text/plain", Summary: "ok", Score: r.score, SizeBytes: 100, LatencyMs: r.delivered - r.dispatched}
	out = append(out, rec{dp, d},
		rec{ctl, ev(schemas.PhaseControl, "run.delivered", "delivered", r.delivered+1)},
		rec{ctl, ev(schemas.PhaseControl, "run.gating", "gating", r.delivered+1)})
	gate := func(name string, passed bool, reason string) rec {
		typ := thread.GatePassed
		if !passed {
			typ = thread.GateFailed
		}
		e := ev(schemas.PhaseGate, typ, "gating", r.gated)
		e.Gate = &schemas.GateOutcome{Name: name, Passed: passed, Reason: reason, Measured: float64(r.delivered), Threshold: 100}
		return rec{Source{"gate." + name, p}, e}
	}
	out = append(out, gate("schema", true, "valid"))
	if r.fail {
		out = append(out, gate("performance", false, fmt.Sprintf("latency %dms over budget 100ms", r.delivered)))
	} else {
		out = append(out, gate("performance", true, "within budget"))
	}
	v := ev(schemas.PhaseGate, "gate.verdict", "gating", r.gated)
	v.Gate = &schemas.GateOutcome{Name: "verdict", Passed: !r.fail}
	out = append(out, rec{Source{"gate.verdict", p}, v})
	if r.fail {
		out = append(out, rec{ctl, ev(schemas.PhaseControl, "run.rejected", "rejected", r.verdict)})
	} else {
		out = append(out, rec{ctl, ev(schemas.PhaseControl, "run.completed", "completed", r.verdict)})
	}
	return out
}

var t0 = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

// synth returns n runs with seeded random latencies.
func synth(seed uint64, n int, route string, v schemas.ContractVersion, failEvery int) []runSpec {
	rng := rand.New(rand.NewPCG(seed, 7))
	runs := make([]runSpec, n)
	for i := range runs {
		d := 1 + rng.Int64N(5)
		del := d + 5 + rng.Int64N(60)
		runs[i] = runSpec{
			trace: fmt.Sprintf("%s-%s-%04d", route, v, i), route: route, version: v,
			start:      t0.Add(time.Duration(i) * 37 * time.Millisecond),
			dispatched: d, delivered: del, gated: del + 2, verdict: del + 3 + rng.Int64N(3),
			fail: failEvery > 0 && i%failEvery == 0, score: rng.Float64(),
		}
	}
	return runs
}

// interleave merges the runs' events into per-source streams and then
// emits them in a random interleaving that keeps each source's order (what
// consumers of different partitions may see).
func interleave(seed uint64, runs []runSpec) []rec {
	streams := map[Source][]rec{}
	var order []Source
	for _, r := range runs {
		for _, e := range r.events() {
			if _, ok := streams[e.src]; !ok {
				order = append(order, e.src)
			}
			streams[e.src] = append(streams[e.src], e)
		}
	}
	rng := rand.New(rand.NewPCG(seed, 9))
	var out []rec
	for len(order) > 0 {
		i := rng.IntN(len(order))
		s := order[i]
		out = append(out, streams[s][0])
		streams[s] = streams[s][1:]
		if len(streams[s]) == 0 {
			order = append(order[:i], order[i+1:]...)
		}
	}
	return out
}

func foldAll(f Folder, recs []rec) Cells {
	cells := Cells{}
	for _, r := range recs {
		f.Fold(cells, r.src, r.ev, r.ev.SchemaVersion)
	}
	return cells
}

func encodeAll(t *testing.T, cells Cells) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for k, c := range cells {
		b, err := EncodeCell(c)
		if err != nil {
			t.Fatal(err)
		}
		out[k] = b
	}
	return out
}

func TestFoldGoldenCounts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		baseline  int
		canary    int
		failEvery int
	}{
		{"baseline-only", 200, 0, 0},
		{"split-no-failures", 150, 50, 0},
		{"split-with-rejections", 120, 80, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			runs := append(synth(1, tc.baseline, "baseline", schemas.V1, tc.failEvery), synth(2, tc.canary, "canary", schemas.V2, tc.failEvery)...)
			cells := foldAll(Folder{}, interleave(3, runs))
			rep := Aggregate(cells, Range{}, 0).GoldenReport(true)
			want := map[Group]int{}
			if tc.baseline > 0 {
				want[Group{"V1", "baseline"}] = tc.baseline
			}
			if tc.canary > 0 {
				want[Group{"V2", "canary"}] = tc.canary
			}
			if len(rep.Groups) != len(want) {
				t.Fatalf("groups = %+v, want %v", rep.Groups, want)
			}
			for _, g := range rep.Groups {
				n := int64(want[g.Group])
				fails := int64(0)
				if tc.failEvery > 0 {
					fails = (n + int64(tc.failEvery) - 1) / int64(tc.failEvery)
				}
				for hop, c := range map[string]int64{"intent.received": n, "dataplane.dispatched": n, "artifact.delivered": n, "gate.passed": 2*n - fails, "gate.failed": fails} {
					if got := g.Hops[hop].Count; got != c {
						t.Errorf("%v %s = %d, want %d", g.Group, hop, got, c)
					}
				}
				if g.Terminals != n || g.EndToEnd["completed"].Count != n-fails || g.EndToEnd["rejected"].Count != fails {
					t.Errorf("%v terminals %d completed %d rejected %d", g.Group, g.Terminals, g.EndToEnd["completed"].Count, g.EndToEnd["rejected"].Count)
				}
				var series int64
				for _, p := range g.Series {
					series += p.Counts["intent.received"]
				}
				if series != n {
					t.Errorf("series sums to %d, want %d", series, n)
				}
				if g.Hops["intent.received"].Latency.P99 != 0 {
					t.Errorf("intent.received latency should be 0")
				}
			}
		})
	}
}

func TestFoldPercentilesWithinBucket(t *testing.T) {
	t.Parallel()
	runs := synth(5, 1000, "baseline", schemas.V1, 0)
	cells := foldAll(Folder{}, interleave(6, runs))
	g := Aggregate(cells, Range{}, 0).GoldenReport(false).Groups[0]
	var lat []int64
	for _, r := range runs {
		lat = append(lat, r.verdict)
	}
	check := func(name string, got int64, q float64) {
		exact := exactQuantile(lat, q)
		lo, hi := histBounds(histIndex(exact))
		if got < lo || got > hi {
			t.Errorf("%s = %d, exact %d not in its bucket [%d,%d]", name, got, exact, lo, hi)
		}
	}
	e2e := g.EndToEnd["completed"].Latency
	check("p50", e2e.P50, 0.5)
	check("p95", e2e.P95, 0.95)
	check("p99", e2e.P99, 0.99)
}

func exactQuantile(v []int64, q float64) int64 {
	s := append([]int64(nil), v...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	rank := int(float64(len(s))*q+0.999999) - 1
	return s[max(rank, 0)]
}

// Replay equality rests on this: the cells depend on each source's events
// in order, not on how sources interleave.
func TestFoldOrderInsensitiveAcrossSources(t *testing.T) {
	t.Parallel()
	runs := append(synth(7, 100, "baseline", schemas.V1, 5), synth(8, 100, "canary", schemas.V2, 3)...)
	ref := encodeAll(t, foldAll(Folder{}, interleave(1, runs)))
	for seed := uint64(2); seed < 6; seed++ {
		got := encodeAll(t, foldAll(Folder{}, interleave(seed, runs)))
		if len(got) != len(ref) {
			t.Fatalf("seed %d: %d cells, want %d", seed, len(got), len(ref))
		}
		for k, b := range ref {
			if !bytes.Equal(got[k], b) {
				t.Fatalf("seed %d: cell %s differs:\n%s\n%s", seed, k, got[k], b)
			}
		}
	}
}

func TestAggregateMergeIsExact(t *testing.T) {
	t.Parallel()
	// Folding into partitions then merging equals folding everything as
	// one partition.
	runs := synth(9, 400, "canary", schemas.V2, 6)
	split := foldAll(Folder{}, interleave(1, runs))
	var one []rec
	for _, r := range interleave(1, runs) {
		r.src.Partition = 0
		one = append(one, r)
	}
	whole := foldAll(Folder{}, one)
	a, b := Aggregate(split, Range{}, 0).Route("canary"), Aggregate(whole, Range{}, 0).Route("canary")
	if !a.GoldenCell().Outcomes["completed"].Latency.Equal(&b.GoldenCell().Outcomes["completed"].Latency) {
		t.Fatal("split and whole end-to-end histograms differ")
	}
	if !a.ArtifactsCell().Score.Equal(&b.ArtifactsCell().Score) || a.Artifacts != b.Artifacts {
		t.Fatal("split and whole artifact cells differ")
	}
	if !reflect.DeepEqual(a.Gates, b.Gates) || !reflect.DeepEqual(a.Latency, b.Latency) {
		t.Fatalf("gate or latency reports differ: %+v vs %+v", a.Gates, b.Gates)
	}
}

func TestFoldRunsAndGates(t *testing.T) {
	t.Parallel()
	runs := []runSpec{
		{trace: "ok-1", route: "baseline", version: schemas.V1, start: t0, dispatched: 2, delivered: 30, gated: 31, verdict: 33, score: 0.8},
		{trace: "slow-2", route: "canary", version: schemas.V2, start: t0, dispatched: 2, delivered: 250, gated: 251, verdict: 252, fail: true, score: 0.4},
		{trace: "slow-3", route: "canary", version: schemas.V2, start: t0, dispatched: 2, delivered: 180, gated: 181, verdict: 182, fail: true, score: 0.5},
		{trace: "boom-4", route: "canary", version: schemas.V2, start: t0, dispatched: 2, delivered: 20, verdict: 25, execFail: true},
	}
	cells := foldAll(Folder{}, interleave(4, runs))
	st := NewMemStore(cells, 0)
	tests := []struct {
		trace, state, outcome string
		gates                 int
		terminal              bool
	}{
		{"ok-1", "completed", "completed", 3, true},
		{"slow-2", "rejected", "rejected", 3, true},
		{"boom-4", "failed", "failed", 0, true},
	}
	for _, tc := range tests {
		r, err := st.RunStatus(tc.trace)
		if err != nil {
			t.Fatal(err)
		}
		if r.State != tc.state || r.Outcome != tc.outcome || len(r.Gates) != tc.gates || r.Terminal != tc.terminal {
			t.Errorf("%s: state %q outcome %q gates %d terminal %v", tc.trace, r.State, r.Outcome, len(r.Gates), r.Terminal)
		}
		if !r.RunStarted.Equal(t0) || r.Hops["intent.received"].IsZero() {
			t.Errorf("%s: run_started %v hops %v", tc.trace, r.RunStarted, r.Hops)
		}
		tl := r.Timeline
		if len(tl) != len(r.Hops) || tl[0].EventType != "intent.received" || outcomeOf(tl[len(tl)-1].EventType) != tc.outcome {
			t.Errorf("%s: timeline %+v", tc.trace, tl)
		}
		for i := 1; i < len(tl); i++ {
			if tl[i].At.Before(tl[i-1].At) || tl[i].SinceMs < tl[i-1].SinceMs {
				t.Errorf("%s: timeline out of order at %d: %+v", tc.trace, i, tl)
			}
		}
		if r.DurationMs != tl[len(tl)-1].SinceMs {
			t.Errorf("%s: duration %d, terminal at %d", tc.trace, r.DurationMs, tl[len(tl)-1].SinceMs)
		}
	}
	if _, err := st.RunStatus("nope"); Code(err) != "not_found" {
		t.Fatalf("unknown run: %v", err)
	}
	gr := st.Aggregate(Range{}).GatesReport()
	var canary GatesGroup
	for _, g := range gr.Groups {
		if g.Route == "canary" {
			canary = g
		}
	}
	perf := canary.Gates["performance"]
	if perf.Failed != 2 || perf.Passed != 0 || perf.Reasons["latency #ms over budget #ms"] != 2 {
		t.Fatalf("performance gate: %+v", perf)
	}
	cr := st.Aggregate(Range{}).CanaryReport()
	if cr.Baseline.SuccessRate != 1 || cr.Canary.Terminal != 3 || cr.Canary.Runs["failed"] != 1 || cr.Canary.FailedExec != 1 {
		t.Fatalf("canary report: baseline %+v canary %+v", cr.Baseline, cr.Canary)
	}
}

func TestNormalizeReason(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"latency 123ms > 100ms":  "latency #ms > #ms",
		"  schema   invalid\n":   "schema invalid",
		"":                       "unspecified",
		"bad \xff utf8":          "bad \uFFFD utf#",
		string(make([]byte, 50)): string(make([]byte, 50)),
	} {
		if got := NormalizeReason(in); got != want {
			t.Errorf("NormalizeReason(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCellRoundTrip(t *testing.T) {
	t.Parallel()
	runs := append(synth(11, 50, "baseline", schemas.V1, 3), synth(12, 50, "canary", schemas.V2, 0)...)
	runs = append(runs, runSpec{trace: "x-boom", route: "canary", version: schemas.V2, start: t0, execFail: true})
	cells := foldAll(Folder{}, interleave(1, runs))
	kinds := map[string]int{}
	for k, c := range cells {
		b, err := EncodeCell(c)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeCell(k, b)
		if err != nil {
			t.Fatalf("%s: %v\n%s", k, err, b)
		}
		b2, _ := EncodeCell(back)
		if !bytes.Equal(b, b2) {
			t.Fatalf("%s: round trip differs:\n%s\n%s", k, b, b2)
		}
		kk, err := ParseKey(k)
		if err != nil || kk.String() != k {
			t.Fatalf("key %q parses to %+v (%v)", k, kk, err)
		}
		kinds[c.Projection()]++
	}
	for _, n := range thread.ProjectionNames {
		if kinds[n] == 0 {
			t.Errorf("no %s cells", n)
		}
	}
	for _, bad := range []struct{ key, val string }{
		{"runs|spine.control|0|t", ""},
		{"runs|spine.control|0|t", "\x02{}"},
		{"runs|spine.control|0|t", "\x01{}"},                           // no trace id
		{"runs|spine.control|0|t", "\x01{\"trace_id\":\"t\",\"x\":1}"}, // unknown field
		{"golden|spine.control|0|V1|baseline|0", "\x01{\"hops\":{\"a\":null}}"},
		{"gates|gate.schema|0|V1|baseline|0", "\x01{\"gates\":{\"s\":{\"passed\":0,\"failed\":1,\"reasons\":{\"a\":2}}}}"},
		{"nope|x", "\x01{}"},
		{"golden|spine.control|x|V1|baseline|0", "\x01{}"},
	} {
		if _, err := DecodeCell(bad.key, []byte(bad.val)); err == nil {
			t.Errorf("decoded bad cell %q=%q", bad.key, bad.val)
		}
	}
}

func FuzzDecodeCell(f *testing.F) {
	cells := foldAll(Folder{}, interleave(1, synth(13, 5, "canary", schemas.V2, 2)))
	for k, c := range cells {
		b, _ := EncodeCell(c)
		f.Add(k, b)
	}
	f.Add("runs|spine.control|0|t", []byte("\x01{\"trace_id\":\"t\"}"))
	f.Fuzz(func(t *testing.T, key string, b []byte) {
		c, err := DecodeCell(key, b)
		if err != nil {
			if Code(err) == "" {
				t.Fatalf("error without a code: %v", err)
			}
			return
		}
		enc, err := EncodeCell(c)
		if err != nil {
			t.Fatalf("decoded cell does not encode: %v", err)
		}
		back, err := DecodeCell(key, enc)
		if err != nil {
			t.Fatalf("re-encoded cell does not decode: %v\n%s", err, enc)
		}
		enc2, _ := EncodeCell(back)
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable:\n%s\n%s", enc, enc2)
		}
		// Aggregating a decoded cell never panics.
		_ = Aggregate(Cells{key: c}, Range{}, 0).GoldenReport(true)
		_ = Aggregate(Cells{key: c}, Range{}, 0).CanaryReport()
	})
}

func FuzzHistogramJSON(f *testing.F) {
	f.Add([]byte(`{"n":2,"sum":40,"min":3,"max":37,"b":[[3,1],[34,1]]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var h Histogram
		if err := h.UnmarshalJSON(b); err != nil {
			return
		}
		_ = h.Quantile(0.99)
		_ = h.Buckets()
		enc, err := h.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		var back Histogram
		if err := back.UnmarshalJSON(enc); err != nil || !back.Equal(&h) {
			t.Fatalf("round trip: %v %s", err, enc)
		}
	})
}

// outcomeOf is the terminal outcome an event type (as a timeline names it)
// announces, or "".
func outcomeOf(t string) string {
	o, _ := thread.Outcome(schemas.EventType(t))
	return o
}

// TestFoldDriftWindow: a gate.drift window event (keyed and traced
// drift/<kind>/<route>, about no run) makes no run part and no golden-path
// hop; the gates projection counts it as drift_window, apart from the
// runs' drift gate.
func TestFoldDriftWindow(t *testing.T) {
	t.Parallel()
	src := Source{thread.TopicGatePrefix + thread.DriftGate, 1}
	window := &schemas.RuntimeEvent{
		EventID: "w1", TraceID: thread.DriftTrace("summarize", "canary"), SpanID: "s", Actor: "spine-drift", Intent: "summarize",
		SchemaVersion: schemas.V2, Timestamp: t0, RunStarted: t0, Phase: schemas.PhaseGate, EventType: thread.GateFailed, State: "window",
		Route: "canary", Gate: &schemas.GateOutcome{Name: thread.DriftGate, Reason: "window 3 drifted: ks:score", Rule: "ks:score"},
	}
	run := &schemas.RuntimeEvent{
		EventID: "r1", TraceID: "run-1", SpanID: "s2", Intent: "summarize", SchemaVersion: schemas.V2, Timestamp: t0, RunStarted: t0,
		Phase: schemas.PhaseGate, EventType: thread.GatePassed, Route: "canary", Gate: &schemas.GateOutcome{Name: thread.DriftGate, Passed: true},
	}
	p := Folder{}.Plan(src, window, schemas.V2)
	if p.Runs != "" || p.Golden != "" || p.Gates == "" {
		t.Errorf("plan of a drift window %+v: want only the gates projection", p)
	}
	cells := Cells{}
	Folder{}.Fold(cells, src, window, schemas.V2)
	Folder{}.Fold(cells, src, run, schemas.V2)
	g := cells[p.Gates].(*GatesCell)
	if w, d := g.Gates[thread.DriftWindowStat], g.Gates[thread.DriftGate]; w == nil || w.Failed != 1 || w.Passed != 0 || d == nil || d.Passed != 1 || d.Failed != 0 {
		t.Errorf("gates cell %+v", g.Gates)
	}
	for k := range cells {
		if k != p.Gates && !bytes.Contains([]byte(k), []byte("run-1")) && !bytes.HasPrefix([]byte(k), []byte(thread.ProjGolden)) {
			t.Errorf("unexpected cell %s", k)
		}
	}
}

// TestFoldKeyCacheSameCells: a Folder that remembers its last aggregate
// keys and its short strings (the replay's) folds exactly the cells a
// plain one does, however the sources, windows, versions and routes
// interleave, and whatever strings the events carry.
func TestFoldKeyCacheSameCells(t *testing.T) {
	t.Parallel()
	runs := append(synth(21, 300, "baseline", schemas.V1, 4), synth(22, 300, "canary", schemas.V2, 0)...)
	recs := interleave(3, runs)
	// Strings kept changes (invalid UTF-8, past a limit) and long ones,
	// each twice, so a cache that kept them would be read.
	odd := func(r rec, f func(*schemas.RuntimeEvent)) rec {
		ev := *r.ev
		f(&ev)
		return rec{r.src, &ev}
	}
	for range 2 {
		recs = append(recs,
			odd(recs[0], func(e *schemas.RuntimeEvent) { e.Route = "can\xffary" }),
			odd(recs[1], func(e *schemas.RuntimeEvent) { e.EventType = schemas.EventType(strings.Repeat("x", 70)) }),
			odd(recs[2], func(e *schemas.RuntimeEvent) { e.Actor = "actor\xfe"; e.State = strings.Repeat("s", 40) }))
	}
	plain := encodeAll(t, foldAll(Folder{Window: time.Second}, recs))
	canon := map[string]string{}
	cached := encodeAll(t, foldAll(Folder{Window: time.Second, last: &aggKeys{}, canon: canon}, recs))
	if !reflect.DeepEqual(plain, cached) {
		t.Fatalf("cached keys fold %d cells, plain %d, or different ones", len(cached), len(plain))
	}
	if len(canon) == 0 || canon["canary"] != "canary" {
		t.Fatalf("the string cache holds %v", canon)
	}
	for k := range canon {
		if len(k) > canonLen || strings.ContainsRune(k, utf8.RuneError) {
			t.Errorf("the string cache holds %q", k)
		}
	}
	windows := map[string]bool{}
	for k := range plain {
		if kk, _ := ParseKey(k); kk.Projection == thread.ProjGolden {
			windows[kk.Window.String()+kk.Route+kk.Version] = true
		}
	}
	if len(windows) < 4 {
		t.Fatalf("the thread spans %d golden windows: too few to exercise the cache", len(windows))
	}
}
