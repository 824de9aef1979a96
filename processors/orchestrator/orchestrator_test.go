package orchestrator_test

import (
	"slices"
	"testing"
	"time"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/orchestrator"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// drive takes a fresh run to gating and returns the dispatch and delivered
// events it answered.
func drive(t *testing.T, h *harness, trace string) (dispatch, delivered *schemas.RuntimeEvent) {
	t.Helper()
	evs := h.must(h.intent(newIntent(trace, "alice", "summarize")))
	dispatch = last(evs, thread.RunDispatch)
	if dispatch == nil {
		t.Fatalf("no dispatch in %v", types(evs))
	}
	h.must(h.data(reply(dispatch, thread.DataplaneStarted, 0)))
	delivered = reply(dispatch, thread.ArtifactDelivered, 0)
	h.must(h.data(delivered))
	return dispatch, delivered
}

func TestGoldenPath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		passed  bool
		want    schemas.EventType
		router  orchestrator.Router
		version schemas.ContractVersion
	}{
		{"completed baseline", true, thread.RunCompleted, orchestrator.Baseline, schemas.V1},
		{"rejected baseline", false, thread.RunRejected, orchestrator.Baseline, schemas.V1},
		{"completed canary", true, thread.RunCompleted, orchestrator.RouterFunc(func(string, string) string { return thread.RouteCanary }), schemas.V2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, orchestrator.WithRouter(tc.router))
			_, delivered := drive(t, h, "tr-1")
			h.must(h.gate(verdict(delivered, tc.passed)))
			evs := h.runEvents("tr-1")
			want := []schemas.EventType{thread.IntentReceived, thread.RunRouted, thread.RunDispatch, thread.RunExecuting, thread.RunDelivered, thread.RunGating, tc.want}
			if !slices.Equal(types(evs), want) {
				t.Fatalf("events %v, want %v", types(evs), want)
			}
			wantStates := []string{"received", "routed", "dispatched", "executing", "delivered", "gating", string(tc.want[len("run."):])}
			seen := map[string]bool{}
			for i, e := range evs {
				if e.State != wantStates[i] {
					t.Errorf("event %d %s state %q, want %q", i, e.EventType, e.State, wantStates[i])
				}
				if e.EventID == "" || seen[e.EventID] {
					t.Errorf("event %d id %q empty or repeated", i, e.EventID)
				}
				seen[e.EventID] = true
				if e.TraceID != "tr-1" || e.Actor != "alice" || e.Intent != "summarize" || e.Phase != schemas.PhaseControl ||
					e.SchemaVersion != tc.version || e.RunStarted.IsZero() || e.Timestamp.IsZero() || e.SpanID == "" {
					t.Errorf("event %d has an incomplete envelope: %+v", i, e)
				}
				if i > 0 && e.ParentSpanID == "" {
					t.Errorf("event %d %s has no parent span", i, e.EventType)
				}
			}
			if evs[len(evs)-1].ArtifactID == "" || evs[len(evs)-1].Gate == nil {
				t.Errorf("terminal event lacks artifact id or gate outcome: %+v", evs[len(evs)-1])
			}
			for _, o := range h.out {
				if o.Topic != h.layout.Control() || o.Version != tc.version {
					t.Errorf("output on %s version %v, want %s %v", o.Topic, o.Version, h.layout.Control(), tc.version)
				}
			}
			if d, ok := h.o.Deadline(h.states["tr-1"]); !ok || d.Sub(h.clk.Now()) != 15*time.Minute {
				t.Errorf("an ended run's only timer is its retention (15m), got %v in %s", ok, d.Sub(h.clk.Now()))
			}
		})
	}
}

func TestDeterministicIDs(t *testing.T) {
	t.Parallel()
	run := func() []string {
		h := newHarness(t)
		_, delivered := drive(t, h, "tr-ids")
		h.must(h.gate(verdict(delivered, true)))
		var ids []string
		for _, e := range h.runEvents("tr-ids") {
			ids = append(ids, e.EventID, e.SpanID)
		}
		return ids
	}
	if a, b := run(), run(); !slices.Equal(a, b) {
		t.Fatalf("ids differ between two identical runs:\n%v\n%v", a, b)
	}
}

func TestDuplicateIntent(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	it := newIntent("tr-dup", "alice", "summarize")
	h.must(h.intent(it))
	before := string(h.states["tr-dup"])
	for _, dup := range []*schemas.Intent{it, {IntentID: "other", TraceID: "tr-dup", Actor: "bob", Kind: "answer"}} {
		outs, err := h.intent(dup)
		if err != nil || len(outs) != 0 {
			t.Fatalf("duplicate intent: outputs %d, err %v; want none, nil", len(outs), err)
		}
	}
	if string(h.states["tr-dup"]) != before {
		t.Fatal("a duplicate changed the run's state")
	}
}

func TestRejectedIntents(t *testing.T) {
	t.Parallel()
	future := newIntent("tr-f", "a", "summarize")
	future.Timestamp = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	big := newIntent("tr-b", "a", "summarize")
	big.Input = string(make([]byte, schemas.MaxInputBytes+1))
	for _, tc := range []struct {
		name string
		it   *schemas.Intent
		key  string
		code string
	}{
		{"unknown kind", newIntent("tr-k", "a", "paint"), "tr-k", orchestrator.CodeUnknownIntentKind},
		{"no trace", newIntent("", "a", "summarize"), "", orchestrator.CodeMissingField},
		{"no actor", newIntent("tr-a", "", "summarize"), "tr-a", orchestrator.CodeMissingField},
		{"key mismatch", newIntent("tr-m", "a", "summarize"), "other", orchestrator.CodeKeyMismatch},
		{"future", future, "tr-f", orchestrator.CodeFutureTimestamp},
		{"invalid utf8", newIntent("tr-\xff", "a", "summarize"), "tr-\xff", orchestrator.CodeInvalidUTF8},
		{"too large", big, "tr-b", orchestrator.CodeInputTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			_, err := h.handle(h.layout.Intents(), tc.key, tc.it, schemas.V1)
			if got := pipeline.CodeOf(err); got != tc.code {
				t.Fatalf("code %q (%v), want %q", got, err, tc.code)
			}
			if len(h.states) != 0 || len(h.out) != 0 {
				t.Fatal("a rejected intent left state or outputs")
			}
		})
	}
	t.Run("configured kinds", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, orchestrator.WithIntentKinds("paint"))
		h.must(h.intent(newIntent("tr-p", "a", "paint")))
		if _, err := h.intent(newIntent("tr-s", "a", "summarize")); pipeline.CodeOf(err) != orchestrator.CodeUnknownIntentKind {
			t.Fatalf("summarize with only paint allowed: %v", err)
		}
	})
	t.Run("unknown run", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		d := &schemas.RuntimeEvent{TraceID: "nobody", SpanID: "s", EventType: thread.RunDispatch}
		for _, ev := range []*schemas.RuntimeEvent{reply(d, thread.DataplaneStarted, 0), verdict(reply(d, thread.ArtifactDelivered, 0), true)} {
			_, err := h.handle(h.layout.Dataplane(), "nobody", ev, schemas.V1)
			if pipeline.CodeOf(err) != orchestrator.CodeUnknownRun {
				t.Fatalf("%s for unknown run: %v", ev.EventType, err)
			}
		}
	})
	t.Run("event on intents topic", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		_, err := h.handle(h.layout.Intents(), "x", &schemas.RuntimeEvent{TraceID: "x", EventType: thread.ArtifactDelivered}, schemas.V1)
		if pipeline.CodeOf(err) != orchestrator.CodeIllegalTransition {
			t.Fatalf("runtime event on intents: %v", err)
		}
	})
}

// TestIllegalTransitions feeds, in every reachable state, every input the
// table does not accept there: each is refused (state unchanged) and
// recorded as run.illegal_transition.
func TestIllegalTransitions(t *testing.T) {
	t.Parallel()
	type stage struct {
		state string
		setup func(t *testing.T, h *harness) (dispatch, delivered *schemas.RuntimeEvent)
	}
	stages := []stage{
		{"dispatched", func(t *testing.T, h *harness) (*schemas.RuntimeEvent, *schemas.RuntimeEvent) {
			d := last(h.must(h.intent(newIntent("tr", "a", "answer"))), thread.RunDispatch)
			return d, reply(d, thread.ArtifactDelivered, 0)
		}},
		{"executing", func(t *testing.T, h *harness) (*schemas.RuntimeEvent, *schemas.RuntimeEvent) {
			d := last(h.must(h.intent(newIntent("tr", "a", "answer"))), thread.RunDispatch)
			h.must(h.data(reply(d, thread.DataplaneStarted, 0)))
			return d, reply(d, thread.ArtifactDelivered, 0)
		}},
		{"gating", func(t *testing.T, h *harness) (*schemas.RuntimeEvent, *schemas.RuntimeEvent) {
			return drive(t, h, "tr")
		}},
		{"completed", func(t *testing.T, h *harness) (*schemas.RuntimeEvent, *schemas.RuntimeEvent) {
			d, dl := drive(t, h, "tr")
			h.must(h.gate(verdict(dl, true)))
			return d, dl
		}},
		{"failed", func(t *testing.T, h *harness) (*schemas.RuntimeEvent, *schemas.RuntimeEvent) {
			d := last(h.must(h.intent(newIntent("tr", "a", "answer"))), thread.RunDispatch)
			f := reply(d, thread.DataplaneFailed, 0)
			msg := "invalid_input: no"
			f.Error = &msg
			h.must(h.data(f))
			return d, reply(d, thread.ArtifactDelivered, 0)
		}},
	}
	// A verdict before the artifact is held, not refused (TestEarlyVerdict).
	legal := map[string][]schemas.EventType{
		"dispatched": {thread.DataplaneStarted, thread.ArtifactDelivered, thread.DataplaneFailed, thread.GateVerdict},
		"executing":  {thread.ArtifactDelivered, thread.DataplaneFailed, thread.GateVerdict},
		"gating":     {thread.GateVerdict},
	}
	inputs := []schemas.EventType{thread.DataplaneStarted, thread.ArtifactDelivered, thread.DataplaneFailed, thread.GateVerdict}
	for _, st := range stages {
		for _, in := range inputs {
			if slices.Contains(legal[st.state], in) {
				continue
			}
			t.Run(st.state+"/"+string(in), func(t *testing.T) {
				t.Parallel()
				h := newHarness(t)
				d, dl := st.setup(t, h)
				before := h.runEvents("tr")
				if got := before[len(before)-1].State; got != st.state {
					t.Fatalf("setup reached %q, want %q", got, st.state)
				}
				var ev *schemas.RuntimeEvent
				if in == thread.GateVerdict {
					ev = verdict(dl, true)
				} else {
					ev = reply(d, in, 7)
				}
				outs := h.must(h.handle(h.layout.Dataplane(), "tr", ev, schemas.V1))
				if len(outs) != 1 || outs[0].EventType != thread.RunIllegal || outs[0].State != st.state || outs[0].Error == nil {
					t.Fatalf("outputs %v, want one run.illegal_transition in state %s", types(outs), st.state)
				}
				if outs[0].ParentSpanID != ev.SpanID {
					t.Error("the record does not point at the refused event")
				}
			})
		}
	}
}

// TestEarlyVerdict: gate.verdict and the artifact.delivered it judges travel
// on different topics, so the orchestrator may read the verdict first. It
// is held in the run's state and applied when the artifact arrives; a held
// verdict on another artifact is stale then.
func TestEarlyVerdict(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		started bool
		other   bool
		want    []schemas.EventType
	}{
		{"dispatched", false, false, []schemas.EventType{thread.RunDelivered, thread.RunGating, thread.RunCompleted}},
		{"executing", true, false, []schemas.EventType{thread.RunDelivered, thread.RunGating, thread.RunCompleted}},
		{"on another artifact", false, true, []schemas.EventType{thread.RunDelivered, thread.RunGating, thread.RunStale}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			d := last(h.must(h.intent(newIntent("tr", "a", "answer"))), thread.RunDispatch)
			if tt.started {
				h.must(h.data(reply(d, thread.DataplaneStarted, 0)))
			}
			dl := reply(d, thread.ArtifactDelivered, 1)
			judged := dl
			if tt.other {
				judged = reply(d, thread.ArtifactDelivered, 2)
			}
			if evs := h.must(h.gate(verdict(judged, true))); len(evs) != 0 {
				t.Fatalf("early verdict emitted %v, want nothing yet", types(evs))
			}
			if got := types(h.must(h.data(dl))); !slices.Equal(got, tt.want) {
				t.Fatalf("artifact after its verdict: %v, want %v", got, tt.want)
			}
		})
	}
}

func TestStaleEvents(t *testing.T) {
	t.Parallel()
	h := newHarness(t, orchestrator.WithStateflow(orchestrator.MustStateflow(orchestrator.DefaultStates(orchestrator.RetryPolicy{MaximumAttempts: 3}, time.Second, time.Second))))
	first := last(h.must(h.intent(newIntent("tr", "a", "answer"))), thread.RunDispatch)
	// Attempt 0 fails; with no backoff the run is re-dispatched at once.
	evs := h.must(h.data(reply(first, thread.DataplaneFailed, 0)))
	if got := types(evs); !slices.Equal(got, []schemas.EventType{thread.RunRetryScheduled, thread.RunDispatch}) {
		t.Fatalf("after a failure: %v", got)
	}
	second := evs[1]
	if second.Attempt != 1 || second.SpanID == first.SpanID {
		t.Fatalf("re-dispatch attempt %d span %s", second.Attempt, second.SpanID)
	}
	// A late result of attempt 0 is stale.
	evs = h.must(h.data(reply(first, thread.ArtifactDelivered, 1)))
	if len(evs) != 1 || evs[0].EventType != thread.RunStale || evs[0].State != "dispatched" {
		t.Fatalf("late result of attempt 0: %v", types(evs))
	}
	// The current attempt goes on; a verdict on another artifact is stale.
	cur := reply(second, thread.ArtifactDelivered, 0)
	h.must(h.data(cur))
	other := reply(first, thread.ArtifactDelivered, 9)
	if evs := h.must(h.gate(verdict(other, false))); len(evs) != 1 || evs[0].EventType != thread.RunStale {
		t.Fatalf("verdict on another artifact: %v", types(evs))
	}
	if evs := h.must(h.gate(verdict(cur, true))); last(evs, thread.RunCompleted) == nil {
		t.Fatalf("verdict on the current artifact: %v", types(evs))
	}
}

// TestRetention: an ended run is kept for the retention (duplicates are
// recognised, late events refused), then deleted by its timer.
func TestRetention(t *testing.T) {
	t.Parallel()
	h := newHarness(t, orchestrator.WithRetention(time.Minute))
	_, dl := drive(t, h, "tr")
	h.must(h.gate(verdict(dl, true)))
	h.clk.Add(59 * time.Second)
	if evs := h.fire("tr"); len(evs) != 0 || h.states["tr"] == nil {
		t.Fatal("the ended run was dropped before its retention")
	}
	if outs, err := h.intent(newIntent("tr", "alice", "summarize")); err != nil || len(outs) != 0 {
		t.Fatalf("a duplicate within the retention: %d outputs, %v", len(outs), err)
	}
	h.clk.Add(time.Second)
	h.fire("tr")
	if _, ok := h.states["tr"]; ok {
		t.Fatal("the ended run outlived its retention")
	}
	if _, err := h.data(reply(dl, thread.DataplaneStarted, 3)); pipeline.CodeOf(err) != orchestrator.CodeUnknownRun {
		t.Fatalf("an event for a deleted run: %v", err)
	}
}
