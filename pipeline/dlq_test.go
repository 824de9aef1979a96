package pipeline

import (
	"errors"
	"fmt"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"
)

type testCoded struct{ code string }

func (e *testCoded) Error() string     { return "coded " + e.code }
func (e *testCoded) ErrorCode() string { return e.code }

func TestDeadLetterRecord(t *testing.T) {
	t.Parallel()
	ts := time.UnixMilli(1_700_000_000_123)
	orig := &kgo.Record{Topic: "spine.intents", Partition: 7, Offset: 1 << 40, Timestamp: ts,
		Key: []byte("trace-1"), Value: []byte{0, 0, 0, 0, 9, 0xff},
		Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte("00-abc")}, {Key: HeaderErrorCode, Value: []byte("stale")}}}
	tests := []struct {
		name     string
		err      error
		wantCode string
		wantType string
	}{
		{"reject", fmt.Errorf("handle: %w", Reject("illegal_transition", "from %s", "completed")), "illegal_transition", "*pipeline.RejectError"},
		{"coded decode", fmt.Errorf("decode: %w", &testCoded{"bad_magic"}), "bad_magic", "*pipeline.testCoded"},
		{"panic", &PanicError{Value: "boom"}, "handler_panic", "*pipeline.PanicError"},
		{"uncoded", errors.New("???"), "unknown", "*errors.errorString"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := DeadLetterRecord("spine.dlq", "spine-orchestrator", "orchestrator", orig, tc.err)
			if r.Topic != "spine.dlq" || string(r.Key) != "trace-1" || string(r.Value) != string(orig.Value) {
				t.Fatalf("record %s %q %q: want original key and value on spine.dlq", r.Topic, r.Key, r.Value)
			}
			d, err := ParseDeadLetter(r)
			if err != nil {
				t.Fatal(err)
			}
			want := DeadLetter{Topic: "spine.intents", Partition: 7, Offset: 1 << 40, Timestamp: ts, Group: "spine-orchestrator",
				Message: tc.err.Error(), ErrorType: tc.wantType, Code: tc.wantCode, Processor: "orchestrator", Key: orig.Key, Value: orig.Value}
			if fmt.Sprint(d) != fmt.Sprint(want) {
				t.Errorf("dead letter\n got %+v\nwant %+v", d, want)
			}
			var codes, tp int
			for _, h := range r.Headers {
				switch h.Key {
				case HeaderErrorCode:
					codes++
				case "traceparent":
					tp++
				}
			}
			if codes != 1 || tp != 1 {
				t.Errorf("headers %v: want the original traceparent kept and exactly one %s", r.Headers, HeaderErrorCode)
			}
		})
	}
}

func TestParseDeadLetterRejects(t *testing.T) {
	t.Parallel()
	if _, err := ParseDeadLetter(&kgo.Record{}); !errors.Is(err, ErrNotDeadLetter) {
		t.Errorf("plain record: err %v, want ErrNotDeadLetter", err)
	}
	r := &kgo.Record{Headers: []kgo.RecordHeader{{Key: HeaderDLTOriginalTopic, Value: []byte("t")}, {Key: HeaderDLTOriginalPartition, Value: []byte("12")}}}
	if _, err := ParseDeadLetter(r); err == nil {
		t.Error("2-byte partition header accepted")
	}
}

// FuzzDeadLetter: any poison record and error message round-trip through
// the dead-letter headers, the message header is valid UTF-8 and bounded,
// and ParseDeadLetter never panics on arbitrary headers.
func FuzzDeadLetter(f *testing.F) {
	f.Add([]byte("k"), []byte{0, 1, 2}, "spine.intents", int32(3), int64(42), "bad magic \xff", []byte{1, 2, 3, 4})
	f.Add([]byte(nil), []byte(nil), "", int32(-1), int64(-1), "", []byte(nil))
	f.Fuzz(func(t *testing.T, key, value []byte, topic string, part int32, off int64, msg string, raw []byte) {
		orig := &kgo.Record{Topic: topic, Partition: part, Offset: off, Key: key, Value: value, Timestamp: time.UnixMilli(off)}
		r := DeadLetterRecord("dlq", "g", "p", orig, &testCoded{code: "c"})
		d, err := ParseDeadLetter(r)
		if err != nil {
			t.Fatal(err)
		}
		if d.Topic != Topic(topic) || d.Partition != part || d.Offset != off || string(d.Key) != string(key) || string(d.Value) != string(value) {
			t.Fatalf("round trip: %+v", d)
		}
		long := DeadLetterRecord("dlq", "g", "p", orig, errors.New(msg+msg+msg))
		for _, h := range long.Headers {
			if h.Key == HeaderDLTExceptionMessage && (!utf8.Valid(h.Value) || len(h.Value) > maxDLQMessage) {
				t.Fatalf("message header %q: invalid or over %d bytes", h.Value, maxDLQMessage)
			}
		}
		_, _ = ParseDeadLetter(&kgo.Record{Headers: []kgo.RecordHeader{
			{Key: HeaderDLTOriginalTopic, Value: raw}, {Key: HeaderDLTOriginalPartition, Value: raw},
			{Key: HeaderDLTOriginalOffset, Value: raw}, {Key: HeaderDLTOriginalTimestamp, Value: raw},
		}})
	})
}

func TestTimerHeapPopDue(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1000, 0)
	var h timerHeap
	h.add(t0.Add(3*time.Second), "c")
	h.add(t0.Add(time.Second), "a")
	h.add(t0.Add(2*time.Second), "b")
	h.add(t0.Add(time.Second/2), "a") // a stale duplicate of a
	due := h.popDue(t0.Add(2 * time.Second))
	var keys []string
	for _, d := range due {
		keys = append(keys, d.key)
	}
	if fmt.Sprint(keys) != "[a b]" {
		t.Errorf("due %v, want [a b] (each key once, by deadline)", keys)
	}
	if at, ok := h.next(); !ok || !at.Equal(t0.Add(3*time.Second)) || h.Len() != 1 {
		t.Errorf("left %v, want only c", h)
	}
}
