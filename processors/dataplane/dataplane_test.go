package dataplane_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/spinerun/spine/adapters/synthetic"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/dataplane"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
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

// synth returns the synthetic executor with routes (nil: the defaults).
func synth(tb testing.TB, routes map[string]synthetic.Params, sleep bool) dataplane.Executor {
	tb.Helper()
	x, err := synthetic.NewExecutor(routes, sleep)
	if err != nil {
		tb.Fatal(err)
	}
	return x
}

func newDP(t *testing.T, cfg dataplane.Config) *dataplane.Dataplane {
	t.Helper()
	if cfg.Executor == nil {
		cfg.Executor = synth(t, nil, false)
	}
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
	want := []schemas.EventType{thread.DataplaneDispatched, thread.DataplaneStarted, thread.ArtifactDelivered}
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
	for _, typ := range []schemas.EventType{thread.IntentReceived, thread.RunRouted, thread.RunCompleted, thread.ArbitrationGrant} {
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
		types []schemas.EventType
		kind  string
	}{
		{"exec error", &dataplane.ExecError{Kind: "rate_limited", Err: errors.New("429")}, []schemas.EventType{thread.DataplaneDispatched, thread.DataplaneStarted, thread.DataplaneFailed}, "rate_limited: 429"},
		{"plain error", errors.New("boom"), []schemas.EventType{thread.DataplaneDispatched, thread.DataplaneStarted, thread.DataplaneFailed}, "execution: boom"},
		{"deadline", context.DeadlineExceeded, []schemas.EventType{thread.DataplaneDispatched, thread.DataplaneStarted, thread.DataplaneFailed}, "timeout: context deadline exceeded"},
		{"never answers", dataplane.ErrNoAnswer, []schemas.EventType{thread.DataplaneDispatched, thread.DataplaneStarted}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := newDP(t, dataplane.Config{Executor: dataplane.ExecutorFunc(func(context.Context, dataplane.Request) (dataplane.Result, error) {
				return dataplane.Result{}, tc.err
			})})
			evs := handle(t, d, dispatch("tr", 0, ""), schemas.V2)
			var got []schemas.EventType
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
		d := newDP(t, dataplane.Config{Executor: synth(t, map[string]synthetic.Params{"baseline": {LatencyMean: time.Hour}}, true)})
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := d.Handle(ctx, nil, pipeline.Input{Value: dispatch("tr", 0, ""), Version: schemas.V1})
		if err == nil || pipeline.CodeOf(err) != "" {
			t.Fatalf("a cancelled handler must return a transient error, got %v", err)
		}
	})
	t.Run("exec timeout", func(t *testing.T) {
		t.Parallel()
		d := newDP(t, dataplane.Config{Executor: synth(t, map[string]synthetic.Params{"baseline": {LatencyMean: time.Hour}}, true), ExecTimeout: 10 * time.Millisecond})
		evs := handle(t, d, dispatch("tr", 0, ""), schemas.V2)
		if last := evs[len(evs)-1]; last.EventType != thread.DataplaneFailed || !strings.HasPrefix(*last.Error, "timeout: ") {
			t.Fatalf("exec timeout: %+v", last)
		}
	})
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
