package drift_test

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spinerun/spine/gates"
	"github.com/spinerun/spine/internal/spinetest"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/drift"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// gen draws seeded samples like the synthetic executor's artifacts: score
// ~ N(0.8+scoreShift, 0.1) in [0,1], length ~ N(600, 80), latency
// log-normal (mean 50 ms, p99 about 200 ms) times latencyX, tokens ~
// N(150, 30).
type gen struct {
	rng        *rand.Rand
	kind       string
	route      string
	scoreShift float64
	latencyX   float64
}

func (g *gen) next() drift.Sample {
	const sigma = 0.7
	mu := math.Log(50) - sigma*sigma/2
	lx := g.latencyX
	if lx == 0 {
		lx = 1
	}
	s := drift.Sample{Kind: g.kind, Route: g.route, Has: 1<<gates.NumDriftMetrics - 1}
	s.Values[gates.MetricScore] = float32(min(max(0.8+g.scoreShift+0.1*g.rng.NormFloat64(), 0.001), 1))
	s.Values[gates.MetricLength] = float32(math.Round(600 + 80*g.rng.NormFloat64()))
	s.Values[gates.MetricLatency] = float32(math.Round(lx * math.Exp(mu+sigma*g.rng.NormFloat64())))
	s.Values[gates.MetricTokens] = float32(math.Round(150 + 30*g.rng.NormFloat64()))
	return s
}

// feeder runs samples through a monitor's Handle, carrying the state as
// the loop would.
type feeder struct {
	t     testing.TB
	m     *drift.Monitor
	state []byte
	n     int
}

// add handles one sample and returns the gate.drift event and status it
// emitted, if any.
func (f *feeder) add(s drift.Sample) (*schemas.RuntimeEvent, *gates.DriftStatus) {
	f.t.Helper()
	f.n++
	res, err := f.m.Handle(context.Background(), f.state, pipeline.Input{
		Topic: "spine.drift.samples", Key: []byte(thread.DriftKey(s.Kind, s.Route)), Value: &s,
		Timestamp: time.Unix(1_800_000_000, 0).Add(time.Duration(f.n) * time.Millisecond),
	})
	if err != nil || !res.StateChanged {
		f.t.Fatalf("handle: %v (state changed %v)", err, res.StateChanged)
	}
	f.state = res.State
	if len(res.Outputs) == 0 {
		return nil, nil
	}
	if len(res.Outputs) != 2 {
		f.t.Fatalf("%d outputs, want the event and the status", len(res.Outputs))
	}
	ev := res.Outputs[0].Value.(*schemas.RuntimeEvent)
	var st gates.DriftStatus
	if err := json.Unmarshal(res.Outputs[1].Raw, &st); err != nil {
		f.t.Fatal(err)
	}
	return ev, &st
}

func newMonitor(t testing.TB, window int) *drift.Monitor {
	t.Helper()
	c := gates.DefaultDriftConfig()
	c.Window = window
	m, err := drift.New(pipeline.Layout{}, drift.Config{Drift: c})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMonitorEmitsOneEventPerWindow(t *testing.T) {
	t.Parallel()
	m := newMonitor(t, 200)
	f := &feeder{t: t, m: m}
	g := &gen{rng: rand.New(rand.NewPCG(7, 7)), kind: "summarize", route: "canary"}
	var events []*schemas.RuntimeEvent
	for range 200 + 3*200 {
		if ev, st := f.add(g.next()); ev != nil {
			events = append(events, ev)
			if st.Kind != "summarize" || st.Route != "canary" || st.Window != int64(len(events)) || st.NRef != 200 || st.NCur != 200 {
				t.Errorf("status %+v", st)
			}
		}
	}
	if len(events) != 3 {
		t.Fatalf("%d events for the reference and 3 windows, want 3", len(events))
	}
	ev := events[2]
	g3 := ev.Gate
	if ev.TraceID != "drift/summarize/canary" || ev.EventType != thread.GatePassed || ev.Phase != schemas.PhaseGate || ev.Route != "canary" ||
		g3.Name != "drift" || !g3.Passed || g3.Rule == "" || g3.Threshold <= 0 || g3.PolicyVersion == "" ||
		g3.Evidence["n_ref"] != "200" || g3.Evidence["n_cur"] != "200" || g3.Evidence["window"] != "3" ||
		g3.Evidence["kind"] != "summarize" || g3.Evidence["route"] != "canary" || g3.Evidence["ks:score"] == "" {
		t.Errorf("event %+v gate %+v", ev, g3)
	}
	if err := ev.ValidateAt(ev.Timestamp); err != nil {
		t.Errorf("event does not validate: %v", err)
	}
}

// TestMonitorDetectionDelay runs 100 seeded streams: a reference of 200,
// two unshifted windows, then a shift that starts at a random sample of
// the next window. It reports how many samples after the shift began the
// first failed gate.drift came, and bounds it: within 2 windows (400
// samples), for a mean score +0.15 (1.5 sd) and for latency ×2.
func TestMonitorDetectionDelay(t *testing.T) {
	t.Parallel()
	const window = 200
	for _, tc := range []struct {
		name string
		set  func(g *gen)
	}{
		{"score +0.15", func(g *gen) { g.scoreShift = 0.15 }},
		{"latency x2", func(g *gen) { g.latencyX = 2 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var delays []int
			falseAlarms := 0
			for seed := range uint64(100) {
				rng := rand.New(rand.NewPCG(seed, 0xde1a7))
				f := &feeder{t: t, m: newMonitor(t, window)}
				g := &gen{rng: rng, kind: "k", route: "baseline"}
				for range 3 * window {
					if ev, _ := f.add(g.next()); ev != nil && !ev.Gate.Passed {
						falseAlarms++
					}
				}
				for range rng.IntN(window) {
					if ev, _ := f.add(g.next()); ev != nil {
						t.Fatalf("an event inside a window")
					}
				}
				tc.set(g)
				delay := -1
				for i := 1; i <= 3*window; i++ {
					if ev, st := f.add(g.next()); ev != nil && !ev.Gate.Passed {
						if !st.Drifted {
							t.Fatalf("failed event, status not drifted")
						}
						delay = i
						break
					}
				}
				if delay < 0 || delay > 2*window {
					t.Errorf("seed %d: detected after %d samples, want within %d", seed, delay, 2*window)
				}
				delays = append(delays, delay)
			}
			slices.Sort(delays)
			sum := 0
			for _, d := range delays {
				sum += d
			}
			t.Logf("%s: detected after %d samples on average, median %d, max %d (windows of %d, shift at a random sample of a window); %d false alarms in the 200 unshifted windows before",
				tc.name, sum/len(delays), delays[len(delays)/2], delays[len(delays)-1], window, falseAlarms)
			if falseAlarms > 10 {
				t.Errorf("%d false alarms in 200 unshifted windows, want <= 5%%", falseAlarms)
			}
		})
	}
}

// TestMonitorFalseAlarmRate runs 120 unshifted windows of 200 (10 seeded
// streams of 12 windows after their reference) through the monitor.
func TestMonitorFalseAlarmRate(t *testing.T) {
	t.Parallel()
	windows, alarms := 0, 0
	for seed := range uint64(10) {
		f := &feeder{t: t, m: newMonitor(t, 200)}
		g := &gen{rng: rand.New(rand.NewPCG(seed, 0xfa15e)), kind: "k", route: "baseline"}
		for range 200 * 13 {
			if ev, _ := f.add(g.next()); ev != nil {
				windows++
				if !ev.Gate.Passed {
					alarms++
				}
			}
		}
	}
	t.Logf("false alarms through the monitor: %d of %d unshifted windows of 200", alarms, windows)
	if windows != 120 || float64(alarms) > 0.05*float64(windows) {
		t.Errorf("%d alarms in %d windows, want 120 windows and <= 5%%", alarms, windows)
	}
}

func TestWindowsEncodeRoundTrip(t *testing.T) {
	t.Parallel()
	g := &gen{rng: rand.New(rand.NewPCG(1, 1))}
	w := &drift.Windows{Evaluated: 7, Drifted: true, RefSize: 30}
	for range 30 {
		s := g.next()
		s.Kind, s.Route = "", ""
		w.Ref = append(w.Ref, s)
	}
	w.Cur = append(w.Cur, w.Ref[:5]...)
	got, err := drift.DecodeWindows(w.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if got.Evaluated != 7 || !got.Drifted || got.RefSize != 30 || !slices.Equal(got.Ref, w.Ref) || !slices.Equal(got.Cur, w.Cur) {
		t.Errorf("round trip: %+v", got)
	}
	if e, err := drift.DecodeWindows(nil); err != nil || len(e.Ref) != 0 {
		t.Errorf("empty state: %+v %v", e, err)
	}
	noRef := (&drift.Windows{Ref: w.Ref[:1]}).Encode()
	for _, bad := range [][]byte{{9}, {3}, {3, 0, 0, 5}, append(w.Encode(), 0), noRef} {
		if _, err := drift.DecodeWindows(bad); err == nil {
			t.Errorf("DecodeWindows(%x) decoded", bad)
		}
	}
}

func TestSampleOfAndRoundTrip(t *testing.T) {
	t.Parallel()
	ev := &schemas.RuntimeEvent{Intent: "summarize", Route: "canary",
		Artifact: &schemas.ArtifactSummary{Score: 0.75, SizeBytes: 512, LatencyMs: 42}, Usage: &schemas.Usage{OutputTokens: 99}}
	s, ok := drift.SampleOf(ev, "canary")
	if !ok || s.Kind != "summarize" || s.Route != "canary" || s.Has != 0b1111 || s.Values != [4]float32{0.75, 512, 42, 99} {
		t.Fatalf("SampleOf: %+v %v", s, ok)
	}
	// A model API: no score, no usage.
	ev.Artifact.Score, ev.Usage = 0, nil
	if s, _ := drift.SampleOf(ev, "baseline"); s.Present(gates.MetricScore) || s.Present(gates.MetricTokens) || !s.Present(gates.MetricLatency) {
		t.Errorf("presence %04b", s.Has)
	}
	if _, ok := drift.SampleOf(&schemas.RuntimeEvent{}, "baseline"); ok {
		t.Error("a sample of an event without artifact")
	}
	b := drift.AppendSample(nil, s)
	got, err := drift.DecodeSample(b)
	if err != nil || got != s {
		t.Errorf("round trip %+v %v, want %+v", got, err, s)
	}
	// The sampler keys it kind/route on the samples topic.
	out := drift.NewSampler(pipeline.Layout{Prefix: "x."}).Tap(gates.Subject{Event: ev})
	if len(out) != 1 || out[0].Topic != "x.spine.drift.samples" || string(out[0].Key) != "summarize/canary" || out[0].Raw == nil {
		t.Errorf("tap %+v", out)
	}
}

func TestCodecRejectsBadSamples(t *testing.T) {
	t.Parallel()
	l := pipeline.Layout{}
	c := drift.NewCodec(nil, l)
	if _, _, err := c.Decode(context.Background(), l.DriftSamples(), []byte{1}); pipeline.CodeOf(err) != "bad_drift_sample" {
		t.Errorf("bad sample: %v, want code bad_drift_sample", err)
	}
	v, _, err := c.Decode(context.Background(), l.DriftSamples(), drift.AppendSample(nil, drift.Sample{Kind: "k", Route: "r", Has: 1}))
	if s, ok := v.(*drift.Sample); err != nil || !ok || s.Kind != "k" {
		t.Errorf("good sample: %v %v", v, err)
	}
}

// FuzzDecodeSample: the sample decoder never panics, and what it decodes
// encodes to bytes that decode to the same sample.
func FuzzDecodeSample(f *testing.F) {
	f.Add(drift.AppendSample(nil, drift.Sample{Kind: "summarize", Route: "canary", Has: 0b1111, Values: [4]float32{0.8, 600, 50, 150}}))
	f.Add([]byte{1, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := drift.DecodeSample(b)
		if err != nil {
			return
		}
		again := drift.AppendSample(nil, s)
		s2, err := drift.DecodeSample(again)
		if err != nil || s2 != s || !bytes.Equal(drift.AppendSample(nil, s2), again) {
			t.Fatalf("round trip %x → %+v → %x → %+v, %v", b, s, again, s2, err)
		}
	})
}

func BenchmarkMonitorHandle(b *testing.B) {
	m := newMonitor(b, 200)
	f := &feeder{t: b, m: m}
	g := &gen{rng: rand.New(rand.NewPCG(3, 3)), kind: "k", route: "baseline"}
	ss := make([]drift.Sample, 1000)
	for i := range ss {
		ss[i] = g.next()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		f.add(ss[i%len(ss)])
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := drift.NewMetrics(reg)
	ev := func(passed bool) pipeline.Output {
		return pipeline.Output{Value: &schemas.RuntimeEvent{TraceID: thread.DriftTrace("k", "canary"), Intent: "k", Route: "canary",
			Gate: &schemas.GateOutcome{Name: "drift", Passed: passed, Measured: 0.5, Threshold: 0.25}}}
	}
	run := pipeline.Output{Value: &schemas.RuntimeEvent{TraceID: "run-1", Intent: "k", Gate: &schemas.GateOutcome{Name: "drift"}}}
	m.Committed([]pipeline.Output{ev(true), ev(false), run, {Raw: []byte("status")}})
	if got := spinetest.MetricValue(t, reg, "spine_drift_windows_total", "k", "canary", "drifted"); got != 1 {
		t.Errorf("drifted windows %v, want 1", got)
	}
	if got := spinetest.MetricValue(t, reg, "spine_drift_drifted", "k", "canary"); got != 1 {
		t.Errorf("drifted gauge %v, want 1", got)
	}
	if got := spinetest.MetricValue(t, reg, "spine_drift_statistic_ratio", "k", "canary"); got != 2 {
		t.Errorf("ratio %v, want 2", got)
	}
}

// TestMonitorReset: a kind drifted against its frozen reference stays
// drifted; a reset record drops the windows, publishes a status that is
// not drifted, and the next window of samples is the new reference.
func TestMonitorReset(t *testing.T) {
	t.Parallel()
	f := &feeder{t: t, m: newMonitor(t, 50)}
	g := &gen{rng: rand.New(rand.NewPCG(5, 5)), kind: "k", route: "canary"}
	for range 50 {
		f.add(g.next())
	}
	g.scoreShift = -0.3
	var last *gates.DriftStatus
	for range 100 {
		if _, st := f.add(g.next()); st != nil {
			last = st
		}
	}
	if last == nil || !last.Drifted || last.Window != 2 {
		t.Fatalf("after the shift: %+v, want window 2 drifted", last)
	}
	ev, st := f.add(drift.Reset("k", "canary"))
	if ev == nil || !ev.Gate.Passed || ev.Gate.Rule != "reset" || st.Drifted || st.Window != 2 || st.Evidence["dropped_ref"] != "50" {
		t.Fatalf("reset: %+v %+v", ev, st)
	}
	if err := ev.ValidateAt(ev.Timestamp); err != nil {
		t.Error(err)
	}
	for i := range 100 {
		ev, st := f.add(g.next())
		if (ev != nil) != (i == 99) {
			t.Fatalf("sample %d after the reset: event %v", i, ev)
		}
		if ev != nil && (st.Drifted || st.Window != 3) {
			t.Errorf("first window against the new reference: %+v", st)
		}
	}
	if b := drift.AppendSample(nil, drift.Reset("k", "canary")); b[1] != drift.ResetBit {
		t.Errorf("reset record %x", b)
	} else if s, err := drift.DecodeSample(b); err != nil || !s.IsReset() {
		t.Errorf("reset decodes as %+v %v", s, err)
	}
}

// TestMonitorStateAliasing: the monitor appends a sample in place only to
// the state it returned last for the key. A state the loop hands back after
// an aborted batch (an older one), or one restored from a fetch buffer with
// other records after it, is copied: no byte of it, nor after it, changes.
func TestMonitorStateAliasing(t *testing.T) {
	t.Parallel()
	m := newMonitor(t, 50)
	g := &gen{rng: rand.New(rand.NewPCG(8, 8)), kind: "k", route: "baseline"}
	handle := func(state []byte, s drift.Sample) []byte {
		t.Helper()
		res, err := m.Handle(context.Background(), state, pipeline.Input{Key: []byte("k/baseline"), Value: &s, Timestamp: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		return res.State
	}
	var x []byte
	for range 10 {
		x = handle(x, g.next())
	}
	before := slices.Clone(x)
	a, b := g.next(), g.next()
	xa := handle(x, a) // in place: x is the monitor's last
	xb := handle(x, b) // x again: an aborted batch's retry
	if !slices.Equal(x, before) {
		t.Fatal("the older state's bytes changed")
	}
	wa, _ := drift.DecodeWindows(xa)
	wb, _ := drift.DecodeWindows(xb)
	if len(wa.Ref) != 11 || len(wb.Ref) != 11 || wb.Ref[10].Values != b.Values || wa.Ref[10].Values != a.Values {
		t.Fatalf("after the retry: %d and %d samples, last %+v and %+v", len(wa.Ref), len(wb.Ref), wa.Ref[10], wb.Ref[10])
	}
	// A restored state: a slice of a buffer with another record after it.
	buf := append(slices.Clone(x), []byte("another record's bytes")...)
	restored := buf[:len(x)]
	handle(restored, g.next())
	if string(buf[len(x):]) != "another record's bytes" {
		t.Fatalf("the bytes after a restored state changed: %q", buf[len(x):])
	}
}
