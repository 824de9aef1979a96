package openai_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/spinerun/spine/adapters/openai"
	"github.com/spinerun/spine/processors/dataplane"
)

// An executor for a local OpenAI-compatible server (here a stand-in that
// answers every call the same): the request's Input is the user message.
func ExampleNew() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"object":  "chat.completion",
			"choices": []any{map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": "Kafka is a log."}, "finish_reason": "stop"}},
			"usage":   map[string]any{"prompt_tokens": 14, "completion_tokens": 5, "total_tokens": 19},
		})
	}))
	defer srv.Close()

	e, err := openai.New(openai.Config{
		BaseURL: srv.URL + "/v1", // e.g. http://127.0.0.1:11434/v1 for Ollama
		Model:   "llama3.2",
		System:  "Answer in one sentence.",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	res, err := e.Execute(context.Background(), dataplane.Request{IdempotencyKey: "run-1-attempt-0", Input: []byte("What is Kafka?")})
	if err != nil {
		fmt.Println(dataplane.ErrorKind(err), err)
		return
	}
	fmt.Printf("%s %q %s in=%d out=%d\n", res.ContentType, res.Content, res.FinishReason, res.Usage.InputTokens, res.Usage.OutputTokens)
	// Output: text/plain; charset=utf-8 "Kafka is a log." stop in=14 out=5
}
