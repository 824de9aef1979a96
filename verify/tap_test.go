package verify

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A slice the replay folds again is read again from its start: the tap
// applies each offset once, stops at the planned end, and leaves the
// partition done.
func TestTapAppliesEachOffsetOnce(t *testing.T) {
	t.Parallel()
	v := newVerifier(Config{Now: time.Now})
	ti := &topicInfo{name: "spine.control", short: "control", kind: kindControl, parts: []*partState{{from: 2, end: 10}}}
	v.byName[ti.name] = ti
	tp := v.newTap([]string{ti.name, "spine.intents"})
	if len(tp.topics) != 1 || tp.topics[0] != ti {
		t.Fatalf("tap topics %v, want the control topic alone", tp.topics)
	}
	feed := func(from, to int64) {
		for o := from; o < to; o++ {
			// Plain records on an internal topic: counted as foreign,
			// nothing to decode.
			tp.add(&kgo.Record{Topic: ti.name, Partition: 0, Offset: o, Value: []byte("x")})
		}
	}
	feed(0, 6)  // a fold abandoned midway
	feed(0, 14) // the slice folded again, past the planned end
	tp.add(&kgo.Record{Topic: "spine.other", Offset: 3})
	tp.close()
	st := ti.parts[0]
	if ti.records != 8 || v.rep.Foreign["control"] != 8 || v.rep.SharedRead != 8 || !st.done || st.next != 10 {
		t.Fatalf("records %d, foreign %v, shared %d, done %v, next %d; want 8 of offsets 2-9 once, done at 10",
			ti.records, v.rep.Foreign, v.rep.SharedRead, st.done, st.next)
	}
}
