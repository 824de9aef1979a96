package dataplane

import (
	"context"
	"errors"
	"time"

	"github.com/spinerun/spine/schemas"
)

// Executor runs one dispatched execution. Implementations are adapters to a
// model API, an MCP tool, an HTTP service, or the synthetic simulator.
// Execute must honour ctx and be safe for concurrent use.
//
// An error that wraps ErrNoAnswer means the execution never answers (the
// worker emits no result, the orchestrator's timeout takes over). A
// *ExecError is a failed execution reported as dataplane.failed with its
// kind. Any other error is also reported as dataplane.failed (kind
// "execution"), unless the handler's own ctx ended, which is transient.
type Executor interface {
	Execute(ctx context.Context, req Request) (Result, error)
}

// ExecutorFunc adapts a function to Executor.
type ExecutorFunc func(ctx context.Context, req Request) (Result, error)

// Execute calls f.
func (f ExecutorFunc) Execute(ctx context.Context, req Request) (Result, error) { return f(ctx, req) }

// Request is one execution asked by a run.dispatch.
type Request struct {
	TraceID string
	Actor   string
	// Kind is the intent kind (summarize, classify, ...).
	Kind  string
	Route string
	// Version is the run's contract version.
	Version schemas.ContractVersion
	// Attempt is the attempt number (always 0 on V1 runs, whose events do
	// not carry it; DispatchSpan tells attempts apart).
	Attempt int32
	// DispatchSpan is the span id of the run.dispatch: unique per attempt.
	DispatchSpan string
	Priority     int32
	Tenant       string
	Attributes   map[string]string
}

// Result is a delivered artifact.
type Result struct {
	// ContentType is the artifact's MIME type.
	ContentType string
	// Content is the full artifact; events carry a bounded summary of it.
	Content string
	// Score is the model-reported quality in [0,1].
	Score float64
	// Latency is the execution latency, reported in the artifact (the
	// synthetic executor simulates it without sleeping by default).
	Latency time.Duration
	// Usage is token usage and cost, if known (carried by V2 events).
	Usage *schemas.Usage
}

// ErrNoAnswer is wrapped by an executor that never answers.
var ErrNoAnswer = errors.New("executor never answered")

// ExecError is a failed execution with a stable kind, which the
// orchestrator's retry policy reads (NonRetryableErrorKinds).
type ExecError struct {
	Kind string
	Err  error
}

func (e *ExecError) Error() string { return e.Kind + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *ExecError) Unwrap() error { return e.Err }

// ErrorKind returns the kind of a failed execution's error: the
// *ExecError's kind, "timeout" for a deadline, else "execution".
func ErrorKind(err error) string {
	var e *ExecError
	switch {
	case errors.As(err, &e):
		return e.Kind
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "execution"
}
