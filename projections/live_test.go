package projections

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/internal/spinetest"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// Live's per-second figures add up to the 10 s projections' (the same
// histograms, so the percentiles are equal, not close), its funnel names
// where runs fell out and why, and its run view lists a run's events in
// time order.
func TestLiveMatchesTheProjections(t *testing.T) {
	t.Parallel()
	now := t0.Add(10 * time.Second)
	l := newLive(func() time.Time { return now })
	runs := slices.Concat(synth(41, 60, "baseline", schemas.V1, 10), synth(42, 40, "canary", schemas.V2, 4))
	recs := interleave(3, runs)
	for _, r := range recs {
		l.Observe(r.src, r.ev, r.ev.SchemaVersion)
	}
	s := l.Snapshot(time.Minute)
	if s.Seconds != 60 || len(s.Times) != 60 || s.Times[59] != now.Unix() || !s.To.Equal(now.Truncate(time.Second).Add(time.Second)) {
		t.Fatalf("span %d seconds %v..%v, times %d", s.Seconds, s.From, s.To, len(s.Times))
	}
	if s.Observed != int64(len(recs)) {
		t.Fatalf("observed %d, want %d", s.Observed, len(recs))
	}

	golden := Aggregate(foldAll(Folder{}, recs), Range{}, 0).GoldenReport(false)
	if len(golden.Groups) != 2 || len(s.Groups) != 2 {
		t.Fatalf("groups: live %d, projections %d", len(s.Groups), len(golden.Groups))
	}
	for i, gg := range golden.Groups {
		lg := s.Groups[i]
		if lg.Group != gg.Group {
			t.Fatalf("group %d: live %v, projections %v", i, lg.Group, gg.Group)
		}
		for _, hop := range []string{"intent.received", "dataplane.dispatched", "artifact.delivered"} {
			if lg.Counts[hop] != gg.Hops[hop].Count {
				t.Errorf("%v %s: live %d, projections %d", gg.Group, hop, lg.Counts[hop], gg.Hops[hop].Count)
			}
		}
		var received, terminal int64
		for i := range s.Times {
			received += lg.Received[i]
			terminal += lg.Terminal[i]
		}
		if received != gg.Hops["intent.received"].Count || terminal != gg.Terminals {
			t.Errorf("%v: per-second sums received %d terminal %d; projections %d %d", gg.Group, received, terminal, gg.Hops["intent.received"].Count, gg.Terminals)
		}
		for o, st := range gg.EndToEnd {
			if lg.Counts[o] != st.Count {
				t.Errorf("%v %s: live %d, projections %d", gg.Group, o, lg.Counts[o], st.Count)
			}
		}
		if lg.Latency != gg.AllEnd.Latency {
			t.Errorf("%v: live latency %+v, projections %+v", gg.Group, lg.Latency, gg.AllEnd.Latency)
		}
	}

	// The funnel: 100 runs received, dispatched and delivered; 16 rejected
	// at the verdict for their performance gate, with an example.
	want := []int64{100, 100, 100, 100, 84}
	for i, f := range s.Funnel {
		if f.Stage != string(FunnelStages[i]) || f.Reached != want[i] {
			t.Fatalf("funnel stage %d: %+v, want %s reached by %d", i, f, FunnelStages[i], want[i])
		}
	}
	drop := s.Funnel[3]
	if drop.Dropped != 16 || len(drop.Reasons) != 1 || drop.Reasons[0].Reason != "rejected: performance: latency #ms over budget #ms" || drop.InFlight != 0 {
		t.Fatalf("drop at the verdict: %+v", drop)
	}
	ex, ok := l.RunEvents(drop.Reasons[0].Example)
	if !ok || ex[len(ex)-1].EventType != string(thread.RunRejected) {
		t.Fatalf("example %q of the drop: %v", drop.Reasons[0].Example, ex)
	}

	// Gates: the performance gate's failures, with a pass rate per second.
	var perf *LiveGate
	for i := range s.Gates {
		if s.Gates[i].Name == "performance" {
			perf = &s.Gates[i]
		}
	}
	if perf == nil || perf.Failed != 16 || perf.Passed != 84 || !slices.ContainsFunc(perf.Series, func(p *float64) bool { return p != nil && *p < 1 }) {
		t.Fatalf("performance gate %+v", perf)
	}

	// The run view: the run's events in time order.
	r := runs[0]
	evs, ok := l.RunEvents(r.trace)
	if !ok || len(evs) != len(r.events()) {
		t.Fatalf("run %s: %d events, want %d", r.trace, len(evs), len(r.events()))
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].At.Before(evs[i-1].At) || evs[i].SinceMs < evs[i-1].SinceMs {
			t.Fatalf("events out of order at %d: %+v then %+v", i, evs[i-1], evs[i])
		}
	}
	if evs[0].EventType != "intent.received" || evs[len(evs)-1].EventType != "run.rejected" {
		t.Fatalf("run %s (failing every 10th, so rejected): %s … %s", r.trace, evs[0].EventType, evs[len(evs)-1].EventType)
	}

	// Ten minutes later the span is empty; the runs stay in the run view.
	now = now.Add(10 * time.Minute)
	if s := l.Snapshot(time.Minute); len(s.Groups) != 0 || s.Funnel[0].Reached != 0 {
		t.Fatalf("a span after the traffic shows %d groups, %d received", len(s.Groups), s.Funnel[0].Reached)
	}
	if _, ok := l.RunEvents(r.trace); !ok {
		t.Fatal("the run left the run view")
	}
}

// Canary analyses and drift windows are read from their events' gate and
// attributes; neither counts as a run.
func TestLiveCanaryAndDrift(t *testing.T) {
	t.Parallel()
	now := t0
	l := newLive(func() time.Time { return now })
	l.Observe(Source{Topic: "gate.canary"}, &schemas.RuntimeEvent{TraceID: "canary/rollout-1", EventType: thread.CanaryRollback, Timestamp: t0, Phase: schemas.PhaseGate,
		Gate:       &schemas.GateOutcome{Name: "canary", Reason: "rollback: success rate 0.5 below 0.95"},
		Attributes: map[string]string{"weight_before_bp": "5000", "weight_after_bp": "0", "phase_before": "progressing", "phase_after": "rolled_back", "canary.runs": "40"}}, schemas.V2)
	l.Observe(Source{Topic: "gate.drift"}, &schemas.RuntimeEvent{TraceID: thread.DriftTrace("summarize", "canary"), EventType: thread.GateFailed, Timestamp: t0, Phase: schemas.PhaseGate,
		Gate: &schemas.GateOutcome{Name: "drift", Reason: "drifted", Rule: "psi:score", Measured: 0.4, Threshold: 0.25, PolicyVersion: "drift-v1"}}, schemas.V2)
	s := l.Snapshot(time.Minute)
	if len(s.Canary) != 1 || s.Canary[0].Action != "rollback" || s.Canary[0].WeightBefore != 5000 || s.Canary[0].WeightAfter != 0 ||
		s.Canary[0].PhaseAfter != "rolled_back" || s.Canary[0].Evidence["canary.runs"] != "40" {
		t.Fatalf("analyses %+v", s.Canary)
	}
	if len(s.Drift) != 1 || s.Drift[0].Passed || s.Drift[0].Rule != "psi:score" || s.Drift[0].Measured != 0.4 {
		t.Fatalf("drift windows %+v", s.Drift)
	}
	if len(s.Groups) != 0 || len(s.Recent) != 0 || len(s.Gates) != 1 || s.Gates[0].Name != thread.DriftWindowStat || s.Gates[0].Failed != 1 {
		t.Fatalf("groups %v, recent runs %v, gates %+v: want only the drift window counted", s.Groups, s.Recent, s.Gates)
	}
}

// The runner gives Live each committed event once: after a clean stop and
// a restart on the same topics, Live has seen every event of the thread
// exactly once, and a run's events in the order of its thread.
func TestRunnerFeedsLiveOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	runs := synth(51, 30, "baseline", schemas.V1, 5)
	n := e.produce(t, runs[:15])
	l := NewLive()
	start := func() func() {
		r, err := NewRunner(RunnerConfig{Kafka: []kgo.Opt{kgo.SeedBrokers(e.brokers...)}, Layout: e.layout, Codec: e.codec, TransactionTimeout: 5 * time.Second, Live: l})
		if err != nil {
			t.Fatal(err)
		}
		return spinetest.Start(t, "runner", r.Run)
	}
	observed := func() int64 {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.observed
	}
	stop := start()
	spinetest.Eventually(t, 60*time.Second, func() error {
		if got := observed(); got != int64(n) {
			return fmt.Errorf("live observed %d events, want %d", got, n)
		}
		return nil
	})
	stop()
	n += e.produce(t, runs[15:])
	start()
	spinetest.Eventually(t, 60*time.Second, func() error {
		if got := observed(); got != int64(n) {
			return fmt.Errorf("live observed %d events, want %d", got, n)
		}
		return nil
	})
	r := runs[20]
	evs, ok := l.RunEvents(r.trace)
	if !ok {
		t.Fatalf("run %s not in the live view", r.trace)
	}
	var got, want []string
	for _, ev := range evs {
		got = append(got, ev.EventType)
	}
	for _, ev := range r.events() {
		want = append(want, string(ev.ev.EventType))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("run %s: live has %s, the thread %s", r.trace, strings.Join(got, " "), strings.Join(want, " "))
	}
}

// printable never panics and always gives valid UTF-8 without control
// characters but newline and tab, one output rune per input byte that is
// not part of a valid multi-byte rune.
func FuzzPrintable(f *testing.F) {
	for _, s := range []string{"", "plain", "\x00\x01\xff", "ünïcödé\n\t", "\xe2\x82", "magic \x00\x00\x00\x01\x02"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s := printable(b)
		if !utf8ValidNoControls(s) {
			t.Fatalf("printable(%q) = %q", b, s)
		}
	})
}

func utf8ValidNoControls(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) && r != '\n' && r != '\t' {
			return false
		}
	}
	return true
}

// The dashboard's endpoints: the page and its vendored chart library, the
// live view and the snapshot as JSON, the event stream, and clear 4xx for
// a bad span or an unknown run.
func TestDashboardEndpoints(t *testing.T) {
	t.Parallel()
	l := NewLive()
	runs := synth(61, 3, "baseline", schemas.V1, 0)
	for _, r := range interleave(1, runs) {
		ev := *r.ev
		ev.Timestamp, ev.RunStarted = time.Now(), time.Now() // inside the span
		l.Observe(r.src, &ev, schemas.V1)
	}
	srv := httptest.NewServer(NewAPI(NewMemStore(Cells{}, 0), WithLive(l), WithPanel("flags", func() any { return map[string]int{"rev": 3} })).Handler())
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		path, ctype string
		code        int
		body        string
	}{
		{"/", "text/html", 200, "EventSource"},
		{"/ui/uPlot.iife.min.js", "javascript", 200, "uPlot"},
		{"/ui/uPlot.min.css", "text/css", 200, ".uplot"},
		{"/v1/live?last=1m", "application/json", 200, `"events_observed"`},
		{"/v1/live?last=2h", "application/json", 400, "bad_query"},
		{"/v1/live?last=x", "application/json", 400, "want a duration from 1s to 15m0s"},
		{"/v1/dashboard?last=5m", "application/json", 200, `"flags":{"rev":3}`},
		{"/v1/dead-letters", "application/json", 404, "not_served"},
		{"/v1/runs/" + runs[0].trace + "/events", "application/json", 200, `"intent.received"`},
		{"/v1/runs/nope/events", "application/json", 404, "spine trace nope"},
	} {
		resp, err := http.Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || !strings.Contains(resp.Header.Get("Content-Type"), tc.ctype) || !strings.Contains(string(b), tc.body) {
			t.Errorf("GET %s = %d %s, want %d %s containing %q: %.300s", tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), tc.code, tc.ctype, tc.body, b)
		}
	}

	// The stream: snapshots as server-sent events, one at once and one a
	// second, each a DashboardSnapshot.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/v1/stream?last=1m", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream content type %q", resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<22)
	var snaps []DashboardSnapshot
	for len(snaps) < 2 && sc.Scan() {
		line := sc.Text()
		if data, ok := strings.CutPrefix(line, "data: "); ok {
			var s DashboardSnapshot
			if err := json.Unmarshal([]byte(data), &s); err != nil {
				t.Fatalf("event data: %v", err)
			}
			snaps = append(snaps, s)
		}
	}
	if len(snaps) != 2 || snaps[0].Live == nil || snaps[0].Live.Totals["intent.received"] != 3 || !snaps[1].At.After(snaps[0].At) {
		t.Fatalf("stream gave %d snapshots: %+v", len(snaps), snaps)
	}
}

// A run's terminal event can be committed before the events of its other
// topics (each topic-partition is its own stream): the drop moves to the
// furthest stage the run turns out to have reached.
func TestLiveDropMovesWithLateEvents(t *testing.T) {
	t.Parallel()
	l := newLive(func() time.Time { return t0.Add(5 * time.Second) })
	r := synth(71, 1, "baseline", schemas.V1, 1)[0] // failing: rejected at the verdict
	evs := r.events()
	slices.SortStableFunc(evs, func(a, b rec) int { // the control topic first
		return boolInt(a.src.Topic != "spine.control") - boolInt(b.src.Topic != "spine.control")
	})
	for _, e := range evs {
		l.Observe(e.src, e.ev, schemas.V1)
	}
	s := l.Snapshot(time.Minute)
	for i, f := range s.Funnel {
		want := int64(0)
		if FunnelStages[i] == thread.GateVerdict {
			want = 1
		}
		if f.Dropped != want {
			t.Fatalf("stage %s: %d dropped, want %d: %+v", f.Stage, f.Dropped, want, s.Funnel)
		}
	}
	if got := s.Funnel[3].Reasons; len(got) != 1 || got[0].Example != r.trace || !strings.HasPrefix(got[0].Reason, "rejected: ") {
		t.Fatalf("reasons at the verdict %+v", got)
	}
}

// An event stamped far ahead of the clock does not push the span away
// from every other event.
func TestLiveIgnoresFutureStamps(t *testing.T) {
	t.Parallel()
	l := newLive(func() time.Time { return t0 })
	r := synth(81, 2, "baseline", schemas.V1, 0)
	future := *r[0].events()[0].ev
	future.Timestamp = t0.Add(24 * time.Hour)
	l.Observe(Source{Topic: "spine.control"}, &future, schemas.V1)
	for _, e := range r[1].events() {
		l.Observe(e.src, e.ev, schemas.V1)
	}
	if s := l.Snapshot(time.Minute); s.Totals["intent.received"] != 1 || !s.To.Equal(t0.Add(time.Second)) {
		t.Fatalf("after a future stamp: received %d, span to %v", s.Totals["intent.received"], s.To)
	}
}

// Live keeps the events of the latest liveMaxRuns runs: the oldest leave
// as new ones come, and the recent runs are listed newest first.
func TestLiveKeepsTheLatestRuns(t *testing.T) {
	t.Parallel()
	l := newLive(func() time.Time { return t0.Add(time.Hour) })
	const extra = 10
	runs := synth(83, liveMaxRuns+extra, "baseline", schemas.V1, 0)
	for _, r := range runs {
		e := r.events()[0]
		l.Observe(e.src, e.ev, schemas.V1)
	}
	for i, r := range runs {
		_, ok := l.RunEvents(r.trace)
		if want := i >= extra; ok != want {
			t.Fatalf("run %d of %d: kept %v, want %v", i, len(runs), ok, want)
		}
	}
	s := l.Snapshot(time.Hour)
	if len(s.Recent) == 0 || s.Recent[0].TraceID != runs[len(runs)-1].trace {
		t.Fatalf("recent runs do not start with the newest %s: %+v", runs[len(runs)-1].trace, s.Recent[:min(3, len(s.Recent))])
	}
	for i := 1; i < len(s.Recent); i++ {
		if want := runs[len(runs)-1-i].trace; s.Recent[i].TraceID != want {
			t.Fatalf("recent run %d is %s, want %s", i, s.Recent[i].TraceID, want)
		}
	}
}
