package dataplane

import (
	"context"
	"errors"
	"time"

	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// Executor runs one dispatched call. Implementations are adapters, one
// package each under adapters/: a model API (adapters/openai), an MCP tool
// (adapters/mcp), the synthetic simulator (adapters/synthetic). Execute must
// honour ctx (its deadline is the state's timeout) and be safe for
// concurrent use. It must not retry on its own: retries live in one place,
// the stateflow's retry policy, which reads the classified error.
//
// An error that wraps ErrNoAnswer means the call never answers (the worker
// emits no result, the orchestrator's timeout takes over). A *ExecError is a
// failed call reported as dataplane.failed with its kind and retryability.
// Any other error is also reported as dataplane.failed (kind "execution",
// retryable), unless the handler's own ctx ended.
type Executor interface {
	Execute(ctx context.Context, req Request) (Result, error)
}

// ExecutorFunc adapts a function to Executor.
type ExecutorFunc func(ctx context.Context, req Request) (Result, error)

// Execute calls f.
func (f ExecutorFunc) Execute(ctx context.Context, req Request) (Result, error) { return f(ctx, req) }

// Validator is implemented by executors that can refuse a request before
// any call is made (an MCP tool the server does not list, arguments that
// are not a JSON object). A non-nil error should be a non-retryable
// *ExecError; the dataplane reports it as dataplane.failed without calling
// Execute.
type Validator interface {
	Validate(req Request) error
}

// Request is one call asked by a run.dispatch.
type Request struct {
	TraceID string
	Actor   string
	// Kind is the intent kind (summarize, classify, ...).
	Kind  string
	Route string
	// Version is the run's contract version.
	Version schemas.ContractVersion
	// Attempt is the attempt number, 0 for the first.
	Attempt int32
	// DispatchSpan is the span id of the run.dispatch: unique per attempt.
	DispatchSpan string
	// IdempotencyKey is derived from the dispatch: stable across a crash
	// and a re-run of the same dispatch, different for each attempt. HTTP
	// executors send it as the Idempotency-Key header so the outside system
	// can deduplicate.
	IdempotencyKey string
	// Input is the run's input, byte for byte as the intent carried it.
	Input      []byte
	Priority   int32
	Tenant     string
	Attributes map[string]string
}

// Result is a delivered artifact.
type Result struct {
	// ContentType is the artifact's MIME type.
	ContentType string
	// Content is the full artifact, kept under its artifact id; events carry
	// a bounded summary of it.
	Content []byte
	// Score is a quality score in [0,1], when the executor has one
	// (HasScore); a model API has none.
	Score    float64
	HasScore bool
	// Latency is the latency an executor only simulates (the synthetic
	// executor without sleep); 0 means the dataplane's own measurement
	// around the call counts.
	Latency time.Duration
	// Usage is token usage and cost, if known.
	Usage *schemas.Usage
	// FinishReason is why a model stopped ("stop", "length", ...), if known.
	FinishReason string
}

// ErrNoAnswer is wrapped by an executor that never answers.
var ErrNoAnswer = errors.New("executor never answered")

// Stable error kinds of a failed call, classified at the boundary (as kerr
// marks each Kafka error retriable or not), defined with the thread's
// vocabulary (schemas/thread), whose NonRetryableErrorKinds the
// orchestrator's retry policy reads: whether a call may be retried is a
// property of its kind, so an adapter picks the kind that says it (and
// Permanent or Retryable to match). Kinds are on the thread, in
// dataplane.failed events and run outcomes.
const (
	KindRateLimited       = thread.ErrorRateLimited
	KindUnavailable       = thread.ErrorUnavailable
	KindTimeout           = thread.ErrorTimeout
	KindBadRequest        = thread.ErrorBadRequest
	KindUnauthorized      = thread.ErrorUnauthorized
	KindMalformed         = thread.ErrorMalformed
	KindEmptyResponse     = thread.ErrorEmptyResponse
	KindToolError         = thread.ErrorToolError
	KindUnknownTool       = thread.ErrorUnknownTool
	KindInvalidArguments  = thread.ErrorInvalidArguments
	KindArtifactTooLarge  = thread.ErrorArtifactTooLarge
	KindExecution         = thread.ErrorExecution
	KindInvalidInput      = thread.ErrorInvalidInput
	KindUnsupported       = thread.ErrorUnsupported
	KindExecutorNotReady  = thread.ErrorExecutorNotReady
	KindSyntheticFailure  = thread.ErrorSynthetic
	KindAgentNotFound     = thread.ErrorAgentNotFound
	KindCanceledByRestart = thread.ErrorCanceledByRestart
)

// ExecError is a failed call with a stable kind and whether the stateflow
// may retry it.
type ExecError struct {
	Kind      string
	Retryable bool
	// RetryAfter is the least delay the outside system asked for before a
	// retry (Retry-After); 0 for none.
	RetryAfter time.Duration
	Err        error
}

func (e *ExecError) Error() string {
	if e.Err == nil {
		return e.Kind
	}
	return e.Kind + ": " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *ExecError) Unwrap() error { return e.Err }

// Retryable returns a retryable *ExecError of kind.
func Retryable(kind string, err error) *ExecError {
	return &ExecError{Kind: kind, Retryable: true, Err: err}
}

// Permanent returns a non-retryable *ExecError of kind.
func Permanent(kind string, err error) *ExecError {
	return &ExecError{Kind: kind, Err: err}
}

// Classify returns the kind and retryability of a failed call's error: the
// *ExecError's, "timeout" (retryable) for a deadline, else "execution"
// (retryable).
func Classify(err error) (kind string, retryable bool, retryAfter time.Duration) {
	var e *ExecError
	switch {
	case errors.As(err, &e):
		return e.Kind, e.Retryable, e.RetryAfter
	case errors.Is(err, context.DeadlineExceeded):
		return KindTimeout, true, 0
	}
	return KindExecution, true, 0
}

// ErrorKind returns the kind of a failed call's error (see Classify).
func ErrorKind(err error) string {
	k, _, _ := Classify(err)
	return k
}
