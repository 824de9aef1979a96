package projections

import (
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// A cell keeps no string of the event folded into it: those are cut out of
// the record they were decoded from, and a cell holding one would pin the
// whole record for as long as the cell lives.
func TestFoldedCellsPinNoEventMemory(t *testing.T) {
	// Every string of the events is cut out of one big buffer, as the
	// decoder cuts them out of a record.
	var b strings.Builder
	field := map[string]string{}
	for _, v := range []string{"6b16058b000000000000000000000007", "alice", "summarize", "tenant-1", "art-1", "boom",
		string(thread.IntentReceived), string(thread.ArtifactDelivered), string(thread.GatePassed), "executing", "schema", "too long", "canary"} {
		b.WriteString(strings.Repeat("x", 100))
		b.WriteString(v)
	}
	buf := b.String()
	cut := func(v string) string {
		i := strings.Index(buf, v)
		if i < 0 {
			t.Fatalf("%q not in the buffer", v)
		}
		field[v] = buf[i : i+len(v)]
		return field[v]
	}
	lo := uintptr(unsafe.Pointer(unsafe.StringData(buf)))
	hi := lo + uintptr(len(buf))
	pinned := func(what, s string) {
		if s == "" {
			return
		}
		if p := uintptr(unsafe.Pointer(unsafe.StringData(s))); p >= lo && p < hi {
			t.Errorf("%s %q points into the event's memory", what, s)
		}
	}

	at := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	msg := cut("boom")
	base := func(typ string, src string) *schemas.RuntimeEvent {
		return &schemas.RuntimeEvent{TraceID: cut("6b16058b000000000000000000000007"), Actor: cut("alice"), Intent: cut("summarize"),
			Tenant: cut("tenant-1"), Route: cut("canary"), SchemaVersion: schemas.V2, Timestamp: at, RunStarted: at.Add(-time.Second),
			EventType: schemas.EventType(cut(typ)), State: cut("executing"), Phase: schemas.PhaseControl}
	}
	cells := Cells{}
	f := Folder{}
	ctl := Source{Topic: thread.TopicControl, Partition: 0}
	f.Fold(cells, ctl, base(string(thread.IntentReceived), ctl.Topic), schemas.V2)
	dp := Source{Topic: thread.TopicDataplane, Partition: 0}
	ev := base(string(thread.ArtifactDelivered), dp.Topic)
	ev.Phase, ev.ArtifactID, ev.Error = schemas.PhaseData, cut("art-1"), &msg
	ev.Artifact = &schemas.ArtifactSummary{SizeBytes: 10, LatencyMs: 5, Score: 0.5}
	f.Fold(cells, dp, ev, schemas.V2)
	gs := Source{Topic: thread.TopicGatePrefix + "schema", Partition: 0}
	ev = base(string(thread.GatePassed), gs.Topic)
	ev.Phase = schemas.PhaseGate
	ev.Gate = &schemas.GateOutcome{Name: cut("schema"), Passed: false, Reason: cut("too long")}
	f.Fold(cells, gs, ev, schemas.V2)

	if len(cells) == 0 {
		t.Fatal("nothing folded")
	}
	for k, c := range cells {
		pinned("key", k)
		switch c := c.(type) {
		case *RunPart:
			for _, s := range []string{c.TraceID, c.Actor, c.Intent, c.Route, c.Version, c.Tenant, c.State, c.LastEvent, c.Outcome, c.ArtifactID, c.Error} {
				pinned(k+" field", s)
			}
			for h := range c.Hops {
				pinned(k+" hop", h)
			}
			for g, r := range c.Gates {
				pinned(k+" gate", g)
				pinned(k+" gate reason", r.Reason)
			}
		case *GoldenCell:
			for e := range c.Events {
				pinned(k+" event", e)
			}
			for h := range c.Hops {
				pinned(k+" hop", h)
			}
		case *GatesCell:
			for g, s := range c.Gates {
				pinned(k+" gate", g)
				for r := range s.Reasons {
					pinned(k+" reason", r)
				}
			}
		}
	}
}
