package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// TestOutputSchemaGate: the agents file declares a JSON Schema for a kind's
// output; gate.schema judges each artifact whole against it — read from the
// artifacts topic when it is longer than its summary — and a failure names
// the JSON path and the rule.
func TestOutputSchemaGate(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	srv := newChatServer(t, 0, nil) // answers {"answer": <the input>}
	agentsFile := filepath.Join(t.TempDir(), "agents.yaml")
	if err := os.WriteFile(agentsFile, []byte(`agents:
  - kind: extract
    executor: openai
    base_url: `+srv.URL+`/v1
    model: test
    json: true
    output_schema:
      type: object
      required: [answer]
      additionalProperties: false
      properties:
        answer: {type: string, pattern: "^ok"}
  - kind: listing
    executor: openai
    base_url: `+srv.URL+`/v1
    model: test
    output_schema: {type: array}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newStack(t, nil, map[string]string{"SPINE_AGENTS": agentsFile})
	committed := s.collect(t, true)
	s.startAll(nil)

	long := strings.Repeat("x", 3*schemas.MaxSummaryBytes) // a summary cuts it: the gate reads the artifact
	runs := []struct {
		trace, kind, input string
		passed             bool
		code, rule, path   string
	}{
		{"os-short-ok", "extract", "ok, short", true, "valid", "output_schema", ""},
		{"os-long-ok", "extract", "ok" + long, true, "valid", "output_schema", ""},
		{"os-short-bad", "extract", "no", false, "output_schema", "output_schema/properties/answer/pattern", "/answer"},
		{"os-long-bad", "extract", "no" + long, false, "output_schema", "output_schema/properties/answer/pattern", "/answer"},
		{"os-type", "listing", "anything", false, "output_schema", "output_schema/type", "/"},
	}
	var outs []pipeline.Output
	for i, r := range runs {
		v := schemas.Versions[i%2]
		outs = append(outs, pipeline.Output{Key: []byte(r.trace), Version: v, Value: &schemas.Intent{
			IntentID: "i-" + r.trace, TraceID: r.trace, Actor: "alice", Kind: r.kind, Input: r.input, SchemaVersion: v, Timestamp: time.Now(),
		}})
	}
	s.produce(context.Background(), outs)
	waitFor(t, 90*time.Second, func() bool { return committed.terminalCount() >= len(runs) },
		func() string { return fmt.Sprintf("%d runs to end (have %d)", len(runs), committed.terminalCount()) })

	_, byTrace := committed.snapshot()
	for _, r := range runs {
		var gate *schemas.GateOutcome
		var outcome schemas.EventType
		for _, e := range byTrace[r.trace] {
			if e.ev.Gate != nil && e.ev.Gate.Name == thread.SchemaGate {
				gate = e.ev.Gate
			}
			if terminalTypes[e.ev.EventType] {
				outcome = e.ev.EventType
			}
		}
		if gate == nil {
			t.Errorf("%s: no gate.schema event", r.trace)
			continue
		}
		t.Logf("%s (%s): gate.schema passed=%v rule=%s reason=%.200q path=%s; run %s", r.trace, r.kind, gate.Passed, gate.Rule, gate.Reason, gate.Evidence["path"], outcome)
		if gate.Passed != r.passed || !strings.HasPrefix(gate.Reason, r.code+":") || gate.Rule != r.rule {
			t.Errorf("%s: gate.schema passed=%v rule %q reason %q, want passed=%v rule %q code %s", r.trace, gate.Passed, gate.Rule, gate.Reason, r.passed, r.rule, r.code)
		}
		if len(gate.Reason) > 1024 {
			t.Errorf("%s: a %d-byte reason: the violation's text is not bounded", r.trace, len(gate.Reason))
		}
		if !r.passed && gate.Evidence["path"] != r.path {
			t.Errorf("%s: evidence %v, want path %q", r.trace, gate.Evidence, r.path)
		}
		if want := thread.RunCompleted; r.passed && outcome != want {
			t.Errorf("%s ended %s, want %s", r.trace, outcome, want)
		}
		if !r.passed && outcome == thread.RunCompleted {
			t.Errorf("%s completed though its output breaks the schema", r.trace)
		}
	}
}
