package projections

import (
	"bytes"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/spinerun/spine/schemas"
)

// wantSameEncoding fails unless appendCell encodes c exactly as EncodeCell
// does, or declines (ok false) where it must.
func wantSameEncoding(t *testing.T, name string, c Cell, mustEncode bool) {
	t.Helper()
	want, werr := EncodeCell(c)
	got, ok := appendCell(nil, c)
	switch {
	case ok && werr != nil:
		t.Errorf("%s: appendCell encoded a cell EncodeCell refuses (%v):\n%s", name, werr, got)
	case ok && !bytes.Equal(got, want):
		t.Errorf("%s: appendCell differs from EncodeCell:\n got %s\nwant %s", name, got, want)
	case !ok && mustEncode:
		t.Errorf("%s: appendCell declined a plain cell (EncodeCell: %s)", name, want)
	}
}

func TestAppendCellMatchesEncodeCell(t *testing.T) {
	t.Parallel()
	runs := append(synth(11, 50, "baseline", schemas.V1, 3), synth(12, 50, "canary", schemas.V2, 0)...)
	runs = append(runs, runSpec{trace: "x-boom", route: "canary", version: schemas.V2, start: t0, execFail: true})
	for k, c := range foldAll(Folder{}, interleave(1, runs)) {
		wantSameEncoding(t, k, c, true)
	}

	score := 1e-9
	odd := &RunPart{
		TraceID: "t<&>\"\\\x01é\u2028\xff", Actor: "a b", Route: "canary", Tenant: "ten", Error: "line\nbreak",
		RunStarted: t0, LastAt: t0.Add(1500 * time.Microsecond), OutcomeAt: t0.Add(time.Nanosecond),
		Hops:  map[string]time.Time{"z": t0, "a<": t0.Add(time.Second), "é": t0},
		Gates: map[string]GateResult{"perf": {Reason: "slow & <late>", Measured: 1e21, Threshold: -1e-7, At: t0}, "ok": {Passed: true, Measured: 0.25}},
		Score: &score, Attempt: 3, Events: 9, Illegal: 2,
	}
	wantSameEncoding(t, "odd run part", odd, true)
	wantSameEncoding(t, "empty run part", &RunPart{TraceID: "t"}, true)
	// Times in one second and across seconds, with and without trailing
	// zeros, before 1970 and at the ends of the years encoding/json takes:
	// appendCell formats a second's date once.
	for i, at := range []time.Time{t0, time.Date(1969, 12, 31, 23, 59, 59, 999_000_000, time.UTC),
		time.Date(0, 1, 1, 0, 0, 0, 1, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 100, time.UTC)} {
		p := &RunPart{TraceID: "t", RunStarted: at, LastAt: at.Add(120 * time.Millisecond), OutcomeAt: at.Add(time.Second + 7),
			Hops: map[string]time.Time{"a": at.Add(time.Millisecond), "b": at.Add(10 * time.Millisecond), "c": at.Add(100 * time.Millisecond),
				"d": at.Add(999*time.Millisecond + 999_999), "e": at.Add(-time.Nanosecond), "f": at.Add(1500 * time.Millisecond)},
			Gates: map[string]GateResult{"g": {At: at.Add(3 * time.Second)}}}
		wantSameEncoding(t, fmt.Sprintf("times %d", i), p, i != 3) // 9999-12-31T23:59:59 + 1s is past 9999
	}

	g := &GoldenCell{Hops: map[string]*Stat{"b": {Count: 2}, "a": nil}, Events: map[string]int64{"x&y": 3, "a": -1}}
	g.Hops["b"].Latency.Record(123456)
	g.Hops["b"].Latency.Record(7)
	wantSameEncoding(t, "golden", g, true)
	wantSameEncoding(t, "empty golden", &GoldenCell{}, true)
	wantSameEncoding(t, "gates", &GatesCell{Gates: map[string]*GateStat{"s": {Passed: 1, Failed: 2, Reasons: map[string]int64{"b": 1, "a": 1}}, "n": nil}}, true)
	a := &ArtifactsCell{Count: 2, Bytes: 10, Failed: 1}
	a.Score.Record(5000)
	wantSameEncoding(t, "artifacts", a, true)

	// What encoding/json would refuse or write otherwise, appendCell
	// declines.
	nan := math.NaN()
	for name, c := range map[string]Cell{
		"NaN score":      &RunPart{TraceID: "t", Score: &nan},
		"infinite gate":  &RunPart{TraceID: "t", Gates: map[string]GateResult{"g": {Measured: math.Inf(1)}}},
		"zone not UTC":   &RunPart{TraceID: "t", LastAt: t0.In(time.FixedZone("x", 3600))},
		"year past 9999": &RunPart{TraceID: "t", LastAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		if got, ok := appendCell(nil, c); ok {
			t.Errorf("%s: appendCell encoded it: %s", name, got)
		}
	}
}

// FuzzAppendCell: every cell that decodes encodes the same through
// appendCell as through EncodeCell (or appendCell declines it).
func FuzzAppendCell(f *testing.F) {
	cells := foldAll(Folder{}, interleave(1, synth(13, 5, "canary", schemas.V2, 2)))
	for k, c := range cells {
		b, _ := EncodeCell(c)
		f.Add(k, b)
	}
	f.Add("runs|spine.control|0|t", []byte("\x01{\"trace_id\":\"t\\u003c\\u2028\",\"score\":1e-7,\"last_at\":\"2026-01-02T03:04:05.5Z\"}"))
	f.Fuzz(func(t *testing.T, key string, b []byte) {
		c, err := DecodeCell(key, b)
		if err != nil {
			return
		}
		wantSameEncoding(t, key, c, false)
	})
}
