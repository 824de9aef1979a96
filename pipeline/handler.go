package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/schemas"
)

// Input is one decoded record handed to a Handler. Value is a canonical Go
// type: *schemas.Intent on the intents topic, *schemas.RuntimeEvent on every
// other thread topic.
type Input struct {
	Topic     Topic
	Partition int32
	Offset    int64
	Key       []byte
	Value     any
	// Version is the contract version the writer used (from the schema id).
	Version   schemas.ContractVersion
	Timestamp time.Time
	Headers   map[string]string
}

// Output is one record a Handler asks the loop to produce, in the same
// transaction as the new state and the input's offset.
type Output struct {
	Topic Topic
	Key   []byte
	// Value is *schemas.Intent or *schemas.RuntimeEvent.
	Value any
	// Version is the contract to encode Value with; 0 means V1.
	Version schemas.ContractVersion
	// Raw, when not nil, is the record's value as is, not encoded with the
	// codec (Value and Version are then ignored): a store record, such as
	// an artifact's content on the artifacts topic, which is not an event
	// of the thread.
	Raw []byte
	// Headers are added to the record (with Raw; an event's record carries
	// its event type in HeaderEventType).
	Headers []kgo.RecordHeader
}

// Result is what a Handler returns for one input or timer.
type Result struct {
	// State is the key's new state; it is written to the processor's
	// compacted changelog only when StateChanged is set. A nil State with
	// StateChanged deletes the key (a tombstone).
	State        []byte
	StateChanged bool
	Outputs      []Output
	// DeadlineSet tells the loop of a Timed handler that Deadline is the
	// timer deadline of State (the zero time: no timer), so it need not
	// decode the new state again with Timed.Deadline. Optional: when it is
	// not set the loop asks Deadline(State). Ignored unless StateChanged.
	DeadlineSet bool
	Deadline    time.Time
}

// Handler is a pure processor: (its state for the key, one input) → (new
// state, outputs). It performs no Kafka I/O; the loop owns decoding,
// transactions, state, retries and the DLQ. Handle must be safe to call
// from one goroutine per partition.
type Handler interface {
	Handle(ctx context.Context, state []byte, in Input) (Result, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, state []byte, in Input) (Result, error)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, state []byte, in Input) (Result, error) {
	return f(ctx, state, in)
}

// Timed is implemented by handlers with durable timers. Deadlines live in the
// handler's own state, so they survive restarts: the loop asks Deadline of
// every state it restores or writes and calls Fire, inside a transaction, once
// the deadline has passed and the key still has it.
type Timed interface {
	// Deadline returns when the key's timer fires, or false for none.
	Deadline(state []byte) (time.Time, bool)
	// Fire handles a due timer for key.
	Fire(ctx context.Context, key []byte, state []byte, now time.Time) (Result, error)
}

// RejectError marks input a handler will never accept: the loop sends the
// original record to the dead-letter topic with Code and Reason and goes on.
// Any other error is treated as transient and retried.
type RejectError struct {
	Code   string // stable, e.g. "illegal_transition", "unknown_intent_kind"
	Reason string
}

func (e *RejectError) Error() string { return fmt.Sprintf("rejected (%s): %s", e.Code, e.Reason) }

// Reject returns a *RejectError.
func Reject(code, format string, args ...any) error {
	return &RejectError{Code: code, Reason: fmt.Sprintf(format, args...)}
}

// IsReject reports whether err is (or wraps) a *RejectError and returns it.
func IsReject(err error) (*RejectError, bool) {
	var r *RejectError
	ok := errors.As(err, &r)
	return r, ok
}

// Codec turns thread records into canonical Go values and back, in the
// Confluent wire format. schemas.Serde implements it. Decode returns an error
// with an ErrorCode (see Coded) for poison input, which the loop dead-letters;
// any other error (a registry outage, a timeout) is transient and retried.
type Codec interface {
	Decode(ctx context.Context, topic Topic, b []byte) (value any, writer schemas.ContractVersion, err error)
	Encode(ctx context.Context, topic Topic, v schemas.ContractVersion, value any) ([]byte, error)
}

// Coded is implemented by errors that carry a stable code a user or a DLQ
// consumer reads (for example "bad_magic", "illegal_transition"). The loop
// treats every Coded error as permanent: the record goes to the DLQ.
type Coded interface {
	error
	ErrorCode() string
}

// ErrorCode returns the stable code of a RejectError.
func (e *RejectError) ErrorCode() string { return e.Code }

// CodeOf returns the stable code of err, or "" if it carries none (a
// transient error).
func CodeOf(err error) string {
	var c Coded
	if errors.As(err, &c) {
		return c.ErrorCode()
	}
	return ""
}
