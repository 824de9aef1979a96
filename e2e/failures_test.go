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
//
// Like an API that honours the Idempotency-Key header (Stripe's, the IETF
// draft's), it answers a call whose key it has seen with the first
// answer to that key, and counts it as that call again, not as a new one:
// the dataplane runs a call at least once (a call whose result's
// transaction aborts, or whose partition moves, runs again with the same
// key), and the stateflow's retries come with new keys.
type failingModel struct {
	*httptest.Server
	mu      sync.Mutex
	calls   map[string][]time.Time // input → when each call with a new key came
	keys    map[string]*keyedCall  // Idempotency-Key → its first call
	repeats map[string]int         // input → calls with a key seen before
}

// keyedCall is the first call with an Idempotency-Key: which call of its
// input it was, and its answer once it gave one.
type keyedCall struct {
	n      int
	answer *httptest.ResponseRecorder
}

func newFailingModel(t *testing.T) *failingModel {
	m := &failingModel{calls: map[string][]time.Time{}, keys: map[string]*keyedCall{}, repeats: map[string]int{}}
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
	key := r.Header.Get("Idempotency-Key")
	m.mu.Lock()
	first := m.keys[key]
	var n int
	switch {
	case first != nil && first.answer != nil: // answered before: the same answer
		m.repeats[input]++
		m.mu.Unlock()
		replay(w, first.answer)
		return
	case first != nil: // its first call is running, or was cut: run it again
		m.repeats[input]++
		n = first.n
	default:
		m.calls[input] = append(m.calls[input], time.Now())
		n = len(m.calls[input])
		first = &keyedCall{n: n}
		if key != "" {
			m.keys[key] = first
		}
	}
	m.mu.Unlock()
	rec := httptest.NewRecorder()
	m.answer(rec, r, input, n)
	if r.Context().Err() != nil {
		return // the caller is gone: no answer to keep
	}
	m.mu.Lock()
	first.answer = rec
	m.mu.Unlock()
	replay(w, rec)
}

func replay(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// answer writes the answer to the nth call (with a new key) of input.
func (m *failingModel) answer(w http.ResponseWriter, r *http.Request, input string, n int) {
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

// callsOf returns when each call of input with a new Idempotency-Key came,
// and how many calls repeated a key.
func (m *failingModel) callsOf(input string) ([]time.Time, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]time.Time(nil), m.calls[input]...), m.repeats[input]
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
				// Each attempt that timed out, whether the call's own
				// deadline cut it (dataplane.failed, kind timeout) or the
				// orchestrator's timer for the state fired first (its
				// result committed late), is retried by a
				// run.retry_scheduled of kind timeout.
				if e.ev.EventType == thread.RunRetryScheduled && e.ev.Error != nil {
					if kind, _, _ := thread.ParseCallError(*e.ev.Error); kind == thread.ErrorTimeout {
						timeouts++
					}
				}
			}
			// An attempt that timed out (a loaded machine can delay a
			// dispatch, or the commit of its result, past
			// SPINE_EXEC_TIMEOUT) is retried: up to one call more, as the
			// thread records, up to the attempts allowed (none more when
			// the attempt that timed out had made its call and was to
			// fail anyway).
			lo, hi := tc.calls, min(tc.calls+timeouts, 3)
			switch tc.word {
			case "slow": // every attempt times out, each after its call
				lo, hi = tc.calls, tc.calls
			case "down": // every attempt fails: one that timed out may not have called
				lo, hi = tc.calls-timeouts, tc.calls
			}
			calls, repeats := m.callsOf(tc.word + " " + trace)
			if repeats > 0 || (timeouts > 0 && tc.word != "slow") {
				t.Logf("%s: %d attempts timed out, %d calls repeated an Idempotency-Key (the dataplane ran a call again)", trace, timeouts, repeats)
			}
			switch {
			case end == nil || end.EventType != tc.end:
				t.Errorf("%s ended %v, want %s", trace, end, tc.end)
				continue
			case len(calls) < lo || len(calls) > hi:
				want := fmt.Sprint(lo)
				if hi > lo {
					want = fmt.Sprintf("%d to %d", lo, hi)
				}
				t.Errorf("%s: %d calls to the model with a new Idempotency-Key, want %s (%d of its attempts timed out; %d calls repeated a key); its thread:\n%s", trace, len(calls), want, timeouts, repeats, threadOf(byTrace[trace]))
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

// threadOf lists a run's events a line each, with when each was written
// and its error, for a failure's message.
func threadOf(evs []event) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "  %s %s span=%s parent=%s", e.ev.Timestamp.Format("15:04:05.000"), e, e.ev.SpanID, e.ev.ParentSpanID)
		if e.ev.Error != nil {
			fmt.Fprintf(&b, " error=%q", *e.ev.Error)
		}
		b.WriteByte('\n')
	}
	return b.String()
}
