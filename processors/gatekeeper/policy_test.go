package gatekeeper_test

import (
	"strings"
	"testing"

	"github.com/spinerun/spine/gates"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// TestPolicyArtifactStage: the policy's artifact rules are the gate.policy
// check; a denied artifact fails its gate with the rule and the policy
// version, and the verdict, so the run is rejected before handoff.
func TestPolicyArtifactStage(t *testing.T) {
	t.Parallel()
	p, err := gates.ParsePolicy([]byte(`version: 1
default: allow
rules:
  - name: staff-canary
    stage: artifact
    effect: deny
    when: "route == 'canary' && (provenance == null || !provenance.subject.endsWith('@staff'))"
    message: "canary artifacts go to staff only"
  - name: no-secrets
    stage: artifact
    effect: deny
    when: "artifact.summary.contains('PRIVATE KEY')"
    message: "the artifact leaks a key"
`))
	if err != nil {
		t.Fatal(err)
	}
	r := newRunner(t, gates.Schema(), gates.PolicyGate(p))
	for _, tc := range []struct {
		name    string
		mod     func(*schemas.RuntimeEvent)
		passed  bool
		rule    string
		verdict string
	}{
		{"allowed", func(e *schemas.RuntimeEvent) { e.Provenance = &schemas.Provenance{Subject: "eve@staff"} }, true, "default", "all_passed: schema, policy"},
		{"denied by route and caller", nil, false, "staff-canary", "failed: policy"},
		{"artifact denied", func(e *schemas.RuntimeEvent) {
			e.Provenance = &schemas.Provenance{Subject: "eve@staff"}
			e.Artifact.Summary = "-----BEGIN PRIVATE KEY-----"
		}, false, "no-secrets", "failed: policy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ev := artifact(10)
			if tc.mod != nil {
				tc.mod(ev)
			}
			outs, err := run(t, r, ev)
			if err != nil || len(outs) != 3 {
				t.Fatalf("%d outputs, %v", len(outs), err)
			}
			pol, v := outs[1].Value.(*schemas.RuntimeEvent), outs[2].Value.(*schemas.RuntimeEvent)
			if outs[1].Topic != "t.gate.policy" || pol.Gate.Name != "policy" || pol.Gate.Passed != tc.passed || pol.Gate.Rule != tc.rule ||
				pol.Gate.PolicyVersion != p.Version() || pol.Gate.Evidence["stage"] != "artifact" || !strings.HasPrefix(pol.Gate.Reason, tc.rule+": ") {
				t.Fatalf("gate.policy on %s: %+v", outs[1].Topic, pol.Gate)
			}
			want := thread.GateFailed
			if tc.passed {
				want = thread.GatePassed
			}
			if pol.EventType != want || v.Gate.Passed != tc.passed || v.Gate.Reason != tc.verdict {
				t.Fatalf("%s, verdict %+v", pol.EventType, v.Gate)
			}
		})
	}
}
