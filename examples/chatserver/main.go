// Command chatserver is a tiny OpenAI-compatible Chat Completions server
// for trying Spine's agents file without a model at hand: it stands in for
// Ollama, vLLM or llama.cpp's server. POST /v1/chat/completions answers
// "<model>: <the first sentence of the user message>" after the model's
// latency; GET /v1/models lists the models named by -latency.
//
//	go run ./examples/chatserver -addr 127.0.0.1:11434 -latency llama3.2=40ms,llama3.3=400ms
//
// It is an example, not a model: no streaming, no tools, no auth.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"strings"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:11434", "listen address")
	latencies := flag.String("latency", "llama3.2=40ms", "comma-separated model=latency; other models are unknown (404)")
	fail := flag.String("fail", "", "comma-separated models that answer 500")
	flag.Parse()

	models := map[string]time.Duration{}
	for _, kv := range strings.Split(*latencies, ",") {
		m, d, ok := strings.Cut(strings.TrimSpace(kv), "=")
		lat, err := time.ParseDuration(d)
		if !ok || err != nil || m == "" {
			log.Fatalf("-latency %q: want model=duration[,model=duration]", kv)
		}
		models[m] = lat
	}
	failing := map[string]bool{}
	for _, m := range strings.Split(*fail, ",") {
		if m = strings.TrimSpace(m); m != "" {
			failing[m] = true
		}
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, _ *http.Request) {
		var data []map[string]string
		for m := range models {
			data = append(data, map[string]string{"id": m, "object": "model"})
		}
		writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
	})
	mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Model    string `json:"model"`
			Messages []struct {
				Role    string `json:"role"`
				Content string `json:"content"`
			} `json:"messages"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			writeError(w, http.StatusBadRequest, "invalid_request_error", "the body is not a chat completion request: "+err.Error())
			return
		}
		lat, ok := models[req.Model]
		if !ok {
			writeError(w, http.StatusNotFound, "invalid_request_error", fmt.Sprintf("model %q not found", req.Model))
			return
		}
		select {
		case <-time.After(lat):
		case <-r.Context().Done():
			return
		}
		if failing[req.Model] {
			writeError(w, http.StatusInternalServerError, "server_error", req.Model+" is overloaded")
			return
		}
		var user string
		for _, m := range req.Messages {
			if m.Role == "user" {
				user = m.Content
			}
		}
		answer := req.Model + ": " + firstSentence(user)
		writeJSON(w, http.StatusOK, map[string]any{
			"id": "chatcmpl-example", "object": "chat.completion", "created": time.Now().Unix(), "model": req.Model,
			"choices": []any{map[string]any{"index": 0, "message": map[string]string{"role": "assistant", "content": answer}, "finish_reason": "stop"}},
			"usage":   map[string]int{"prompt_tokens": len(strings.Fields(user)), "completion_tokens": len(strings.Fields(answer))},
		})
	})
	log.Printf("chatserver on http://%s/v1, models %s", *addr, *latencies)
	log.Fatal(http.ListenAndServe(*addr, mux))
}

// firstSentence is s up to its first full stop, or s.
func firstSentence(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, ".!?"); i >= 0 {
		return s[:i+1]
	}
	return s
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, typ, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"message": msg, "type": typ}})
}
