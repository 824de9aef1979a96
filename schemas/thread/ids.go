package thread

import (
	"github.com/spinerun/spine/schemas"

	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strconv"
)

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
// name one step of it (a processor tag, a step index, a parent span, ...):
// the first 16 bytes of SHA-256 over the length-prefixed parts. Equal inputs
// give equal ids; ("ab","c") and ("a","bc") differ.
func ID(trace string, parts ...string) string {
	var buf [256]byte
	b := appendPart(buf[:0], trace)
	for _, p := range parts {
		b = appendPart(b, p)
	}
	sum := sha256.Sum256(b)
	var out [32]byte
	hex.Encode(out[:], sum[:16])
	return string(out[:])
}

// SpanID returns a deterministic 16-hex-digit span id, as OpenTelemetry
// spans have: the first half of ID of the same parts.
func SpanID(trace string, parts ...string) string { return ID(trace, parts...)[:16] }

// IDs returns ID and SpanID of the same parts with one hash.
func IDs(trace string, parts ...string) (eventID, spanID string) {
	id := ID(trace, parts...)
	return id, id[:16]
}

func appendPart(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// DataEventID and DataSpanID are the ids of the data-plane event of type typ that
// answers the run.dispatch whose span is dispatchSpan. The orchestrator uses
// DataSpanID to recognise a verdict on an artifact whose artifact.delivered
// it has not read yet (the two travel on different topics).
func DataEventID(trace, dispatchSpan string, typ schemas.EventType) string {
	return ID(trace, "d", dispatchSpan, string(typ))
}

// DataSpanID: see DataEventID.
func DataSpanID(trace, dispatchSpan string, typ schemas.EventType) string {
	return SpanID(trace, "d", dispatchSpan, string(typ))
}

// Step formats a step index as an id part.
func Step(n uint32) string { return strconv.FormatUint(uint64(n), 10) }
