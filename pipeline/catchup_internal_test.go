package pipeline

import (
	"testing"
	"time"
)

// TestCatchUpHoldsTimers: a partition's timers stay queued while its
// catch-up wait is open; a committed batch that read every input to its
// target releases them, a batch short of a target does not, and the grace
// period releases them whatever was read.
func TestCatchUpHoldsTimers(t *testing.T) {
	t.Parallel()
	now := time.Now()
	newPart := func(until time.Time) (*store, *partState) {
		s := newStore()
		ps := &partState{data: map[string][]byte{"k": []byte("v")}}
		ps.timers.add(now.Add(-time.Second), "k")
		ps.hold = &catchUp{targets: map[string]int64{"a": 10, "b": 5}, since: now, until: until}
		s.install(0, ps)
		return s, ps
	}
	read := func(s *store, topic string, off int64) []held {
		ov := s.newOverlay()
		ov.advance(topic, 0, off)
		return ov.apply(nil)
	}

	t.Run("caught up", func(t *testing.T) {
		t.Parallel()
		s, ps := newPart(now.Add(time.Hour))
		if due := s.dueTimers(now); len(due) != 0 {
			t.Fatalf("timers fired while catching up: %v", due)
		}
		if got := read(s, "a", 9); len(got) != 0 || ps.hold == nil {
			t.Fatalf("released at offset 9 of a (target 10): %v", got)
		}
		if got := read(s, "a", 10); len(got) != 0 || ps.hold == nil {
			t.Fatalf("released with b not read: %v", got)
		}
		if got := read(s, "c", 100); len(got) != 0 {
			t.Fatalf("released by a topic without a target: %v", got)
		}
		got := read(s, "b", 7)
		if len(got) != 1 || got[0].partition != 0 || got[0].expired || ps.hold != nil {
			t.Fatalf("read to every target: released %+v, hold %v", got, ps.hold)
		}
		if due := s.dueTimers(now); len(due[0]) != 1 || due[0][0].key != "k" {
			t.Fatalf("due after catching up: %v, want k", due)
		}
	})
	t.Run("grace", func(t *testing.T) {
		t.Parallel()
		s, ps := newPart(now.Add(time.Minute))
		if got := s.releaseExpired(now); len(got) != 0 {
			t.Fatalf("released before the grace: %v", got)
		}
		got := s.releaseExpired(now.Add(time.Minute))
		if len(got) != 1 || !got[0].expired || got[0].behind["a"] != 10 || ps.hold != nil {
			t.Fatalf("grace passed: released %+v", got)
		}
		if due := s.dueTimers(now); len(due[0]) != 1 {
			t.Fatalf("due after the grace: %v", due)
		}
	})
	t.Run("reassigned", func(t *testing.T) {
		t.Parallel()
		s, _ := newPart(now.Add(time.Hour))
		ov := s.newOverlay()
		ov.advance("a", 0, 10)
		ov.advance("b", 0, 5)
		// The partition is revoked and assigned again before the batch
		// commits: what it read belongs to the old ownership.
		s.drop([]int32{0})
		_, ps2 := newPart(now.Add(time.Hour))
		s.install(0, ps2)
		if got := ov.apply(nil); len(got) != 0 || ps2.hold == nil {
			t.Fatalf("an old ownership's batch released the new one: %v", got)
		}
	})
}
