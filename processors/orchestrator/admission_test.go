package orchestrator_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spinerun/spine/gates"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/orchestrator"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

const admissionPolicy = `version: 1
default: allow
rules:
  - name: no-anonymous
    stage: admission
    effect: deny
    when: "provenance == null"
    message: "every run needs a verified caller"
  - name: no-tool-calls
    stage: admission
    effect: deny
    when: "intent.kind == 'tool_call' && intent.actor != 'root'"
    message: "tool calls are for root"
`

func mustPolicy(t testing.TB, src string) *gates.Policy {
	t.Helper()
	p, err := gates.ParsePolicy([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// intentWith runs an intent record with headers through the orchestrator.
func (h *harness) intentWith(it *schemas.Intent, headers map[string]string) ([]pipeline.Output, error) {
	h.t.Helper()
	res, err := h.o.Handle(context.Background(), h.states[it.TraceID], pipeline.Input{
		Topic: h.layout.Intents(), Key: []byte(it.TraceID), Value: it, Version: it.SchemaVersion, Timestamp: h.clk.Now(), Headers: headers,
	})
	if err != nil {
		return nil, err
	}
	return h.apply(it.TraceID, res), nil
}

func verified(subject string) *schemas.Provenance {
	return &schemas.Provenance{Issuer: "https://idp.test", Subject: subject, VerifiedAt: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC),
		Claims: map[string]string{"groups": "staff"}}
}

// TestAdmissionDenied: a run the policy denies ends at once, rejected,
// with the rule and the policy version on its gate.policy event; no
// run.dispatch: the data plane never hears of it.
func TestAdmissionDenied(t *testing.T) {
	t.Parallel()
	p := mustPolicy(t, admissionPolicy)
	h := newHarness(t, orchestrator.WithPolicy(p), orchestrator.WithMaxPerActor(2))
	outs, err := h.intent(newIntent("tr-deny", "alice", "summarize"))
	if err != nil {
		t.Fatal(err)
	}
	evs := events(outs)
	if got := types(evs); !slices.Equal(got, []schemas.EventType{thread.IntentReceived, thread.GateFailed, thread.RunRejected}) {
		t.Fatalf("events %v", got)
	}
	if outs[0].Topic != h.layout.Control() || outs[1].Topic != h.layout.Gate("policy") || outs[2].Topic != h.layout.Control() {
		t.Fatalf("topics %s %s %s", outs[0].Topic, outs[1].Topic, outs[2].Topic)
	}
	g := evs[1]
	want := schemas.GateOutcome{Name: "policy", Reason: "no-anonymous: every run needs a verified caller", Rule: "no-anonymous",
		PolicyVersion: p.Version(), Evidence: map[string]string{"stage": "admission"}}
	if g.Gate == nil || g.Gate.Name != want.Name || g.Gate.Passed || g.Gate.Reason != want.Reason || g.Gate.Rule != want.Rule ||
		g.Gate.PolicyVersion != want.PolicyVersion || g.Gate.Evidence["stage"] != "admission" || g.Phase != schemas.PhaseGate {
		t.Fatalf("gate.policy %+v (%+v), want %+v", g, g.Gate, want)
	}
	end := evs[2]
	if end.ParentSpanID != g.SpanID || end.Error == nil || *end.Error != want.Reason || end.Gate == nil || end.Gate.Rule != "no-anonymous" {
		t.Fatalf("run.rejected %+v", end)
	}
	// No arbitration either: a denied run takes no slot.
	for _, o := range h.out {
		if ev := o.Value.(*schemas.RuntimeEvent); ev.EventType == thread.RunDispatch || strings.HasPrefix(string(ev.EventType), "arbitration.") {
			t.Fatalf("a denied run emitted %s", ev.EventType)
		}
	}
	// A duplicate of a denied intent is a duplicate: nothing more.
	if outs := h.must(h.intent(newIntent("tr-deny", "alice", "summarize"))); len(outs) != 0 {
		t.Fatalf("duplicate emitted %v", types(outs))
	}
	// Its ids are deterministic like every run's.
	h2 := newHarness(t, orchestrator.WithPolicy(p), orchestrator.WithMaxPerActor(2))
	evs2 := h2.must(h2.intent(newIntent("tr-deny", "alice", "summarize")))
	for i := range evs {
		if evs[i].EventID != evs2[i].EventID || evs[i].SpanID != evs2[i].SpanID {
			t.Fatalf("event %d ids differ on replay", i)
		}
	}
}

// TestAdmissionAllowed: an allowed run writes a passed gate.policy event
// and goes on; its provenance rides intent.received and run.dispatch.
func TestAdmissionAllowed(t *testing.T) {
	t.Parallel()
	p := mustPolicy(t, admissionPolicy)
	h := newHarness(t, orchestrator.WithPolicy(p))
	it := newIntent("tr-ok", "bob", "summarize")
	it.Provenance = verified("bob")
	evs := h.must(h.intent(it))
	if got := types(evs); !slices.Equal(got, []schemas.EventType{thread.IntentReceived, thread.GatePassed, thread.RunRouted, thread.RunDispatch}) {
		t.Fatalf("events %v", got)
	}
	if g := evs[1].Gate; g == nil || !g.Passed || g.Rule != "default" || g.PolicyVersion != p.Version() {
		t.Fatalf("gate.policy %+v", g)
	}
	for _, i := range []int{0, 1, 3} {
		if pv := evs[i].Provenance; pv == nil || pv.Subject != "bob" || pv.Claims["groups"] != "staff" {
			t.Fatalf("%s provenance %+v", evs[i].EventType, pv)
		}
	}
	// The provenance survives the state: a retry's dispatch carries it.
	failed := reply(evs[3], thread.DataplaneFailed, 1)
	h.must(h.data(failed))
	h.clk.Add(time.Second)
	retry := h.fire("tr-ok")
	if d := last(retry, thread.RunDispatch); d == nil || d.Provenance == nil || d.Provenance.Subject != "bob" || d.Attempt != 1 {
		t.Fatalf("retry %v: dispatch %+v", types(retry), d)
	}
	// Kind by actor: root may call tools, others not.
	root := newIntent("tr-root", "root", "tool_call")
	root.Provenance = verified("root")
	if got := types(h.must(h.intent(root))); got[len(got)-1] != thread.RunDispatch {
		t.Fatalf("root's tool call: %v", got)
	}
	other := newIntent("tr-other", "bob", "tool_call")
	other.Provenance = verified("bob")
	if got := types(h.must(h.intent(other))); got[len(got)-1] != thread.RunRejected {
		t.Fatalf("bob's tool call: %v", got)
	}
}

// TestAdmissionVerifier: the ID token of an intent record's header is
// verified; its subject becomes the actor, an invalid one rejects the run
// as unauthenticated without the token ever on the thread, an outage is
// retried.
func TestAdmissionVerifier(t *testing.T) {
	t.Parallel()
	const good, expired, outage = "eyJ.good.sig", "eyJ.expired.sig", "eyJ.outage.sig"
	var calls atomic.Int32
	v := orchestrator.VerifierFunc(func(_ context.Context, raw string) (*schemas.Provenance, error) {
		calls.Add(1)
		switch raw {
		case good:
			return verified("carol@idp"), nil
		case expired:
			return nil, codedErr("expired")
		case outage:
			return nil, tempErr{}
		}
		return nil, errors.New("malformed")
	})
	p := mustPolicy(t, admissionPolicy)
	h := newHarness(t, orchestrator.WithPolicy(p), orchestrator.WithVerifier(v))

	evs := h.must(h.intentWith(newIntent("tr-good", "someone", "summarize"), map[string]string{orchestrator.IDTokenHeader: good}))
	if got := types(evs); got[len(got)-1] != thread.RunDispatch {
		t.Fatalf("verified caller: %v", got)
	}
	if d := evs[len(evs)-1]; d.Actor != "carol@idp" || d.Provenance == nil || d.Provenance.Subject != "carol@idp" {
		t.Fatalf("dispatch actor %q provenance %+v", d.Actor, d.Provenance)
	}

	for _, tc := range []struct{ trace, token, reason string }{
		{"tr-expired", expired, "unauthenticated: expired"},
		{"tr-garbage", "not-a-jwt", "unauthenticated: invalid_token"},
	} {
		evs := h.must(h.intentWith(newIntent(tc.trace, "someone", "summarize"), map[string]string{orchestrator.IDTokenHeader: tc.token}))
		if got := types(evs); !slices.Equal(got, []schemas.EventType{thread.IntentReceived, thread.GateFailed, thread.RunRejected}) {
			t.Fatalf("%s: %v", tc.trace, got)
		}
		if g := evs[1].Gate; g.Reason != tc.reason || g.Rule != "unauthenticated" || g.PolicyVersion != p.Version() {
			t.Fatalf("%s: gate %+v", tc.trace, g)
		}
		if e := evs[2].Error; e == nil || *e != tc.reason {
			t.Fatalf("%s: run.rejected error %v", tc.trace, e)
		}
	}
	// No header: the policy decides on a null provenance.
	if got := types(h.must(h.intent(newIntent("tr-none", "someone", "summarize")))); got[len(got)-1] != thread.RunRejected {
		t.Fatalf("no token: %v", got)
	}
	// An outage is transient: no rejection, no state, the loop retries.
	if _, err := h.intentWith(newIntent("tr-outage", "someone", "summarize"), map[string]string{orchestrator.IDTokenHeader: outage}); err == nil {
		t.Fatal("an outage of the verifier was not an error")
	} else if _, coded := errors.AsType[*pipeline.RejectError](err); coded {
		t.Fatalf("an outage was rejected: %v", err)
	}
	if _, ok := h.states["tr-outage"]; ok {
		t.Fatal("an outage left a run state")
	}
	// The token is never written.
	for _, o := range h.out {
		b, _ := json.Marshal(o.Value)
		for _, tok := range []string{good, expired, "not-a-jwt"} {
			if strings.Contains(string(b), tok) {
				t.Fatalf("token %q written on %s", tok, o.Topic)
			}
		}
	}
	for k, st := range h.states {
		if strings.Contains(string(st), "eyJ") {
			t.Fatalf("a token in the state of %s", k)
		}
	}
	if calls.Load() != 4 {
		t.Fatalf("%d verifications, want 4", calls.Load())
	}
}

type codedErr string

func (e codedErr) Error() string { return "token " + string(e) }
func (e codedErr) Code() string  { return string(e) }

type tempErr struct{}

func (tempErr) Error() string   { return "jwks unreachable" }
func (tempErr) Temporary() bool { return true }

// swappable is a policy source a test changes.
type swappable struct{ p atomic.Pointer[gates.Policy] }

func (s *swappable) Current() *gates.Policy { return s.p.Load() }

// TestAdmissionPolicyChange: the next run after a change is judged by the
// new policy and its gate.policy event says the new version.
func TestAdmissionPolicyChange(t *testing.T) {
	t.Parallel()
	v1 := mustPolicy(t, "version: 1\ndefault: allow\n")
	v2 := mustPolicy(t, admissionPolicy)
	src := &swappable{}
	src.p.Store(v1)
	h := newHarness(t, orchestrator.WithPolicy(src))
	evs := h.must(h.intent(newIntent("tr-1", "alice", "summarize")))
	if g := evs[1].Gate; !g.Passed || g.PolicyVersion != v1.Version() {
		t.Fatalf("under v1: %+v", g)
	}
	src.p.Store(v2)
	evs = h.must(h.intent(newIntent("tr-2", "alice", "summarize")))
	if g := evs[1].Gate; g.Passed || g.PolicyVersion != v2.Version() || g.Rule != "no-anonymous" {
		t.Fatalf("under v2: %+v", g)
	}
}

// TestAdmissionNeedsDenyTransition: a stateflow that cannot reject a
// received run refuses a policy.
func TestAdmissionNeedsDenyTransition(t *testing.T) {
	t.Parallel()
	specs := orchestrator.DefaultStates(orchestrator.DefaultRetry, time.Second, time.Second)
	for i := range specs {
		if specs[i].State == orchestrator.StateRejected {
			specs[i].Entry = specs[i].Entry[:1]
		}
	}
	flow := orchestrator.MustStateflow(specs)
	if _, err := orchestrator.New(pipeline.Layout{}, orchestrator.WithStateflow(flow)); err != nil {
		t.Fatalf("without a policy: %v", err)
	}
	if _, err := orchestrator.New(pipeline.Layout{}, orchestrator.WithStateflow(flow), orchestrator.WithPolicy(mustPolicy(t, admissionPolicy))); err == nil {
		t.Fatal("a policy with no way to reject at admission")
	}
}

// TestNoPolicyUnchanged: without a policy or a verifier, admission writes
// nothing (the thread is as before).
func TestNoPolicyUnchanged(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	got := types(h.must(h.intentWith(newIntent("tr", "alice", "summarize"), map[string]string{orchestrator.IDTokenHeader: "x"})))
	if !slices.Equal(got, []schemas.EventType{thread.IntentReceived, thread.RunRouted, thread.RunDispatch}) {
		t.Fatalf("events %v", got)
	}
}

// TestAdmissionCanceled: an evaluation cut short by the loop's context
// decides nothing: an error (the record is retried), no events.
func TestAdmissionCanceled(t *testing.T) {
	t.Parallel()
	h := newHarness(t, orchestrator.WithPolicy(mustPolicy(t, admissionPolicy)))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	it := newIntent("tr-cut", "alice", "summarize")
	res, err := h.o.Handle(ctx, nil, pipeline.Input{Topic: h.layout.Intents(), Key: []byte(it.TraceID), Value: it, Version: schemas.V1})
	if !errors.Is(err, context.Canceled) || len(res.Outputs) != 0 || res.StateChanged {
		t.Fatalf("canceled admission: %+v, %v", res, err)
	}
}
