package openai_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spinerun/spine/adapters/openai"
	"github.com/spinerun/spine/processors/dataplane"
)

const testKey = "sk-test-4f9a1c0e7b2d4e55a9d3c6b8f1e2a7d0"

func req(input string) dataplane.Request {
	return dataplane.Request{TraceID: "t1", DispatchSpan: "s1", IdempotencyKey: "idem-t1-s1-0", Input: []byte(input)}
}

func newExecutor(t *testing.T, cfg openai.Config) *openai.Executor {
	t.Helper()
	e, err := openai.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

// wantExecError checks the kind, retryability and Retry-After (within
// [after[0], after[1]]) of a classified error.
func wantExecError(t *testing.T, err error, kind string, retryable bool, after [2]time.Duration) *dataplane.ExecError {
	t.Helper()
	var ee *dataplane.ExecError
	if !errors.As(err, &ee) {
		t.Fatalf("err = %v, want a *dataplane.ExecError of kind %s", err, kind)
	}
	if ee.Kind != kind || ee.Retryable != retryable {
		t.Fatalf("err = %v (kind %s, retryable %v), want kind %s, retryable %v", err, ee.Kind, ee.Retryable, kind, retryable)
	}
	if ee.RetryAfter < after[0] || ee.RetryAfter > after[1] {
		t.Fatalf("RetryAfter = %s, want within [%s, %s]", ee.RetryAfter, after[0], after[1])
	}
	if k, r, a := dataplane.Classify(err); k != kind || r != retryable || a != ee.RetryAfter {
		t.Fatalf("Classify = %s %v %s, want %s %v %s", k, r, a, kind, retryable, ee.RetryAfter)
	}
	return ee
}

func exactly(d time.Duration) [2]time.Duration { return [2]time.Duration{d, d} }

// slow answers only when the client has gone, or after a long while.
func slow(w http.ResponseWriter, r *http.Request, got wireRequest) {
	select {
	case <-r.Context().Done():
	case <-time.After(30 * time.Second):
		completion("late", "stop", 1, 1)(w, r, got)
	}
}

func TestExecute(t *testing.T) {
	t.Parallel()
	temp0 := 0.0
	tests := []struct {
		name   string
		cfg    func(*openai.Config)
		answer answer
		req    dataplane.Request
		// deadline, when set, bounds the call's ctx.
		deadline time.Duration
		// kind is the classified error's kind; "" for success.
		kind      string
		retryable bool
		after     [2]time.Duration
		// text are substrings the error must hold.
		text  []string
		check func(t *testing.T, res dataplane.Result, got received)
	}{{
		name:   "text",
		answer: completion("Hello! How can I help?", "stop", 9, 12),
		check: func(t *testing.T, res dataplane.Result, got received) {
			if string(res.Content) != "Hello! How can I help?" || res.ContentType != "text/plain; charset=utf-8" {
				t.Errorf("result = %s %q", res.ContentType, res.Content)
			}
			if res.Usage == nil || res.Usage.InputTokens != 9 || res.Usage.OutputTokens != 12 {
				t.Errorf("usage = %+v, want 9 in, 12 out", res.Usage)
			}
			if res.FinishReason != "stop" || res.HasScore {
				t.Errorf("finish reason %q, has score %v; want stop, false", res.FinishReason, res.HasScore)
			}
			b := got.Body
			if b.Model != "gpt-4o-mini" || len(b.Messages) != 1 || b.Messages[0].Role != "user" || b.Messages[0].Content != "hi" {
				t.Errorf("request = %s, want model gpt-4o-mini and one user message hi", got.Raw)
			}
			if b.Stream == nil || *b.Stream || b.Temperature != nil || b.MaxTokens != nil || b.ResponseFormat != nil {
				t.Errorf("request = %s, want stream false and no temperature, max_tokens or response_format", got.Raw)
			}
			h := got.Header
			if h.Get("Idempotency-Key") != "idem-t1-s1-0" || h.Get("Accept") != "application/json" ||
				!strings.Contains(h.Get("User-Agent"), "spine") || h.Get("Authorization") != "" {
				t.Errorf("headers = %v", h)
			}
		},
	}, {
		name:   "json",
		cfg:    func(c *openai.Config) { c.JSON = true },
		answer: completion(`{"label":"positive"}`, "stop", 20, 6),
		check: func(t *testing.T, res dataplane.Result, got received) {
			if res.ContentType != "application/json" || string(res.Content) != `{"label":"positive"}` {
				t.Errorf("result = %s %q", res.ContentType, res.Content)
			}
			if rf := got.Body.ResponseFormat; rf == nil || rf.Type != "json_object" {
				t.Errorf("request = %s, want response_format json_object", got.Raw)
			}
		},
	}, {
		name:   "json asked, text answered",
		cfg:    func(c *openai.Config) { c.JSON = true },
		answer: completion(`{"label":"posi`, "length", 20, 6),
		kind:   dataplane.KindMalformed,
		text:   []string{"not valid JSON", `finish_reason "length"`},
	}, {
		name: "settings sent",
		cfg: func(c *openai.Config) {
			c.Model, c.System, c.Temperature, c.MaxTokens = "llama3.2", "You are terse.", &temp0, 64
			c.APIKey = testKey
		},
		answer: completion("ok", "length", 30, 64),
		check: func(t *testing.T, res dataplane.Result, got received) {
			b := got.Body
			if b.Model != "llama3.2" || len(b.Messages) != 2 || b.Messages[0].Role != "system" || b.Messages[0].Content != "You are terse." ||
				b.Messages[1].Role != "user" || b.Messages[1].Content != "hi" {
				t.Errorf("request = %s, want model llama3.2, the system prompt, then the user message", got.Raw)
			}
			if b.Temperature == nil || *b.Temperature != 0 || b.MaxTokens == nil || *b.MaxTokens != 64 {
				t.Errorf("request = %s, want temperature 0 and max_tokens 64", got.Raw)
			}
			if h := got.Header.Get("Authorization"); h != "Bearer "+testKey {
				t.Errorf("Authorization = %q, want the bearer key", h)
			}
			if res.FinishReason != "length" {
				t.Errorf("finish reason = %q, want length", res.FinishReason)
			}
		},
	}, {
		name:   "no idempotency key",
		req:    dataplane.Request{Input: []byte("hi")},
		answer: completion("ok", "stop", 1, 1),
		check: func(t *testing.T, _ dataplane.Result, got received) {
			if _, ok := got.Header["Idempotency-Key"]; ok {
				t.Errorf("Idempotency-Key sent empty: %v", got.Header)
			}
		},
	}, {
		name: "429 retry-after seconds",
		answer: raw(429, `{"error":{"message":"Rate limit reached for gpt-4o-mini on requests per min (RPM): Limit 3, Used 3, Requested 1.","type":"requests","param":null,"code":"rate_limit_exceeded"}}`,
			"Retry-After", "2"),
		kind: dataplane.KindRateLimited, retryable: true, after: exactly(2 * time.Second),
		text: []string{"429 Too Many Requests", "Rate limit reached for gpt-4o-mini", "code rate_limit_exceeded"},
	}, {
		name:   "429 retry-after date",
		answer: raw(429, `{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}`, "Retry-After", time.Now().Add(4*time.Second).UTC().Format(http.TimeFormat)),
		kind:   dataplane.KindRateLimited, retryable: true, after: [2]time.Duration{time.Second, 4 * time.Second},
		text: []string{"slow down"},
	}, {
		name:   "429 retry-after-ms",
		answer: raw(429, `{"error":{"message":"slow down","type":"tokens","code":"rate_limit_exceeded"}}`, "Retry-After", "2", "retry-after-ms", "1500"),
		kind:   dataplane.KindRateLimited, retryable: true, after: exactly(1500 * time.Millisecond),
	}, {
		name:   "429 without retry-after",
		answer: raw(429, `{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}`),
		kind:   dataplane.KindRateLimited, retryable: true,
		text: []string{"current quota", "type insufficient_quota"},
	}, {
		name:   "500",
		answer: raw(500, `{"error":{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","param":null,"code":null}}`),
		kind:   dataplane.KindUnavailable, retryable: true,
		text: []string{"500 Internal Server Error", "Sorry about that!", "type server_error"},
	}, {
		name:   "503 retry-after",
		answer: raw(503, "<html><body>upstream connect error</body></html>", "Retry-After", "7", "Content-Type", "text/html"),
		kind:   dataplane.KindUnavailable, retryable: true, after: exactly(7 * time.Second),
		text: []string{"503 Service Unavailable", "upstream connect error"},
	}, {
		name:   "408",
		answer: raw(408, `{"error":{"message":"Request timed out.","type":"timeout"}}`),
		kind:   dataplane.KindUnavailable, retryable: true,
	}, {
		name:   "409",
		answer: raw(409, `{"error":{"message":"Another request with this Idempotency-Key is in progress","type":"invalid_request_error"}}`),
		kind:   dataplane.KindUnavailable, retryable: true,
		text: []string{"Idempotency-Key is in progress"},
	}, {
		name:   "400",
		answer: raw(400, `{"error":{"message":"This model's maximum context length is 128000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}`, "Retry-After", "3"),
		kind:   dataplane.KindBadRequest,
		text:   []string{"400 Bad Request", "maximum context length is 128000 tokens", "type invalid_request_error, code context_length_exceeded"},
	}, {
		name:   "400 vllm shape",
		answer: raw(400, `{"object":"error","message":"The model does not exist.","type":"NotFoundError","param":null,"code":404}`),
		kind:   dataplane.KindBadRequest,
		text:   []string{"The model does not exist.", "type NotFoundError, code 404"},
	}, {
		name:   "401",
		cfg:    func(c *openai.Config) { c.APIKey = "sk-wrong" },
		answer: raw(401, `{"error":{"message":"Incorrect API key provided: sk-wrong. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`),
		kind:   dataplane.KindUnauthorized,
		text:   []string{"401 Unauthorized", "Incorrect API key provided: [redacted].", "code invalid_api_key", "is APIKey set"},
	}, {
		name:   "403",
		answer: raw(403, `{"error":{"message":"Project does not have access to model","type":"invalid_request_error","code":"model_not_found"}}`),
		kind:   dataplane.KindUnauthorized,
		text:   []string{"403 Forbidden", "does not have access"},
	}, {
		name:   "404",
		answer: raw(404, `{"error":{"message":"The model 'nope' does not exist","type":"invalid_request_error","param":"model","code":"model_not_found"}}`),
		kind:   dataplane.KindBadRequest,
		text:   []string{"404 Not Found", "The model 'nope' does not exist", "is BaseURL"},
	}, {
		name:   "redirect not followed",
		answer: raw(307, "", "Location", "http://elsewhere.invalid/v1/chat/completions"),
		kind:   dataplane.KindBadRequest,
		text:   []string{"307 Temporary Redirect", "redirect"},
	}, {
		name:   "ctx deadline",
		answer: slow, deadline: 150 * time.Millisecond,
		kind: dataplane.KindTimeout, retryable: true,
		text: []string{"no answer in time"},
	}, {
		name:   "config timeout",
		cfg:    func(c *openai.Config) { c.Timeout = 150 * time.Millisecond },
		answer: slow,
		kind:   dataplane.KindTimeout, retryable: true,
	}, {
		name:   "malformed json",
		answer: raw(200, `{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hel`),
		kind:   dataplane.KindMalformed,
		text:   []string{"not a chat completion"},
	}, {
		name:   "html with 200",
		answer: raw(200, "<html>captive portal</html>", "Content-Type", "text/html"),
		kind:   dataplane.KindMalformed,
	}, {
		name:   "no choices field",
		answer: raw(200, `{"id":"x","object":"chat.completion"}`),
		kind:   dataplane.KindMalformed,
		text:   []string{"no choices field"},
	}, {
		name:   "choices of the wrong type",
		answer: raw(200, `{"choices":{"message":"hi"}}`),
		kind:   dataplane.KindMalformed,
	}, {
		name:   "empty choices",
		answer: raw(200, `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":0,"total_tokens":5}}`),
		kind:   dataplane.KindEmptyResponse,
		text:   []string{"no choices"},
	}, {
		name:   "null message",
		answer: raw(200, `{"choices":[{"index":0,"message":null,"finish_reason":"content_filter"}]}`),
		kind:   dataplane.KindEmptyResponse,
		text:   []string{"no message", "content_filter"},
	}, {
		name:   "null content, refusal",
		answer: raw(200, `{"choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":"I can't help with that."},"finish_reason":"stop"}]}`),
		kind:   dataplane.KindEmptyResponse,
		text:   []string{"refused: I can't help with that."},
	}, {
		name:   "empty content",
		answer: completion("", "length", 10, 0),
		kind:   dataplane.KindEmptyResponse,
		text:   []string{"no content", "length"},
	}, {
		name:   "over MaxResponseBytes",
		cfg:    func(c *openai.Config) { c.MaxResponseBytes = 1024 },
		answer: completion(strings.Repeat("word ", 400), "stop", 5, 400),
		kind:   dataplane.KindArtifactTooLarge,
		text:   []string{"MaxResponseBytes (1024 bytes)"},
	}, {
		name: "connection dropped",
		answer: func(w http.ResponseWriter, _ *http.Request, _ wireRequest) {
			c, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				_ = c.Close()
			}
		},
		kind: dataplane.KindUnavailable, retryable: true,
		text: []string{"EOF"},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			base, seen := newServer(t, tc.answer)
			cfg := openai.Config{BaseURL: base, Model: "gpt-4o-mini"}
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			e := newExecutor(t, cfg)
			r := tc.req
			if r.Input == nil {
				r = req("hi")
			}
			ctx := t.Context()
			if tc.deadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.deadline)
				defer cancel()
			}
			res, err := e.Execute(ctx, r)
			var got received
			select {
			case got = <-seen:
			default:
				// A call that times out may not reach the server on a
				// loaded machine; any other must have.
				if tc.kind != dataplane.KindTimeout {
					t.Fatalf("the server accepted no request; err = %v", err)
				}
			}
			if tc.kind == "" {
				if err != nil {
					t.Fatalf("Execute: %v", err)
				}
				if tc.check != nil {
					tc.check(t, res, got)
				}
				return
			}
			wantExecError(t, err, tc.kind, tc.retryable, tc.after)
			for _, s := range tc.text {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("err = %v, want it to hold %q", err, s)
				}
			}
			if !strings.Contains(err.Error(), base) {
				t.Errorf("err = %v, want it to name the endpoint %s", err, base)
			}
			if len(err.Error()) > 1024 {
				t.Errorf("err is %d bytes long, want it bounded", len(err.Error()))
			}
		})
	}
}

// TestConnectionRefused: a server that is gone fails unavailable, retryable.
func TestConnectionRefused(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	base := srv.URL + "/v1"
	srv.Close()
	e := newExecutor(t, openai.Config{BaseURL: base, Model: "m"})
	_, err := e.Execute(t.Context(), req("hi"))
	wantExecError(t, err, dataplane.KindUnavailable, true, exactly(0))
	if !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), base+"/chat/completions") {
		t.Fatalf("err = %v, want connection refused at the endpoint", err)
	}
}

// TestCanceled: a ctx canceled (not its deadline) is the caller's, and
// returned unclassified.
func TestCanceled(t *testing.T) {
	t.Parallel()
	base, seen := newServer(t, slow)
	e := newExecutor(t, openai.Config{BaseURL: base, Model: "m"})
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-seen
		cancel()
	}()
	_, err := e.Execute(ctx, req("hi"))
	var ee *dataplane.ExecError
	if !errors.Is(err, context.Canceled) || errors.As(err, &ee) {
		t.Fatalf("err = %v, want context.Canceled, not classified", err)
	}
}

// TestLargeInput: a 1 MiB input, with every character JSON escapes, arrives
// byte for byte as the user message.
func TestLargeInput(t *testing.T) {
	t.Parallel()
	base, seen := newServer(t, completion("ok", "stop", 1, 1))
	e := newExecutor(t, openai.Config{BaseURL: base, Model: "m"})
	var b strings.Builder
	for b.Len() < 1<<20 {
		b.WriteString("quote \" backslash \\ <html> & newline \n tab \t é 日本 \u2028 😀 \x01 ")
	}
	in := b.String()[:1<<20]
	for !strings.HasSuffix(in, " ") { // cut on a whole rune
		in = in[:len(in)-1]
	}
	if _, err := e.Execute(t.Context(), req(in)); err != nil {
		t.Fatalf("Execute: %v", err)
	}
	got := <-seen
	if m := got.Body.Messages; len(m) != 1 || m[0].Content != in {
		t.Fatalf("the server got a user message of %d bytes, not the %d-byte input", len(m[0].Content), len(in))
	}
}

// TestInvalidUTF8: input JSON cannot carry is refused before any call.
func TestInvalidUTF8(t *testing.T) {
	t.Parallel()
	base, seen := newServer(t, completion("ok", "stop", 1, 1))
	e := newExecutor(t, openai.Config{BaseURL: base, Model: "m"})
	bad := req("caf\xe9")
	wantExecError(t, e.Validate(bad), dataplane.KindInvalidInput, false, exactly(0))
	_, err := e.Execute(t.Context(), bad)
	wantExecError(t, err, dataplane.KindInvalidInput, false, exactly(0))
	if err := e.Validate(req("café")); err != nil {
		t.Fatalf("Validate(valid UTF-8) = %v", err)
	}
	select {
	case got := <-seen:
		t.Fatalf("the server got a call: %s", got.Raw)
	default:
	}
}

// TestBaseURLJoin: a trailing slash on BaseURL makes no double slash.
func TestBaseURLJoin(t *testing.T) {
	t.Parallel()
	base, seen := newServer(t, completion("ok", "stop", 1, 1))
	e := newExecutor(t, openai.Config{BaseURL: base + "/", Model: "m"})
	if _, err := e.Execute(t.Context(), req("hi")); err != nil {
		t.Fatalf("Execute with BaseURL %s/: %v", base, err)
	}
	<-seen
}

// TestKeyNeverShown: the API key appears in no error and no log line, even
// from a server that echoes the Authorization header back.
func TestKeyNeverShown(t *testing.T) {
	t.Parallel()
	echo := func(status int) answer {
		return func(w http.ResponseWriter, r *http.Request, _ wireRequest) {
			writeError(w, status, "you sent "+r.Header.Get("Authorization"), "invalid_request_error", r.Header.Get("Authorization"))
		}
	}
	var logs bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for _, a := range []answer{echo(400), echo(401), echo(429), echo(500), raw(200, "Bearer "+testKey), completion("ok", "stop", 1, 1)} {
		base, _ := newServer(t, a)
		cfg := openai.Config{BaseURL: base, Model: "m", APIKey: testKey, Logger: log, System: "secret-free prompt"}
		e := newExecutor(t, cfg)
		log.Info("config", "cfg", cfg)
		_, err := e.Execute(t.Context(), req("hi"))
		if err != nil && strings.Contains(err.Error(), testKey) {
			t.Errorf("err shows the key: %v", err)
		}
		if err != nil && strings.Contains(err.Error(), "you sent") && !strings.Contains(err.Error(), "you sent Bearer [redacted]") {
			t.Errorf("err = %v, want the echoed key scrubbed", err)
		}
	}
	mu.Lock()
	out := logs.String()
	mu.Unlock()
	if strings.Count(out, "chat completion") < 6 {
		t.Fatalf("want a debug line per call, got:\n%s", out)
	}
	if strings.Contains(out, testKey) || strings.Contains(out, "Bearer sk") {
		t.Fatalf("the logs show the key:\n%s", out)
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestConcurrent: one executor serves many calls at once.
func TestConcurrent(t *testing.T) {
	t.Parallel()
	base, _ := newServer(t, func(w http.ResponseWriter, r *http.Request, got wireRequest) {
		completion("echo "+got.Messages[0].Content, "stop", 1, 1)(w, r, got)
	})
	e := newExecutor(t, openai.Config{BaseURL: base, Model: "m"})
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			in := strings.Repeat("x", i+1)
			res, err := e.Execute(t.Context(), req(in))
			if err != nil || string(res.Content) != "echo "+in {
				t.Errorf("call %d: %q, %v", i, res.Content, err)
			}
		})
	}
	wg.Wait()
}

// TestNoReplay: a call whose kept-alive connection dies after the request
// was sent is not resent by net/http (which would resend a request with an
// Idempotency-Key): it fails unavailable and the stateflow decides.
func TestNoReplay(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	calls := 0
	base, _ := newServer(t, func(w http.ResponseWriter, r *http.Request, got wireRequest) {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		if n == 1 {
			completion("ok", "stop", 1, 1)(w, r, got)
			return
		}
		if c, _, err := w.(http.Hijacker).Hijack(); err == nil {
			_ = c.Close()
		}
	})
	e := newExecutor(t, openai.Config{BaseURL: base, Model: "m"})
	if _, err := e.Execute(t.Context(), req("first")); err != nil {
		t.Fatalf("first call: %v", err)
	}
	_, err := e.Execute(t.Context(), req("second")) // on the same connection
	wantExecError(t, err, dataplane.KindUnavailable, true, exactly(0))
	mu.Lock()
	defer mu.Unlock()
	if calls != 2 {
		t.Fatalf("the server got %d calls, want 2: the second was resent", calls)
	}
}
