package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spinerun/spine/gates"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/gatekeeper"
	"github.com/spinerun/spine/processors/orchestrator"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

const e2ePolicyV1 = `version: 1
default: allow
rules:
  - name: no-tool-calls
    stage: admission
    effect: deny
    when: "intent.kind == 'tool_call'"
    message: "tool calls need an admin"
  - name: flagged-artifacts
    stage: artifact
    effect: deny
    when: "intent.kind == 'extract' && artifact.size >= 0"
    message: "this artifact is withheld"
`

// e2ePolicyV2 also denies summaries.
const e2ePolicyV2 = e2ePolicyV1 + `  - name: no-summaries
    stage: admission
    effect: deny
    when: "intent.kind == 'summarize'"
    message: "summaries are off"
`

// TestPolicyGate runs the whole stack with SPINE_POLICY: a run denied at
// admission ends rejected with the rule and version on its gate.policy
// event and never reaches the data plane (no event of it on
// spine.dataplane: the executor is never called); a denied artifact rejects
// its run before handoff; an allowed run completes with a passed gate.policy
// event at both stages. Then the file changes: every decision taken more
// than 2 s after the write carries the new version, and the new rule
// decides.
func TestPolicyGate(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(e2ePolicyV1), 0o600); err != nil {
		t.Fatal(err)
	}
	v1, v2 := gates.PolicyVersion([]byte(e2ePolicyV1)), gates.PolicyVersion([]byte(e2ePolicyV2))
	s := newStack(t, nil, map[string]string{"SPINE_POLICY": path, "SPINE_PARTITIONS": "2"})
	committed := s.collect(t, true)
	s.startAll(nil)

	intent := func(trace, kind string) pipeline.Output {
		it := &schemas.Intent{IntentID: "i-" + trace, TraceID: trace, Actor: "alice", Kind: kind, Input: "text " + trace,
			SchemaVersion: schemas.V2, Timestamp: time.Now()}
		return pipeline.Output{Key: []byte(trace), Value: it, Version: schemas.V2}
	}
	s.produce(t.Context(), []pipeline.Output{
		intent("pol-ok", "summarize"),
		intent("pol-denied", "tool_call"),
		intent("pol-withheld", "extract"),
	})
	waitFor(t, 60*time.Second, func() bool { return committed.terminalCount() >= 3 },
		func() string { return fmt.Sprintf("3 runs ended (have %d)", committed.terminalCount()) })
	committed.settle(500 * time.Millisecond)

	byTrace := map[string][]event{}
	all, _ := committed.snapshot()
	for _, e := range all {
		byTrace[e.ev.TraceID] = append(byTrace[e.ev.TraceID], e)
	}
	policyEvents := func(trace string) []*schemas.RuntimeEvent {
		var out []*schemas.RuntimeEvent
		for _, e := range byTrace[trace] {
			if e.topic == string(s.layout.Gate("policy")) {
				out = append(out, e.ev)
			}
		}
		return out
	}
	outcome := func(trace string) schemas.EventType {
		for _, e := range byTrace[trace] {
			if terminalTypes[e.ev.EventType] {
				return e.ev.EventType
			}
		}
		return ""
	}

	// Denied at admission: rejected, and nothing of it on the data plane.
	if o := outcome("pol-denied"); o != thread.RunRejected {
		t.Errorf("pol-denied ended %q", o)
	}
	for _, e := range byTrace["pol-denied"] {
		if e.topic == string(s.layout.Dataplane()) || e.ev.EventType == thread.RunDispatch {
			t.Errorf("a run denied at admission reached the data plane: %s", e)
		}
	}
	if pe := policyEvents("pol-denied"); len(pe) != 1 || pe[0].Gate.Passed || pe[0].Gate.Rule != "no-tool-calls" ||
		pe[0].Gate.PolicyVersion != v1 || pe[0].Gate.Reason != "no-tool-calls: tool calls need an admin" {
		t.Errorf("pol-denied gate.policy events %+v", gateOutcomes(pe))
	}

	// Allowed: completed, passed at admission and at the artifact stage.
	if o := outcome("pol-ok"); o != thread.RunCompleted {
		t.Errorf("pol-ok ended %q", o)
	}
	if pe := policyEvents("pol-ok"); len(pe) != 2 || !pe[0].Gate.Passed || !pe[1].Gate.Passed ||
		pe[0].Gate.Evidence["stage"] != "admission" || pe[1].Gate.Evidence["stage"] != "artifact" ||
		pe[0].Gate.PolicyVersion != v1 || pe[1].Gate.PolicyVersion != v1 {
		t.Errorf("pol-ok gate.policy events %+v", gateOutcomes(pe))
	}

	// Artifact denied: executed, then rejected by the verdict.
	if o := outcome("pol-withheld"); o != thread.RunRejected {
		t.Errorf("pol-withheld ended %q", o)
	}
	if pe := policyEvents("pol-withheld"); len(pe) != 2 || !pe[0].Gate.Passed || pe[1].Gate.Passed || pe[1].Gate.Rule != "flagged-artifacts" {
		t.Errorf("pol-withheld gate.policy events %+v", gateOutcomes(pe))
	}

	// The policy changes while intents keep coming: within 2 s every
	// decision is the new version's.
	if err := os.WriteFile(path, []byte(e2ePolicyV2), 0o600); err != nil {
		t.Fatal(err)
	}
	written := time.Now()
	n := 0
	for time.Since(written) < 3*time.Second {
		s.produce(t.Context(), []pipeline.Output{intent(fmt.Sprintf("pol-after-%03d", n), "summarize")})
		n++
		time.Sleep(100 * time.Millisecond) // the pace of the intents, not a wait for a result
	}
	waitFor(t, 60*time.Second, func() bool { return committed.terminalCount() >= 3+n },
		func() string { return fmt.Sprintf("%d runs ended (have %d)", 3+n, committed.terminalCount()) })
	committed.settle(500 * time.Millisecond)
	all, _ = committed.snapshot()
	var first time.Time
	late := 0
	for _, e := range all {
		g := e.ev.Gate
		if e.topic != string(s.layout.Gate("policy")) || g == nil {
			continue
		}
		if g.PolicyVersion == v2 && (first.IsZero() || e.ev.Timestamp.Before(first)) {
			first = e.ev.Timestamp
		}
		if e.ev.Timestamp.After(written.Add(2 * time.Second)) {
			late++
			if g.PolicyVersion != v2 {
				t.Errorf("%s: a decision %s after the change carries version %s, want %s", e.ev.TraceID, e.ev.Timestamp.Sub(written), g.PolicyVersion, v2)
			} else if g.Evidence["stage"] == "admission" && (g.Passed || g.Rule != "no-summaries") {
				t.Errorf("%s: under %s a summary was %+v", e.ev.TraceID, v2, g)
			}
		}
	}
	if first.IsZero() || late == 0 {
		t.Fatalf("no decision under the new version %s (%d after 2 s)", v2, late)
	}
	t.Logf("policy %s → %s: first decision under the new version %s after the write; %d decisions after 2 s, all %s",
		v1, v2, first.Sub(written).Round(time.Millisecond), late, v2)
}

func gateOutcomes(evs []*schemas.RuntimeEvent) []schemas.GateOutcome {
	out := make([]schemas.GateOutcome, len(evs))
	for i, e := range evs {
		out[i] = *e.Gate
	}
	return out
}

// TestDeniedAtAdmissionCallsNoModel: with the data plane calling an
// OpenAI-compatible server, runs the policy denies at admission make no
// call to it at all (the server's own log says so), while the allowed runs
// beside them each reach it.
func TestDeniedAtAdmissionCallsNoModel(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(e2ePolicyV1), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newStack(t, nil, map[string]string{"SPINE_POLICY": path})
	committed := s.collect(t, true)
	srv := newChatServer(t, 0, nil)
	s.start(orchestrator.Name, "e2e", nil)
	s.start(gatekeeper.Name, "e2e", nil)
	s.startDataplane("e2e", openAIExecutor(t, srv.URL))

	const n = 10
	var outs []pipeline.Output
	for i := range n {
		kind := "summarize"
		if i%2 == 1 {
			kind = "tool_call" // denied by no-tool-calls
		}
		trace := fmt.Sprintf("adm-%s-%02d", kind, i)
		outs = append(outs, pipeline.Output{Key: []byte(trace), Version: schemas.V2, Value: &schemas.Intent{
			IntentID: "i-" + trace, TraceID: trace, Actor: "alice", Kind: kind, Input: "input of " + trace, SchemaVersion: schemas.V2, Timestamp: time.Now(),
		}})
	}
	s.produce(t.Context(), outs)
	waitFor(t, 60*time.Second, func() bool { return committed.terminalCount() >= n },
		func() string { return fmt.Sprintf("%d runs to end (have %d)", n, committed.terminalCount()) })
	committed.settle(500 * time.Millisecond)

	calls := map[string]int{}
	for _, c := range srv.log() {
		calls[c.input]++
	}
	_, byTrace := committed.snapshot()
	for _, o := range outs {
		it := o.Value.(*schemas.Intent)
		var outcome schemas.EventType
		for _, e := range byTrace[it.TraceID] {
			if terminalTypes[e.ev.EventType] {
				outcome = e.ev.EventType
			}
		}
		switch it.Kind {
		case "tool_call":
			if outcome != thread.RunRejected || calls[it.Input] != 0 {
				t.Errorf("%s denied at admission: ended %q after %d calls to the model server, want rejected after none", it.TraceID, outcome, calls[it.Input])
			}
		default:
			if outcome != thread.RunCompleted || calls[it.Input] != 1 {
				t.Errorf("%s allowed: ended %q after %d calls to the model server, want completed after one", it.TraceID, outcome, calls[it.Input])
			}
		}
	}
	t.Logf("the model server took %d calls for %d runs, %d of them denied at admission", len(srv.log()), n, n/2)
}
