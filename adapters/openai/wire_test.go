package openai

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/spinerun/spine/processors/dataplane"
)

// FuzzDecodeCompletion: the response decoder never panics; it either
// returns a result with content, or a non-retryable malformed_response or
// empty_response; decoding the same body again gives the same outcome
// (classification stable); a result re-encoded as a completion decodes to
// itself (round trip). The error reader is fuzzed alongside: bounded,
// valid UTF-8, the key never in it.
func FuzzDecodeCompletion(f *testing.F) {
	for _, s := range []string{
		`{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}`,
		`{"choices":[{"message":{"content":"{\"a\":1}"},"finish_reason":"stop"}]}`,
		`{"choices":[]}`, `{"choices":null}`, `{"choices":[{"message":null}]}`, `{"choices":[{"message":{"content":null,"refusal":"no"}}]}`,
		`{"choices":[{"message":{"content":""}}]}`, `{"choices":{}}`, `{}`, `[]`, `null`, ``, `{"choices":[{}]} x`,
		`{"usage":{"prompt_tokens":-1,"completion_tokens":1e400}}`, "{\"choices\":[{\"message\":{\"content\":\"\xff\"}}]}",
		`{"error":{"message":"sk-fuzz-key leaked","type":"t","code":429}}`, `{"error":"plain"}`, `{"object":"error","message":"m","code":"c"}`,
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	const key = Secret("sk-fuzz-key")
	f.Fuzz(func(t *testing.T, body []byte, jsonMode bool) {
		res, err := decodeCompletion(body, jsonMode)
		again, err2 := decodeCompletion(body, jsonMode)
		if !reflect.DeepEqual(res, again) || (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) {
			t.Fatalf("decodeCompletion(%q) is not stable: %v / %v", body, err, err2)
		}
		if err != nil {
			var ee *dataplane.ExecError
			if !errors.As(err, &ee) || ee.Retryable || (ee.Kind != dataplane.KindMalformed && ee.Kind != dataplane.KindEmptyResponse) {
				t.Fatalf("decodeCompletion(%q) = %v, want malformed or empty, not retryable", body, err)
			}
			if len(err.Error()) > 2*maxMessageBytes {
				t.Fatalf("error of %d bytes", len(err.Error()))
			}
		} else {
			if len(res.Content) == 0 || (jsonMode && (res.ContentType != ContentTypeJSON || !json.Valid(res.Content))) ||
				(!jsonMode && res.ContentType != ContentTypeText) {
				t.Fatalf("decodeCompletion(%q, %v) = %s %q", body, jsonMode, res.ContentType, res.Content)
			}
			msg := map[string]any{"content": string(res.Content)}
			re, _ := json.Marshal(map[string]any{"choices": []any{map[string]any{"message": msg, "finish_reason": res.FinishReason}}})
			back, err := decodeCompletion(re, jsonMode)
			if err != nil || string(back.Content) != string(res.Content) || back.FinishReason != res.FinishReason {
				t.Fatalf("round trip of %q: %q, %v", res.Content, back.Content, err)
			}
		}
		for _, status := range []int{400, 429, 500} {
			e := apiError(status, body, key)
			for _, s := range []string{e.Message, e.Type, e.Code} {
				if len(s) > maxMessageBytes || !utf8.ValidString(s) || strings.Contains(s, key.Reveal()) {
					t.Fatalf("apiError(%q) field %q: over the bound, invalid UTF-8 or the key", body, s)
				}
			}
		}
	})
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 6, 15, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		header []string
		want   time.Duration
	}{
		{"none", nil, 0},
		{"seconds", []string{"Retry-After", "2"}, 2 * time.Second},
		{"spaces", []string{"Retry-After", " 30 "}, 30 * time.Second},
		{"zero", []string{"Retry-After", "0"}, 0},
		{"negative", []string{"Retry-After", "-5"}, 0},
		{"garbage", []string{"Retry-After", "soon"}, 0},
		{"date", []string{"Retry-After", now.Add(90 * time.Second).Format(http.TimeFormat)}, 90 * time.Second},
		{"date past", []string{"Retry-After", now.Add(-time.Minute).Format(http.TimeFormat)}, 0},
		{"date RFC 850", []string{"Retry-After", "Sunday, 06-Dec-26 15:00:05 GMT"}, 5 * time.Second},
		{"ms", []string{"retry-after-ms", "250"}, 250 * time.Millisecond},
		{"ms fraction", []string{"retry-after-ms", "12.5"}, 12500 * time.Microsecond},
		{"ms wins", []string{"Retry-After", "2", "retry-after-ms", "1500"}, 1500 * time.Millisecond},
		{"ms invalid, seconds", []string{"Retry-After", "2", "retry-after-ms", "NaN"}, 2 * time.Second},
		{"ms negative, seconds", []string{"Retry-After", "3", "retry-after-ms", "-1"}, 3 * time.Second},
		{"huge", []string{"Retry-After", "99999999999999"}, maxRetryAfter},
		{"huge ms", []string{"retry-after-ms", "1e300"}, maxRetryAfter},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			for i := 0; i+1 < len(tc.header); i += 2 {
				h.Set(tc.header[i], tc.header[i+1])
			}
			if got := retryAfter(h, now); got != tc.want {
				t.Fatalf("retryAfter(%v) = %s, want %s", h, got, tc.want)
			}
		})
	}
}

func TestAPIError(t *testing.T) {
	t.Parallel()
	const key = Secret("sk-k")
	tests := []struct {
		name string
		body string
		want APIError
	}{
		{"openai", `{"error":{"message":"m sk-k","type":"t","param":null,"code":"c"}}`, APIError{Message: "m [redacted]", Type: "t", Code: "c"}},
		{"numeric code", `{"error":{"message":"m","code":503}}`, APIError{Message: "m", Code: "503"}},
		{"string error", `{"error":"model not found"}`, APIError{Message: "model not found"}},
		{"vllm", `{"object":"error","message":"m","type":"BadRequestError","code":400}`, APIError{Message: "m", Type: "BadRequestError", Code: "400"}},
		{"text", "upstream\nconnect   error", APIError{Message: "upstream connect error"}},
		{"long", strings.Repeat("é", 1000), APIError{Message: strings.Repeat("é", maxMessageBytes/2)}},
		{"empty", ``, APIError{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := apiError(502, []byte(tc.body), key)
			tc.want.StatusCode = 502
			if *got != tc.want {
				t.Fatalf("apiError(%q) = %+v, want %+v", tc.body, *got, tc.want)
			}
		})
	}
}

func BenchmarkDecodeCompletion(b *testing.B) {
	body, _ := json.Marshal(map[string]any{
		"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini",
		"choices": []any{map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": strings.Repeat("token ", 500)}, "finish_reason": "stop"}},
		"usage":   map[string]any{"prompt_tokens": 100, "completion_tokens": 500, "total_tokens": 600},
	})
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := decodeCompletion(body, false); err != nil {
			b.Fatal(err)
		}
	}
}
