package schemas

import (
	"encoding/binary"
	"math"
	"time"
)

// The RuntimeEvent body decoder: the mirror of appendEventBody.
//
// Serde.decodeBody first scans a body against its writer schema (lengths,
// bounds, UTF-8, no trailing bytes); hamba then decoded it by reflection.
// readEventBody decodes a body written with today's V1 or V2 RuntimeEvent
// schema into a V2 value itself, giving what hamba gives: every map
// non-nil, V2-only fields of a V1 record at their defaults (route
// "baseline", attributes {}), timestamps in UTC. It is used only when the
// writer schema's canonical fingerprint is one of eventBodyFingerprints and
// the reader is V2; it reports false on anything it does not expect, and
// the caller decodes with hamba then (for hamba's answer, or its error).
// The tests compare the two on random events and on fuzzed bytes.

type bodyReader struct {
	b   []byte
	bad bool
	// all, when set, is a copy of the whole body as a string, and the
	// strings read are substrings of it: one allocation per record, as
	// hamba's 1 KiB slab gives it. Bodies over sharedBodyMax get one
	// allocation per string, so that a small field kept for long does not
	// hold a large input with it.
	all string
	n   int // len(body)
}

// sharedBodyMax is the largest body whose strings share one copy.
const sharedBodyMax = 4 << 10

func (r *bodyReader) long() int64 {
	u, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.bad = true
		return 0
	}
	r.b = r.b[n:]
	return int64(u>>1) ^ -int64(u&1)
}

func (r *bodyReader) int() int32 {
	v := r.long()
	if v < math.MinInt32 || v > math.MaxInt32 {
		r.bad = true
		return 0
	}
	return int32(v)
}

func (r *bodyReader) str() string {
	n := r.long()
	if n < 0 || n > int64(len(r.b)) {
		r.bad = true
		return ""
	}
	if n == 0 {
		return ""
	}
	var s string
	if r.all != "" {
		at := r.n - len(r.b)
		s = r.all[at : at+int(n)]
	} else {
		s = string(r.b[:n])
	}
	r.b = r.b[n:]
	return s
}

func (r *bodyReader) double() float64 {
	if len(r.b) < 8 {
		r.bad = true
		return 0
	}
	f := math.Float64frombits(binary.LittleEndian.Uint64(r.b))
	r.b = r.b[8:]
	return f
}

func (r *bodyReader) bool() bool {
	if len(r.b) == 0 || r.b[0] > 1 {
		r.bad = true
		return false
	}
	v := r.b[0] == 1
	r.b = r.b[1:]
	return v
}

// millis reads a timestamp-millis as hamba does.
func (r *bodyReader) millis() time.Time {
	i := r.long()
	sec := i / 1e3
	return time.Unix(sec, (i-sec*1e3)*1e6).UTC()
}

// union reads a ["null", T] union's index: false for null.
func (r *bodyReader) union() bool {
	switch r.long() {
	case 0:
		return false
	case 1:
		return true
	}
	r.bad = true
	return false
}

// strMap reads a map of strings; it is never nil, as hamba's are not.
func (r *bodyReader) strMap() map[string]string {
	m := map[string]string{}
	for !r.bad {
		n := r.long()
		if n == 0 {
			break
		}
		if n < 0 {
			n = -n
			r.long() // the block's size in bytes
		}
		if n > int64(len(r.b)) { // each entry takes at least two bytes
			r.bad = true
			break
		}
		for range n {
			k := r.str()
			m[k] = r.str()
		}
	}
	return m
}

// readEventBody decodes body, written with today's RuntimeEvent schema of
// version v, into ev (which is zero). It reports false when the body is not
// what it expects; ev is then to be discarded.
func readEventBody(body []byte, v ContractVersion, ev *RuntimeEvent) bool {
	r := &bodyReader{b: body, n: len(body)}
	if len(body) <= sharedBodyMax {
		r.all = string(body)
	}
	ev.EventID = r.str()
	ev.TraceID = r.str()
	ev.SpanID = r.str()
	ev.ParentSpanID = r.str()
	ev.Actor = r.str()
	ev.Intent = r.str()
	ev.ArtifactID = r.str()
	switch r.long() {
	case 0:
		ev.SchemaVersion = V1
	case 1:
		ev.SchemaVersion = V2
	default:
		return false
	}
	ev.Timestamp = r.millis()
	ev.RunStarted = r.millis()
	switch r.long() {
	case 0:
		ev.Phase = PhaseControl
	case 1:
		ev.Phase = PhaseData
	case 2:
		ev.Phase = PhaseGate
	default:
		return false
	}
	ev.EventType = EventType(r.str())
	ev.State = r.str()
	if r.union() {
		ev.Artifact = &ArtifactSummary{ContentType: r.str(), Summary: r.str(), Score: r.double(), SizeBytes: r.long(), LatencyMs: r.long()}
	}
	if r.union() {
		g := &GateOutcome{Name: r.str(), Passed: r.bool(), Reason: r.str(), Measured: r.double(), Threshold: r.double()}
		g.Rule, g.PolicyVersion, g.Evidence = r.str(), r.str(), r.strMap()
		ev.Gate = g
	}
	if v == V2 {
		ev.Route = r.str()
	} else {
		ev.Route = "baseline" // the V2 default
	}
	ev.Attempt = r.int()
	if r.union() {
		e := r.str()
		ev.Error = &e
	}
	if r.union() {
		ev.Usage = &Usage{InputTokens: r.long(), OutputTokens: r.long(), CostUSD: r.double()}
	}
	if v == V2 {
		ev.Priority = r.int()
		ev.Tenant = r.str()
		ev.Attributes = r.strMap()
	} else {
		ev.Attributes = map[string]string{} // the V2 default
	}
	ev.Input = r.str()
	if r.union() {
		ev.Provenance = &Provenance{Issuer: r.str(), Subject: r.str(), VerifiedAt: r.millis(), Claims: r.strMap()}
	}
	ev.StateflowVersion = r.str()
	return !r.bad && len(r.b) == 0
}
