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
		Provenance: &schemas.Provenance{Issuer: "https://idp.test", Subject: "alice"},
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

// handle runs a dispatch as the loop does: Handle (its outputs and the
// state naming the call commit), Work (the call, after that commit), then
// Complete (the result commits and the state is deleted). It returns every
// event, in order.
func handle(t *testing.T, d *dataplane.Dataplane, ev *schemas.RuntimeEvent, v schemas.ContractVersion) []*schemas.RuntimeEvent {
	t.Helper()
	var evs []*schemas.RuntimeEvent
	for _, o := range run(t, d, ev, v) {
		if o.Raw != nil && o.Topic == "t.spine.artifacts" {
			continue // the artifact's content (TestArtifactKept)
		}
		if o.Topic != "t.spine.dataplane" || string(o.Key) != ev.TraceID || o.Version != v {
			t.Fatalf("output to %s key %q version %v", o.Topic, o.Key, o.Version)
		}
		evs = append(evs, o.Value.(*schemas.RuntimeEvent))
	}
	return evs
}

// run is handle's three steps; it returns every output.
func run(t *testing.T, d *dataplane.Dataplane, ev *schemas.RuntimeEvent, v schemas.ContractVersion) []pipeline.Output {
	t.Helper()
	res, err := d.Handle(t.Context(), nil, pipeline.Input{Topic: "t.spine.control", Key: []byte(ev.TraceID), Value: ev, Version: v})
	if err != nil {
		t.Fatal(err)
	}
	outs := res.Outputs
	if ev.EventType == thread.RunDispatch && !res.StateChanged {
		// An executor whose calls neither wait nor call out (the
		// synthetic one): the whole answer commits with the dispatch.
		if x, ok := d.Executor().(dataplane.Inline); !ok || !x.Inline(ev.Intent, ev.Route) {
			t.Fatal("a dispatch to an executor that calls out must leave a state naming its call")
		}
		return outs
	}
	if ev.EventType == thread.RunDispatch {
		if !res.StateChanged || d.Pending(res.State) != ev.SpanID {
			t.Fatalf("a dispatch must leave a state naming its call, got %q", res.State)
		}
		out := d.Work(t.Context(), []byte(ev.TraceID), res.State)
		done, err := d.Complete(t.Context(), []byte(ev.TraceID), res.State, out)
		if err != nil {
			t.Fatal(err)
		}
		if !done.StateChanged || done.State != nil {
			t.Fatalf("a completed call must delete the run's state, got %q", done.State)
		}
		outs = append(outs, done.Outputs...)
	} else if res.StateChanged {
		t.Fatalf("%s changed the state", ev.EventType)
	}
	return outs
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
	if a.ArtifactID != thread.ArtifactID("tr-1", disp.SpanID, disp.Timestamp) || a.Artifact == nil || a.Artifact.Summary == "" ||
		a.Artifact.Score < 0 || a.Artifact.Score > 1 || a.Artifact.LatencyMs <= 0 || a.Usage == nil || a.Attributes["claims.sub"] != "alice" ||
		a.Provenance == nil || a.Provenance.Subject != "alice" {
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
	t.Run("call cancelled", func(t *testing.T) {
		t.Parallel()
		d := newDP(t, dataplane.Config{Executor: synth(t, map[string]synthetic.Params{"baseline": {LatencyMean: time.Hour}}, true)})
		res, err := d.Handle(t.Context(), nil, pipeline.Input{Value: dispatch("tr", 0, ""), Version: schemas.V1})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		out := d.Work(ctx, []byte("tr"), res.State)
		if _, err := d.Complete(t.Context(), []byte("tr"), res.State, out); err == nil || pipeline.CodeOf(err) != "" {
			t.Fatalf("an interrupted call is no answer: want a transient error, got %v", err)
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

// The call's request carries an idempotency key derived from the dispatch:
// the same when the call runs again (after a restart, from the restored
// state), another for the next attempt.
func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	var keys []string
	d := newDP(t, dataplane.Config{Executor: dataplane.ExecutorFunc(func(_ context.Context, req dataplane.Request) (dataplane.Result, error) {
		keys = append(keys, req.IdempotencyKey)
		return dataplane.Result{Content: []byte("ok")}, nil
	})})
	d0 := dispatch("tr-k", 0, "")
	res, err := d.Handle(t.Context(), nil, pipeline.Input{Value: d0, Version: schemas.V1})
	if err != nil {
		t.Fatal(err)
	}
	d.Work(t.Context(), []byte("tr-k"), res.State)
	d.Work(t.Context(), []byte("tr-k"), slices.Clone(res.State)) // run again after a crash
	handle(t, d, dispatch("tr-k", 1, ""), schemas.V1)
	if len(keys) != 3 || keys[0] == "" || keys[0] != keys[1] || keys[2] == keys[0] ||
		keys[0] != dataplane.IdempotencyKey("tr-k", d0.SpanID) {
		t.Fatalf("idempotency keys %q: want one per dispatch, stable across runs", keys)
	}
}

// A call run again after a restart keeps the deadline of its dispatch: one
// dispatched two minutes ago with a one-minute timeout fails at once.
func TestDeadlineKept(t *testing.T) {
	t.Parallel()
	d := newDP(t, dataplane.Config{
		ExecTimeout: time.Minute,
		Now:         func() time.Time { return time.Now().Add(-2 * time.Minute) },
		Executor: dataplane.ExecutorFunc(func(ctx context.Context, _ dataplane.Request) (dataplane.Result, error) {
			<-ctx.Done()
			return dataplane.Result{}, ctx.Err()
		}),
	})
	res, err := d.Handle(t.Context(), nil, pipeline.Input{Value: dispatch("tr-t", 0, ""), Version: schemas.V1})
	if err != nil {
		t.Fatal(err)
	}
	done, err := d.Complete(t.Context(), []byte("tr-t"), res.State, d.Work(t.Context(), []byte("tr-t"), slices.Clone(res.State)))
	if err != nil {
		t.Fatal(err)
	}
	if len(done.Outputs) != 1 || !strings.HasPrefix(*done.Outputs[0].Value.(*schemas.RuntimeEvent).Error, "timeout: ") {
		t.Fatalf("a call past its deadline: %+v", done.Outputs)
	}
}

// TestInlineCall: an executor whose calls neither wait nor call out answers
// in the dispatch's own result, with no state; one that calls out leaves a
// state naming its call; an inline answer deletes the state of a call an
// earlier dispatch of the run left pending.
func TestInlineCall(t *testing.T) {
	t.Parallel()
	disp := dispatch("tr-in", 1, thread.RouteBaseline)
	in := pipeline.Input{Topic: "t.spine.control", Key: []byte(disp.TraceID), Value: disp, Version: schemas.V1}
	inline := newDP(t, dataplane.Config{})
	res, err := inline.Handle(t.Context(), nil, in)
	if err != nil {
		t.Fatal(err)
	}
	if res.StateChanged || len(res.Outputs) != 4 { // dispatched, started, artifact.delivered and the artifact
		t.Fatalf("inline: state changed %t, %d outputs", res.StateChanged, len(res.Outputs))
	}
	calling := newDP(t, dataplane.Config{Executor: dataplane.ExecutorFunc(func(context.Context, dataplane.Request) (dataplane.Result, error) {
		return dataplane.Result{ContentType: "text/plain", Content: []byte("x")}, nil
	})})
	pending, err := calling.Handle(t.Context(), nil, in)
	if err != nil || !pending.StateChanged || calling.Pending(pending.State) != disp.SpanID || len(pending.Outputs) != 2 {
		t.Fatalf("calling out: %v, state %q, %d outputs", err, pending.State, len(pending.Outputs))
	}
	again := dispatch("tr-in", 2, thread.RouteBaseline)
	res, err = inline.Handle(t.Context(), pending.State, pipeline.Input{Topic: in.Topic, Key: in.Key, Value: again, Version: schemas.V1})
	if err != nil || !res.StateChanged || res.State != nil {
		t.Fatalf("an inline answer over a pending call: %v, changed %t, state %q", err, res.StateChanged, res.State)
	}
}

// A call's budget ends before its state's timeout, by a tenth of it and at
// most a second, so its failure is reported before the state times out.
func TestCallBudget(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ timeout, want time.Duration }{
		{1500 * time.Millisecond, 1350 * time.Millisecond},
		{30 * time.Second, 29 * time.Second},
		{5 * time.Minute, 5*time.Minute - time.Second},
		{100 * time.Millisecond, 90 * time.Millisecond},
	} {
		if got := dataplane.CallBudget(c.timeout); got != c.want {
			t.Errorf("CallBudget(%s) = %s, want %s", c.timeout, got, c.want)
		}
	}
}
