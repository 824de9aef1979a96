package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/spinerun/spine/processors/dataplane"
)

// userAgent names Spine to the server.
const userAgent = "spine-adapters-openai/1 (+https://github.com/spinerun/spine)"

// maxErrorBodyBytes bounds the body read from a non-2xx answer.
const maxErrorBodyBytes = 64 << 10

// Executor calls Chat Completions. It is a dataplane.Executor and a
// dataplane.Validator, safe for concurrent use: it holds only its
// immutable settings and the *http.Client, itself safe for concurrent use.
type Executor struct {
	cfg      Config
	endpoint string // BaseURL + "/chat/completions"
	where    string // endpoint with any password hidden, for errors and logs
	client   *http.Client
	log      *slog.Logger
	maxBody  int64
}

var (
	_ dataplane.Executor  = (*Executor)(nil)
	_ dataplane.Validator = (*Executor)(nil)
)

// New validates cfg (every problem at once) and returns an executor. It
// does no network I/O: a server that is down shows in the first call.
func New(cfg Config) (*Executor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Temperature != nil {
		t := *cfg.Temperature // the caller's variable may change later
		cfg.Temperature = &t
	}
	e := &Executor{
		cfg:      cfg,
		endpoint: strings.TrimRight(cfg.BaseURL, "/") + "/chat/completions",
		client:   cfg.HTTPClient,
		log:      cfg.Logger,
		maxBody:  cfg.MaxResponseBytes,
	}
	e.where = "openai " + redactURL(e.endpoint)
	if e.client == nil {
		e.client = defaultClient()
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	e.log = e.log.With("adapter", "openai", "model", cfg.Model)
	if e.maxBody == 0 {
		e.maxBody = DefaultMaxResponseBytes
	}
	return e, nil
}

// defaultClient follows no redirects (a POST redirected would be resent as
// a GET, or resent with its body elsewhere) and bounds dialing (30s) and
// TLS handshakes (10s), not the answer: the call's ctx does.
func defaultClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64 // many calls at once to one server
	return &http.Client{
		Transport:     t,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Validate implements dataplane.Validator: Input, the user message, must
// be valid UTF-8 (JSON cannot carry other bytes unchanged); else
// invalid_input, not retryable.
func (e *Executor) Validate(req dataplane.Request) error {
	if !utf8.Valid(req.Input) {
		return dataplane.Permanent(dataplane.KindInvalidInput,
			errors.New("openai: the input is not valid UTF-8 text and cannot be sent as a chat message"))
	}
	return nil
}

// Execute implements dataplane.Executor: one POST of a chat completion
// whose user message is req.Input, with req.IdempotencyKey as the
// Idempotency-Key header. It honours ctx, bounded further by
// Config.Timeout: a deadline that passes is a retryable timeout; a ctx
// canceled otherwise returns the ctx's error. It never retries, and the
// request is not replayable, so net/http never resends it once any of it
// may have reached the server.
func (e *Executor) Execute(ctx context.Context, req dataplane.Request) (dataplane.Result, error) {
	start := time.Now()
	res, status, err := e.execute(ctx, req)
	if err != nil {
		kind, retryable, after := dataplane.Classify(err)
		e.log.DebugContext(ctx, "chat completion failed", "status", status, "kind", kind,
			"retryable", retryable, "retry_after", after, "duration", time.Since(start), "err", err)
		return dataplane.Result{}, err
	}
	attrs := []any{"status", status, "duration", time.Since(start), "finish_reason", res.FinishReason, "bytes", len(res.Content)}
	if res.Usage != nil {
		attrs = append(attrs, "input_tokens", res.Usage.InputTokens, "output_tokens", res.Usage.OutputTokens)
	}
	e.log.DebugContext(ctx, "chat completion", attrs...)
	return res, nil
}

func (e *Executor) execute(ctx context.Context, req dataplane.Request) (dataplane.Result, int, error) {
	if err := e.Validate(req); err != nil {
		return dataplane.Result{}, 0, err
	}
	body, err := json.Marshal(e.request(req.Input))
	if err != nil {
		return dataplane.Result{}, 0, dataplane.Permanent(dataplane.KindInvalidInput, fmt.Errorf("openai: encode the request: %w", err))
	}
	call := ctx
	if e.cfg.Timeout > 0 {
		var cancel context.CancelFunc
		call, cancel = context.WithTimeout(ctx, e.cfg.Timeout)
		defer cancel()
	}
	hreq, err := http.NewRequestWithContext(call, http.MethodPost, e.endpoint, bytes.NewReader(body))
	if err != nil {
		return dataplane.Result{}, 0, dataplane.Permanent(dataplane.KindBadRequest, fmt.Errorf("%s: build the request: %w", e.where, err))
	}
	// Not replayable: net/http would otherwise resend a request carrying
	// an Idempotency-Key when its reused connection fails after sending
	// it (TestNoReplay). Retries are the stateflow's alone.
	hreq.GetBody = nil
	h := hreq.Header
	h.Set("Content-Type", "application/json")
	h.Set("Accept", "application/json")
	h.Set("User-Agent", userAgent)
	if k := e.cfg.APIKey.Reveal(); k != "" {
		h.Set("Authorization", "Bearer "+k)
	}
	if sc := trace.SpanContextFromContext(call); sc.IsValid() {
		// The dataplane's executor.call span (when tracing is on): the
		// model server's own trace joins the run's.
		propagation.TraceContext{}.Inject(call, propagation.HeaderCarrier(h))
	}
	if req.IdempotencyKey != "" {
		h.Set("Idempotency-Key", req.IdempotencyKey)
	}

	resp, err := e.client.Do(hreq)
	if err != nil {
		return dataplane.Result{}, 0, transportError(ctx, call, err, e.where)
	}
	defer resp.Body.Close()
	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	limit := e.maxBody
	if !ok {
		limit = maxErrorBodyBytes
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return dataplane.Result{}, resp.StatusCode, transportError(ctx, call, fmt.Errorf("read the %d answer: %w", resp.StatusCode, err), e.where)
	}
	if !ok {
		if int64(len(raw)) > limit {
			raw = raw[:limit]
		}
		return dataplane.Result{}, resp.StatusCode, statusError(resp, apiError(resp.StatusCode, raw, e.cfg.APIKey), e.where, time.Now())
	}
	if int64(len(raw)) > limit {
		return dataplane.Result{}, resp.StatusCode, dataplane.Permanent(dataplane.KindArtifactTooLarge,
			fmt.Errorf("%s: the answer is over MaxResponseBytes (%d bytes)", e.where, limit))
	}
	res, err := decodeCompletion(raw, e.cfg.JSON)
	if err != nil {
		var ee *dataplane.ExecError
		if errors.As(err, &ee) {
			ee.Err = fmt.Errorf("%s: %w", e.where, ee.Err)
		}
		return dataplane.Result{}, resp.StatusCode, err
	}
	return res, resp.StatusCode, nil
}

// request is the wire request for one input.
func (e *Executor) request(input []byte) chatRequest {
	r := chatRequest{
		Model:       e.cfg.Model,
		Temperature: e.cfg.Temperature,
		MaxTokens:   e.cfg.MaxTokens,
		Messages:    make([]chatMessage, 0, 2),
	}
	if e.cfg.System != "" {
		r.Messages = append(r.Messages, chatMessage{Role: "system", Content: e.cfg.System})
	}
	r.Messages = append(r.Messages, chatMessage{Role: "user", Content: string(input)})
	if e.cfg.JSON {
		r.ResponseFormat = &responseFormat{Type: "json_object"}
	}
	return r
}
