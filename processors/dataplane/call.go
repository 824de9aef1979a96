package dataplane

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// call is a run's state in spine.state.dataplane while its call is
// pending: the dispatch it answers (the fields the call and its result
// events need), the contract version to answer in, and the call's
// deadline.
//
// Encoding: the dispatch span, a newline (so Pending reads the span
// without decoding the rest), a format byte, then each field in a fixed
// order: strings and bytes as a uvarint length and the bytes, integers as
// varints, times as a set byte then varint seconds and uvarint
// nanoseconds, maps as a varint count (-1: nil) then key and value pairs,
// the provenance as a set byte then its fields. A dispatch field the
// result events copy must be added here (TestCallRoundTrip fills every
// one); a changed layout takes a new format byte.
type call struct {
	Dispatch *schemas.RuntimeEvent
	Version  schemas.ContractVersion
	// Deadline bounds the call (zero: none); a call run again after a
	// restart keeps it.
	Deadline time.Time
}

// callFormat is the encoding's format byte.
const callFormat = 1

func (c *call) encode() ([]byte, error) {
	ev := c.Dispatch
	if bytes.IndexByte([]byte(ev.SpanID), '\n') >= 0 {
		return nil, errors.New("a span id with a newline")
	}
	n := len(ev.SpanID) + len(ev.TraceID) + len(ev.Actor) + len(ev.Intent) + len(ev.Route) + len(ev.Tenant) + len(ev.Input) + 96
	for k, v := range ev.Attributes {
		n += len(k) + len(v) + 4
	}
	b := make([]byte, 0, n)
	b = append(b, ev.SpanID...)
	b = append(b, '\n', callFormat)
	b = binary.AppendVarint(b, int64(c.Version))
	b = appendTime(b, c.Deadline)
	for _, s := range []string{ev.TraceID, ev.EventID, ev.Actor, ev.Intent, ev.Route, ev.Tenant, ev.Input} {
		b = appendString(b, s)
	}
	b = binary.AppendVarint(b, int64(ev.SchemaVersion))
	b = binary.AppendVarint(b, int64(ev.Attempt))
	b = binary.AppendVarint(b, int64(ev.Priority))
	b = appendTime(b, ev.Timestamp)
	b = appendTime(b, ev.RunStarted)
	b = appendMap(b, ev.Attributes)
	if p := ev.Provenance; p == nil {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		b = appendString(appendString(b, p.Issuer), p.Subject)
		b = appendTime(b, p.VerifiedAt)
		b = appendMap(b, p.Claims)
	}
	return b, nil
}

func appendMap(b []byte, m map[string]string) []byte {
	if m == nil {
		return binary.AppendVarint(b, -1)
	}
	b = binary.AppendVarint(b, int64(len(m)))
	for k, v := range m {
		b = appendString(appendString(b, k), v)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, 0)
	}
	b = append(b, 1)
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

// pendingSpan returns the dispatch span a state names ("" for none).
func pendingSpan(state []byte) string {
	i := bytes.IndexByte(state, '\n')
	if i < 0 {
		return ""
	}
	return string(state[:i])
}

var errBadCall = errors.New("decode dataplane state: truncated or malformed")

// callReader reads the fields of an encoded call; err is sticky.
type callReader struct {
	b   []byte
	err error
}

func (r *callReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errBadCall
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *callReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errBadCall
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *callReader) string() string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.b)) {
		r.err = errBadCall
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *callReader) time() time.Time {
	if r.err != nil || len(r.b) == 0 {
		r.err = errBadCall
		return time.Time{}
	}
	set := r.b[0]
	r.b = r.b[1:]
	if set == 0 {
		return time.Time{}
	}
	sec := r.varint()
	nsec := r.uvarint()
	if nsec >= 1e9 {
		r.err = errBadCall
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

func (r *callReader) stringMap() map[string]string {
	n := r.varint()
	if r.err != nil || n < 0 {
		return nil
	}
	if n > int64(len(r.b)) {
		r.err = errBadCall
		return nil
	}
	m := make(map[string]string, n)
	for range n {
		k := r.string()
		m[k] = r.string()
	}
	return m
}

func decodeCall(state []byte) (*call, error) {
	i := bytes.IndexByte(state, '\n')
	if i < 0 || i+1 >= len(state) {
		return nil, errors.New("dataplane state without a dispatch span")
	}
	if state[i+1] != callFormat {
		return nil, fmt.Errorf("dataplane state of unknown format %d", state[i+1])
	}
	ev := &schemas.RuntimeEvent{SpanID: string(state[:i]), EventType: thread.RunDispatch}
	c := &call{Dispatch: ev}
	r := &callReader{b: state[i+2:]}
	c.Version = schemas.ContractVersion(r.varint())
	c.Deadline = r.time()
	for _, s := range []*string{&ev.TraceID, &ev.EventID, &ev.Actor, &ev.Intent, &ev.Route, &ev.Tenant, &ev.Input} {
		*s = r.string()
	}
	ev.SchemaVersion = schemas.ContractVersion(r.varint())
	ev.Attempt = int32(r.varint())
	ev.Priority = int32(r.varint())
	ev.Timestamp = r.time()
	ev.RunStarted = r.time()
	ev.Attributes = r.stringMap()
	if r.err == nil && len(r.b) > 0 {
		set := r.b[0]
		r.b = r.b[1:]
		if set == 1 {
			p := &schemas.Provenance{}
			p.Issuer = r.string()
			p.Subject = r.string()
			p.VerifiedAt = r.time()
			p.Claims = r.stringMap()
			ev.Provenance = p
		} else if set != 0 {
			r.err = errBadCall
		}
	} else {
		r.err = errBadCall
	}
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) != 0 {
		return nil, errBadCall
	}
	return c, nil
}

func (c *call) route() string {
	if c.Dispatch.Route == "" {
		return thread.RouteBaseline
	}
	return c.Dispatch.Route
}

// request is the executor's request for the call.
func (c *call) request() Request {
	ev := c.Dispatch
	return Request{
		TraceID: ev.TraceID, Actor: ev.Actor, Kind: ev.Intent, Route: c.route(), Version: c.Version,
		Attempt: ev.Attempt, DispatchSpan: ev.SpanID, IdempotencyKey: IdempotencyKey(ev.TraceID, ev.SpanID),
		Priority: ev.Priority, Tenant: ev.Tenant, Attributes: ev.Attributes, Input: []byte(ev.Input),
	}
}
