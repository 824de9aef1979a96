package dataplane

import (
	"reflect"
	"testing"
	"time"

	"github.com/spinerun/spine/schemas"
)

func TestCallRoundTrip(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	for _, c := range []*call{
		{Dispatch: &schemas.RuntimeEvent{SpanID: "s1", TraceID: "t1", EventType: "run.dispatch"}, Version: schemas.V1},
		{Dispatch: &schemas.RuntimeEvent{SpanID: "s2", TraceID: "t2", EventID: "e2", Actor: "alice", Intent: "summarize", Route: "canary",
			Tenant: "acme", Input: "in ✓\x00", SchemaVersion: schemas.V2, Attempt: 2, Priority: 3, Timestamp: t0, RunStarted: t0.Add(-time.Second),
			Attributes: map[string]string{"a": "b", "": "c"}, EventType: "run.dispatch",
			Provenance: &schemas.Provenance{Issuer: "https://idp", Subject: "alice", VerifiedAt: t0, Claims: map[string]string{"sub": "alice"}}},
			Version: schemas.V2, Deadline: t0.Add(time.Minute)},
		{Dispatch: &schemas.RuntimeEvent{SpanID: "s3", TraceID: "t3", Attributes: map[string]string{}, EventType: "run.dispatch",
			Provenance: &schemas.Provenance{Issuer: "i"}}},
	} {
		b, err := c.encode()
		if err != nil {
			t.Fatal(err)
		}
		if pendingSpan(b) != c.Dispatch.SpanID {
			t.Fatalf("pending span %q, want %q", pendingSpan(b), c.Dispatch.SpanID)
		}
		got, err := decodeCall(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("round trip:\n got %+v %+v\nwant %+v %+v", got, got.Dispatch, c, c.Dispatch)
		}
		for i := len(c.Dispatch.SpanID) + 1; i < len(b); i++ {
			if _, err := decodeCall(b[:i]); err == nil {
				t.Fatalf("a state cut to %d of %d bytes decoded", i, len(b))
			}
		}
	}
}

func FuzzDecodeCall(f *testing.F) {
	c := &call{Dispatch: &schemas.RuntimeEvent{SpanID: "s", TraceID: "t", Input: "x", Attributes: map[string]string{"k": "v"}}}
	b, _ := c.encode()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeCall(b)
		if err != nil {
			return
		}
		again, err := c.encode()
		if err != nil {
			t.Fatal(err)
		}
		c2, err := decodeCall(again)
		if err != nil || !reflect.DeepEqual(c, c2) {
			t.Fatalf("re-encoded state does not round trip: %v", err)
		}
	})
}
