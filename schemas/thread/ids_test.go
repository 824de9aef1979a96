package thread_test

import (
	"testing"

	"github.com/spinerun/spine/schemas/thread"
)

func TestIDs(t *testing.T) {
	t.Parallel()
	if thread.ID("t", "ab", "c") == thread.ID("t", "a", "bc") {
		t.Fatal("parts are not separated")
	}
	if a, b := thread.ID("t", "o", "1"), thread.ID("t", "o", "1"); a != b {
		t.Fatal("ids are not deterministic")
	}
	if len(thread.ID("t")) != 32 || len(thread.SpanID("t")) != 16 {
		t.Fatal("id lengths")
	}
	seen := map[string]bool{}
	for i := range uint32(10000) {
		id := thread.ID("trace", "o", thread.Step(i))
		if seen[id] {
			t.Fatalf("collision at step %d", i)
		}
		seen[id] = true
	}
}

func TestActorKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		key   []byte
		actor string
		ok    bool
	}{
		{thread.ActorKey("alice"), "alice", true},
		{thread.ActorKey(""), "", true},
		{[]byte("alice"), "", false},
		{nil, "", false},
	} {
		a, ok := thread.IsActorKey(tc.key)
		if a != tc.actor || ok != tc.ok {
			t.Errorf("IsActorKey(%q) = %q, %v", tc.key, a, ok)
		}
	}
}
