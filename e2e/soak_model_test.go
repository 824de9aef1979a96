package e2e

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The model server's modes.
const (
	modeNormal int32 = iota
	modeFailing
	modeSlow
)

// soakModel is an OpenAI-compatible Chat Completions server whose mode the
// schedule switches: normal (an answer after 20-80ms), failing (every call
// answered 500 with an OpenAI error body), slow (answers after
// SPINE_EXEC_TIMEOUT plus a second: the state times out first).
type soakModel struct {
	*httptest.Server
	mode                atomic.Int32
	calls, failed, slow atomic.Int64

	mu sync.Mutex
	at []time.Time // when each call came
}

type modelCounts struct{ calls, failed, slow int64 }

func newSoakModel(tb testing.TB) *soakModel {
	m := &soakModel{}
	m.Server = httptest.NewServer(http.HandlerFunc(m.serve))
	tb.Cleanup(m.Close)
	return m
}

// perWindow returns the calls made in each window of d from start on.
func (m *soakModel) perWindow(start time.Time, d time.Duration) []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []int
	for _, at := range m.at {
		if at.Before(start) {
			continue
		}
		i := int(at.Sub(start) / d)
		for len(out) <= i {
			out = append(out, 0)
		}
		out[i]++
	}
	return out
}

func (m *soakModel) set(mode int32) { m.mode.Store(mode) }

func (m *soakModel) counts() modelCounts {
	return modelCounts{m.calls.Load(), m.failed.Load(), m.slow.Load()}
}

func (m *soakModel) serve(w http.ResponseWriter, r *http.Request) {
	input, ok := chatInput(w, r)
	if !ok {
		return
	}
	m.calls.Add(1)
	m.mu.Lock()
	m.at = append(m.at, time.Now())
	m.mu.Unlock()
	delay := time.Duration(20+len(input)%60) * time.Millisecond
	switch m.mode.Load() {
	case modeFailing:
		m.failed.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"error":{"message":"the soak's model is failing","type":"server_error"}}`))
		return
	case modeSlow:
		m.slow.Add(1)
		delay = soakExecTimeout + time.Second
	}
	select {
	case <-time.After(delay):
	case <-r.Context().Done():
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"id": "chatcmpl-soak", "object": "chat.completion", "created": time.Now().Unix(), "model": "soak",
		"choices": []any{map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": answerTo(input)}, "finish_reason": "stop"}},
		"usage":   map[string]any{"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18},
	})
}
