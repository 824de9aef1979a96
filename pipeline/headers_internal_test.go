package pipeline

import (
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// An event's headers — its type and its traceparent — cost the loop one
// allocation per record, and read back as written; an event type too long
// for the inline buffer still gets both.
func TestEventHeaders(t *testing.T) {
	trace, span := thread.ID("t"), thread.ID("s")[:16]
	for _, typ := range []schemas.EventType{thread.RunDispatch, schemas.EventType(strings.Repeat("x", 200))} {
		ev := &schemas.RuntimeEvent{EventType: typ, TraceID: trace, SpanID: span}
		hs := eventHeaders(ev)
		if len(hs) != 2 || hs[0].Key != HeaderEventType || string(hs[0].Value) != string(typ) ||
			hs[1].Key != thread.HeaderTraceparent || string(hs[1].Value) != "00-"+trace+"-"+span+"-01" {
			t.Fatalf("%.20s: headers %q", typ, hs)
		}
	}
	ev := &schemas.RuntimeEvent{EventType: thread.RunDispatch, TraceID: trace, SpanID: span}
	if n := testing.AllocsPerRun(100, func() { _ = eventHeaders(ev) }); n != 1 {
		t.Errorf("eventHeaders allocates %v times, want 1", n)
	}
	// Not a W3C trace id: the event type alone.
	if hs := eventHeaders(&schemas.RuntimeEvent{EventType: thread.RunDispatch, TraceID: "gp-1", SpanID: "x"}); len(hs) != 1 {
		t.Errorf("headers of a non-W3C trace: %q", hs)
	}
}

// TestTypeWantedAllocatesNothing: the loop looks up every polled record's
// event type without copying it into a string.
func TestTypeWantedAllocatesNothing(t *testing.T) {
	types := map[schemas.EventType]bool{"gate.verdict": true}
	rec := &kgo.Record{Headers: []kgo.RecordHeader{
		{Key: "traceparent", Value: []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")},
		{Key: HeaderEventType, Value: []byte("gate.verdict")},
	}}
	other := &kgo.Record{Headers: []kgo.RecordHeader{{Key: HeaderEventType, Value: []byte("gate.passed")}}}
	for _, tc := range []struct {
		rec         *kgo.Record
		has, wanted bool
	}{{rec, true, true}, {other, true, false}, {&kgo.Record{}, false, false}} {
		if has, wanted := typeWanted(types, tc.rec); has != tc.has || wanted != tc.wanted {
			t.Errorf("typeWanted(%v) = %v, %v; want %v, %v", tc.rec.Headers, has, wanted, tc.has, tc.wanted)
		}
	}
	if n := testing.AllocsPerRun(100, func() { typeWanted(types, rec) }); n != 0 {
		t.Errorf("typeWanted allocates %v times", n)
	}
}
