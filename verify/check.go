package verify

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/maphash"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/projections"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// original compares r with the dead letter that names it as its original,
// if any.
func (v *verifier) original(ti *topicInfo, st *partState, r *kgo.Record) {
	if st.dlq == nil {
		return
	}
	if d := st.dlq[r.Offset]; d != nil {
		d.matched = true
		if string(d.value) != string(r.Value) || string(d.key) != string(r.Key) {
			v.anomaly(BadDeadLetter, d.trace, d.where, "dead letter of %s carries %d bytes that are not the original record's %d", where(ti, r), len(d.value), len(r.Value))
		}
	}
}

// apply checks one visible record.
func (v *verifier) apply(ti *topicInfo, st *partState, r *kgo.Record) {
	ti.records++
	v.original(ti, st, r)
	switch ti.kind {
	case kindDLQ:
		v.deadLetter(ti, r)
	case kindIntents:
		v.intent(r)
	case kindArtifacts:
		if r.Value != nil {
			v.artifacts.add(maphash.Bytes(v.seed, r.Key))
			v.rep.Artifacts++
		}
	default:
		v.event(ti, r)
	}
}

func (v *verifier) deadLetter(ti *topicInfo, r *kgo.Record) {
	v.rep.DeadLetters++
	d, err := pipeline.ParseDeadLetter(r)
	trace := string(r.Key)
	if err != nil {
		v.anomaly(BadDeadLetter, trace, where(ti, r), "%v", err)
		return
	}
	if d.Code == "" || d.Message == "" {
		v.anomaly(BadDeadLetter, trace, where(ti, r), "no reason: %s %q, %s %q", pipeline.HeaderErrorCode, d.Code, pipeline.HeaderDLTExceptionMessage, d.Message)
	}
	src := v.byName[string(d.Topic)]
	if src == nil || src.kind == kindDLQ || int(d.Partition) >= len(src.parts) || src.parts[d.Partition] == nil {
		v.rep.DeadLettersUnchecked++
		return
	}
	st := src.parts[d.Partition]
	if d.Offset < st.from || d.Offset >= st.end {
		v.rep.DeadLettersUnchecked++
		return
	}
	if st.dlq == nil {
		st.dlq = map[int64]*deadLetter{}
	}
	if st.dlq[d.Offset] != nil {
		return // dead-lettered by two processors (each reads the topic)
	}
	st.dlq[d.Offset] = &deadLetter{where: where(ti, r), trace: trace, key: d.Key, value: d.Value}
}

// trace returns the index of the run with trace id id, adding it.
func (v *verifier) trace(id []byte) uint32 {
	var k [16]byte
	if len(id) == 32 {
		if _, err := hex.Decode(k[:], id); err == nil && isLowerHex(id) {
			if i, ok := v.byHex[k]; ok {
				return i
			}
			i := uint32(len(v.traces))
			v.traces = append(v.traces, traceState{key: k, name: -1})
			v.byHex[k] = i
			return i
		}
	}
	if i, ok := v.byName2[string(id)]; ok {
		return i
	}
	i := uint32(len(v.traces))
	v.traces = append(v.traces, traceState{name: int32(len(v.names))})
	v.names = append(v.names, string(id))
	v.byName2[string(id)] = i
	return i
}

func isLowerHex(b []byte) bool {
	for _, c := range b {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func (v *verifier) traceID(i uint32) string {
	t := &v.traces[i]
	if t.name >= 0 {
		return v.names[t.name]
	}
	return hex.EncodeToString(t.key[:])
}

func (v *verifier) intent(r *kgo.Record) {
	v.rep.Intents++
	key := r.Key
	if len(key) == 0 {
		val, _, err := v.cfg.Codec.Decode(context.Background(), pipeline.Topic(r.Topic), r.Value)
		it, ok := val.(*schemas.Intent)
		if err != nil || !ok || it.TraceID == "" {
			return // dead-lettered by the orchestrator: its dead letter is checked
		}
		key = []byte(it.TraceID)
	}
	t := &v.traces[v.trace(key)]
	if t.flags&fIntent == 0 {
		t.flags |= fIntent
		t.intentMs, t.intentP, t.intentOff = r.Timestamp.UnixMilli(), r.Partition, r.Offset
	}
}

func intern(b []byte, list *[]string, ix map[string]uint8) uint8 {
	if i, ok := ix[string(b)]; ok {
		return i
	}
	if len(*list) >= 255 {
		return 255
	}
	i := uint8(len(*list))
	*list = append(*list, string(b))
	ix[string(b)] = i
	return i
}

func (v *verifier) name(list []string, i uint8) string {
	if int(i) < len(list) {
		return list[i]
	}
	return "(one of too many)"
}

// isLegal asks Config.Legal once per (from, to, event) of interned names.
func (v *verifier) isLegal(from, to, ev uint8) bool {
	k := [3]uint8{from, to, ev}
	ok, known := v.legal[k]
	if !known {
		ok = v.cfg.Legal(v.name(v.states, from), v.name(v.states, to), v.name(v.events, ev))
		v.legal[k] = ok
	}
	return ok
}

// envelopeOf reads a thread record's envelope into v.env: the fast scan
// for a writer schema it can read, a full decode otherwise.
func (v *verifier) envelopeOf(ti *topicInfo, r *kgo.Record) bool {
	val := r.Value
	if len(val) < 5 || val[0] != 0 {
		return false
	}
	id := binary.BigEndian.Uint32(val[1:5])
	fast, known := v.layouts[id]
	if !known {
		text, err := v.cfg.SchemaText(context.Background(), int(id))
		fast = err == nil && fastLayout(text)
		v.layouts[id] = fast
	}
	if fast {
		if err := scanEnvelope(val[5:], &v.env); err != nil {
			return false
		}
		if !v.env.HasSummary || ti.kind != kindGate {
			return true
		}
	}
	dec, _, err := v.cfg.Codec.Decode(context.Background(), pipeline.Topic(r.Topic), val)
	ev, ok := dec.(*schemas.RuntimeEvent)
	if err != nil || !ok {
		return false
	}
	e := &v.env
	*e = envelope{EventID: []byte(ev.EventID), TraceID: []byte(ev.TraceID), SpanID: []byte(ev.SpanID), ParentSpanID: []byte(ev.ParentSpanID),
		ArtifactID: []byte(ev.ArtifactID), Timestamp: ev.Timestamp.UnixMilli(), RunStarted: ev.RunStarted.UnixMilli(),
		EventType: []byte(ev.EventType), State: []byte(ev.State), HasSummary: ev.Artifact != nil}
	if ev.Gate != nil {
		e.HasGate, e.GateName, e.GatePassed, e.Measured, e.Threshold = true, []byte(ev.Gate.Name), ev.Gate.Passed, ev.Gate.Measured, ev.Gate.Threshold
	}
	return true
}

func (v *verifier) event(ti *topicInfo, r *kgo.Record) {
	if !v.envelopeOf(ti, r) {
		v.rep.Undecodable++
		return
	}
	e := &v.env
	if !v.ids.add(maphash.Bytes(v.seed, e.EventID)) {
		// Named once, as what it is: a copy moves no run and counts no gate.
		v.anomaly(DuplicateEvent, string(e.TraceID), where(ti, r), "event_id %s (%s) seen again", e.EventID, e.EventType)
		return
	}
	if _, actor := thread.IsActorKey(r.Key); actor || len(e.TraceID) == 0 {
		return // an actor's arbitration ledger
	}
	switch ti.kind {
	case kindControl:
		v.control(ti, r)
	case kindDataplane:
		if string(e.EventType) == string(thread.ArtifactDelivered) {
			v.delivered = append(v.delivered, delivered{fp: maphash.Bytes(v.seed, e.ArtifactID), trace: v.trace(e.TraceID), where: locOf(ti, r)})
		}
	case kindGate:
		switch string(e.EventType) {
		case string(thread.GatePassed), string(thread.GateFailed), string(thread.GateVerdict):
			v.gate(ti, r)
		}
	}
}

func (v *verifier) gate(ti *topicInfo, r *kgo.Record) {
	e := &v.env
	var h maphash.Hash
	h.SetSeed(v.seed)
	h.Write(e.TraceID)
	h.WriteByte(0)
	h.Write(e.ParentSpanID)
	k := h.Sum64()
	i, ok := v.gates[k]
	if !ok {
		i = uint32(len(v.gateAggs))
		v.gateAggs = append(v.gateAggs, gateAgg{trace: v.trace(e.TraceID)})
		v.gates[k] = i
	}
	g := &v.gateAggs[i]
	if string(e.EventType) == string(thread.GateVerdict) {
		g.verdicts++
		g.vPassed = e.HasGate && e.GatePassed
		g.vMeasured, g.vThreshold = e.Measured, e.Threshold
		g.where = locOf(ti, r)
		return
	}
	if e.HasGate && e.GatePassed {
		g.passed++
	} else {
		g.failed++
	}
}

func (v *verifier) control(ti *topicInfo, r *kgo.Record) {
	e := &v.env
	if strings.HasPrefix(string(e.EventType), "arbitration.") {
		return // a run's side of an actor's ledger
	}
	t := &v.traces[v.trace(e.TraceID)]
	switch string(e.EventType) {
	case string(thread.RunIllegal), string(thread.RunStale):
		v.rep.Refused++ // the stateflow refusing an input, and saying so
		return
	}
	to := intern(e.State, &v.states, v.stateIx)
	ev := intern(e.EventType, &v.events, v.eventIx)
	first := t.flags&fControl == 0
	t.flags |= fControl
	outcome, terminal := thread.Outcome(schemas.EventType(e.EventType))
	ended := t.terminals > 0
	switch {
	case first && string(e.EventType) != string(thread.IntentReceived) && v.partial:
		t.flags |= fPartial // began before the read: its first state is taken as it is
	case ended && terminal:
		// A second end: named as such below, not twice.
	case !v.isLegal(t.state, to, ev):
		from := v.name(v.states, t.state)
		if first {
			from = "(none)"
		}
		what := "is not a transition of the stateflow"
		if ended {
			what = "after the run ended " + v.name(v.states, t.outcome)
		}
		v.anomaly(IllegalTransition, string(e.TraceID), where(ti, r), "%s: %s → %s %s", e.EventType, from, e.State, what)
	}
	if string(e.EventType) == string(thread.IntentReceived) && first {
		t.flags |= fReceived
		t.startedMs = e.RunStarted
		if t.startedMs <= 0 {
			t.startedMs = e.Timestamp
		}
		if !v.cfg.Since.IsZero() && t.startedMs < v.cfg.Since.UnixMilli() || !v.cfg.Until.IsZero() && t.startedMs >= v.cfg.Until.UnixMilli() {
			t.flags |= fPartial
		}
	}
	if terminal {
		t.terminals++
		if t.terminals == 2 {
			v.anomaly(MultipleTerminals, string(e.TraceID), where(ti, r), "second terminal %s after %s", outcome, v.name(v.states, t.outcome))
		}
		if t.terminals == 1 {
			t.outcome = to
		}
		if e.HasGate && (string(e.EventType) == string(thread.RunCompleted)) != e.GatePassed {
			v.anomaly(VerdictMismatch, string(e.TraceID), where(ti, r), "%s on a verdict that %s", e.EventType, passedWord(e.GatePassed))
		}
	}
	if !ended {
		t.state = to // an ended run stays in its end, whatever comes after
	}
	t.lastMs = e.Timestamp
}

func passedWord(p bool) string {
	if p {
		return "passed"
	}
	return "failed"
}

// finish runs the checks that need the whole read.
func (v *verifier) finish() {
	for _, ti := range v.topics {
		if ti.records > 0 {
			v.rep.Records[ti.short] = ti.records
		}
	}
	now := v.now.UnixMilli()
	grace := v.cfg.Grace.Milliseconds()
	intents := v.byName[string(v.cfg.Layout.Intents())]
	for i := range v.traces {
		t := &v.traces[i]
		switch {
		case t.flags&fPartial != 0:
			v.rep.OutOfWindow++
			continue
		case t.flags&fReceived == 0 && t.flags&fControl != 0:
			continue // reported as an illegal transition (no intent.received)
		case t.flags&fReceived == 0:
			if t.flags&fIntent == 0 {
				continue // gate or data events of a run not on the control topic: nothing to judge here
			}
			if (!v.cfg.Since.IsZero() && t.intentMs < v.cfg.Since.UnixMilli()) || t.intentMs < v.horizonMs {
				// Before the window, or before what retention left of
				// the control topic: its run's records may be gone.
				v.rep.OutOfWindow++
				continue
			}
			if intents != nil && int(t.intentP) < len(intents.parts) && intents.parts[t.intentP] != nil && intents.parts[t.intentP].dlq[t.intentOff] != nil {
				v.rep.IntentsDeadLettered++
				continue
			}
			if now-t.intentMs > grace {
				v.anomaly(LostIntent, v.traceID(uint32(i)), fmt.Sprintf("%s/%d@%d", intents.short, t.intentP, t.intentOff),
					"intent of %s started no run and was not dead-lettered", time.UnixMilli(t.intentMs).UTC().Format(time.RFC3339Nano))
				continue
			}
			v.rep.Outcomes["in_flight"]++
			continue
		}
		v.rep.Runs++
		if t.terminals > 0 {
			v.rep.Outcomes[v.name(v.states, t.outcome)]++
			continue
		}
		state := v.name(v.states, t.state)
		var d time.Duration
		if v.cfg.Timeout != nil {
			d = v.cfg.Timeout(state)
		}
		lost := ""
		if d > 0 && now-t.lastMs > d.Milliseconds()+grace {
			lost = fmt.Sprintf("in state %s since %s, past its timeout %s", state, time.UnixMilli(t.lastMs).UTC().Format(time.RFC3339Nano), d)
		}
		if dl := v.cfg.RunDeadline; dl > 0 && now-t.startedMs > dl.Milliseconds()+grace {
			lost = fmt.Sprintf("in state %s, past the run deadline %s", state, dl)
		}
		if lost != "" {
			v.anomaly(LostTerminal, v.traceID(uint32(i)), "", "no terminal outcome: %s (+%s grace)", lost, v.cfg.Grace)
			continue
		}
		v.rep.Outcomes["in_flight"]++
	}
	for i := range v.gateAggs {
		g := &v.gateAggs[i]
		if g.verdicts == 0 || v.traces[g.trace].flags&fPartial != 0 {
			continue
		}
		v.rep.Verdicts++
		n := float64(g.passed) + float64(g.failed)
		if g.vPassed != (g.failed == 0) || g.vMeasured != float64(g.passed) || g.vThreshold != n {
			v.anomaly(VerdictMismatch, v.traceID(g.trace), v.where(g.where), "verdict %s (%v of %v passed) but its gate events say %d passed, %d failed",
				passedWord(g.vPassed), g.vMeasured, g.vThreshold, g.passed, g.failed)
		}
	}
	for _, d := range v.delivered {
		if v.traces[d.trace].flags&fPartial != 0 {
			continue
		}
		if !v.artifacts.has(d.fp) {
			v.anomaly(MissingArtifact, v.traceID(d.trace), v.where(d.where), "artifact.delivered names an artifact the artifacts topic %s does not hold", v.cfg.Layout.Artifacts())
		}
	}
	for _, ti := range v.scanned {
		for _, st := range ti.parts {
			if st == nil {
				continue
			}
			for _, d := range st.dlq {
				if !d.matched {
					v.anomaly(BadDeadLetter, d.trace, d.where, "its original record is not on %s (not a committed record)", ti.short)
				}
			}
		}
	}
}

// projections turns the replay's diffs into anomalies.
func (v *verifier) projections(rep *projections.ReplayReport, err error) {
	if err != nil {
		v.rep.ProjectionsNote = "projections not compared: " + err.Error()
		return
	}
	v.rep.Projections = &ProjectionsSummary{Records: rep.Records, Cells: rep.LiveCells, Diffs: len(rep.Diffs), Skipped: rep.Skipped, Took: rep.Took}
	for _, d := range rep.Diffs {
		trace := ""
		if k, err := projections.ParseKey(d.Key); err == nil {
			trace = k.TraceID
		}
		var fs []string
		for i, f := range d.Fields {
			if i == 3 {
				fs = append(fs, fmt.Sprintf("… %d more", len(d.Fields)-i))
				break
			}
			fs = append(fs, fmt.Sprintf("%s: live %s, replay %s", f.Path, f.Live, f.Rebuilt))
		}
		v.anomaly(ProjectionMismatch, trace, d.Key, "%s", strings.Join(fs, "; "))
	}
}
