// Package thread holds the vocabulary every processor of the event thread
// shares: the canonical event types, the routes, and deterministic event and
// span ids.
//
// Ids are derived from the trace id and the step that produced them, never
// from a clock or a random source, so a transaction the pipeline retries or a
// run replayed from the thread reproduces exactly the same ids: event_id is
// the idempotency key downstream.
package thread

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
)

// The canonical event types of one run, in the order of THE THREAD.
const (
	// Control plane (spine.control), written only by the orchestrator.
	IntentReceived    = "intent.received"
	RunRouted         = "run.routed"
	RunQueued         = "run.queued"
	RunDequeued       = "run.dequeued"
	RunDispatch       = "run.dispatch"
	RunExecuting      = "run.executing"
	RunDelivered      = "run.delivered"
	RunGating         = "run.gating"
	RunRetryScheduled = "run.retry_scheduled"
	RunCompleted      = "run.completed"
	RunRejected       = "run.rejected"
	RunFailed         = "run.failed"
	RunTimedOut       = "run.timed_out"
	RunIllegal        = "run.illegal_transition"
	RunStale          = "run.stale_event"

	// Arbitration messages on spine.control, keyed by ActorKey, between a
	// run and its actor's ledger (see package orchestrator).
	ArbitrationAcquire = "arbitration.acquire"
	ArbitrationRelease = "arbitration.release"
	ArbitrationGrant   = "arbitration.grant"
	ArbitrationQueued  = "arbitration.queued"

	// Data plane (spine.dataplane), written by dataplane workers.
	DataplaneDispatched = "dataplane.dispatched"
	DataplaneStarted    = "dataplane.started"
	ArtifactDelivered   = "artifact.delivered"
	DataplaneFailed     = "dataplane.failed"

	// Gates (gate.<name>), written by the gates runner.
	GatePassed  = "gate.passed"
	GateFailed  = "gate.failed"
	GateVerdict = "gate.verdict"
)

// Routes a run can take. Baseline runs speak contract V1, canary runs V2.
const (
	RouteBaseline = "baseline"
	RouteCanary   = "canary"
)

// VerdictGate is the GateOutcome name of the per-run verdict.
const VerdictGate = "verdict"

// ActorKeyPrefix prefixes the record key of an actor's arbitration ledger,
// so it never collides with a trace id.
const ActorKeyPrefix = "\x00actor/"

// ActorKey returns the record key of actor's arbitration ledger.
func ActorKey(actor string) []byte { return []byte(ActorKeyPrefix + actor) }

// IsActorKey reports whether key is an actor ledger key and returns the actor.
func IsActorKey(key []byte) (string, bool) {
	if len(key) < len(ActorKeyPrefix) || string(key[:len(ActorKeyPrefix)]) != ActorKeyPrefix {
		return "", false
	}
	return string(key[len(ActorKeyPrefix):]), true
}

// ID returns a deterministic 32-hex-digit id for trace and the parts that
// name one step of it (a processor tag, a step index, a parent span, ...).
// Equal inputs give equal ids; the parts are length-prefixed so ("ab","c")
// and ("a","bc") differ.
func ID(trace string, parts ...string) string {
	return hashHex(16, trace, parts)
}

// SpanID returns a deterministic 16-hex-digit span id, as OpenTelemetry
// spans have.
func SpanID(trace string, parts ...string) string {
	return hashHex(8, trace, parts)
}

// DataEventID and DataSpanID are the ids of the data-plane event typ that
// answers the run.dispatch whose span is dispatchSpan. The orchestrator uses
// DataSpanID to recognise a verdict on an artifact whose artifact.delivered
// it has not read yet (the two travel on different topics).
func DataEventID(trace, dispatchSpan, typ string) string { return ID(trace, "d", dispatchSpan, typ) }

// DataSpanID: see DataEventID.
func DataSpanID(trace, dispatchSpan, typ string) string { return SpanID(trace, "d", dispatchSpan, typ) }

// Step formats a step index as an id part.
func Step(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

func hashHex(n int, trace string, parts []string) string {
	h := sha256.New()
	var lb [8]byte
	write := func(s string) {
		l := len(s)
		for i := range lb {
			lb[i] = byte(l >> (8 * i))
		}
		h.Write(lb[:])
		h.Write([]byte(s))
	}
	write(trace)
	for _, p := range parts {
		write(p)
	}
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:n])
}
