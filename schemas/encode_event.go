package schemas

import (
	"encoding/binary"
	"math"
	"time"
)

// The RuntimeEvent body encoder.
//
// Every event the thread writes goes through AppendEncode, and hamba's
// reflective encoder spent most of its time on what the golden path leaves
// empty: nil unions, empty strings, and empty maps it still iterates through
// reflect2 (one allocation each). appendEventBody writes the same bytes
// straight from the Go struct, in the field order of the contract version
// asked for. It is used only for the schemas it was written against: NewSerde
// compares each compiled-in RuntimeEvent schema's canonical fingerprint with
// eventBodyFingerprints and falls back to hamba for any other (a test fails
// then, so whoever changes a contract updates this encoder too). The tests
// pin its bytes against hamba's for every field, set and unset.

// eventBodyFingerprints are the canonical (Parsing Canonical Form) SHA-256
// fingerprints of the RuntimeEvent schemas appendEventBody writes, in hex.
var eventBodyFingerprints = map[ContractVersion]string{
	V1: "bc7b5630881440be5d8a20d416dc6e0024038d8319067de660ba8991878ffbef",
	V2: "395b148089bbbc4d7aeb9e7fabca2c62e5e0104186ba4876fa85571ae47aa8ae",
}

// mapBlockLength is hamba's default block length: a map of more entries is
// written in blocks of this many.
const mapBlockLength = 100

// appendEventBody appends ev's Avro body in contract version v to b. It
// reports false, with b as given, for a value hamba would refuse (an enum
// outside its symbols): the caller encodes it with hamba for the error.
func appendEventBody(b []byte, ev *RuntimeEvent, v ContractVersion) ([]byte, bool) {
	phase, ok := phaseIndex(ev.Phase)
	if !ok || !ev.SchemaVersion.Valid() {
		return b, false
	}
	b = appendString(b, ev.EventID)
	b = appendString(b, ev.TraceID)
	b = appendString(b, ev.SpanID)
	b = appendString(b, ev.ParentSpanID)
	b = appendString(b, ev.Actor)
	b = appendString(b, ev.Intent)
	b = appendString(b, ev.ArtifactID)
	b = appendLong(b, int64(ev.SchemaVersion-V1)) // symbols V1, V2
	b = appendMillis(b, ev.Timestamp)
	b = appendMillis(b, ev.RunStarted)
	b = appendLong(b, int64(phase))
	b = appendString(b, string(ev.EventType))
	b = appendString(b, ev.State)
	if a := ev.Artifact; a == nil {
		b = append(b, 0)
	} else {
		b = append(b, 2)
		b = appendString(b, a.ContentType)
		b = appendString(b, a.Summary)
		b = appendDouble(b, a.Score)
		b = appendLong(b, a.SizeBytes)
		b = appendLong(b, a.LatencyMs)
	}
	if g := ev.Gate; g == nil {
		b = append(b, 0)
	} else {
		b = append(b, 2)
		b = appendString(b, g.Name)
		if g.Passed {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
		b = appendString(b, g.Reason)
		b = appendDouble(b, g.Measured)
		b = appendDouble(b, g.Threshold)
		b = appendString(b, g.Rule)
		b = appendString(b, g.PolicyVersion)
		b = appendMap(b, g.Evidence)
	}
	if v == V2 {
		b = appendString(b, ev.Route)
	}
	b = appendLong(b, int64(ev.Attempt))
	if ev.Error == nil {
		b = append(b, 0)
	} else {
		b = append(b, 2)
		b = appendString(b, *ev.Error)
	}
	if u := ev.Usage; u == nil {
		b = append(b, 0)
	} else {
		b = append(b, 2)
		b = appendLong(b, u.InputTokens)
		b = appendLong(b, u.OutputTokens)
		b = appendDouble(b, u.CostUSD)
	}
	if v == V2 {
		b = appendLong(b, int64(ev.Priority))
		b = appendString(b, ev.Tenant)
		b = appendMap(b, ev.Attributes)
	}
	b = appendString(b, ev.Input)
	if p := ev.Provenance; p == nil {
		b = append(b, 0)
	} else {
		b = append(b, 2)
		b = appendString(b, p.Issuer)
		b = appendString(b, p.Subject)
		b = appendMillis(b, p.VerifiedAt)
		b = appendMap(b, p.Claims)
	}
	b = appendString(b, ev.StateflowVersion)
	return b, true
}

// eventBodySizeHint is about the size of ev's body, so that one allocation
// usually holds the record: its strings with two bytes each for their
// lengths, and room for the numbers, union indexes and maps (a long of more
// than two bytes counts on the slack; append grows the rest).
func eventBodySizeHint(ev *RuntimeEvent) int {
	const strings = 16 // the envelope's string fields, at two bytes of length each
	n := 48 + 2*strings + len(ev.EventID) + len(ev.TraceID) + len(ev.SpanID) + len(ev.ParentSpanID) + len(ev.Actor) +
		len(ev.Intent) + len(ev.ArtifactID) + len(ev.EventType) + len(ev.State) + len(ev.Route) + len(ev.Tenant) +
		len(ev.Input) + len(ev.StateflowVersion) + mapSizeHint(ev.Attributes)
	if a := ev.Artifact; a != nil {
		n += 32 + len(a.ContentType) + len(a.Summary)
	}
	if g := ev.Gate; g != nil {
		n += 32 + len(g.Name) + len(g.Reason) + len(g.Rule) + len(g.PolicyVersion) + mapSizeHint(g.Evidence)
	}
	if ev.Error != nil {
		n += len(*ev.Error)
	}
	if ev.Usage != nil {
		n += 32
	}
	if p := ev.Provenance; p != nil {
		n += 16 + len(p.Issuer) + len(p.Subject) + mapSizeHint(p.Claims)
	}
	return n
}

func mapSizeHint(m map[string]string) int {
	if len(m) == 0 {
		return 0
	}
	n := 0
	for k, v := range m {
		n += 4 + len(k) + len(v)
	}
	return n
}

func phaseIndex(p Phase) (int, bool) {
	switch p {
	case PhaseControl:
		return 0, true
	case PhaseData:
		return 1, true
	case PhaseGate:
		return 2, true
	}
	return 0, false
}

// appendLong appends an Avro int or long: zig-zag, then a varint.
func appendLong(b []byte, i int64) []byte {
	return binary.AppendUvarint(b, uint64(i<<1)^uint64(i>>63))
}

func appendString(b []byte, s string) []byte {
	b = appendLong(b, int64(len(s)))
	return append(b, s...)
}

func appendDouble(b []byte, f float64) []byte {
	return binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
}

// appendMillis appends a timestamp-millis as hamba computes it.
func appendMillis(b []byte, t time.Time) []byte {
	return appendLong(b, t.Unix()*1e3+int64(t.Nanosecond()/1e6))
}

// appendMap appends a map of strings as hamba writes one: blocks of up to
// mapBlockLength entries, each a negative count and its size in bytes, then
// the entries; a zero count ends the map (an empty map is that zero alone).
func appendMap(b []byte, m map[string]string) []byte {
	if len(m) == 0 {
		return append(b, 0)
	}
	start, n := -1, 0
	for k, v := range m {
		if start < 0 {
			// Room for the block's header, moved into place once its
			// entries are written.
			start = len(b)
			b = append(b, make([]byte, 2*binary.MaxVarintLen64)...)
		}
		b = appendString(b, k)
		b = appendString(b, v)
		if n++; n == mapBlockLength {
			b, start, n = endBlock(b, start, n), -1, 0
		}
	}
	if n > 0 {
		b = endBlock(b, start, n)
	}
	return append(b, 0)
}

// endBlock writes the header of the block of n entries that starts, after
// room for its header, at start, and moves the entries up behind it.
func endBlock(b []byte, start, n int) []byte {
	entries := start + 2*binary.MaxVarintLen64
	size := len(b) - entries
	var hdr [2 * binary.MaxVarintLen64]byte
	h := appendLong(appendLong(hdr[:0], -int64(n)), int64(size))
	copy(b[start:], h)
	copy(b[start+len(h):], b[entries:])
	return b[:start+len(h)+size]
}
