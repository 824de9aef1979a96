package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/cmd/spine/stack"
	"github.com/spinerun/spine/internal/spinetest"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
	"github.com/spinerun/spine/processors/orchestrator"
	"github.com/spinerun/spine/projections"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// avroBuf writes Avro binary by hand, so a test can break any part of it.
type avroBuf struct{ b []byte }

func (a *avroBuf) long(v int64) *avroBuf  { a.b = binary.AppendVarint(a.b, v); return a }
func (a *avroBuf) str(s string) *avroBuf  { a.long(int64(len(s))); a.b = append(a.b, s...); return a }
func (a *avroBuf) raw(b ...byte) *avroBuf { a.b = append(a.b, b...); return a }

// wire prefixes body with the Confluent header for schema id.
func wire(id int, body []byte) []byte {
	b := []byte{0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(id))
	return append(b, body...)
}

// intentFields are the fields of an Intent body, in contract order.
type intentFields struct {
	intentID, trace, actor, kind, input string
	version                             int64 // enum index: 0 = V1, 1 = V2
	ts                                  time.Time
	v2                                  bool
	attrs                               func(a *avroBuf) // the v2 map; nil: empty
}

func (f intentFields) body() []byte {
	a := &avroBuf{}
	a.str(f.intentID).str(f.trace).str(f.actor).str(f.kind).str(f.input).long(f.version).long(f.ts.UnixMilli())
	if f.v2 {
		a.long(2).str("tenant").long(0) // priority, tenant, deadline_ms
		if f.attrs != nil {
			f.attrs(a)
		} else {
			a.long(0)
		}
	}
	a.long(0) // provenance: null
	return a.b
}

// eventV1 is a RuntimeEvent V1 body; union is the artifact union's index.
func eventV1(trace string, typ schemas.EventType, phase int64, union int64) []byte {
	return eventV1At(trace, typ, phase, union, time.Now())
}

// eventV1At is eventV1 stamped at.
func eventV1At(trace string, typ schemas.EventType, phase int64, union int64, at time.Time) []byte {
	a := &avroBuf{}
	now := at.UnixMilli()
	a.str("ev-" + trace).str(trace).str("span").str("parent").str("agent").str("summarize").str("")
	a.long(0).long(now).long(now).long(phase).str(string(typ)).str("executing")
	a.long(union).long(0) // artifact union, gate: null
	// attempt 0, error null, usage null, input "", provenance null,
	// stateflow_version ""
	a.long(0).long(0).long(0).str("").long(0).str("")
	return a.b
}

// poison is one bad record and the error code it must be dead-lettered with.
type poison struct {
	name  string
	topic pipeline.Topic
	key   []byte
	value []byte
	code  string
	// produced at
	partition int32
	offset    int64
}

// TestBadInput mixes more than twenty kinds of poison records into the
// thread (most on spine.intents, a few events for unknown runs on the topics
// the orchestrator reads) between good intents and duplicate intents. Each
// poison record lands in spine.dlq exactly once, with its stable reason
// (x-error-code, kafka_dlt-exception-message), its origin and its original
// key and bytes unchanged; duplicates are deduplicated, not dead-lettered;
// every good intent completes; no processor restarts, blocks or aborts.
func TestBadInput(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	// Every good run must end by its verdict, with no retry or stale
	// answer: as on the golden path, no run may time out while the burst
	// queues under the race detector on a loaded machine.
	s := newStack(t, nil, map[string]string{"SPINE_EXEC_TIMEOUT": "10m", "SPINE_GATE_TIMEOUT": "10m"})
	committed := s.collectSkipping(t, true, "poison-")
	s.startAll(nil)
	ctx := t.Context()
	serde := s.codec.Serde()
	id := func(topic pipeline.Topic, c schemas.Contract, v schemas.ContractVersion) int {
		n, err := serde.SchemaID(ctx, schemas.ValueSubject(string(topic)), c, v)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	l := s.layout
	in1, in2 := id(l.Intents(), schemas.ContractIntent, schemas.V1), id(l.Intents(), schemas.ContractIntent, schemas.V2)
	now := time.Now()
	good := func(trace string) intentFields {
		return intentFields{intentID: "i-" + trace, trace: trace, actor: "agent", kind: "summarize", input: "text", ts: now}
	}
	v1 := func(f intentFields) []byte { return wire(in1, f.body()) }
	v2 := func(f intentFields) []byte { f.v2, f.version = true, 1; return wire(in2, f.body()) }
	with := func(trace string, edit func(*intentFields)) intentFields {
		f := good(trace)
		edit(&f)
		return f
	}
	valid := v1(good("poison-trunc"))
	validEvent, err := s.codec.Encode(ctx, l.Control(), schemas.V1, &schemas.RuntimeEvent{
		EventID: "e-x", TraceID: "poison-ev", SpanID: "s", Actor: "a", Intent: "summarize", SchemaVersion: schemas.V1,
		Timestamp: now, RunStarted: now, Phase: schemas.PhaseControl, EventType: thread.RunExecuting, State: "executing"})
	if err != nil {
		t.Fatal(err)
	}
	ghostStarted, err := s.codec.Encode(ctx, l.Dataplane(), schemas.V1, &schemas.RuntimeEvent{
		EventID: "e-ghost", TraceID: "poison-ghost", SpanID: "s1", ParentSpanID: "nope", Actor: "a", Intent: "summarize",
		SchemaVersion: schemas.V1, Timestamp: now, RunStarted: now, Phase: schemas.PhaseData, EventType: thread.DataplaneStarted, State: "executing"})
	if err != nil {
		t.Fatal(err)
	}
	ghostVerdict, err := s.codec.Encode(ctx, l.Gate("verdict"), schemas.V1, &schemas.RuntimeEvent{
		EventID: "e-ghost-v", TraceID: "poison-ghost-v", SpanID: "s2", ParentSpanID: "nope", Actor: "a", Intent: "summarize",
		SchemaVersion: schemas.V1, Timestamp: now, RunStarted: now, Phase: schemas.PhaseGate, EventType: thread.GateVerdict, State: "gating",
		Gate: &schemas.GateOutcome{Name: "verdict", Passed: true}})
	if err != nil {
		t.Fatal(err)
	}
	verdictID := id(l.Gate("verdict"), schemas.ContractRuntimeEvent, schemas.V1)

	k := func(s string) []byte { return []byte(s) }
	poisons := []poison{
		{name: "empty value", key: k("poison-empty"), value: nil, code: "empty"},
		{name: "short (3 bytes)", key: k("poison-short"), value: []byte{0, 0, 0}, code: "too_short"},
		{name: "wrong magic byte", key: k("poison-magic"), value: append([]byte{1}, valid[1:]...), code: "bad_magic"},
		{name: "plain JSON", key: k("poison-json"), value: []byte(`{"intent_id":"x","trace_id":"poison-json"}`), code: "bad_magic"},
		{name: "unknown schema id", key: k("poison-unknown-id"), value: wire(987654, good("poison-unknown-id").body()), code: "unknown_schema_id"},
		{name: "another subject's id (a RuntimeEvent on the intents topic)", key: k("poison-ev"), value: validEvent, code: "wrong_contract"},
		{name: "truncated Avro", key: k("poison-trunc"), value: valid[:len(valid)-4], code: "truncated"},
		{name: "trailing bytes", key: k("poison-trail"), value: append(v1(good("poison-trail")), 0, 2, 4), code: "trailing_bytes"},
		{name: "huge length prefix", key: k("poison-huge"), value: wire(in1, (&avroBuf{}).long(1<<40).raw('x').b), code: "too_large"},
		{name: "negative length", key: k("poison-neg"), value: wire(in1, (&avroBuf{}).long(-5).raw('x').b), code: "malformed"},
		{name: "overlong varint", key: k("poison-varint"), value: wire(in1, bytes.Repeat([]byte{0xff}, 12)), code: "malformed"},
		{name: "bad enum index", key: k("poison-enum"), value: v1(with("poison-enum", func(f *intentFields) { f.version = 7 })), code: "malformed"},
		{name: "bad union index (event on gate.verdict)", topic: l.Gate("verdict"), key: k("poison-union"), value: wire(verdictID, eventV1("poison-union", thread.GateVerdict, 2, 9)), code: "malformed"},
		{name: "invalid UTF-8 in a field", key: k("poison-utf8"), value: v1(with("poison-utf8", func(f *intentFields) { f.actor = "\xff\xfe" })), code: "invalid_utf8"},
		{name: "v2 map with a huge block count", key: k("poison-map-count"), value: v2(with("poison-map-count", func(f *intentFields) {
			f.attrs = func(a *avroBuf) { a.long(1 << 40) }
		})), code: "too_large"},
		{name: "v2 map key not UTF-8", key: k("poison-map-utf8"), value: v2(with("poison-map-utf8", func(f *intentFields) {
			f.attrs = func(a *avroBuf) { a.long(1).str("\xc3\x28").str("v").long(0) }
		})), code: "invalid_utf8"},
		{name: "v2 map cut short", key: k("poison-map-trunc"), value: v2(with("poison-map-trunc", func(f *intentFields) {
			f.attrs = func(a *avroBuf) { a.long(3).str("a").str("b") }
		})), code: "truncated"},
		{name: "oversized input (over the contract's 4 MiB)", key: k("poison-big"), value: v1(with("poison-big", func(f *intentFields) { f.input = strings.Repeat("x", schemas.MaxInputBytes+1) })), code: "invalid_contract"},
		{name: "input over SPINE_MAX_INPUT_BYTES (1 MiB)", key: k("poison-1mib"), value: v2(with("poison-1mib", func(f *intentFields) { f.input = strings.Repeat("y", schemas.DefaultInputLimit+1) })), code: "input_too_large"},
		{name: "timestamp two hours ahead", key: k("poison-future"), value: v1(with("poison-future", func(f *intentFields) { f.ts = now.Add(2 * time.Hour) })), code: "invalid_contract"},
		{name: "timestamp 30 minutes ahead (past the orchestrator's skew)", key: k("poison-future2"), value: v1(with("poison-future2", func(f *intentFields) { f.ts = now.Add(30 * time.Minute) })), code: orchestrator.CodeFutureTimestamp},
		{name: "missing trace_id", key: nil, value: v1(with("", func(f *intentFields) { f.intentID = "i-poison-notrace" })), code: "invalid_contract"},
		{name: "missing intent_id", key: k("poison-noid"), value: v1(with("poison-noid", func(f *intentFields) { f.intentID = "" })), code: "invalid_contract"},
		{name: "missing actor", key: k("poison-noactor"), value: v1(with("poison-noactor", func(f *intentFields) { f.actor = "" })), code: orchestrator.CodeMissingField},
		{name: "unknown intent kind", key: k("poison-kind"), value: v2(with("poison-kind", func(f *intentFields) { f.kind = "teleport" })), code: orchestrator.CodeUnknownIntentKind},
		{name: "key is not the trace id", key: k("poison-other-key"), value: v1(good("poison-keyed")), code: orchestrator.CodeKeyMismatch},
		{name: "NUL key", key: []byte{0}, value: v1(good("poison-nul")), code: orchestrator.CodeKeyMismatch},
		{name: "dataplane event for an unknown run (spine.dataplane)", topic: l.Dataplane(), key: k("poison-ghost"), value: ghostStarted, code: orchestrator.CodeUnknownRun},
		{name: "verdict for an unknown run (gate.verdict)", topic: l.Gate("verdict"), key: k("poison-ghost-v"), value: ghostVerdict, code: orchestrator.CodeUnknownRun},
	}
	if len(poisons) < 20 {
		t.Fatalf("only %d kinds of poison", len(poisons))
	}

	// Good intents around the poison, then duplicates of some of them.
	const nGood = 300
	outs := intents("bad", nGood)
	traces := map[string]bool{}
	for _, o := range outs {
		traces[string(o.Key)] = true
	}
	s.produce(ctx, outs[:nGood/2])
	p, err := pipeline.NewProducer(s.codec, s.kopts...)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	recs := make([]*kgo.Record, len(poisons))
	for i := range poisons {
		if poisons[i].topic == "" {
			poisons[i].topic = l.Intents()
		}
		recs[i] = &kgo.Record{Topic: string(poisons[i].topic), Key: poisons[i].key, Value: poisons[i].value}
	}
	res, err := p.ProduceRaw(ctx, recs...)
	if err != nil {
		t.Fatalf("produce poison: %v", err)
	}
	for i, r := range res {
		poisons[i].partition, poisons[i].offset = r.Partition, r.Offset
	}
	s.produce(ctx, outs[nGood/2:])
	// Duplicates: the same intents again, and new intent ids on known runs.
	dups := intents("bad", 40)
	for i := range dups {
		if i%2 == 1 {
			dups[i].Value.(*schemas.Intent).IntentID += "-retry"
		}
	}
	s.produce(ctx, dups)

	waitFor(t, 90*time.Second, func() bool { return committed.terminalCount() >= nGood && committed.dlqLen() >= len(poisons) },
		func() string {
			return fmt.Sprintf("%d runs and %d dead letters (have %d and %d)", nGood, len(poisons), committed.terminalCount(), committed.dlqLen())
		})
	committed.settle(time.Second)

	committed.mu.Lock()
	dlq := append([]*kgo.Record(nil), committed.dlq...)
	committed.mu.Unlock()
	type pos struct {
		topic     pipeline.Topic
		partition int32
		offset    int64
	}
	got := map[pos][]pipeline.DeadLetter{}
	for _, r := range dlq {
		d, err := pipeline.ParseDeadLetter(r)
		if err != nil {
			t.Errorf("DLQ record %d: %v", r.Offset, err)
			continue
		}
		got[pos{d.Topic, d.Partition, d.Offset}] = append(got[pos{d.Topic, d.Partition, d.Offset}], d)
	}
	for _, ps := range poisons {
		t.Run(ps.name, func(t *testing.T) {
			ds := got[pos{ps.topic, ps.partition, ps.offset}]
			if len(ds) != 1 {
				t.Fatalf("dead-lettered %d times, want once", len(ds))
			}
			d := ds[0]
			if d.Code != ps.code {
				t.Errorf("x-error-code %q (%s), want %q", d.Code, d.Message, ps.code)
			}
			if !strings.Contains(d.Message, ps.code) {
				t.Errorf("kafka_dlt-exception-message %q does not say why (%s)", d.Message, ps.code)
			}
			if !bytes.Equal(d.Value, ps.value) || !bytes.Equal(d.Key, ps.key) {
				t.Errorf("original bytes changed: key %q value %d bytes, want %q and %d bytes", d.Key, len(d.Value), ps.key, len(ps.value))
			}
			if d.Processor != orchestrator.Name || d.Group != l.Group(orchestrator.Name) {
				t.Errorf("dead-lettered by %q in group %q", d.Processor, d.Group)
			}
			t.Logf("%s → %s: %s", ps.name, d.Code, d.Message)
		})
	}
	if len(dlq) != len(poisons) {
		t.Errorf("%d dead letters for %d poison records (duplicates must not be dead-lettered)", len(dlq), len(poisons))
	}

	flow := orchestrator.MustStateflow(s.cfg.Orchestrator.States())
	rep := checkThread(t, committed, flow, traces)
	if rep.stale != 0 || rep.illegal != 0 {
		t.Errorf("%d stale answers and %d refused transitions in good runs, want none", rep.stale, rep.illegal)
	}
	if got := rep.outcomes[thread.RunCompleted] + rep.outcomes[thread.RunRejected]; got != nGood {
		t.Errorf("%d good runs ended by their verdict, want %d (%v)", got, nGood, rep.outcomes)
	}
	if r := s.logs.restarts.Load(); r != 0 {
		t.Errorf("%d processor sessions restarted", r)
	}
	if v := metricCounts(t, s.reg, "spine_processor_blocked")[""]; v != 0 {
		t.Errorf("a processor is blocked")
	}
	// A transaction may be aborted by a rebalance while the groups form;
	// poison never aborts one (it would be retried, counted above).
	t.Logf("transactions: %v", metricCounts(t, s.reg, "spine_processor_transactions_total", "outcome"))
	if v := metricCounts(t, s.reg, "spine_processor_records_total", "outcome")["retry"]; v != 0 {
		t.Errorf("%v records retried as transient", v)
	}
	want := map[string]float64{}
	for _, ps := range poisons {
		want[ps.code]++
	}
	equalCounts(t, 30*time.Second, func() []countPair {
		return []countPair{{"spine_dlq_records_total", metricCounts(t, s.reg, "spine_dlq_records_total", "code"), want}}
	})
}

// TestEveryProcessorDeadLettersOneWay writes a poison record (not the
// Confluent wire format) on every partition of every thread topic, with the
// orchestrator, dataplane, gates and projections running. Each processor
// that reads a topic dead-letters each of its poison records once, and every
// dead letter reads back with pipeline.ParseDeadLetter: the same Spring
// Kafka headers in the same binary form (partition 4 bytes, offset and
// timestamp 8), the original topic, partition, offset, key and bytes, the
// reason (bad_magic, in x-error-code and the exception message) and who
// dead-lettered it, in which group. The processors keep running past the
// poison on every partition: runs started after it end by their verdict,
// and the projections fold each of them to its outcome.
func TestEveryProcessorDeadLettersOneWay(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	s := newStack(t, nil, map[string]string{"SPINE_EXEC_TIMEOUT": "10m", "SPINE_GATE_TIMEOUT": "10m"})
	committed := s.collectSkipping(t, true, "poison-")
	s.startAll(nil)
	s.start(stack.Projections, "e2e", nil)
	l := s.layout

	// The readers of each thread topic, as the processors' Topics say (the
	// orchestrator reads spine.control only under a per-actor limit, off
	// here); the projections read every topic but the intents.
	readers := map[pipeline.Topic][]string{
		l.Intents():                {orchestrator.Name},
		l.Control():                {thread.Dataplane},
		l.Dataplane():              {orchestrator.Name, thread.Gatekeeper},
		l.Gate(thread.VerdictGate): {orchestrator.Name},
	}
	for _, topic := range projections.SourceTopics(l) {
		readers[topic] = append(readers[topic], thread.Projections)
	}
	if len(readers) != len(l.ThreadTopics()) {
		t.Fatalf("readers of %d topics, the layout has %d thread topics", len(readers), len(l.ThreadTopics()))
	}

	// One poison record on each partition of each thread topic, before any
	// run: every run below passes a poison record on each of its partitions.
	type pos struct {
		topic     pipeline.Topic
		partition int32
		offset    int64
	}
	pc := kafkatest.Client(t, s.brokers, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	var recs []*kgo.Record
	want := 0
	for topic, rs := range readers {
		for p := range int32(l.Partitions) {
			key := fmt.Sprintf("poison-%s-%d", topic, p)
			recs = append(recs, &kgo.Record{Topic: string(topic), Partition: p, Key: []byte(key), Value: []byte(`{"not":"avro"}`)})
			want += len(rs)
		}
	}
	ctx := t.Context()
	if err := pc.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce poison: %v", err)
	}
	poison := map[pos]*kgo.Record{}
	for _, r := range recs {
		poison[pos{pipeline.Topic(r.Topic), r.Partition, r.Offset}] = r
	}

	const nAfter = 12
	after := intents("after-poison", nAfter)
	s.produce(ctx, after)
	spinetest.Eventually(t, 90*time.Second, func() error {
		if n, m := committed.dlqLen(), committed.terminalCount(); n < want || m < nAfter {
			return fmt.Errorf("%d dead letters and %d ended runs, want %d and %d", n, m, want, nAfter)
		}
		return nil
	})
	committed.settle(time.Second)

	committed.mu.Lock()
	dlq := append([]*kgo.Record(nil), committed.dlq...)
	committed.mu.Unlock()
	got := map[pos][]string{}
	for _, r := range dlq {
		d, err := pipeline.ParseDeadLetter(r)
		if err != nil {
			t.Errorf("dead letter %s@%d does not parse: %v", r.Topic, r.Offset, err)
			continue
		}
		at := pos{d.Topic, d.Partition, d.Offset}
		orig, ok := poison[at]
		if !ok {
			t.Errorf("dead letter by %s of %s/%d@%d, which is no poison record", d.Processor, d.Topic, d.Partition, d.Offset)
			continue
		}
		if !bytes.Equal(d.Key, orig.Key) || !bytes.Equal(d.Value, orig.Value) || !d.Timestamp.Equal(orig.Timestamp.Truncate(time.Millisecond)) {
			t.Errorf("%s/%d by %s: key %q value %q timestamp %v, want the original %q %q %v", d.Topic, d.Partition, d.Processor,
				d.Key, d.Value, d.Timestamp, orig.Key, orig.Value, orig.Timestamp)
		}
		if d.Code != "bad_magic" || !strings.Contains(d.Message, "bad_magic") || d.Group != l.Group(d.Processor) {
			t.Errorf("%s/%d by %s: code %q message %q group %q", d.Topic, d.Partition, d.Processor, d.Code, d.Message, d.Group)
		}
		got[at] = append(got[at], d.Processor)
	}
	for at := range poison {
		rs := slices.Sorted(slices.Values(readers[at.topic]))
		g := slices.Sorted(slices.Values(got[at]))
		if !slices.Equal(g, rs) {
			t.Errorf("poison on %s/%d dead-lettered by %v, want once by each of %v", at.topic, at.partition, g, rs)
		}
	}

	// The thread processors went on past the poison: each run ended by its
	// verdict.
	_, byTrace := committed.snapshot()
	for _, o := range after {
		trace := string(o.Key)
		var end schemas.EventType
		for _, e := range byTrace[trace] {
			if terminalTypes[e.ev.EventType] {
				end = e.ev.EventType
			}
		}
		if end != thread.RunCompleted && end != thread.RunRejected {
			t.Errorf("run %s ended with %q, want its verdict (%s or %s)", trace, end, thread.RunCompleted, thread.RunRejected)
		}
	}

	// So did the projections: they folded each run to its outcome.
	runs := kafkatest.Client(t, s.brokers, kgo.ConsumeTopics(string(l.Projection(thread.ProjRuns))),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50*time.Millisecond))
	outcome := map[string]string{}
	spinetest.Eventually(t, 60*time.Second, func() error {
		pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		runs.PollFetches(pctx).EachRecord(func(r *kgo.Record) {
			c, err := projections.DecodeCell(string(r.Key), r.Value)
			if p, ok := c.(*projections.RunPart); err == nil && ok && p.Outcome != "" {
				outcome[p.TraceID] = p.Outcome
			}
		})
		var missing []string
		for _, o := range after {
			if outcome[string(o.Key)] == "" {
				missing = append(missing, string(o.Key))
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("the projections folded no outcome for %v", missing)
		}
		return nil
	})
	if r := s.logs.restarts.Load(); r != 0 {
		t.Errorf("%d processor sessions restarted", r)
	}
}
