package dataplane_test

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/dataplane"
	"github.com/spinerun/spine/processors/dataplane/synthetic"
	"github.com/spinerun/spine/processors/thread"
	"github.com/spinerun/spine/schemas"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func dispatch(trace string, attempt int32, route string) *schemas.RuntimeEvent {
	return &schemas.RuntimeEvent{
		EventID: thread.ID(trace, "o", "2"), TraceID: trace, SpanID: thread.SpanID(trace, "o", thread.Step(uint32(2+attempt))),
		ParentSpanID: "p", Actor: "alice", Intent: "summarize", SchemaVersion: schemas.V2, Timestamp: t0, RunStarted: t0,
		Phase: schemas.PhaseControl, EventType: thread.RunDispatch, State: "dispatched", Route: route, Attempt: attempt,
		Priority: 3, Tenant: "acme", Attributes: map[string]string{"claims.sub": "alice"},
	}
}

func newDP(t *testing.T, cfg dataplane.Config) *dataplane.Dataplane {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return t0 }
	}
	d, err := dataplane.New(pipeline.Layout{Prefix: "t."}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func handle(t *testing.T, d *dataplane.Dataplane, ev *schemas.RuntimeEvent, v schemas.ContractVersion) []*schemas.RuntimeEvent {
	t.Helper()
	res, err := d.Handle(t.Context(), nil, pipeline.Input{Topic: "t.spine.control", Key: []byte(ev.TraceID), Value: ev, Version: v})
	if err != nil {
		t.Fatal(err)
	}
	if res.StateChanged {
		t.Fatal("the dataplane keeps no state")
	}
	var evs []*schemas.RuntimeEvent
	for _, o := range res.Outputs {
		if o.Topic != "t.spine.dataplane" || string(o.Key) != ev.TraceID || o.Version != v {
			t.Fatalf("output to %s key %q version %v", o.Topic, o.Key, o.Version)
		}
		evs = append(evs, o.Value.(*schemas.RuntimeEvent))
	}
	return evs
}

func TestDelivered(t *testing.T) {
	t.Parallel()
	d := newDP(t, dataplane.Config{})
	disp := dispatch("tr-1", 0, thread.RouteCanary)
	evs := handle(t, d, disp, schemas.V2)
	want := []string{thread.DataplaneDispatched, thread.DataplaneStarted, thread.ArtifactDelivered}
	if len(evs) != 3 {
		t.Fatalf("%d events", len(evs))
	}
	ids := map[string]bool{}
	for i, e := range evs {
		if e.EventType != want[i] || e.ParentSpanID != disp.SpanID || e.Phase != schemas.PhaseData || e.TraceID != "tr-1" ||
			e.Actor != "alice" || e.Intent != "summarize" || e.Route != thread.RouteCanary || e.SchemaVersion != schemas.V2 ||
			!e.RunStarted.Equal(t0) || e.Tenant != "acme" || e.Priority != 3 || ids[e.EventID] || e.SpanID == "" {
			t.Errorf("event %d: %+v", i, e)
		}
		ids[e.EventID] = true
	}
	a := evs[2]
	if a.ArtifactID != dataplane.ArtifactID("tr-1", disp.SpanID) || a.Artifact == nil || a.Artifact.Summary == "" ||
		a.Artifact.Score < 0 || a.Artifact.Score > 1 || a.Artifact.LatencyMs <= 0 || a.Usage == nil || a.Attributes["claims.sub"] != "alice" {
		t.Fatalf("artifact.delivered: %+v %+v", a, a.Artifact)
	}
}

func TestDeterministic(t *testing.T) {
	t.Parallel()
	d := newDP(t, dataplane.Config{})
	a := handle(t, d, dispatch("tr-d", 0, ""), schemas.V1)
	b := handle(t, newDP(t, dataplane.Config{}), dispatch("tr-d", 0, ""), schemas.V1)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("the same dispatch gave two answers")
	}
	if a[0].Route != thread.RouteBaseline {
		t.Fatalf("a V1 dispatch without route is baseline, got %q", a[0].Route)
	}
	c := handle(t, d, dispatch("tr-d", 1, ""), schemas.V1)
	if c[2].ArtifactID == a[2].ArtifactID || c[0].EventID == a[0].EventID {
		t.Fatal("a retry (new dispatch) reused the ids of attempt 0")
	}
}

func TestIgnoresOtherEvents(t *testing.T) {
	t.Parallel()
	d := newDP(t, dataplane.Config{})
	for _, typ := range []string{thread.IntentReceived, thread.RunRouted, thread.RunCompleted, thread.ArbitrationGrant} {
		ev := dispatch("tr", 0, "")
		ev.EventType = typ
		if evs := handle(t, d, ev, schemas.V1); len(evs) != 0 {
			t.Fatalf("%s produced %d events", typ, len(evs))
		}
	}
}

func TestExecutorOutcomes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		err   error
		types []string
		kind  string
	}{
		{"exec error", &dataplane.ExecError{Kind: "rate_limited", Err: errors.New("429")}, []string{thread.DataplaneDispatched, thread.DataplaneStarted, thread.DataplaneFailed}, "rate_limited: 429"},
		{"plain error", errors.New("boom"), []string{thread.DataplaneDispatched, thread.DataplaneStarted, thread.DataplaneFailed}, "execution: boom"},
		{"deadline", context.DeadlineExceeded, []string{thread.DataplaneDispatched, thread.DataplaneStarted, thread.DataplaneFailed}, "timeout: context deadline exceeded"},
		{"never answers", dataplane.ErrNoAnswer, []string{thread.DataplaneDispatched, thread.DataplaneStarted}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := newDP(t, dataplane.Config{Executor: dataplane.ExecutorFunc(func(context.Context, dataplane.Request) (dataplane.Result, error) {
				return dataplane.Result{}, tc.err
			})})
			evs := handle(t, d, dispatch("tr", 0, ""), schemas.V2)
			var got []string
			for _, e := range evs {
				got = append(got, e.EventType)
			}
			if !reflect.DeepEqual(got, tc.types) {
				t.Fatalf("events %v, want %v", got, tc.types)
			}
			if tc.kind != "" && (evs[2].Error == nil || *evs[2].Error != tc.kind) {
				t.Fatalf("error %v, want %q", evs[2].Error, tc.kind)
			}
		})
	}
	t.Run("handler context ends", func(t *testing.T) {
		t.Parallel()
		d := newDP(t, dataplane.Config{Routes: map[string]synthetic.Params{"baseline": {LatencyMean: time.Hour}}, Sleep: true})
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := d.Handle(ctx, nil, pipeline.Input{Value: dispatch("tr", 0, ""), Version: schemas.V1})
		if err == nil || pipeline.CodeOf(err) != "" {
			t.Fatalf("a cancelled handler must return a transient error, got %v", err)
		}
	})
	t.Run("exec timeout", func(t *testing.T) {
		t.Parallel()
		d := newDP(t, dataplane.Config{Routes: map[string]synthetic.Params{"baseline": {LatencyMean: time.Hour}}, Sleep: true, ExecTimeout: 10 * time.Millisecond})
		evs := handle(t, d, dispatch("tr", 0, ""), schemas.V2)
		if last := evs[len(evs)-1]; last.EventType != thread.DataplaneFailed || !strings.HasPrefix(*last.Error, "timeout: ") {
			t.Fatalf("exec timeout: %+v", last)
		}
	})
}

func TestSynthetic(t *testing.T) {
	t.Parallel()
	p := synthetic.Params{LatencyMean: 100 * time.Millisecond, LatencyP99: 400 * time.Millisecond, FailureRate: 0.1, HangRate: 0.05, ScoreMean: 0.7, ScoreStddev: 0.05}
	const n = 40000
	var lat []float64
	var failed, hung int
	var score float64
	for i := range n {
		o := synthetic.Generate(p, "seed-"+thread.Step(uint32(i)), "summarize")
		lat = append(lat, float64(o.Latency))
		switch o.Kind {
		case synthetic.Failed:
			failed++
		case synthetic.Hung:
			hung++
		default:
			score += o.Score
			if o.Score < 0 || o.Score > 1 || o.Text == "" {
				t.Fatalf("bad artifact %+v", o)
			}
		}
	}
	mean := 0.0
	for _, l := range lat {
		mean += l
	}
	mean /= n
	slices.Sort(lat)
	p99 := lat[n*99/100]
	within := func(name string, got, want, tol float64) {
		if got < want*(1-tol) || got > want*(1+tol) {
			t.Errorf("%s = %.4g, want %.4g ±%.0f%%", name, got, want, tol*100)
		}
	}
	within("mean latency", mean, float64(p.LatencyMean), 0.05)
	within("p99 latency", p99, float64(p.LatencyP99), 0.08)
	within("failure rate", float64(failed)/n, p.FailureRate, 0.1)
	within("hang rate", float64(hung)/n, p.HangRate, 0.15)
	within("score mean", score/float64(n-failed-hung), p.ScoreMean, 0.01)
	if a, b := synthetic.Generate(p, "x", "classify"), synthetic.Generate(p, "x", "classify"); a != b {
		t.Fatal("same seed, different outcome")
	}
	for _, bad := range []synthetic.Params{{FailureRate: 1.5}, {HangRate: -1}, {FailureRate: 0.6, HangRate: 0.6}, {LatencyMean: -1}, {ScoreStddev: -1}} {
		if bad.Validate() == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if _, err := dataplane.New(pipeline.Layout{}, dataplane.Config{Routes: map[string]synthetic.Params{"canary": {FailureRate: 2}}}); err == nil {
		t.Error("dataplane accepted an invalid route")
	}
}

func TestSummarize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"hello", 10, "hello"},
		{"hello", 3, "hel"},
		{"héllo", 2, "h"},
		{"h\xffllo", 10, "h\uFFFDllo"},
		{strings.Repeat("é", 3000), schemas.MaxSummaryBytes, strings.Repeat("é", schemas.MaxSummaryBytes/2)},
	} {
		got := dataplane.Summarize(tc.in, tc.n)
		if got != tc.want || len(got) > tc.n || !utf8.ValidString(got) {
			t.Errorf("Summarize(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}
