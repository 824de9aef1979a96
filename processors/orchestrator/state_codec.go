package orchestrator

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/spinerun/spine/schemas"
)

// runMagic starts a run state in the binary encoding (version 1). A state
// that starts with '{' is the JSON encoding of earlier builds, still read.
const runMagic = 0xB1

// encodeRun encodes r compactly: the magic byte, then every field in a
// fixed order (strings length-prefixed, integers as varints), the
// attributes, and a held early verdict (its fields the orchestrator uses).
// Decoding is about five times cheaper than JSON's reflection.
func encodeRun(r *runState) ([]byte, error) {
	b := make([]byte, 0, 256)
	b = append(b, runMagic)
	str := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	for _, s := range []string{r.Trace, r.IntentID, r.Actor, r.Kind, r.Tenant, r.Route, string(r.State), r.Span, r.Dispatch, r.Delivered, r.Artifact} {
		str(s)
	}
	b = binary.AppendUvarint(b, uint64(r.Version))
	b = binary.AppendVarint(b, int64(r.Priority))
	b = binary.AppendUvarint(b, uint64(r.Seq))
	b = binary.AppendVarint(b, int64(r.Attempt))
	for _, v := range []int64{r.Started, r.Deadline, r.RetryAt, r.RunDeadline} {
		b = binary.AppendVarint(b, v)
	}
	var flags byte
	if r.Waiting {
		flags |= 1
	}
	if r.Admitted {
		flags |= 2
	}
	b = append(b, flags)
	keys := make([]string, 0, len(r.Attrs))
	for k := range r.Attrs {
		keys = append(keys, k)
	}
	slices.Sort(keys) // deterministic bytes for equal states
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		str(k)
		str(r.Attrs[k])
	}
	if r.Early == nil {
		str("")
	} else {
		str(string(appendHeld(make([]byte, 0, 128), r.Early)))
	}
	// The input trails, and only while the run may still dispatch: states
	// written before it existed decode with none. The provenance trails
	// the input (written, empty, when only the provenance is there).
	if r.Input != "" || r.Prov != nil || r.Flow != "" || r.Agent != "" {
		str(r.Input)
	}
	if p := r.Prov; p != nil {
		b = append(b, provMagic)
		str(p.Issuer)
		str(p.Subject)
		var at int64
		if !p.VerifiedAt.IsZero() {
			at = p.VerifiedAt.UnixMilli()
		}
		b = binary.AppendVarint(b, at)
		keys := make([]string, 0, len(p.Claims))
		for k := range p.Claims {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = binary.AppendUvarint(b, uint64(len(keys)))
		for _, k := range keys {
			str(k)
			str(p.Claims[k])
		}
	}
	if r.Flow != "" {
		b = append(b, flowMagic)
		str(r.Flow)
	}
	if r.Agent != "" {
		b = append(b, agentMagic)
		str(r.Agent)
	}
	return b, nil
}

// heldMagic starts a held verdict in the binary encoding; one that starts
// with '{' is the JSON of earlier builds, still read. A burst makes most
// verdicts overtake their artifact, so most runs carry one for a while:
// JSON of the whole event cost ~8% of the stack's CPU (e2e profile).
const heldMagic = 0x01

// appendHeld encodes the fields of a held verdict the orchestrator uses:
// ids, spans, the event type, the error and the gate outcome.
func appendHeld(b []byte, ev *schemas.RuntimeEvent) []byte {
	b = append(b, heldMagic)
	for _, s := range []string{ev.EventID, ev.TraceID, ev.SpanID, ev.ParentSpanID, string(ev.EventType), ev.ArtifactID} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	var flags byte
	if ev.Error != nil {
		flags |= 1
	}
	if g := ev.Gate; g != nil {
		flags |= 2
		if g.Passed {
			flags |= 4
		}
	}
	b = append(b, flags)
	if ev.Error != nil {
		b = binary.AppendUvarint(b, uint64(len(*ev.Error)))
		b = append(b, *ev.Error...)
	}
	if g := ev.Gate; g != nil {
		for _, s := range []string{g.Name, g.Reason} {
			b = binary.AppendUvarint(b, uint64(len(s)))
			b = append(b, s...)
		}
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(g.Measured))
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(g.Threshold))
	}
	return b
}

// decodeHeld decodes appendHeld's format, or the JSON of earlier builds.
func decodeHeld(s string) (*schemas.RuntimeEvent, error) {
	ev := new(schemas.RuntimeEvent)
	if s[0] == '{' {
		if err := json.Unmarshal([]byte(s), ev); err != nil {
			return nil, err
		}
		return ev, nil
	}
	if s[0] != heldMagic {
		return nil, errors.New("unknown encoding")
	}
	b := s[1:] // the fields are substrings of s: no copies
	bad := false
	str := func() string {
		v, n := uvarintString(b)
		if n <= 0 || v > uint64(len(b)-n) {
			bad = true
			return ""
		}
		out := b[n : n+int(v)]
		b = b[n+int(v):]
		return out
	}
	f64 := func() float64 {
		if len(b) < 8 {
			bad = true
			return 0
		}
		var u uint64
		for i := range 8 {
			u = u<<8 | uint64(b[i])
		}
		b = b[8:]
		return math.Float64frombits(u)
	}
	ev.EventID, ev.TraceID, ev.SpanID, ev.ParentSpanID, ev.EventType, ev.ArtifactID = str(), str(), str(), str(), schemas.EventType(str()), str()
	if bad || len(b) == 0 {
		return nil, errShortState
	}
	flags := b[0]
	b = b[1:]
	if flags&1 != 0 {
		e := str()
		ev.Error = &e
	}
	if flags&2 != 0 {
		ev.Gate = &schemas.GateOutcome{Name: str(), Reason: str(), Passed: flags&4 != 0}
		ev.Gate.Measured, ev.Gate.Threshold = f64(), f64()
	}
	if bad {
		return nil, errShortState
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%d trailing bytes", len(b))
	}
	return ev, nil
}

var errShortState = errors.New("truncated run state")

// uvarintString is binary.Uvarint of the bytes of s.
func uvarintString(s string) (uint64, int) {
	var x uint64
	var shift uint
	for i := 0; i < len(s); i++ {
		if i == binary.MaxVarintLen64 {
			return 0, -(i + 1) // overflow
		}
		c := s[i]
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				return 0, -(i + 1) // overflow
			}
			return x | uint64(c)<<shift, i + 1
		}
		x |= uint64(c&0x7f) << shift
		shift += 7
	}
	return 0, 0
}

// provMagic starts the run's provenance, the field after the input;
// flowMagic the run's stateflow version, after the provenance if any.
const (
	provMagic  = 0x50
	flowMagic  = 0x46
	agentMagic = 0x41
)

// decodeRunBinary decodes encodeRun's format; a stateflow version equal to
// intern is not copied.
func decodeRunBinary(b []byte, intern string) (*runState, error) {
	if len(b) == 0 || b[0] != runMagic {
		return nil, errors.New("not a binary run state")
	}
	b = b[1:]
	var err error
	uv := func() uint64 {
		if err != nil {
			return 0
		}
		v, n := binary.Uvarint(b)
		if n <= 0 {
			err = errShortState
			return 0
		}
		b = b[n:]
		return v
	}
	sv := func() int64 {
		if err != nil {
			return 0
		}
		v, n := binary.Varint(b)
		if n <= 0 {
			err = errShortState
			return 0
		}
		b = b[n:]
		return v
	}
	// Every string field is a substring of one copy of the state: one
	// allocation instead of one per field (the fields live as long as
	// the run's state does anyway).
	all := string(b)
	str := func() string {
		n := uv()
		if err != nil {
			return ""
		}
		if n > uint64(len(b)) {
			err = errShortState
			return ""
		}
		at := len(all) - len(b)
		s := all[at : at+int(n)]
		b = b[n:]
		return s
	}
	r := new(runState)
	r.Trace, r.IntentID, r.Actor, r.Kind, r.Tenant, r.Route = str(), str(), str(), str(), str(), str()
	r.State = State(str())
	r.Span, r.Dispatch, r.Delivered, r.Artifact = str(), str(), str(), str()
	r.Version = schemas.ContractVersion(uv())
	r.Priority = int32(sv())
	r.Seq = uint32(uv())
	r.Attempt = int32(sv())
	r.Started, r.Deadline, r.RetryAt, r.RunDeadline = sv(), sv(), sv(), sv()
	if err == nil {
		if len(b) == 0 {
			return nil, errShortState
		}
		r.Waiting, r.Admitted = b[0]&1 != 0, b[0]&2 != 0
		b = b[1:]
	}
	if n := uv(); err == nil && n > 0 {
		if n > uint64(len(b)) {
			return nil, errShortState
		}
		r.Attrs = make(map[string]string, n)
		for range n {
			k := str()
			r.Attrs[k] = str()
		}
	}
	if ej := str(); err == nil && ej != "" {
		var herr error
		if r.Early, herr = decodeHeld(ej); herr != nil {
			return nil, fmt.Errorf("held verdict: %w", herr)
		}
	}
	if err == nil && len(b) > 0 {
		r.Input = str()
	}
	if err == nil && len(b) > 0 && b[0] == provMagic {
		b = b[1:]
		p := &schemas.Provenance{Issuer: str(), Subject: str()}
		if at := sv(); at != 0 {
			p.VerifiedAt = fromMs(at)
		}
		if n := uv(); err == nil && n > 0 {
			if n > uint64(len(b)) {
				return nil, errShortState
			}
			p.Claims = make(map[string]string, n)
			for range n {
				k := str()
				p.Claims[k] = str()
			}
		}
		r.Prov = p
	}
	if err == nil && len(b) > 0 && b[0] == flowMagic {
		b = b[1:]
		if n := uv(); err == nil {
			if n > uint64(len(b)) {
				return nil, errShortState
			}
			if string(b[:n]) == intern {
				r.Flow = intern // the current version: no copy
			} else {
				r.Flow = string(b[:n])
			}
			b = b[n:]
		}
	}
	if err == nil && len(b) > 0 {
		if b[0] != agentMagic {
			return nil, errors.New("unknown trailing field")
		}
		b = b[1:]
		r.Agent = str()
	}
	if err != nil {
		return nil, err
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%d trailing bytes", len(b))
	}
	return r, nil
}

// deadline returns the earliest of the run's pending retry, state timeout
// and end-to-end deadline (for an ended run, the end of its retention), or
// false for none. It is Timed.Deadline of the run's encoded state.
func (r *runState) deadline() (time.Time, bool) {
	d := int64(0)
	for _, v := range []int64{r.RetryAt, r.Deadline, r.RunDeadline} {
		if v > 0 && (d == 0 || v < d) {
			d = v
		}
	}
	if d == 0 {
		return time.Time{}, false
	}
	return fromMs(d), true
}
