package pipeline

import (
	"context"
	"testing"
	"time"
)

// countingTimed is a Timed whose Deadline reads the state as a Unix
// millisecond count ("" or "0": none) and counts its calls.
type countingTimed struct{ calls int }

func (c *countingTimed) Deadline(state []byte) (time.Time, bool) {
	c.calls++
	var ms int64
	for _, ch := range state {
		ms = ms*10 + int64(ch-'0')
	}
	if ms == 0 {
		return time.Time{}, false
	}
	return time.UnixMilli(ms), true
}

func (c *countingTimed) Fire(context.Context, []byte, []byte, time.Time) (Result, error) {
	return Result{}, nil
}

// TestApplyUsesReportedDeadline: a state write whose result reported its
// deadline (Result.DeadlineSet) is scheduled without Deadline being asked;
// one that did not is scheduled from Deadline(state).
func TestApplyUsesReportedDeadline(t *testing.T) {
	t.Parallel()
	at := time.UnixMilli(1_700_000_000_000)
	tests := []struct {
		name      string
		val       string
		reported  time.Time
		known     bool
		wantCalls int
		wantTimer bool
	}{
		{"reported", "1700000000000", at, true, 0, true},
		{"reported none", "1700000000000", time.Time{}, true, 0, false},
		{"not reported", "1700000000000", time.Time{}, false, 1, true},
		{"not reported, none", "0", time.Time{}, false, 1, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStore()
			ps := &partState{data: map[string][]byte{}}
			s.install(0, ps)
			ov := s.newOverlay()
			ov.set(0, "k", []byte(tc.val), false, tc.reported, tc.known)
			timed := &countingTimed{}
			ov.apply(timed)
			if timed.calls != tc.wantCalls {
				t.Errorf("Deadline called %d times, want %d", timed.calls, tc.wantCalls)
			}
			next, ok := ps.timers.next()
			if ok != tc.wantTimer || (ok && !next.Equal(at)) {
				t.Errorf("timer %v %t, want %t at %v", next, ok, tc.wantTimer, at)
			}
			if string(ps.data["k"]) != tc.val {
				t.Errorf("state %q, want %q", ps.data["k"], tc.val)
			}
		})
	}
}
