package projections

import (
	"fmt"
	"hash/maphash"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// diffCells compares thousands of cells, one worker per shard, and still
// names every difference — changed, missing live, missing rebuilt — once,
// in key order, whichever shard of the rebuilt cells holds a key, encoded
// or not.
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
	// Two shards, as two fold workers leave them; a part that ended is
	// held encoded, as a fold worker holds it.
	seed := maphash.MakeSeed()
	shards := []*shard{newShard(0, seed), newShard(0, seed)}
	for k, c := range rebuilt {
		sh := shards[len(k)%2]
		if c.(*RunPart).TraceID < "r02000" {
			b, err := EncodeCell(c)
			if err != nil {
				t.Fatal(err)
			}
			sh.putEncoded(k, b)
		} else {
			sh.put(k, c)
		}
	}
	diffs := diffCells(live, shards)
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

// A fold worker's shard holds a run's part encoded once it has ended; an
// event after that (a stale result, a refusal) decodes it back and folds
// it. Its cells equal a plain fold's, byte for byte.
func TestShardFoldEqualsFold(t *testing.T) {
	t.Parallel()
	runs := synth(41, 300, "baseline", schemas.V1, 7)
	recs := interleave(42, runs)
	late := 0
	for i, r := range runs {
		if i%10 != 0 {
			continue
		}
		p := partOf(r.trace)
		at := r.start.Add(time.Minute)
		mk := func(typ schemas.EventType, phase schemas.Phase) *schemas.RuntimeEvent {
			late++
			return &schemas.RuntimeEvent{EventID: fmt.Sprintf("late-%d", late), TraceID: r.trace, SpanID: "late", SchemaVersion: r.version,
				Timestamp: at, RunStarted: r.start, Phase: phase, EventType: typ, State: "completed", Route: r.route}
		}
		recs = append(recs,
			rec{Source{"spine.control", p}, mk("run.stale_event", schemas.PhaseControl)},
			rec{Source{"spine.dataplane", p}, mk("dataplane.started", schemas.PhaseData)})
	}
	var f Folder
	live := encodeAll(t, foldAll(f, recs))

	seed := maphash.MakeSeed()
	sh := newShard(0, seed)
	f2 := Folder{}
	for _, r := range recs {
		sh.fold(&f2, r.src, r.ev, r.ev.SchemaVersion)
	}
	if sh.encodedParts() == 0 {
		t.Fatal("no finished part held encoded")
	}
	if d := diffCells(live, []*shard{sh}); len(d) != 0 {
		t.Fatalf("%d cells differ from a plain fold; first: %s %+v", len(d), d[0].Key, d[0].Fields)
	}
	// The shard's digest, whose ended parts it summed as it went (and took
	// out again when a late event reopened one), is the plain fold's.
	ld := newLiveDigest(seed)
	for k, b := range live {
		ld.add(&kgo.Record{Key: []byte(k), Value: b})
	}
	lsum, ln := ld.sum()
	if rsum, rn, ok := shardsDigest(seed, []*shard{sh}); !ok || rsum != lsum || rn != ln {
		t.Fatalf("digest of the shard: %x over %d cells (ok %v), of a plain fold %x over %d", rsum, rn, ok, lsum, ln)
	}
	// The late events found their parts encoded and folded into them: the
	// control part of a run with a late event counts it.
	k := Key{Projection: thread.ProjRuns, Source: Source{"spine.control", partOf(runs[0].trace)}, TraceID: runs[0].trace}.String()
	var p *RunPart
	if s, ok := sh.runs[k]; ok && s.open == nil {
		c, err := decodeCell(thread.ProjRuns, s.enc)
		if err != nil {
			t.Fatal(err)
		}
		p = c.(*RunPart)
	} else if ok {
		p = s.open
	}
	if p == nil || p.LastEvent != "run.stale_event" {
		t.Fatalf("%s: %+v, want its last event run.stale_event", k, p)
	}
}

// The digests of a slice are equal exactly when its live and rebuilt
// cells are: the live cells as a compacted topic holds them (the last
// record of a key wins, a tombstone removes it), the rebuilt ones in
// shards, encoded or not.
func TestSliceDigests(t *testing.T) {
	t.Parallel()
	seed := maphash.MakeSeed()
	key := func(i int) string {
		return Key{Projection: thread.ProjRuns, Source: Source{Topic: "spine.control", Partition: 1}, TraceID: fmt.Sprintf("r%04d", i)}.String()
	}
	part := func(i int, last string) Cell { return &RunPart{TraceID: fmt.Sprintf("r%04d", i), LastEvent: last} }
	enc := func(c Cell) []byte {
		b, err := EncodeCell(c)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	const n = 1000
	shards := func(change func(i int) Cell) []*shard {
		shs := []*shard{newShard(0, seed), newShard(0, seed)}
		for i := range n {
			c := part(i, "run.completed")
			if change != nil {
				if c = change(i); c == nil {
					continue
				}
			}
			if i%3 == 0 {
				shs[i%2].putEncoded(key(i), enc(c))
			} else {
				shs[i%2].put(key(i), c)
			}
		}
		return shs
	}
	live := newLiveDigest(seed)
	for i := range n {
		// An older cell of the key first, and a key that was deleted.
		live.add(&kgo.Record{Key: []byte(key(i)), Value: enc(part(i, "run.started"))})
		live.add(&kgo.Record{Key: []byte(key(i)), Value: enc(part(i, "run.completed"))})
		live.add(&kgo.Record{Key: []byte(key(n + i)), Value: enc(part(n+i, "run.completed"))})
		live.add(&kgo.Record{Key: []byte(key(n + i))})
	}
	lsum, ln := live.sum()
	if ln != n {
		t.Fatalf("live digest holds %d cells, want %d", ln, n)
	}
	same := func(shs []*shard) bool {
		rsum, rn, ok := shardsDigest(seed, shs)
		return ok && rsum == lsum && rn == ln
	}
	if !same(shards(nil)) {
		t.Fatal("equal cells, different digests")
	}
	for name, change := range map[string]func(i int) Cell{
		"one cell changed": func(i int) Cell {
			if i == 500 {
				return part(i, "run.failed")
			}
			return part(i, "run.completed")
		},
		"one cell missing": func(i int) Cell {
			if i == 999 {
				return nil
			}
			return part(i, "run.completed")
		},
		"two cells swapped": func(i int) Cell {
			switch i {
			case 3:
				return part(4, "run.completed")
			case 4:
				return part(3, "run.completed")
			}
			return part(i, "run.completed")
		},
	} {
		if same(shards(change)) {
			t.Errorf("%s: equal digests", name)
		}
	}
	extra := newShard(0, seed)
	extra.put(key(2*n), part(2*n, "run.completed"))
	if same(append(shards(nil), extra)) {
		t.Error("one cell more: equal digests")
	}
}

// put adds a cell to a shard (a run part open, any other cell as an
// aggregate); putEncoded adds an ended run part's bytes, as sh.fold holds
// them; encodedParts counts those.
func (sh *shard) put(k string, c Cell) {
	if p, ok := c.(*RunPart); ok {
		sh.runs[k] = runSlot{key: k, open: p}
		return
	}
	sh.agg[k] = c
}

func (sh *shard) putEncoded(k string, b []byte) {
	sh.runs[k] = runSlot{key: k, enc: b}
	sh.doneSum += cellHash(sh.seed, k, b)
}

func (sh *shard) encodedParts() (n int) {
	for _, s := range sh.runs {
		if s.open == nil {
			n++
		}
	}
	return n
}
