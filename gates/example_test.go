package gates_test

import (
	"context"
	"fmt"
	"time"

	"github.com/spinerun/spine/gates"
	"github.com/spinerun/spine/schemas"
)

// Holding an artifact's reported latency against its intent kind's budget.
func ExamplePerformance() {
	c := gates.Performance(2*time.Second, map[string]time.Duration{"classify": 500 * time.Millisecond})
	ev := &schemas.RuntimeEvent{Intent: "classify", ArtifactID: "art-1",
		Artifact: &schemas.ArtifactSummary{ContentType: "application/json", Summary: `{"label":"spam"}`, Score: 0.9, LatencyMs: 620}}
	o, _ := c.Check(context.Background(), gates.Subject{Event: ev, Version: schemas.V2})
	fmt.Println(o.Passed, o.Code, o.Measured, o.Threshold)
	o, _ = gates.Schema().Check(context.Background(), gates.Subject{Event: ev, Version: schemas.V2})
	fmt.Println(o.Passed, o.Code)
	// Output:
	// false over_budget 620 500
	// true valid
}

// A policy's admission rules judging two intents: the first matching rule
// decides, and the decision names it and the policy's version.
func ExampleParsePolicy() {
	p, err := gates.ParsePolicy([]byte(`version: 1
default: allow
rules:
  - name: no-anonymous
    stage: admission
    effect: deny
    when: "provenance == null"
    message: "every run needs a verified caller"
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	anonymous := gates.PolicyInput{Kind: "summarize", Actor: "bob", Route: "baseline"}
	verified := anonymous
	verified.Provenance = &schemas.Provenance{Issuer: "https://idp.example", Subject: "bob"}
	for _, in := range []gates.PolicyInput{anonymous, verified} {
		d := p.Evaluate(context.Background(), gates.StageAdmission, in)
		fmt.Println(d.Allowed, d.Reason(), d.Version == p.Version())
	}
	_, err = gates.ParsePolicy([]byte("version: 1\nrules:\n  - name: typo\n    stage: admission\n    effect: deny\n    when: \"intent.knd == 'x'\"\n"))
	fmt.Println(err)
	// Output:
	// false no-anonymous: every run needs a verified caller true
	// true default: no admission rule matched: default allow true
	// invalid policy: line 6: rule typo: when: column 18: undefined field 'knd'
}
