package gates_test

import (
	"context"
	"testing"

	"github.com/spinerun/spine/gates"
	"github.com/spinerun/spine/schemas"
)

const benchPolicySrc = `version: 1
default: allow
rules:
  - name: no-such-kind
    stage: admission
    effect: deny
    when: "intent.kind == 'no-such-kind'"
    message: "never"
  - name: negative-size
    stage: artifact
    effect: deny
    when: "artifact.size < 0"
    message: "never"
`

// BenchmarkPolicyEvaluate is the policy's cost per run on the golden path:
// one admission and one artifact evaluation of rules that never match.
func BenchmarkPolicyEvaluate(b *testing.B) {
	p, err := gates.ParsePolicy([]byte(benchPolicySrc))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	it := &schemas.Intent{Kind: "summarize", Actor: "alice", Input: "hello world", SchemaVersion: schemas.V1}
	ev := &schemas.RuntimeEvent{Intent: "summarize", Actor: "alice", ArtifactID: "art-1",
		Artifact: &schemas.ArtifactSummary{ContentType: "text/plain", Summary: "hi", SizeBytes: 2, Score: 0.5}}
	b.ReportAllocs()
	for b.Loop() {
		if d := p.Evaluate(ctx, gates.StageAdmission, gates.IntentInput(it, nil, "baseline", schemas.V1)); !d.Allowed {
			b.Fatal(d)
		}
		if d := p.Evaluate(ctx, gates.StageArtifact, gates.EventInput(ev, schemas.V1)); !d.Allowed {
			b.Fatal(d)
		}
	}
}
