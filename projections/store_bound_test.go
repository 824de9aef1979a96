package projections

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/internal/spinetest"
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

// TestStoreReadsTheTailOfTheRuns: with MaxRuns, a starting view reads only
// the tail of each partition of the runs topic, and holds the same latest
// runs, each whole, as a read of the whole topic would.
func TestStoreReadsTheTailOfTheRuns(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const maxRuns = 3
	probe, err := NewStore(StoreConfig{Kafka: []kgo.Opt{kgo.SeedBrokers(e.brokers...)}, Layout: e.layout, MaxRuns: maxRuns})
	if err != nil {
		t.Fatal(err)
	}
	tail := probe.runsTail(testPartitions)
	if tail <= 0 {
		t.Fatalf("runsTail = %d", tail)
	}
	// Runs of two parts each, all on partition 0: more than twice the tail.
	runs := int(tail) + 10
	topic := string(e.layout.Projection(thread.ProjRuns))
	var recs []*kgo.Record
	for i := range runs {
		trace := fmt.Sprintf("r%04d", i)
		for _, src := range []string{"spine.control", "spine.dataplane"} {
			b, err := EncodeCell(&RunPart{TraceID: trace, LastEvent: "x"})
			if err != nil {
				t.Fatal(err)
			}
			k := Key{Projection: thread.ProjRuns, Source: Source{Topic: src, Partition: 0}, TraceID: trace}
			recs = append(recs, &kgo.Record{Topic: topic, Partition: 0, Key: []byte(k.String()), Value: b})
		}
	}
	if err := e.cl.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	s, err := NewStore(StoreConfig{Kafka: []kgo.Opt{kgo.SeedBrokers(e.brokers...)}, Layout: e.layout, MaxRuns: maxRuns})
	if err != nil {
		t.Fatal(err)
	}
	spinetest.Start(t, "store", s.Run)
	deadline := time.Now().Add(30 * time.Second)
	for !s.Status().Ready {
		if time.Now().After(deadline) {
			t.Fatalf("the view was not ready within 30s: %+v", s.Status())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := s.Status(); st.Records != tail || st.Runs != maxRuns {
		t.Errorf("status %+v: want the tail's %d records of %d applied, %d runs", st, tail, len(recs), maxRuns)
	}
	// A run before the tail was never read: the answer says where it is.
	if _, err := s.RunStatus("r0000"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "spine trace r0000") {
		t.Errorf("run r0000, before the tail: %v, want not found naming spine trace", err)
	}
	for i := runs - maxRuns; i < runs; i++ {
		r, err := s.RunStatus(fmt.Sprintf("r%04d", i))
		if err != nil || len(r.Sources) != 2 {
			t.Errorf("run r%04d: %v, %v: want it whole", i, r.Sources, err)
		}
	}
}
