package openai_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A test server that speaks the Chat Completions wire format as the real
// API does: it reads the request strictly (unknown fields, a missing model
// or messages, a wrong role are a 400 in OpenAI's error shape) and answers
// real-shaped JSON.

// wireRequest is a chat completion request as the server reads it.
type wireRequest struct {
	Model    string `json:"model"`
	Messages []struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	} `json:"messages"`
	Temperature    *float64 `json:"temperature"`
	MaxTokens      *int     `json:"max_tokens"`
	ResponseFormat *struct {
		Type string `json:"type"`
	} `json:"response_format"`
	Stream *bool `json:"stream"`
}

// received is one request the server accepted.
type received struct {
	Header http.Header
	Body   wireRequest
	Raw    []byte
}

// answer writes the server's response to an accepted request.
type answer func(w http.ResponseWriter, r *http.Request, got wireRequest)

// newServer starts a Chat Completions server under /v1 that records what
// it accepted on the returned channel and answers with a. It returns the
// base URL.
func newServer(t *testing.T, a answer) (string, <-chan received) {
	t.Helper()
	seen := make(chan received, 16)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, r *http.Request) {
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			writeError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json, got "+ct, "invalid_request_error", nil)
			return
		}
		raw, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		var got wireRequest
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil {
			writeError(w, http.StatusBadRequest, "We could not parse the JSON body of your request: "+err.Error(), "invalid_request_error", nil)
			return
		}
		if got.Model == "" {
			writeError(w, http.StatusBadRequest, "you must provide a model parameter", "invalid_request_error", nil)
			return
		}
		if len(got.Messages) == 0 {
			writeError(w, http.StatusBadRequest, "[] is too short - 'messages'", "invalid_request_error", nil)
			return
		}
		for i, m := range got.Messages {
			if m.Role != "system" && m.Role != "user" && m.Role != "assistant" {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("Invalid value: '%s'. Supported values are: 'system', 'assistant', 'user'.", m.Role),
					"invalid_request_error", fmt.Sprintf("messages[%d].role", i))
				return
			}
		}
		select {
		case seen <- received{Header: r.Header.Clone(), Body: got, Raw: raw}:
		default: // a test that makes many calls reads none
		}
		a(w, r, got)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL + "/v1", seen
}

// writeError answers OpenAI's error shape.
func writeError(w http.ResponseWriter, status int, msg, typ string, param any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"message": msg, "type": typ, "param": param, "code": nil,
	}})
}

// completion answers a real-shaped chat completion with one choice.
func completion(content, finish string, prompt, completionTokens int) answer {
	return func(w http.ResponseWriter, _ *http.Request, got wireRequest) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"id":                 "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
			"object":             "chat.completion",
			"created":            1741570283,
			"model":              got.Model,
			"system_fingerprint": "fp_44709d6fcb",
			"choices": []any{map[string]any{
				"index":         0,
				"message":       map[string]any{"role": "assistant", "content": content, "refusal": nil, "annotations": []any{}},
				"logprobs":      nil,
				"finish_reason": finish,
			}},
			"usage": map[string]any{
				"prompt_tokens": prompt, "completion_tokens": completionTokens, "total_tokens": prompt + completionTokens,
				"prompt_tokens_details":     map[string]any{"cached_tokens": 0, "audio_tokens": 0},
				"completion_tokens_details": map[string]any{"reasoning_tokens": 0, "audio_tokens": 0},
			},
			"service_tier": "default",
		})
	}
}

// raw answers status with body as given.
func raw(status int, body string, header ...string) answer {
	return func(w http.ResponseWriter, _ *http.Request, _ wireRequest) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		if w.Header().Get("Content-Type") == "" && strings.HasPrefix(body, "{") {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}
