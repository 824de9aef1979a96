package pipeline

import (
	"container/heap"
	"time"
)

// timer is one pending deadline of a key.
type timer struct {
	at  time.Time
	key string
}

// timerHeap is a min-heap of timers by deadline. Entries are never updated
// in place: a state write pushes its new deadline and stale entries are
// dropped when popped, after re-checking Deadline of the key's current
// state. It is guarded by the store's mutex.
type timerHeap []timer

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(timer)) }
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}

func (h *timerHeap) add(at time.Time, key string) { heap.Push(h, timer{at: at, key: key}) }

// popDue removes and returns every timer due at now, each key once.
func (h *timerHeap) popDue(now time.Time) []timer {
	var due []timer
	seen := map[string]bool{}
	for h.Len() > 0 && !(*h)[0].at.After(now) {
		t := heap.Pop(h).(timer)
		if seen[t.key] {
			continue
		}
		seen[t.key] = true
		due = append(due, t)
	}
	return due
}

// next returns the earliest deadline, if any.
func (h timerHeap) next() (time.Time, bool) {
	if len(h) == 0 {
		return time.Time{}, false
	}
	return h[0].at, true
}
