package orchestrator_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/orchestrator"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// TestInputRidesEveryDispatch: the intent's input reaches the data plane on
// run.dispatch, byte for byte, on the first attempt and on a retry, under
// either contract version; no other event carries it, and an ended run's
// state no longer holds it.
func TestInputRidesEveryDispatch(t *testing.T) {
	t.Parallel()
	input := strings.Repeat("línea ✓ {\"k\": 1}\n", 60000) // about 1 MiB of UTF-8
	input = input[:schemas.DefaultInputLimit-3] + "end"
	for _, tc := range []struct {
		name   string
		router orchestrator.Router
	}{
		{"V1 baseline", orchestrator.Baseline},
		{"V2 canary", orchestrator.RouterFunc(func(string, string) string { return thread.RouteCanary })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, orchestrator.WithRouter(tc.router))
			it := newIntent("tr-in", "alice", "summarize")
			it.Input = input
			first := last(h.must(h.intent(it)), thread.RunDispatch)
			if first == nil || first.Input != input {
				t.Fatalf("first dispatch does not carry the %d-byte input", len(input))
			}
			// A retryable failure: the retry's dispatch carries it too.
			h.must(h.data(reply(first, thread.DataplaneFailed, 0)))
			h.clk.Add(time.Minute)
			retry := last(h.fire("tr-in"), thread.RunDispatch)
			if retry == nil || retry.Input != input || retry.Attempt != 1 {
				t.Fatalf("retry dispatch %+v does not carry the input on attempt 1", retry)
			}
			h.must(h.data(reply(retry, thread.DataplaneStarted, 1)))
			delivered := reply(retry, thread.ArtifactDelivered, 1)
			h.must(h.data(delivered))
			h.must(h.gate(verdict(delivered, true)))
			for _, e := range h.runEvents("tr-in") {
				if e.EventType != thread.RunDispatch && e.Input != "" {
					t.Errorf("%s carries the input", e.EventType)
				}
			}
			if st := h.states["tr-in"]; len(st) == 0 || bytes.Contains(st, []byte("end")) || len(st) > 1024 {
				t.Errorf("the ended run's state is %d bytes and still holds the input", len(st))
			}
		})
	}
}

// TestInputLimit: an input over the configured limit is refused at
// admission as input_too_large; the contract's ceiling bounds the setting.
func TestInputLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t, orchestrator.WithMaxInputBytes(10))
	ok := newIntent("tr-ok", "alice", "summarize")
	ok.Input = "0123456789"
	if evs := h.must(h.intent(ok)); last(evs, thread.RunDispatch) == nil {
		t.Fatal("an input at the limit was not dispatched")
	}
	big := newIntent("tr-big", "alice", "summarize")
	big.Input = "0123456789x"
	_, err := h.intent(big)
	if code := rejectCode(err); code != "input_too_large" {
		t.Fatalf("an input over the limit: %v, want input_too_large", err)
	}
	if _, err := orchestrator.New(h.layout, orchestrator.WithMaxInputBytes(schemas.MaxInputBytes+1)); err == nil {
		t.Fatal("a limit over the contract's ceiling was accepted")
	}
}

// rejectCode is the stable code of a handler rejection, "" for none.
func rejectCode(err error) string {
	if r, ok := pipeline.IsReject(err); ok {
		return r.Code
	}
	return ""
}
