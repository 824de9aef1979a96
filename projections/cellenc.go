package projections

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"time"
)

// appendCell appends the encoding EncodeCell gives c, without reflection:
// the replay's comparison encodes every rebuilt cell, and encoding/json
// was most of its work. It returns false for a cell it cannot encode
// exactly as encoding/json would (an unknown cell type, a time outside
// UTC or outside years 0-9999, a NaN or infinite float); the caller then
// falls back to EncodeCell. Its output equals EncodeCell's byte for byte
// (TestAppendCellMatchesEncodeCell, FuzzAppendCell).
func appendCell(b []byte, c Cell) ([]byte, bool) {
	e := cellEncoder{b: append(b, cellFormat)}
	switch c := c.(type) {
	case *RunPart:
		e.runPart(c)
	case *GoldenCell:
		e.golden(c)
	case *GatesCell:
		e.gates(c)
	case *ArtifactsCell:
		e.artifacts(c)
	default:
		return b, false
	}
	return e.b, e.ok
}

// cellEncoder appends JSON to b; ok turns false at the first value it
// cannot encode as encoding/json does.
type cellEncoder struct {
	b     []byte
	ok    bool
	first bool // no field written yet in the current object
	keys  [maxRunHops]string
	// date is "2006-01-02T15:04:05" of the second sec, when hasDate: a
	// cell's times are mostly within one second of each other.
	date    [19]byte
	sec     int64
	hasDate bool
}

// scratch is room for the keys of one of a run part's maps (the run
// part's maps nest no other map).
func (e *cellEncoder) scratch() []string {
	return e.keys[:0]
}

func (e *cellEncoder) open() {
	e.b = append(e.b, '{')
	e.first = true
}

func (e *cellEncoder) close() {
	e.b = append(e.b, '}')
	e.first = false
}

// field writes the separator and "name": (name is a plain ASCII literal).
func (e *cellEncoder) field(name string) {
	if !e.first {
		e.b = append(e.b, ',')
	}
	e.first = false
	e.b = append(e.b, '"')
	e.b = append(e.b, name...)
	e.b = append(e.b, '"', ':')
}

// str writes s as encoding/json does (HTML characters escaped, invalid
// UTF-8 replaced): plain ASCII directly, anything else through it.
func (e *cellEncoder) str(s string) {
	for i := 0; i < len(s); i++ {
		if !plainByte[s[i]] {
			j, err := json.Marshal(s)
			if err != nil {
				e.ok = false
				return
			}
			e.b = append(e.b, j...)
			return
		}
	}
	e.b = append(e.b, '"')
	e.b = append(e.b, s...)
	e.b = append(e.b, '"')
}

func (e *cellEncoder) strField(name, s string, omitEmpty bool) {
	if omitEmpty && s == "" {
		return
	}
	e.field(name)
	e.str(s)
}

func (e *cellEncoder) intField(name string, n int64, omitEmpty bool) {
	if omitEmpty && n == 0 {
		return
	}
	e.field(name)
	e.b = strconv.AppendInt(e.b, n, 10)
}

// float writes f as encoding/json's float64 encoder does.
func (e *cellEncoder) float(f float64) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		e.ok = false
		return
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	e.b = strconv.AppendFloat(e.b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		if n := len(e.b); n >= 4 && e.b[n-4] == 'e' && e.b[n-3] == '-' && e.b[n-2] == '0' {
			e.b[n-2] = e.b[n-1]
			e.b = e.b[:n-1]
		}
	}
}

func (e *cellEncoder) boolean(v bool) {
	if v {
		e.b = append(e.b, "true"...)
	} else {
		e.b = append(e.b, "false"...)
	}
}

// time writes t as time.Time.MarshalJSON does, for UTC times of years
// 0-9999 (the cells' times; anything else is left to encoding/json).
func (e *cellEncoder) time(t time.Time) {
	if t.Location() != time.UTC {
		e.ok = false
		return
	}
	// RFC 3339 with the nanoseconds' trailing zeros cut, as MarshalJSON
	// writes a UTC time; the date and clock are formatted once a second.
	if sec := t.Unix(); !e.hasDate || sec != e.sec {
		if y := t.Year(); y < 0 || y > 9999 {
			e.ok = false
			return
		}
		var buf [32]byte
		d := t.AppendFormat(buf[:0], time.RFC3339) // 2006-01-02T15:04:05Z
		copy(e.date[:], d)
		e.sec, e.hasDate = sec, true
	}
	e.b = append(e.b, '"')
	e.b = append(e.b, e.date[:]...)
	if ns := t.Nanosecond(); ns != 0 {
		var f [10]byte
		f[0] = '.'
		for i := 9; i > 0; i-- {
			f[i] = byte('0' + ns%10)
			ns /= 10
		}
		n := len(f)
		for f[n-1] == '0' {
			n--
		}
		e.b = append(e.b, f[:n]...)
	}
	e.b = append(e.b, 'Z', '"')
}

func (e *cellEncoder) timeField(name string, t time.Time) {
	if t.IsZero() { // omitzero
		return
	}
	e.field(name)
	e.time(t)
}

// plainByte marks the bytes encoding/json writes as they are inside a
// string: printable ASCII but for '"', '\\' and the HTML characters.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// sortedKeys appends m's keys to dst (a caller's small array, so a cell's
// few keys need no allocation) in encoding/json's order.
func sortedKeys[V any](dst []string, m map[string]V) []string {
	for k := range m {
		dst = append(dst, k)
	}
	slices.Sort(dst)
	return dst
}

func (e *cellEncoder) hist(h *Histogram) {
	e.open()
	e.intField("n", h.n, false)
	e.intField("sum", h.sum, false)
	e.intField("min", h.min, false)
	e.intField("max", h.max, false)
	e.field("b")
	e.b = append(e.b, '[')
	for j, i := range h.indexes() {
		if j > 0 {
			e.b = append(e.b, ',')
		}
		e.b = append(e.b, '[')
		e.b = strconv.AppendInt(e.b, int64(i), 10)
		e.b = append(e.b, ',')
		e.b = strconv.AppendInt(e.b, h.counts[i], 10)
		e.b = append(e.b, ']')
	}
	e.b = append(e.b, ']')
	e.close()
}

func (e *cellEncoder) runPart(p *RunPart) {
	e.ok = true
	e.open()
	e.strField("trace_id", p.TraceID, false)
	e.strField("actor", p.Actor, true)
	e.strField("intent", p.Intent, true)
	e.strField("route", p.Route, true)
	e.strField("contract_version", p.Version, true)
	e.strField("tenant", p.Tenant, true)
	e.timeField("run_started", p.RunStarted)
	e.strField("state", p.State, true)
	e.strField("last_event", p.LastEvent, true)
	e.timeField("last_at", p.LastAt)
	e.strField("outcome", p.Outcome, true)
	e.timeField("outcome_at", p.OutcomeAt)
	if len(p.Hops) > 0 {
		e.field("hops")
		e.open()
		for _, k := range sortedKeys(e.scratch(), p.Hops) {
			e.key(k)
			e.time(p.Hops[k])
		}
		e.close()
	}
	if len(p.Gates) > 0 {
		e.field("gates")
		e.open()
		for _, k := range sortedKeys(e.scratch(), p.Gates) {
			e.key(k)
			g := p.Gates[k]
			e.open()
			e.field("passed")
			e.boolean(g.Passed)
			e.strField("reason", g.Reason, true)
			e.field("measured")
			e.float(g.Measured)
			e.field("threshold")
			e.float(g.Threshold)
			e.field("at")
			e.time(g.At)
			e.close()
		}
		e.close()
	}
	e.strField("artifact_id", p.ArtifactID, true)
	if p.Score != nil {
		e.field("score")
		e.float(*p.Score)
	}
	e.intField("attempt", int64(p.Attempt), true)
	e.strField("error", p.Error, true)
	e.intField("events", p.Events, false)
	e.intField("illegal_transitions", p.Illegal, true)
	e.close()
}

// key writes the separator and a map key.
func (e *cellEncoder) key(k string) {
	if !e.first {
		e.b = append(e.b, ',')
	}
	e.first = false
	e.str(k)
	e.b = append(e.b, ':')
}

func (e *cellEncoder) stats(name string, m map[string]*Stat) {
	if len(m) == 0 {
		return
	}
	e.field(name)
	e.open()
	for _, k := range sortedKeys(nil, m) {
		e.key(k)
		s := m[k]
		if s == nil {
			e.b = append(e.b, "null"...)
			continue
		}
		e.open()
		e.intField("count", s.Count, false)
		e.field("latency_ms")
		e.hist(&s.Latency)
		e.close()
	}
	e.close()
}

func (e *cellEncoder) counts(name string, m map[string]int64) {
	if len(m) == 0 {
		return
	}
	e.field(name)
	e.open()
	for _, k := range sortedKeys(nil, m) {
		e.key(k)
		e.b = strconv.AppendInt(e.b, m[k], 10)
	}
	e.close()
}

func (e *cellEncoder) golden(g *GoldenCell) {
	e.ok = true
	e.open()
	e.stats("hops", g.Hops)
	e.stats("outcomes", g.Outcomes)
	e.counts("events", g.Events)
	e.close()
}

func (e *cellEncoder) gates(c *GatesCell) {
	e.ok = true
	e.open()
	if len(c.Gates) > 0 {
		e.field("gates")
		e.open()
		for _, k := range sortedKeys(nil, c.Gates) {
			e.key(k)
			s := c.Gates[k]
			if s == nil {
				e.b = append(e.b, "null"...)
				continue
			}
			e.open()
			e.intField("passed", s.Passed, false)
			e.intField("failed", s.Failed, false)
			e.counts("reasons", s.Reasons)
			e.close()
		}
		e.close()
	}
	e.close()
}

func (e *cellEncoder) artifacts(a *ArtifactsCell) {
	e.ok = true
	e.open()
	e.intField("count", a.Count, false)
	e.intField("bytes", a.Bytes, false)
	e.intField("failed", a.Failed, false)
	e.field("score_e4")
	e.hist(&a.Score)
	e.field("exec_latency_ms")
	e.hist(&a.ExecLatency)
	e.close()
}
