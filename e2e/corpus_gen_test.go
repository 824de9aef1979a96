package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/adapters/ingress"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/orchestrator"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/registry"
	"github.com/spinerun/spine/schemas/thread"
)

// door is one way into a running stack.
type door string

// The doors the corpus knocks on.
const (
	doorIntents   door = "spine.intents"
	doorControl   door = "spine.control"
	doorDataplane door = "spine.dataplane"
	doorVerdict   door = "gate.verdict"
	doorHTTP      door = "POST /v1/intents"
	doorRegistry  door = "registry REST"
	doorFlags     door = "spine flags set"
	doorPolicy    door = "spine policy check"
	doorFlagTopic door = "spine.flags"
)

// outcome is what a bad record must come to.
type outcome int

const (
	// deadLettered: in spine.dlq with code, once per reader, original bytes.
	deadLettered outcome = iota
	// refused: the orchestrator records run.illegal_transition on the
	// victim run's thread; the run keeps its one terminal.
	refused
	// stale: the orchestrator records run.stale_event on the victim run's
	// thread (an input of another attempt); the run goes on and ends.
	stale
	// skipped: a record on the flag topic that is no valid flag change:
	// every flag store skips it, counted (spine_flag_invalid_records_total)
	// and logged with the reason; no flag changes.
	skipped
	// rejected: an HTTP 4xx naming the field or code, or a command error.
	rejected
)

// badRecord is one record of the corpus and the outcome it must have.
type badRecord struct {
	door door
	kind string
	want outcome

	// Kafka doors.
	topic   pipeline.Topic
	key     []byte
	value   []byte
	headers []kgo.RecordHeader
	// code is the dead letter's x-error-code; readers the processors that
	// read the topic and must each dead-letter it once.
	code    string
	readers []string
	// victim is the run a forged event targets (refused); dupEvent marks
	// an exact replay (same event_id), badVerdict a forged gate.verdict no
	// gate event backs: `spine verify` names both, as what they are.
	victim               string
	dupEvent, badVerdict bool

	// HTTP doors: the request and the answer it must get (status, and the
	// code and field the error body must name; for the registry, the
	// Confluent error_code).
	method, path string
	header       http.Header
	body         []byte
	status       int
	errCode      string
	field        string
	regCode      int

	// Command doors: spine's arguments, a file's content (written to a
	// temporary file whose path replaces "FILE" among args) and what the
	// error must say.
	args    []string
	file    string
	mention string

	// Where the record landed (Kafka doors).
	partition int32
	offset    int64
}

// corpusEnv is what the generator needs from the stack: the topic layout,
// the registered schema ids and an encoder of canonical events; victims are
// runs that ended, with their events, for forged and replayed events.
type corpusEnv struct {
	layout       pipeline.Layout
	intentV1     int
	intentV2     int
	eventV1      int
	intentSubj   string
	encode       func(topic pipeline.Topic, ev *schemas.RuntimeEvent) []byte
	victims      []victim
	inFlight     []string // runs whose call is in flight: stale inputs
	orchestrator string
	readers      map[pipeline.Topic][]string
	now          time.Time
}

// victim is a run that ended: the events forged ones imitate.
type victim struct {
	trace   string
	started *schemas.RuntimeEvent // its dataplane.started
	verdict *schemas.RuntimeEvent // its gate.verdict
}

// corpusKind makes the records of one kind; weight is its share of the
// corpus (heavy kinds, such as 4 MiB records or commands, get 1).
type corpusKind struct {
	door   door
	name   string
	weight int
	make   func(r *rand.Rand, i int) *badRecord
}

// genCorpus generates n bad records (at least one of each kind) from seed:
// the same seed, env and n give the same records in the same order.
func genCorpus(seed uint64, n int, env corpusEnv) []*badRecord {
	kinds := corpusKinds(env)
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	total := 0
	for _, k := range kinds {
		total += k.weight
	}
	var out []*badRecord
	count := map[string]int{}
	emit := func(k corpusKind) {
		b := k.make(r, count[k.name])
		count[k.name]++
		b.door, b.kind = k.door, k.name
		out = append(out, b)
	}
	for _, k := range kinds {
		emit(k)
	}
	for len(out) < n {
		x := r.IntN(total)
		for _, k := range kinds {
			if x < k.weight {
				emit(k)
				break
			}
			x -= k.weight
		}
	}
	// Interleave the doors: a shuffle of the whole, seeded.
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// word is a random lowercase word of 3 to 12 letters.
func word(r *rand.Rand) string {
	b := make([]byte, 3+r.IntN(10))
	for i := range b {
		b[i] = byte('a' + r.IntN(26))
	}
	return string(b)
}

func corpusKinds(env corpusEnv) []corpusKind {
	l := env.layout
	now := env.now
	in := env.intentV1
	trace := func(kind string, i int) string { return fmt.Sprintf("poison-%s-%05d", slug(kind), i) }
	good := func(tr string, r *rand.Rand) intentFields {
		return intentFields{intentID: "i-" + tr, trace: tr, actor: "agent-" + word(r), kind: "summarize", input: "text " + word(r), ts: now}
	}
	v1 := func(f intentFields) []byte { return wire(in, f.body()) }
	v2 := func(f intentFields) []byte { f.v2, f.version = true, 1; return wire(env.intentV2, f.body()) }
	intentsOnly := []string{env.orchestrator}

	// dl is a dead-lettered record on spine.intents keyed by its trace.
	dl := func(name, code string, weight int, value func(r *rand.Rand, tr string) []byte) corpusKind {
		return corpusKind{door: doorIntents, name: name, weight: weight, make: func(r *rand.Rand, i int) *badRecord {
			tr := trace(name, i)
			return &badRecord{want: deadLettered, topic: l.Intents(), key: []byte(tr), value: value(r, tr), code: code, readers: intentsOnly}
		}}
	}
	edit := func(e func(*intentFields, *rand.Rand)) func(r *rand.Rand, tr string) []byte {
		return func(r *rand.Rand, tr string) []byte {
			f := good(tr, r)
			e(&f, r)
			return v1(f)
		}
	}
	kinds := []corpusKind{
		dl("empty value", "empty", 3, func(*rand.Rand, string) []byte { return nil }),
		dl("shorter than the header", "too_short", 3, func(r *rand.Rand, _ string) []byte { return make([]byte, 1+r.IntN(4)) }),
		dl("wrong magic byte", "bad_magic", 3, func(r *rand.Rand, tr string) []byte {
			b := v1(good(tr, r))
			b[0] = byte(1 + r.IntN(255))
			return b
		}),
		dl("plain JSON (not Avro)", "bad_magic", 3, func(r *rand.Rand, tr string) []byte {
			b, _ := json.Marshal(map[string]string{"intent_id": "i-" + tr, "trace_id": tr, "kind": "summarize", "input": word(r)})
			return b
		}),
		dl("unknown schema id", "unknown_schema_id", 3, func(r *rand.Rand, tr string) []byte {
			return wire(900000+r.IntN(99999), good(tr, r).body())
		}),
		dl("another subject's schema id (an event on the intents topic)", "wrong_contract", 3, func(r *rand.Rand, tr string) []byte {
			return wire(env.eventV1, eventV1At(tr, thread.RunExecuting, 0, 0, now))
		}),
		dl("truncated Avro", "truncated", 3, func(r *rand.Rand, tr string) []byte {
			b := v1(good(tr, r))
			return b[:len(b)-1-r.IntN(4)]
		}),
		dl("trailing bytes", "trailing_bytes", 3, func(r *rand.Rand, tr string) []byte {
			return append(v1(good(tr, r)), make([]byte, 1+r.IntN(8))...)
		}),
		dl("huge length prefix", "too_large", 3, func(r *rand.Rand, _ string) []byte {
			return wire(in, (&avroBuf{}).long(1<<(34+r.IntN(20))).raw('x').b)
		}),
		dl("negative length", "malformed", 3, func(r *rand.Rand, _ string) []byte {
			return wire(in, (&avroBuf{}).long(-1-int64(r.IntN(1000))).raw('x').b)
		}),
		dl("overlong varint", "malformed", 3, func(r *rand.Rand, _ string) []byte {
			return wire(in, bytes.Repeat([]byte{0xff}, 11+r.IntN(8)))
		}),
		dl("wrong type: enum index out of range", "malformed", 3, edit(func(f *intentFields, r *rand.Rand) { f.version = 2 + int64(r.IntN(50)) })),
		dl("invalid UTF-8 in a field", "invalid_utf8", 3, edit(func(f *intentFields, r *rand.Rand) {
			f.actor = string([]byte{0xff, 0xfe, byte(r.IntN(128))})
		})),
		dl("v2 map with a huge block count", "too_large", 3, func(r *rand.Rand, tr string) []byte {
			f := good(tr, r)
			f.attrs = func(a *avroBuf) { a.long(1 << (32 + r.IntN(20))) }
			return v2(f)
		}),
		dl("v2 map key not UTF-8", "invalid_utf8", 3, func(r *rand.Rand, tr string) []byte {
			f := good(tr, r)
			f.attrs = func(a *avroBuf) { a.long(1).str("\xc3\x28").str(word(r)).long(0) }
			return v2(f)
		}),
		dl("oversize: input over the contract's 4 MiB", "invalid_contract", 1, edit(func(f *intentFields, _ *rand.Rand) {
			f.input = strings.Repeat("x", schemas.MaxInputBytes+1)
		})),
		dl("oversize: input over SPINE_MAX_INPUT_BYTES", orchestrator.CodeInputTooLarge, 1, edit(func(f *intentFields, r *rand.Rand) {
			f.input = strings.Repeat("y", schemas.DefaultInputLimit+1+r.IntN(1000))
		})),
		dl("timestamp hours ahead", "invalid_contract", 3, edit(func(f *intentFields, r *rand.Rand) {
			f.ts = now.Add(time.Duration(2+r.IntN(100)) * time.Hour)
		})),
		dl("timestamp past the orchestrator's clock skew", orchestrator.CodeFutureTimestamp, 3, edit(func(f *intentFields, r *rand.Rand) {
			f.ts = now.Add(time.Duration(20+r.IntN(30)) * time.Minute)
		})),
		dl("missing intent_id", "invalid_contract", 3, edit(func(f *intentFields, _ *rand.Rand) { f.intentID = "" })),
		dl("missing actor", orchestrator.CodeMissingField, 3, edit(func(f *intentFields, _ *rand.Rand) { f.actor = "" })),
		dl("unknown intent kind", orchestrator.CodeUnknownIntentKind, 3, edit(func(f *intentFields, r *rand.Rand) { f.kind = word(r) })),
		{door: doorIntents, name: "missing trace key (no trace_id, no key)", weight: 3, make: func(r *rand.Rand, i int) *badRecord {
			f := good("", r)
			f.intentID = "i-" + trace("notrace", i)
			return &badRecord{want: deadLettered, topic: l.Intents(), value: v1(f), code: "invalid_contract", readers: intentsOnly}
		}},
		{door: doorIntents, name: "key is not the trace id", weight: 3, make: func(r *rand.Rand, i int) *badRecord {
			tr := trace("keyed", i)
			return &badRecord{want: deadLettered, topic: l.Intents(), key: []byte(tr + "-other"), value: v1(good(tr, r)), code: orchestrator.CodeKeyMismatch, readers: intentsOnly}
		}},
	}

	// The internal topics: bytes no processor can read (each reader
	// dead-letters them once), and events of runs that do not exist (the
	// orchestrator dead-letters them: nothing to move).
	for _, tp := range []struct {
		d     door
		topic pipeline.Topic
	}{{doorControl, l.Control()}, {doorDataplane, l.Dataplane()}, {doorVerdict, l.Gate(thread.VerdictGate)}} {
		kinds = append(kinds, corpusKind{door: tp.d, name: "not Avro on " + string(tp.d), weight: 3, make: func(r *rand.Rand, i int) *badRecord {
			tr := trace("raw-"+string(tp.d), i)
			return &badRecord{want: deadLettered, topic: tp.topic, key: []byte(tr), value: []byte(`{"event_type":"run.completed","trace_id":"` + word(r) + `"}`),
				code: "bad_magic", readers: env.readers[tp.topic]}
		}})
	}
	// Unreadable bytes under an x-event-type header naming an event the
	// topic's gate or dataplane does not act on: they pass over it without
	// decoding (as the header promises), the other readers dead-letter it.
	for _, tp := range []struct {
		d     door
		topic pipeline.Topic
		typ   schemas.EventType
		skip  string
	}{{doorControl, l.Control(), thread.RunCompleted, thread.Dataplane}, {doorDataplane, l.Dataplane(), thread.DataplaneStarted, thread.Gatekeeper}} {
		var rs []string
		for _, r := range env.readers[tp.topic] {
			if r != tp.skip {
				rs = append(rs, r)
			}
		}
		kinds = append(kinds, corpusKind{door: tp.d, name: fmt.Sprintf("not Avro on %s under x-event-type %s", tp.d, tp.typ), weight: 2, make: func(r *rand.Rand, i int) *badRecord {
			tr := trace("hdr-"+string(tp.d), i)
			return &badRecord{want: deadLettered, topic: tp.topic, key: []byte(tr), value: []byte("not avro " + word(r)),
				headers: []kgo.RecordHeader{{Key: pipeline.HeaderEventType, Value: []byte(tp.typ)}}, code: "bad_magic", readers: rs}
		}})
	}
	ghost := func(d door, topic pipeline.Topic, typ schemas.EventType, phase schemas.Phase) corpusKind {
		name := fmt.Sprintf("%s for an unknown run on %s", typ, d)
		return corpusKind{door: d, name: name, weight: 3, make: func(r *rand.Rand, i int) *badRecord {
			tr := trace("ghost-"+string(typ)+"-"+string(d), i)
			ev := &schemas.RuntimeEvent{EventID: "e-" + tr, TraceID: tr, SpanID: word(r), ParentSpanID: word(r), Actor: "a", Intent: "summarize",
				SchemaVersion: schemas.V1, Timestamp: now, RunStarted: now, Phase: phase, EventType: typ, State: "executing"}
			if typ == thread.GateVerdict {
				ev.Gate = &schemas.GateOutcome{Name: thread.VerdictGate, Passed: true}
			}
			if typ == thread.DataplaneFailed {
				msg := "forged failure"
				ev.Error = &msg
			}
			return &badRecord{want: deadLettered, topic: topic, key: []byte(tr), value: env.encode(topic, ev), code: orchestrator.CodeUnknownRun, readers: intentsOnly}
		}}
	}
	kinds = append(kinds,
		ghost(doorDataplane, l.Dataplane(), thread.DataplaneStarted, schemas.PhaseData),
		ghost(doorDataplane, l.Dataplane(), thread.DataplaneFailed, schemas.PhaseData),
		ghost(doorDataplane, l.Dataplane(), thread.GateVerdict, schemas.PhaseGate), // wrong topic for a verdict
		ghost(doorVerdict, l.Gate(thread.VerdictGate), thread.GateVerdict, schemas.PhaseGate),
	)

	// Forged, replayed and out-of-order events of runs that ended: the
	// stateflow has no edge out of a terminal state, so the orchestrator
	// refuses each and records run.illegal_transition on the run's thread.
	if len(env.victims) > 0 {
		pick := func(r *rand.Rand) victim { return env.victims[r.IntN(len(env.victims))] }
		forge := func(name string, d door, topic pipeline.Topic, f func(r *rand.Rand, v victim, i int) (*schemas.RuntimeEvent, bool, bool)) corpusKind {
			return corpusKind{door: d, name: name, weight: 3, make: func(r *rand.Rand, i int) *badRecord {
				v := pick(r)
				ev, dup, bad := f(r, v, i)
				return &badRecord{want: refused, topic: topic, key: []byte(v.trace), value: env.encode(topic, ev), victim: v.trace, dupEvent: dup, badVerdict: bad}
			}}
		}
		fresh := func(e *schemas.RuntimeEvent, i int, what string) *schemas.RuntimeEvent {
			c := *e
			c.EventID = fmt.Sprintf("forged-%s-%s-%d", what, e.TraceID, i)
			c.SpanID = fmt.Sprintf("forged-span-%s-%d", what, i)
			c.Timestamp = now
			return &c
		}
		kinds = append(kinds,
			forge("replayed gate.verdict (same event_id)", doorVerdict, l.Gate(thread.VerdictGate), func(_ *rand.Rand, v victim, _ int) (*schemas.RuntimeEvent, bool, bool) {
				return v.verdict, true, false
			}),
			forge("forged gate.verdict flipped to failed", doorVerdict, l.Gate(thread.VerdictGate), func(_ *rand.Rand, v victim, i int) (*schemas.RuntimeEvent, bool, bool) {
				e := fresh(v.verdict, i, "flip")
				g := *e.Gate
				g.Passed = false
				e.Gate = &g
				return e, false, true
			}),
			forge("replayed dataplane.started (same event_id)", doorDataplane, l.Dataplane(), func(_ *rand.Rand, v victim, _ int) (*schemas.RuntimeEvent, bool, bool) {
				return v.started, true, false
			}),
			forge("out-of-order dataplane.started after the end", doorDataplane, l.Dataplane(), func(_ *rand.Rand, v victim, i int) (*schemas.RuntimeEvent, bool, bool) {
				return fresh(v.started, i, "late"), false, false
			}),
			forge("forged dataplane.failed after the end", doorDataplane, l.Dataplane(), func(_ *rand.Rand, v victim, i int) (*schemas.RuntimeEvent, bool, bool) {
				e := fresh(v.started, i, "fail")
				e.EventType = thread.DataplaneFailed
				msg := "forged: the model failed"
				e.Error = &msg
				return e, false, false
			}),
			forge("wrong phase: a gate.verdict on spine.dataplane", doorDataplane, l.Dataplane(), func(_ *rand.Rand, v victim, i int) (*schemas.RuntimeEvent, bool, bool) {
				e := fresh(v.verdict, i, "phase")
				e.Phase = schemas.PhaseData
				return e, false, false
			}),
		)
	}

	// A failure of another attempt, while the run's call is in flight: the
	// trigger is legal in its state, but the parent span is not the current
	// dispatch, so the orchestrator records run.stale_event and goes on.
	if len(env.inFlight) > 0 {
		kinds = append(kinds, corpusKind{door: doorDataplane, name: "stale dataplane.failed of another attempt (run in flight)", weight: 3,
			make: func(r *rand.Rand, i int) *badRecord {
				tr := env.inFlight[r.IntN(len(env.inFlight))]
				msg := "forged: an older attempt failed"
				ev := &schemas.RuntimeEvent{EventID: fmt.Sprintf("forged-stale-%s-%d", tr, i), TraceID: tr, SpanID: fmt.Sprintf("forged-stale-span-%d", i),
					ParentSpanID: "forged-dispatch-" + word(r), Actor: "agent", Intent: "summarize", SchemaVersion: schemas.V1, Timestamp: now, RunStarted: now,
					Phase: schemas.PhaseData, EventType: thread.DataplaneFailed, State: "executing", Error: &msg}
				return &badRecord{want: stale, topic: l.Dataplane(), key: []byte(tr), value: env.encode(l.Dataplane(), ev), victim: tr}
			}})
	}

	// The flag topic: records that are no valid flag change.
	flagRec := func(name string, value func(r *rand.Rand, i int) string) corpusKind {
		return corpusKind{door: doorFlagTopic, name: name, weight: 2, make: func(r *rand.Rand, i int) *badRecord {
			return &badRecord{want: skipped, topic: l.Flags(), key: []byte("v2_rollout"), value: []byte(value(r, i))}
		}}
	}
	change := func(rev int, value string) string {
		return fmt.Sprintf(`{"flag":"v2_rollout","rev":%d,"value":%s,"who":"corpus","why":"bad","at":"2026-01-01T00:00:00Z"}`, rev, value)
	}
	kinds = append(kinds,
		flagRec("spine.flags: not JSON", func(r *rand.Rand, _ int) string { return "weight=" + word(r) }),
		flagRec("spine.flags: no flag name", func(r *rand.Rand, i int) string { return fmt.Sprintf(`{"rev":%d,"value":{}}`, 1+i) }),
		flagRec("spine.flags: revision 0", func(*rand.Rand, int) string { return change(0, `{"weight_bp":1000}`) }),
		flagRec("spine.flags: v2_rollout weight over 100%", func(r *rand.Rand, i int) string {
			return change(1+i, fmt.Sprintf(`{"weight_bp":%d}`, 10001+r.IntN(100000)))
		}),
		flagRec("spine.flags: v2_rollout wrong type", func(r *rand.Rand, i int) string { return change(1+i, `{"weight_bp":"`+word(r)+`"}`) }),
		flagRec("spine.flags: v2_rollout unknown field", func(r *rand.Rand, i int) string { return change(1+i, `{"`+word(r)+`_x":1}`) }),
	)

	kinds = append(kinds, httpKinds(env)...)
	kinds = append(kinds, registryKinds(env)...)
	kinds = append(kinds, commandKinds()...)
	return kinds
}

// httpKinds are bad requests to POST /v1/intents.
func httpKinds(env corpusEnv) []corpusKind {
	jsonCT := http.Header{"Content-Type": {"application/json"}}
	ceCT := http.Header{"Content-Type": {"application/cloudevents+json"}}
	req := func(name string, weight int, status int, code, field string, hdr http.Header, body func(r *rand.Rand) string) corpusKind {
		return corpusKind{door: doorHTTP, name: name, weight: weight, make: func(r *rand.Rand, _ int) *badRecord {
			return &badRecord{want: rejected, method: http.MethodPost, path: ingress.Path, header: hdr, body: []byte(body(r)), status: status, errCode: code, field: field}
		}}
	}
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	return []corpusKind{
		req("HTTP: empty body", 3, 400, ingress.CodeEmptyBody, "", jsonCT, func(r *rand.Rand) string { return strings.Repeat(" ", r.IntN(5)) }),
		req("HTTP: bad JSON", 3, 400, ingress.CodeInvalidJSON, "", jsonCT, func(r *rand.Rand) string { return `{"kind":"summarize","input":` + q(word(r)) }),
		req("HTTP: body not UTF-8", 3, 400, ingress.CodeInvalidUTF8, "", jsonCT, func(r *rand.Rand) string { return `{"kind":"summarize","input":"` + word(r) + "\xff\xfe\"}" }),
		req("HTTP: body not an object", 3, 400, ingress.CodeNotObject, "", jsonCT, func(r *rand.Rand) string { return `[` + q(word(r)) + `]` }),
		req("HTTP: unknown field", 3, 400, ingress.CodeUnknownField, "colour", jsonCT, func(r *rand.Rand) string {
			return `{"kind":"summarize","input":` + q(word(r)) + `,"colour":"red"}`
		}),
		req("HTTP: duplicate field", 3, 400, ingress.CodeDuplicateField, "input", jsonCT, func(r *rand.Rand) string {
			return `{"kind":"summarize","input":` + q(word(r)) + `,"input":"twice"}`
		}),
		req("HTTP: wrong type (kind a number)", 3, 400, ingress.CodeWrongType, "kind", jsonCT, func(r *rand.Rand) string {
			return fmt.Sprintf(`{"kind":%d,"input":%s}`, r.IntN(1000), q(word(r)))
		}),
		req("HTTP: wrong type (priority a string)", 3, 400, ingress.CodeWrongType, "priority", jsonCT, func(r *rand.Rand) string {
			return `{"kind":"summarize","input":` + q(word(r)) + `,"priority":"high","contract":"v2"}`
		}),
		req("HTTP: missing input", 3, 400, ingress.CodeMissingField, "input", jsonCT, func(*rand.Rand) string { return `{"kind":"summarize"}` }),
		req("HTTP: bad trace_id", 3, 400, ingress.CodeInvalidValue, "trace_id", jsonCT, func(r *rand.Rand) string {
			return `{"kind":"summarize","input":"x","trace_id":` + q("bad trace "+word(r)) + `}`
		}),
		req("HTTP: unknown kind", 3, 422, ingress.CodeUnknownKind, "kind", jsonCT, func(r *rand.Rand) string {
			return `{"kind":` + q("x"+word(r)) + `,"input":"x"}`
		}),
		req("HTTP: wrong content type", 3, 415, ingress.CodeUnsupportedMedia, "Content-Type", http.Header{"Content-Type": {"text/plain"}}, func(r *rand.Rand) string {
			return `{"kind":"summarize","input":` + q(word(r)) + `}`
		}),
		req("HTTP: oversize body", 1, 413, ingress.CodeBodyTooLarge, "", jsonCT, func(*rand.Rand) string {
			return `{"kind":"summarize","input":"` + strings.Repeat("z", 2<<20) + `"}`
		}),
		req("HTTP: input over SPINE_MAX_INPUT_BYTES", 1, 413, ingress.CodeInputTooLarge, "input", jsonCT, func(*rand.Rand) string {
			return `{"kind":"summarize","input":"` + strings.Repeat("z", schemas.DefaultInputLimit+10) + `"}`
		}),
		req("HTTP: bad CloudEvent (specversion)", 3, 400, ingress.CodeBadCloudEvent, "specversion", ceCT, func(r *rand.Rand) string {
			return `{"specversion":"0.3","id":` + q(word(r)) + `,"source":"corpus","type":"spine.intent","data":{"kind":"summarize","input":"x"}}`
		}),
		req("HTTP: bad CloudEvent (no id)", 3, 400, ingress.CodeBadCloudEvent, "id", ceCT, func(r *rand.Rand) string {
			return `{"specversion":"1.0","source":"corpus","type":"spine.intent","data":{"kind":"summarize","input":` + q(word(r)) + `}}`
		}),
		req("HTTP: bad CloudEvent (data_base64)", 3, 400, ingress.CodeBadCloudEvent, "data_base64", ceCT, func(r *rand.Rand) string {
			return `{"specversion":"1.0","id":` + q(word(r)) + `,"source":"corpus","type":"spine.intent","data_base64":"eyJ9"}`
		}),
		{door: doorHTTP, name: "HTTP: bad Idempotency-Key (not ASCII, or too long)", weight: 3, make: func(r *rand.Rand, i int) *badRecord {
			key := "clé-" + word(r)
			if i%2 == 1 {
				key = strings.Repeat(word(r)+"-", 100)[:256+r.IntN(100)]
			}
			h := http.Header{"Content-Type": {"application/json"}, "Idempotency-Key": {key}}
			return &badRecord{want: rejected, method: http.MethodPost, path: ingress.Path, header: h, body: []byte(`{"kind":"summarize","input":"x"}`),
				status: 400, errCode: ingress.CodeBadIdempotencyKey, field: "Idempotency-Key"}
		}},
		{door: doorHTTP, name: "HTTP: wrong method", weight: 2, make: func(*rand.Rand, int) *badRecord {
			return &badRecord{want: rejected, method: http.MethodPut, path: ingress.Path, header: jsonCT, body: []byte(`{}`), status: 405, errCode: ingress.CodeMethodNotAllowed}
		}},
	}
}

// registryKinds are bad requests to the schema registry's REST API.
func registryKinds(env corpusEnv) []corpusKind {
	subj := env.intentSubj
	reg := func(name string, weight int, method, path, ct string, status, code int, body func(r *rand.Rand) string) corpusKind {
		return corpusKind{door: doorRegistry, name: name, weight: weight, make: func(r *rand.Rand, _ int) *badRecord {
			h := http.Header{}
			if ct != "" {
				h.Set("Content-Type", ct)
			}
			return &badRecord{want: rejected, method: method, path: path, header: h, body: []byte(body(r)), status: status, regCode: code}
		}}
	}
	ct := registry.ContentType
	schema := func(s string) string { b, _ := json.Marshal(map[string]string{"schema": s}); return string(b) }
	versions := "/subjects/" + subj + "/versions"
	return []corpusKind{
		reg("registry: body not JSON", 3, "POST", versions, ct, 422, 42201, func(r *rand.Rand) string { return "{" + word(r) }),
		reg("registry: schema not Avro", 3, "POST", versions, ct, 422, 42201, func(r *rand.Rand) string { return schema(`{"type":"` + word(r) + `"}`) }),
		reg("registry: record without fields", 3, "POST", versions, ct, 422, 42201, func(r *rand.Rand) string {
			return schema(`{"type":"record","name":"` + word(r) + `"}`)
		}),
		reg("registry: not an Avro schema type (PROTOBUF)", 2, "POST", versions, ct, 422, 42201, func(*rand.Rand) string {
			return `{"schema":"syntax = \"proto3\";","schemaType":"PROTOBUF"}`
		}),
		reg("registry: incompatible evolution (a new field without default)", 3, "POST", versions, ct, 409, 409, func(r *rand.Rand) string {
			return schema(`{"type":"record","name":"Intent","namespace":"run.spine","fields":[{"name":"intent_id","type":"string"},{"name":"` + word(r) + `","type":"long"}]}`)
		}),
		reg("registry: incompatible evolution (a field changes type)", 3, "POST", versions, ct, 409, 409, func(*rand.Rand) string {
			return schema(`{"type":"record","name":"Intent","namespace":"run.spine","fields":[{"name":"intent_id","type":"long"}]}`)
		}),
		reg("registry: wrong content type", 3, "POST", versions, "text/html", 415, 415, func(*rand.Rand) string { return schema(`"string"`) }),
		reg("registry: huge body", 1, "POST", versions, ct, 422, 42209, func(*rand.Rand) string {
			return schema(`{"type":"enum","name":"E","symbols":["` + strings.Repeat("A", 5<<20) + `"]}`)
		}),
		reg("registry: bad compatibility level", 2, "PUT", "/config/"+subj, ct, 422, 42203, func(r *rand.Rand) string {
			return `{"compatibility":"` + strings.ToUpper(word(r)) + `"}`
		}),
	}
}

// commandKinds are bad invocations of the flags and policy commands.
func commandKinds() []corpusKind {
	flag := func(name, arg, mention string) corpusKind {
		return corpusKind{door: doorFlags, name: name, weight: 1, make: func(*rand.Rand, int) *badRecord {
			return &badRecord{want: rejected, args: []string{"flags", "set", "v2_rollout", arg}, mention: mention}
		}}
	}
	policy := func(name, file, mention string) corpusKind {
		return corpusKind{door: doorPolicy, name: name, weight: 1, make: func(*rand.Rand, int) *badRecord {
			return &badRecord{want: rejected, args: []string{"policy", "check", "FILE"}, file: file, mention: mention}
		}}
	}
	return []corpusKind{
		flag("flags: weight not a number", "weight=lots", "weight"),
		flag("flags: weight over 100%", "weight=150%", "weight"),
		flag("flags: unknown setting", "colour=red", "colour"),
		flag("flags: not setting=value", "weight", "setting=value"),
		flag("flags: integer setting given a fraction", "min_samples=1.5", "min_samples"),
		flag("flags: bad phase", "phase=sideways", "phase"),
		{door: doorFlags, name: "flags: unknown flag", weight: 1, make: func(*rand.Rand, int) *badRecord {
			return &badRecord{want: rejected, args: []string{"flags", "set", "v3_rollout", "weight=10"}, mention: "v3_rollout"}
		}},
		policy("policy: CEL syntax error", "version: 1\nrules:\n  - name: broken\n    stage: artifact\n    effect: deny\n    when: \"artifact.size >\"\n", "rule broken"),
		policy("policy: CEL undefined field", "version: 1\nrules:\n  - name: typo\n    stage: admission\n    effect: deny\n    when: \"intent.knd == 'x'\"\n", "undefined field 'knd'"),
		policy("policy: not YAML", "version: 1\nrules: [\n", "policy"),
		policy("policy: unknown stage", "version: 1\nrules:\n  - name: s\n    stage: lunch\n    effect: deny\n    when: \"true\"\n", "lunch"),
		policy("policy: unknown effect", "version: 1\nrules:\n  - name: e\n    stage: admission\n    effect: maybe\n    when: \"true\"\n", "maybe"),
	}
}

// corpusKindNames lists the distinct kinds of a corpus, sorted.
func corpusKindNames(c []*badRecord) []string {
	seen := map[string]bool{}
	for _, b := range c {
		seen[b.kind] = true
	}
	return slices.Sorted(func(yield func(string) bool) {
		for k := range seen {
			if !yield(k) {
				return
			}
		}
	})
}

// slug is s in lowercase letters, digits and dashes, at most 32 bytes.
func slug(s string) string {
	var b strings.Builder
	dash := false
	for _, c := range strings.ToLower(s) {
		switch {
		case c >= 'a' && c <= 'z' || c >= '0' && c <= '9':
			b.WriteRune(c)
			dash = false
		case !dash && b.Len() > 0:
			b.WriteByte('-')
			dash = true
		}
		if b.Len() >= 32 {
			break
		}
	}
	return strings.TrimSuffix(b.String(), "-")
}
