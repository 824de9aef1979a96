package thread_test

import (
	"strings"
	"testing"
	"time"

	"github.com/spinerun/spine/schemas/thread"
)

func TestTraceIDCarriesItsTime(t *testing.T) {
	now := time.Date(2026, 12, 7, 1, 2, 3, 456e6, time.UTC)
	seen := map[string]bool{}
	for range 1000 {
		id := thread.NewTraceID(now)
		if seen[id] {
			t.Fatalf("id %s minted twice", id)
		}
		seen[id] = true
		if _, ok := thread.AppendTraceparent(nil, id, "00f067aa0ba902b7"); !ok {
			t.Fatalf("id %s is no W3C trace id", id)
		}
		at, ok := thread.TraceTime(id, now)
		if !ok || !at.Equal(now.Truncate(time.Second)) {
			t.Fatalf("TraceTime(%s) = %s, %v; want %s", id, at, ok, now.Truncate(time.Second))
		}
	}
	if id := thread.TraceIDAt(now, [12]byte{11: 7}); id != "6b16058b000000000000000000000007" { // 0x6b16058b = 1796605323 s
		t.Errorf("TraceIDAt = %s", id)
	}
}

func TestTraceTimeRefusesWhatIsNoTime(t *testing.T) {
	now := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	for _, id := range []string{
		"",
		"m-0050000",
		"4bf92f3577b34da6a3ce929d0e0e4736",        // 2012: before the epoch
		"ffffffff77b34da6a3ce929d0e0e4736",        // 2106
		strings.ToUpper(thread.NewTraceID(now)),   // not lowercase
		thread.NewTraceID(now)[:31],               // short
		thread.NewTraceID(now.Add(2 * time.Hour)), // from the future
		"00000000000000000000000000000000",        // W3C's invalid id
		thread.NewTraceID(now) + "0",              // long
		"6b16058g00000000000000000000000a",        // not hex
	} {
		if at, ok := thread.TraceTime(id, now); ok {
			t.Errorf("TraceTime(%q) = %s, want none", id, at)
		}
	}
}

func FuzzTraceTime(f *testing.F) {
	now := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	f.Add(thread.NewTraceID(now))
	f.Add("4bf92f3577b34da6a3ce929d0e0e4736")
	f.Add("m-0050000")
	f.Fuzz(func(t *testing.T, id string) {
		at, ok := thread.TraceTime(id, now)
		if !ok {
			return
		}
		if at.Before(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)) || at.After(now.Add(time.Hour)) {
			t.Fatalf("TraceTime(%q) = %s: outside the plausible span", id, at)
		}
		// The id's first 8 digits are that time: minting at it gives them back.
		if got := thread.TraceIDAt(at, [12]byte{}); got[:8] != id[:8] {
			t.Fatalf("TraceTime(%q) = %s, which mints %s", id, at, got[:8])
		}
	})
}
