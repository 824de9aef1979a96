package thread

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"time"
)

// Trace ids Spine mints (the CLI, HTTP ingress, the load test) are W3C
// trace ids whose first 8 hex digits are the Unix time in seconds when the
// run was asked for and whose other 24 are random: the layout of AWS
// X-Ray's trace ids. The time lets a reader of the thread (spine trace)
// start at the run's first record, found by Kafka's offset-for-timestamp
// lookup, instead of at a partition's start. 96 random bits keep ids
// unique. A producer may choose any other id; it is then read from the
// start.

// NewTraceID returns a new trace id minted at now.
func NewTraceID(now time.Time) string {
	var rest [12]byte
	_, _ = rand.Read(rest[:])
	return TraceIDAt(now, rest)
}

// TraceIDAt returns the trace id of time at (to the second) and the 96
// bits rest: generators of many runs use it with a counter for rest.
func TraceIDAt(at time.Time, rest [12]byte) string {
	var b [16]byte
	binary.BigEndian.PutUint32(b[:4], uint32(at.Unix()))
	copy(b[4:], rest[:])
	if b == ([16]byte{}) {
		b[15] = 1 // the all-zero id is W3C's invalid one
	}
	return hex.EncodeToString(b[:])
}

// traceEpoch is the earliest time TraceTime believes: before it, the first
// digits of an id are not a time Spine wrote.
var traceEpoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// TraceTime returns the time a trace id of NewTraceID's layout names, and
// false when id is not 32 lowercase hex digits or its time is not between
// 2024 and an hour after now. A random id passes for about one in fifty of
// them in 2026 (its first 32 bits a time in that span): a reader that finds
// nothing of the run from that time must read again from the start.
func TraceTime(id string, now time.Time) (time.Time, bool) {
	if !lowerHex(id, 32) {
		return time.Time{}, false
	}
	var b [4]byte
	if _, err := hex.Decode(b[:], []byte(id[:8])); err != nil {
		return time.Time{}, false
	}
	at := time.Unix(int64(binary.BigEndian.Uint32(b[:])), 0).UTC()
	if at.Before(traceEpoch) || at.After(now.Add(time.Hour)) {
		return time.Time{}, false
	}
	return at, true
}
