package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/gatekeeper"
	"github.com/spinerun/spine/processors/orchestrator"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// failingModel is an OpenAI-compatible server whose answer depends on the
// user message's first word: ok, bad (400), unauth (401), down (500
// always), flaky (503, then an answer), limited (429 with Retry-After: 1,
// then an answer), slow (longer than the call's timeout), garbled
// (malformed JSON), empty (no choices). It logs when each call came.
type failingModel struct {
	*httptest.Server
	mu    sync.Mutex
	calls map[string][]time.Time // input → when each call came
}

func newFailingModel(t *testing.T) *failingModel {
	m := &failingModel{calls: map[string][]time.Time{}}
	m.Server = httptest.NewServer(http.HandlerFunc(m.serve))
	t.Cleanup(m.Close)
	return m
}

func (m *failingModel) serve(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Messages []struct{ Role, Content string } `json:"messages"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Messages) == 0 {
		http.Error(w, `{"error":{"message":"bad body","type":"invalid_request_error"}}`, http.StatusBadRequest)
		return
	}
	input := req.Messages[len(req.Messages)-1].Content
	m.mu.Lock()
	m.calls[input] = append(m.calls[input], time.Now())
	n := len(m.calls[input])
	m.mu.Unlock()
	errorBody := func(code int, typ, msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"error":{"message":%q,"type":%q}}`, msg, typ)
	}
	answer := func(choices string) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"c","object":"chat.completion","created":1,"model":"m","choices":%s,"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`, choices)
	}
	ok := func() {
		answer(`[{"index":0,"message":{"role":"assistant","content":"{\"answer\":\"fine\"}"},"finish_reason":"stop"}]`)
	}
	switch word, _, _ := strings.Cut(input, " "); word {
	case "ok":
		ok()
	case "bad":
		errorBody(http.StatusBadRequest, "invalid_request_error", "the model does not exist")
	case "unauth":
		errorBody(http.StatusUnauthorized, "invalid_api_key", "no such key")
	case "down":
		errorBody(http.StatusInternalServerError, "server_error", "the model crashed")
	case "flaky":
		if n == 1 {
			errorBody(http.StatusServiceUnavailable, "server_error", "overloaded")
			return
		}
		ok()
	case "limited":
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			errorBody(http.StatusTooManyRequests, "rate_limit_error", "slow down")
			return
		}
		ok()
	case "slow":
		select {
		case <-time.After(10 * time.Second):
		case <-r.Context().Done():
			return
		}
		ok()
	case "garbled":
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":"c","choices":[{"message":`))
	case "empty":
		answer(`[]`)
	}
}

func (m *failingModel) callsOf(input string) []time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]time.Time(nil), m.calls[input]...)
}

// TestModelFailuresEndRight: through the whole thread, each way an
// OpenAI-compatible server fails ends its run in the right state with the
// right reason, after the right number of calls: what no retry cures (400,
// 401, malformed JSON, no choices) fails at once; what may pass (500, 503,
// 429 with Retry-After, a call slower than its timeout) is retried by the
// stateflow's policy alone (3 attempts), the 429 not before its
// Retry-After. Every case runs under contract V1 and V2 alike.
func TestModelFailuresEndRight(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	s := newStack(t, nil, map[string]string{
		"SPINE_EXEC_TIMEOUT": "1500ms", "SPINE_RETRY_MAX_ATTEMPTS": "3",
		"SPINE_RETRY_INITIAL_INTERVAL": "100ms", "SPINE_RETRY_MAX_INTERVAL": "200ms",
	})
	committed := s.collect(t, true)
	m := newFailingModel(t)
	s.start(orchestrator.Name, "e2e", nil)
	s.start(gatekeeper.Name, "e2e", nil)
	s.startDataplane("e2e", openAIExecutor(t, m.URL))

	cases := []struct {
		word  string
		end   schemas.EventType
		kind  string // the error kind the run's terminal event names ("" for none)
		calls int
	}{
		{"ok", thread.RunCompleted, "", 1},
		{"bad", thread.RunFailed, thread.ErrorBadRequest, 1},
		{"unauth", thread.RunFailed, thread.ErrorUnauthorized, 1},
		{"garbled", thread.RunFailed, thread.ErrorMalformed, 1},
		{"empty", thread.RunFailed, thread.ErrorEmptyResponse, 1},
		{"down", thread.RunFailed, thread.ErrorUnavailable, 3},
		{"flaky", thread.RunCompleted, "", 2},
		{"limited", thread.RunCompleted, "", 2},
		// The call is cut at its deadline (dispatch + SPINE_EXEC_TIMEOUT):
		// dataplane.failed, kind timeout, retried, then the run fails.
		{"slow", thread.RunFailed, thread.ErrorTimeout, 3},
	}
	var outs []pipeline.Output
	for _, tc := range cases {
		for _, v := range []schemas.ContractVersion{schemas.V1, schemas.V2} {
			trace := "fail-" + tc.word + "-" + v.String()
			outs = append(outs, pipeline.Output{Key: []byte(trace), Version: v, Value: &schemas.Intent{
				IntentID: "i-" + trace, TraceID: trace, Actor: "alice", Kind: "summarize", Input: tc.word + " " + trace, SchemaVersion: v, Timestamp: time.Now(),
			}})
		}
	}
	s.produce(t.Context(), outs)
	waitFor(t, 90*time.Second, func() bool { return committed.terminalCount() >= len(outs) },
		func() string { return fmt.Sprintf("%d runs to end (have %d)", len(outs), committed.terminalCount()) })
	committed.settle(500 * time.Millisecond)
	_, byTrace := committed.snapshot()
	for _, tc := range cases {
		for _, v := range []schemas.ContractVersion{schemas.V1, schemas.V2} {
			trace := "fail-" + tc.word + "-" + v.String()
			var end *schemas.RuntimeEvent
			timeouts := 0
			for _, e := range byTrace[trace] {
				if terminalTypes[e.ev.EventType] {
					end = e.ev
				}
				if e.ev.EventType == thread.DataplaneFailed && e.ev.Error != nil {
					if kind, _, _ := thread.ParseCallError(*e.ev.Error); kind == thread.ErrorTimeout {
						timeouts++
					}
				}
			}
			// An attempt the deadline cut (a loaded machine can delay a
			// dispatch until the call no longer fits SPINE_EXEC_TIMEOUT)
			// is retried: one call more, as the thread records, up to the
			// attempts allowed.
			want := min(tc.calls+timeouts, 3)
			if tc.word == "slow" || tc.word == "down" {
				want = tc.calls
			}
			calls := m.callsOf(tc.word + " " + trace)
			switch {
			case end == nil || end.EventType != tc.end:
				t.Errorf("%s ended %v, want %s", trace, end, tc.end)
				continue
			case len(calls) != want:
				t.Errorf("%s: %d calls to the model, want %d (%d of its attempts timed out)", trace, len(calls), want, timeouts)
			}
			if tc.kind != "" {
				kind := ""
				if end.Error != nil {
					kind, _, _ = thread.ParseCallError(*end.Error)
				}
				if kind != tc.kind {
					t.Errorf("%s ended %s with error %v, want kind %s", trace, end.EventType, end.Error, tc.kind)
				}
			}
			if tc.word == "limited" && len(calls) == 2 && calls[1].Sub(calls[0]) < time.Second {
				t.Errorf("%s: retried %s after a 429 asking for 1 s", trace, calls[1].Sub(calls[0]).Round(time.Millisecond))
			}
		}
	}
}
