package projections

import (
	"fmt"
	"slices"
	"testing"

	"github.com/spinerun/spine/schemas/thread"
)

// diffCells compares thousands of cells in chunks, one per CPU, and still
// names every difference — changed, missing live, missing rebuilt — once,
// in key order.
func TestDiffCellsManyCells(t *testing.T) {
	t.Parallel()
	live, rebuilt := map[string][]byte{}, Cells{}
	key := func(i int) string {
		return Key{Projection: thread.ProjRuns, Source: Source{Topic: "spine.control", Partition: int32(i % 6)}, TraceID: fmt.Sprintf("r%05d", i)}.String()
	}
	for i := range 5000 {
		c := &RunPart{TraceID: fmt.Sprintf("r%05d", i), LastEvent: "run.completed"}
		b, err := EncodeCell(c)
		if err != nil {
			t.Fatal(err)
		}
		live[key(i)] = b
		rebuilt[key(i)] = c
	}
	rebuilt[key(10)] = &RunPart{TraceID: "r00010", LastEvent: "run.failed"} // changed
	delete(live, key(2500))                                                 // missing live
	delete(rebuilt, key(4999))                                              // missing rebuilt
	diffs := diffCells(live, rebuilt)
	want := []string{key(10), key(2500), key(4999)}
	slices.Sort(want)
	if len(diffs) != len(want) {
		t.Fatalf("%d diffs, want %d: %+v", len(diffs), len(want), diffs)
	}
	for i, d := range diffs {
		if d.Key != want[i] {
			t.Errorf("diff %d is %s, want %s", i, d.Key, want[i])
		}
	}
	for _, d := range diffs {
		if (d.Key == key(2500) && string(d.Live) != "null") || (d.Key == key(4999) && string(d.Rebuilt) != "null") {
			t.Errorf("%s: a missing side is not null: live %s, rebuilt %s", d.Key, d.Live, d.Rebuilt)
		}
	}
}
