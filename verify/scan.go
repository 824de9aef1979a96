package verify

import (
	"encoding/binary"
	"errors"
	"math"

	"github.com/hamba/avro/v2"
)

// envelope is the part of a RuntimeEvent verify reads, as subslices of the
// record's value: scanning it allocates nothing.
type envelope struct {
	EventID, TraceID, SpanID, ParentSpanID, ArtifactID []byte
	Timestamp, RunStarted                              int64 // Unix ms
	EventType, State                                   []byte
	// HasGate reports a gate outcome; GateName, GatePassed, Measured and
	// Threshold are its fields.
	HasGate bool
	// HasSummary reports an artifact summary, which ends the scan: the
	// gate fields are then not read.
	HasSummary          bool
	GateName            []byte
	GatePassed          bool
	Measured, Threshold float64
}

// errShort is a body that ends before its envelope does.
var errShort = errors.New("verify: body ends inside the envelope")

// scanner reads Avro primitives from b.
type scanner struct {
	b   []byte
	pos int
	err error
}

func (s *scanner) long() int64 {
	var u uint64
	var shift uint
	for i := 0; i < 10; i++ {
		if s.pos >= len(s.b) {
			s.err = errShort
			return 0
		}
		c := s.b[s.pos]
		s.pos++
		u |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			return int64(u>>1) ^ -int64(u&1)
		}
		shift += 7
	}
	s.err = errShort
	return 0
}

func (s *scanner) bytes() []byte {
	n := s.long()
	if s.err != nil {
		return nil
	}
	if n < 0 || n > int64(len(s.b)-s.pos) {
		s.err = errShort
		return nil
	}
	out := s.b[s.pos : s.pos+int(n) : s.pos+int(n)]
	s.pos += int(n)
	return out
}

func (s *scanner) double() float64 {
	if len(s.b)-s.pos < 8 {
		s.err = errShort
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(s.b[s.pos:]))
	s.pos += 8
	return v
}

func (s *scanner) boolean() bool {
	if s.pos >= len(s.b) {
		s.err = errShort
		return false
	}
	c := s.b[s.pos]
	s.pos++
	if c > 1 {
		s.err = errShort
	}
	return c == 1
}

// scanEnvelope reads the envelope of a RuntimeEvent body (after the 5-byte
// wire header) written with a schema whose layout fastLayout accepted.
func scanEnvelope(body []byte, e *envelope) error {
	s := scanner{b: body}
	e.EventID = s.bytes()
	e.TraceID = s.bytes()
	e.SpanID = s.bytes()
	e.ParentSpanID = s.bytes()
	s.bytes() // actor
	s.bytes() // intent
	e.ArtifactID = s.bytes()
	s.long() // schema_version
	e.Timestamp = s.long()
	e.RunStarted = s.long()
	s.long() // phase
	e.EventType = s.bytes()
	e.State = s.bytes()
	art := s.long() // artifact union
	e.HasGate, e.HasSummary = false, art != 0
	if s.err != nil || art != 0 {
		// The gate union follows the summary, which this scan does not
		// skip: an event with both (none of the thread's writers makes
		// one) is decoded whole by a caller that needs its gate.
		return s.err
	}
	e.HasGate = s.long() == 1
	if e.HasGate {
		e.GateName = s.bytes()
		e.GatePassed = s.boolean()
		s.bytes() // reason
		e.Measured = s.double()
		e.Threshold = s.double()
	}
	return s.err
}

// envelopeFields are the leading fields of every RuntimeEvent contract
// (V1 and V2 alike), in order, with their Avro types; fastLayout accepts a
// writer schema that starts with them.
var envelopeFields = []struct {
	name string
	typ  avro.Type
}{
	{"event_id", avro.String}, {"trace_id", avro.String}, {"span_id", avro.String}, {"parent_span_id", avro.String},
	{"actor", avro.String}, {"intent", avro.String}, {"artifact_id", avro.String}, {"schema_version", avro.Enum},
	{"timestamp", avro.Long}, {"run_started", avro.Long}, {"phase", avro.Enum}, {"event_type", avro.String},
	{"state", avro.String}, {"artifact", avro.Union}, {"gate", avro.Union},
}

var gateFields = []struct {
	name string
	typ  avro.Type
}{{"name", avro.String}, {"passed", avro.Boolean}, {"reason", avro.String}, {"measured", avro.Double}, {"threshold", avro.Double}}

// fastLayout reports whether scanEnvelope can read bodies written with
// schema text: a record starting with envelopeFields, whose artifact and
// gate unions are [null, record] and whose gate record starts with
// gateFields. Anything else (an intent, a future contract that reorders
// the envelope) is decoded whole.
func fastLayout(text string) bool {
	s, err := avro.ParseWithCache(text, "", &avro.SchemaCache{})
	if err != nil {
		return false
	}
	rec, ok := s.(*avro.RecordSchema)
	if !ok || len(rec.Fields()) < len(envelopeFields) {
		return false
	}
	fs := rec.Fields()
	for i, want := range envelopeFields {
		if fs[i].Name() != want.name || fs[i].Type().Type() != want.typ {
			return false
		}
	}
	for _, i := range []int{13, 14} {
		u := fs[i].Type().(*avro.UnionSchema).Types()
		if len(u) != 2 || u[0].Type() != avro.Null || u[1].Type() != avro.Record {
			return false
		}
	}
	gate := fs[14].Type().(*avro.UnionSchema).Types()[1].(*avro.RecordSchema).Fields()
	if len(gate) < len(gateFields) {
		return false
	}
	for i, want := range gateFields {
		if gate[i].Name() != want.name || gate[i].Type().Type() != want.typ {
			return false
		}
	}
	return true
}
