package orchestrator_test

import (
	"strings"
	"testing"

	"github.com/spinerun/spine/processors/orchestrator"
	"github.com/spinerun/spine/schemas/thread"
)

// guardedFile is the default machine with guards on failure: a run of kind
// tool_call that fails with a non-retryable kind is rejected, not failed;
// and a failure of a run whose input is over 1 KiB is refused outright (no
// entry matches: the trigger is recorded as illegal).
func guardedFile(t *testing.T) *orchestrator.Stateflow {
	t.Helper()
	src := strings.Replace(string(orchestrator.DefaultFile), `  - state: failed
    event: run.failed
    terminal: true
    entries:
      - {from: [dispatched, executing], on: dataplane.failed}`, `  - state: failed
    event: run.failed
    terminal: true
    entries:
      - from: [dispatched, executing]
        on: dataplane.failed
        when: run.input_size <= 1024 && !(run.kind == "tool_call" && run.error_kind == "bad_request")`, 1)
	src = strings.Replace(src, `      - {from: [gating], on: verdict.failed}`, `      - {from: [gating], on: verdict.failed}
      - from: [dispatched, executing]
        on: dataplane.failed
        when: run.kind == "tool_call" && run.error_kind == "bad_request" && provenance.subject == ""`, 1)
	f, err := orchestrator.ParseStateflow("guarded.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestGuards: an entry's CEL guard is evaluated when the trigger arrives,
// on the run's kind, error kind and input size; a trigger no entry matches
// is refused and recorded as today.
func TestGuards(t *testing.T) {
	t.Parallel()
	flow := guardedFile(t)
	for _, tc := range []struct {
		name, kind, input, err string
		want                   string
	}{
		{"failed as before", "summarize", "hi", "bad_request: 400", string(thread.RunFailed)},
		{"tool_call bad request rejected", "tool_call", "hi", "bad_request: 400", string(thread.RunRejected)},
		{"tool_call other error failed", "tool_call", "hi", "invalid_input: no", string(thread.RunFailed)},
		{"large input: no entry, refused", "summarize", strings.Repeat("x", 2000), "bad_request: 400", string(thread.RunIllegal)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, orchestrator.WithStateflow(flow))
			it := newIntent("tr", "alice", tc.kind)
			it.Input = tc.input
			d := last(h.must(h.intent(it)), thread.RunDispatch)
			f := reply(d, thread.DataplaneFailed, 0)
			f.Error = &tc.err
			evs := h.must(h.data(f))
			if len(evs) != 1 || string(evs[0].EventType) != tc.want {
				t.Fatalf("events %v, want %s", types(evs), tc.want)
			}
		})
	}
}
