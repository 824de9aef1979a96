package verify

import (
	"bytes"
	"testing"
	"time"

	"github.com/hamba/avro/v2"

	"github.com/spinerun/spine/schemas"
)

// events are RuntimeEvents of every shape the scan meets: with a gate, an
// artifact summary, both, neither, and v2 fields set.
func events() []*schemas.RuntimeEvent {
	at := time.UnixMilli(1_765_000_000_123).UTC()
	msg := "rate_limited: slow down"
	return []*schemas.RuntimeEvent{
		{EventID: "e1", TraceID: "t1", SpanID: "s1", EventType: "intent.received", State: "received", Timestamp: at, RunStarted: at},
		{EventID: "e2", TraceID: "t2", SpanID: "s2", ParentSpanID: "p2", ArtifactID: "art-1-x", EventType: "artifact.delivered", State: "delivered",
			Timestamp: at, Artifact: &schemas.ArtifactSummary{ContentType: "text/plain", Summary: "sum", SizeBytes: 3}, Route: "canary", Error: &msg},
		{EventID: "e3", TraceID: "t3", SpanID: "s3", ParentSpanID: "p3", EventType: "gate.verdict", State: "gating", Timestamp: at,
			Gate: &schemas.GateOutcome{Name: "verdict", Passed: true, Reason: "all_passed", Measured: 2, Threshold: 2, Evidence: map[string]string{"a": "b"}}},
		{EventID: "e4", TraceID: "t4", EventType: "gate.failed", Timestamp: at, Artifact: &schemas.ArtifactSummary{ContentType: "x"},
			Gate: &schemas.GateOutcome{Name: "schema", Passed: false, Measured: 1.5, Threshold: 3}},
	}
}

func encode(tb testing.TB, v schemas.ContractVersion, e *schemas.RuntimeEvent) []byte {
	tb.Helper()
	s := avro.MustParse(schemas.MustSource(schemas.ContractRuntimeEvent, v))
	c := *e
	c.SchemaVersion, c.Phase = v, schemas.PhaseGate
	b, err := avro.Marshal(s, &c)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestScanEnvelopeReadsWhatWasWritten(t *testing.T) {
	t.Parallel()
	for _, v := range []schemas.ContractVersion{schemas.V1, schemas.V2} {
		if !fastLayout(schemas.MustSource(schemas.ContractRuntimeEvent, v)) {
			t.Fatalf("contract %s: the envelope scan does not accept its layout", v)
		}
		for _, ev := range events() {
			var e envelope
			if err := scanEnvelope(encode(t, v, ev), &e); err != nil {
				t.Fatalf("%s %s: %v", v, ev.EventID, err)
			}
			if string(e.EventID) != ev.EventID || string(e.TraceID) != ev.TraceID || string(e.SpanID) != ev.SpanID ||
				string(e.ParentSpanID) != ev.ParentSpanID || string(e.ArtifactID) != ev.ArtifactID || string(e.EventType) != string(ev.EventType) ||
				string(e.State) != ev.State || e.Timestamp != ev.Timestamp.UnixMilli() || e.HasSummary != (ev.Artifact != nil) {
				t.Errorf("%s %s: scanned %+v", v, ev.EventID, e)
			}
			if ev.Gate != nil && ev.Artifact == nil && (!e.HasGate || string(e.GateName) != ev.Gate.Name || e.GatePassed != ev.Gate.Passed ||
				e.Measured != ev.Gate.Measured || e.Threshold != ev.Gate.Threshold) {
				t.Errorf("%s %s: gate scanned %+v, want %+v", v, ev.EventID, e, ev.Gate)
			}
		}
	}
	if fastLayout(schemas.MustSource(schemas.ContractIntent, schemas.V2)) || fastLayout("not a schema") {
		t.Error("the envelope scan accepts a layout that is not an envelope's")
	}
}

// FuzzScanEnvelope: any body scans without panicking, every slice it
// returns lies inside the body, and a truncated valid body is an error,
// never a wrong read.
func FuzzScanEnvelope(f *testing.F) {
	for _, v := range []schemas.ContractVersion{schemas.V1, schemas.V2} {
		for _, ev := range events() {
			f.Add(encode(f, v, ev))
		}
	}
	f.Add([]byte{})
	f.Add([]byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01})
	f.Fuzz(func(t *testing.T, body []byte) {
		var e envelope
		if err := scanEnvelope(body, &e); err != nil {
			return
		}
		for _, b := range [][]byte{e.EventID, e.TraceID, e.SpanID, e.ParentSpanID, e.ArtifactID, e.EventType, e.State, e.GateName} {
			if len(b) > 0 && !inside(body, b) {
				t.Fatalf("a scanned field lies outside the body")
			}
		}
		var again envelope
		if err := scanEnvelope(bytes.Clone(body), &again); err != nil || string(again.EventID) != string(e.EventID) || again.Timestamp != e.Timestamp {
			t.Fatalf("a second scan of the same bytes differs: %v", err)
		}
	})
}

func inside(body, b []byte) bool {
	for i := 0; i+len(b) <= len(body); i++ {
		if &body[i] == &b[0] {
			return true
		}
	}
	return false
}

// BenchmarkScanEnvelope is the per-record cost of reading an envelope.
func BenchmarkScanEnvelope(b *testing.B) {
	body := encode(b, schemas.V2, events()[2])
	var e envelope
	b.ReportAllocs()
	for b.Loop() {
		if err := scanEnvelope(body, &e); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzFastLayout: any schema text is judged without panicking, and a text
// that is accepted describes bodies the scan reads like the contracts'.
func FuzzFastLayout(f *testing.F) {
	for _, c := range schemas.Contracts {
		for _, v := range []schemas.ContractVersion{schemas.V1, schemas.V2} {
			f.Add(schemas.MustSource(c, v))
		}
	}
	f.Add(`{"type":"record","name":"x","fields":[]}`)
	f.Add(`"string"`)
	f.Fuzz(func(t *testing.T, text string) {
		if !fastLayout(text) {
			return
		}
		s, err := avro.ParseWithCache(text, "", &avro.SchemaCache{})
		if err != nil {
			t.Fatalf("accepted a schema that does not parse: %v", err)
		}
		if rec, ok := s.(*avro.RecordSchema); !ok || rec.Fields()[0].Name() != "event_id" {
			t.Fatalf("accepted a schema without the envelope: %s", text)
		}
	})
}
