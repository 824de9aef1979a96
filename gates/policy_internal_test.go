package gates

import (
	"context"
	"testing"

	"github.com/spinerun/spine/schemas"
)

// A condition whose cost cannot grow with the input is evaluated without
// cost tracking; one that can keeps its limit.
func TestPolicyBoundedConditions(t *testing.T) {
	src := `version: 1
default: allow
rules:
  - {name: kind, stage: admission, effect: deny, when: "intent.kind == 'x' && route != 'canary'", message: m}
  - {name: prov, stage: admission, effect: deny, when: "provenance != null && provenance.subject == 'eve'", message: m}
  - {name: size, stage: artifact, effect: deny, when: "artifact.size > 10 && artifact.score < 0.1", message: m}
  - {name: contains, stage: admission, effect: deny, when: "intent.input.contains('forbidden')", message: m}
  - {name: loop, stage: admission, effect: deny, when: "intent.attributes.exists(k, intent.attributes[k].matches('(a+)+b'))", message: m}
`
	p, err := ParsePolicy([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"kind": true, "prov": true, "size": true, "contains": false, "loop": false}
	for _, rules := range p.progs {
		for _, r := range rules {
			if r.bounded != want[r.Name] {
				t.Errorf("rule %s: bounded %v, want %v", r.Name, r.bounded, want[r.Name])
			}
		}
	}
	// The unbounded ones still decide.
	in := IntentInput(&schemas.Intent{Kind: "k", Input: "a forbidden word"}, nil, "baseline", schemas.V1)
	if d := p.Evaluate(context.Background(), StageAdmission, in); d.Allowed || d.Rule != "contains" {
		t.Errorf("contains: %+v", d)
	}
	// Over the limit, an unbounded one fails closed: TestPolicy's "over
	// the cost limit" case.
}
