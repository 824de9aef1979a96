package gates_test

import (
	"context"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spinerun/spine/gates"
	"github.com/spinerun/spine/schemas"
)

func delivered(mod func(*schemas.RuntimeEvent)) gates.Subject {
	ev := &schemas.RuntimeEvent{
		TraceID: "tr", SpanID: "sp", Actor: "alice", Intent: "summarize", ArtifactID: "art-1", EventType: "artifact.delivered",
		Artifact: &schemas.ArtifactSummary{ContentType: "text/plain", Summary: "a fine summary", Score: 0.8, SizeBytes: 100, LatencyMs: 120},
	}
	if mod != nil {
		mod(ev)
	}
	return gates.Subject{Event: ev, Version: schemas.V1}
}

func TestSchema(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		mod  func(*schemas.RuntimeEvent)
		code string
	}{
		{"valid", nil, "valid"},
		{"valid json", func(e *schemas.RuntimeEvent) {
			e.Artifact.ContentType, e.Artifact.Summary = "application/json", `{"label":"x"}`
		}, "valid"},
		{"valid with a charset", func(e *schemas.RuntimeEvent) { e.Artifact.ContentType = "text/plain; charset=utf-8" }, "valid"},
		{"json with a charset", func(e *schemas.RuntimeEvent) {
			e.Artifact.ContentType, e.Artifact.Summary, e.Artifact.SizeBytes = "application/json; charset=utf-8", `{"label":`, 9
		}, "invalid_json"},
		{"no artifact", func(e *schemas.RuntimeEvent) { e.Artifact = nil }, "missing_artifact"},
		{"no artifact id", func(e *schemas.RuntimeEvent) { e.ArtifactID = "" }, "missing_artifact_id"},
		{"unknown content type", func(e *schemas.RuntimeEvent) { e.Artifact.ContentType = "image/png" }, "unknown_content_type"},
		{"empty summary", func(e *schemas.RuntimeEvent) { e.Artifact.Summary = "" }, "empty_summary"},
		{"invalid utf8", func(e *schemas.RuntimeEvent) { e.Artifact.Summary = "a\xffb" }, "invalid_utf8"},
		{"too large", func(e *schemas.RuntimeEvent) { e.Artifact.Summary = strings.Repeat("x", schemas.MaxSummaryBytes+1) }, "summary_too_large"},
		{"score above", func(e *schemas.RuntimeEvent) { e.Artifact.Score = 1.01 }, "score_out_of_range"},
		{"score NaN", func(e *schemas.RuntimeEvent) { e.Artifact.Score = math.NaN() }, "score_out_of_range"},
		{"negative latency", func(e *schemas.RuntimeEvent) { e.Artifact.LatencyMs = -1 }, "negative_measure"},
		{"invalid json", func(e *schemas.RuntimeEvent) {
			e.Artifact.ContentType, e.Artifact.Summary, e.Artifact.SizeBytes = "application/json", `{"label":`, 9
		}, "invalid_json"},
		{"a large json artifact's summary is a cut", func(e *schemas.RuntimeEvent) {
			e.Artifact.ContentType, e.Artifact.Summary, e.Artifact.SizeBytes = "application/json", `{"label":"`+strings.Repeat("x", 100), 1<<20
		}, "valid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o, err := gates.Schema().Check(t.Context(), delivered(tc.mod))
			if err != nil {
				t.Fatal(err)
			}
			if o.Code != tc.code || o.Passed != (tc.code == "valid") || o.Reason == "" || o.Threshold != schemas.MaxSummaryBytes {
				t.Fatalf("outcome %+v, want code %s", o, tc.code)
			}
		})
	}
	if o, _ := gates.Schema("image/png").Check(t.Context(), delivered(func(e *schemas.RuntimeEvent) { e.Artifact.ContentType = "image/png" })); !o.Passed {
		t.Fatalf("configured content type refused: %+v", o)
	}
}

func TestPerformance(t *testing.T) {
	t.Parallel()
	c := gates.Performance(0, map[string]time.Duration{"classify": 500 * time.Millisecond})
	for _, tc := range []struct {
		kind    string
		latency int64
		passed  bool
		budget  float64
	}{
		{"summarize", 120, true, 2000},
		{"summarize", 2000, true, 2000},
		{"summarize", 2001, false, 2000},
		{"classify", 499, true, 500},
		{"classify", 501, false, 500},
	} {
		o, err := c.Check(t.Context(), delivered(func(e *schemas.RuntimeEvent) { e.Intent, e.Artifact.LatencyMs = tc.kind, tc.latency }))
		if err != nil {
			t.Fatal(err)
		}
		if o.Passed != tc.passed || o.Measured != float64(tc.latency) || o.Threshold != tc.budget {
			t.Errorf("%s %d ms: %+v", tc.kind, tc.latency, o)
		}
	}
	if o, _ := c.Check(t.Context(), delivered(func(e *schemas.RuntimeEvent) { e.Artifact = nil })); o.Passed || o.Code != "missing_artifact" {
		t.Errorf("no artifact: %+v", o)
	}
}

func TestParseBudgets(t *testing.T) {
	t.Parallel()
	got, err := gates.ParseBudgets(" summarize=1500ms, classify=0.5s ,")
	if err != nil || got["summarize"] != 1500*time.Millisecond || got["classify"] != 500*time.Millisecond || len(got) != 2 {
		t.Fatalf("%v %v", got, err)
	}
	for _, bad := range []string{"summarize", "=1s", "x=fast", "x=-1s", "x=0s"} {
		if _, err := gates.ParseBudgets(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// driftLike shows a stateful check fitting the interface unchanged: it keeps
// a rolling window of scores per route in its own state and reads a claim
// attribute, as policy and drift checks will.
type driftLike struct {
	mu     sync.Mutex
	window map[string][]float64
}

func (d *driftLike) Name() string { return "drift" }

func (d *driftLike) Check(_ context.Context, s gates.Subject) (gates.Outcome, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s.Attribute("claims.sub") != s.Event.Actor {
		return gates.Outcome{Code: "actor_mismatch", Reason: "token subject is not the actor"}, nil
	}
	w := append(d.window[s.Route()], s.Artifact().Score)
	d.window[s.Route()] = w
	sum := 0.0
	for _, v := range w {
		sum += v
	}
	m := sum / float64(len(w))
	return gates.Outcome{Passed: m > 0.5, Code: "window_mean", Measured: m, Threshold: 0.5}, nil
}

func TestStatefulCheckFits(t *testing.T) {
	t.Parallel()
	var c gates.Check = &driftLike{window: map[string][]float64{}}
	s := delivered(func(e *schemas.RuntimeEvent) { e.Attributes = map[string]string{"claims.sub": "alice"} })
	o1, _ := c.Check(t.Context(), s)
	s2 := delivered(func(e *schemas.RuntimeEvent) { e.Artifact.Score = 0 })
	s2.Headers = map[string]string{"claims.sub": "alice"}
	o2, _ := c.Check(t.Context(), s2)
	if !o1.Passed || o2.Measured != 0.4 || o2.Passed {
		t.Fatalf("window: %+v then %+v", o1, o2)
	}
	if s.Route() != "baseline" {
		t.Fatalf("a V1 event's route is baseline, got %q", s.Route())
	}
}
