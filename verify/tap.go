package verify

import (
	"github.com/twmb/franz-go/pkg/kgo"
)

// A verify with the projections comparison reads the thread once: the
// replay's fold reads every record of the topics it folds (spine.control,
// spine.dataplane, gate.*), and a tap hands each of them to the verifier
// as well, in offset order per partition, transaction markers included.
// What the replay did not read (a partition it folds to an offset below
// the verifier's end, one it never reached because it failed) the
// verifier reads itself afterwards, from where the tap left it.

// tapBatch is how many records the tap hands over at once.
const tapBatch = 512

// tap receives the replay's records on the replay's reading goroutine and
// applies them on its own.
type tap struct {
	v      *verifier
	topics []*topicInfo // the topics it may deliver
	batch  []*kgo.Record
	ch     chan []*kgo.Record
	done   chan struct{}
}

// newTap starts a tap for the scanned topics among folded (the replay's
// source topics, by name).
func (v *verifier) newTap(folded []string) *tap {
	t := &tap{v: v, ch: make(chan []*kgo.Record, 16), done: make(chan struct{})}
	for _, n := range folded {
		if ti := v.byName[n]; ti != nil && ti.kind.events() {
			ti.tapped = true
			t.topics = append(t.topics, ti)
		}
	}
	go func() {
		defer close(t.done)
		for b := range t.ch {
			v.mu.Lock()
			for _, r := range b {
				v.tapped(r)
			}
			v.mu.Unlock()
		}
	}()
	return t
}

// add takes one record from the replay's reading goroutine (one at a time:
// the replay reads its slices one after another).
func (t *tap) add(r *kgo.Record) {
	t.batch = append(t.batch, r)
	if len(t.batch) >= tapBatch {
		t.ch <- t.batch
		t.batch = make([]*kgo.Record, 0, tapBatch)
	}
}

// close hands over what is left and waits until every record is applied;
// the replay must have returned.
func (t *tap) close() {
	if len(t.batch) > 0 {
		t.ch <- t.batch
		t.batch = nil
	}
	close(t.ch)
	<-t.done
}

// tapped applies a record the replay read, unless the verifier's read of
// its partition is past it (a slice the replay read again) or it lies
// outside the planned offsets.
func (v *verifier) tapped(r *kgo.Record) {
	ti := v.byName[r.Topic]
	if ti == nil || !ti.tapped || int(r.Partition) >= len(ti.parts) {
		return
	}
	st := ti.parts[r.Partition]
	if !st.reading() || r.Offset < max(st.from, st.next) || r.Offset >= st.end {
		return
	}
	v.record(ti, st, r)
	if !r.Attrs.IsControl() {
		v.rep.SharedRead++
	}
	st.next = r.Offset + 1
	if st.next >= st.end {
		st.done = true
	}
}
