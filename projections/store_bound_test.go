package projections

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/schemas/thread"
)

// TestStoreKeepsTheMostRecentRuns: with MaxRuns the view drops the least
// recently updated run, counts it, and says why a dropped run is missing;
// a run updated again moves to the front.
func TestStoreKeepsTheMostRecentRuns(t *testing.T) {
	t.Parallel()
	s, err := NewStore(StoreConfig{Kafka: []kgo.Opt{kgo.SeedBrokers("127.0.0.1:1")}, MaxRuns: 3})
	if err != nil {
		t.Fatal(err)
	}
	put := func(trace, topic string) {
		t.Helper()
		b, err := EncodeCell(&RunPart{TraceID: trace, LastEvent: "x"})
		if err != nil {
			t.Fatal(err)
		}
		k := Key{Projection: thread.ProjRuns, Source: Source{Topic: topic, Partition: 0}, TraceID: trace}
		s.mu.Lock()
		s.apply([]byte(k.String()), b)
		s.mu.Unlock()
	}
	for i := 1; i <= 3; i++ {
		put(fmt.Sprintf("r%d", i), "spine.control")
	}
	put("r1", "spine.dataplane") // r1 is now the most recent
	put("r4", "spine.control")   // drops r2, the least recent
	put("r5", "spine.control")   // drops r3

	st := s.Status()
	if st.Runs != 3 || st.RunsEvicted != 2 || st.MaxRuns != 3 {
		t.Fatalf("status %+v, want 3 runs, 2 evicted", st)
	}
	for _, trace := range []string{"r1", "r4", "r5"} {
		if _, err := s.RunStatus(trace); err != nil {
			t.Errorf("%s: %v", trace, err)
		}
	}
	r1, _ := s.RunStatus("r1")
	if len(r1.Sources) != 2 {
		t.Errorf("r1 kept %v, want both parts", r1.Sources)
	}
	for _, trace := range []string{"r2", "r3"} {
		_, err := s.RunStatus(trace)
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "SPINE_VIEW_MAX_RUNS") {
			t.Errorf("%s: %v, want not found naming SPINE_VIEW_MAX_RUNS", trace, err)
		}
	}

	// Tombstones remove a run from the view and from the recency list.
	k := Key{Projection: thread.ProjRuns, Source: Source{Topic: "spine.control", Partition: 0}, TraceID: "r4"}
	s.mu.Lock()
	s.apply([]byte(k.String()), nil)
	s.mu.Unlock()
	put("r6", "spine.control")
	if st := s.Status(); st.Runs != 3 || st.RunsEvicted != 2 || s.recent.Len() != 3 {
		t.Fatalf("after a tombstone: status %+v, recency list %d, want 3 runs, 2 evicted", st, s.recent.Len())
	}

	if _, err := NewStore(StoreConfig{Kafka: []kgo.Opt{kgo.SeedBrokers("127.0.0.1:1")}, MaxRuns: -1}); err == nil {
		t.Error("MaxRuns -1 accepted")
	}
}
