package projections

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// ReplayConfig configures Replay.
type ReplayConfig struct {
	// Kafka are the connection options. Required.
	Kafka []kgo.Opt
	// Layout names the thread and projection topics. Required.
	Layout pipeline.Layout
	// Codec decodes thread records. Required.
	Codec pipeline.Codec
	// Window must equal the live runner's (default DefaultWindow).
	Window time.Duration
	// Progress receives progress lines while the thread is read (for
	// example os.Stderr); nil prints none.
	Progress io.Writer
	// ProgressEvery is the interval between progress lines (default 1s).
	ProgressEvery time.Duration
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
	// Tap, when set, receives every record the replay reads from the
	// thread (the source topics), transaction markers included, in offset
	// order per partition, so that another check can share the read. It
	// is called on the reading goroutine: it must hand the record on, not
	// work on it. A slice folded again, because the live projections moved
	// meanwhile, is read again from its start: Tap sees those records
	// twice and must tell by their offsets.
	Tap func(*kgo.Record)
}

// CellDiff is one projection key whose live and rebuilt cells differ.
type CellDiff struct {
	Key string `json:"key"`
	// Live and Rebuilt are the cells as JSON; null when missing.
	Live    json.RawMessage `json:"live"`
	Rebuilt json.RawMessage `json:"rebuilt"`
	// Fields lists the differing JSON paths with both values.
	Fields []FieldDiff `json:"fields"`
}

// FieldDiff is one differing JSON path.
type FieldDiff struct {
	Path    string `json:"path"`
	Live    string `json:"live"`
	Rebuilt string `json:"rebuilt"`
}

// ReplayReport is the result of Replay.
type ReplayReport struct {
	Equal bool `json:"equal"`
	// Records is the number of thread records folded; DeadLettered the
	// undecodable ones skipped (as the live runner dead-lettered them).
	Records      int64 `json:"records"`
	DeadLettered int64 `json:"dead_lettered"`
	// LiveCells and RebuiltCells count the cells on each side, by
	// projection.
	LiveCells    map[string]int `json:"live_cells"`
	RebuiltCells map[string]int `json:"rebuilt_cells"`
	// Offsets are the committed offsets of the projections group the
	// replay folded up to, by topic and partition.
	Offsets map[string]map[int32]int64 `json:"offsets"`
	Diffs   []CellDiff                 `json:"diffs"`
	// Skipped lists source partitions (topic/partition) whose live cells
	// kept changing during every attempt to read them still; their cells
	// were not compared. Empty when the stack was quiet.
	Skipped []string      `json:"skipped_sources,omitempty"`
	Took    time.Duration `json:"took_ns"`
}

// Replay rebuilds every projection from the thread, from offset zero, into
// a fresh in-memory namespace, and compares it with the live projection
// topics. It folds recorded events only and calls no executor. To compare
// like with like it folds each source partition exactly up to the offsets
// the live projections group has committed, taking the live cells at a
// moment those offsets hold still. It retries while the live runner moves;
// source partitions that never hold still are left out of the comparison
// and listed in ReplayReport.Skipped.
//
// It works one partition number at a time: the cells of source partition
// p (of every thread topic) are on partition p of the projection topics,
// so a slice — the live cells of partition p and the thread's partitions p
// folded — is compared whole and dropped before the next. Its memory is a
// slice's, not the thread's.
func Replay(ctx context.Context, cfg ReplayConfig) (*ReplayReport, error) {
	start := time.Now()
	if len(cfg.Kafka) == 0 || cfg.Codec == nil {
		return nil, errors.New("replay: Kafka options and a codec are required")
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cl, err := kgo.NewClient(cfg.Kafka...)
	if err != nil {
		return nil, fmt.Errorf("replay: client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	// The partition numbers of the thread and the projection topics.
	ends, _, err := endOffsets(ctx, adm, append(sourceTopicNames(cfg.Layout), projectionTopicNames(cfg.Layout)...), nil)
	if err != nil {
		return nil, err
	}
	var parts []int32
	for _, ps := range ends {
		for p := range ps {
			if !slices.Contains(parts, p) {
				parts = append(parts, p)
			}
		}
	}
	slices.Sort(parts)
	guess, err := groupOffsets(ctx, adm, cfg, nil)
	if err != nil {
		return nil, err
	}

	rep := &ReplayReport{Offsets: partOffsets{}, LiveCells: map[string]int{}, RebuiltCells: map[string]int{}}
	tally := &replayTally{total: guess.total()}
	stop := progress(ctx, cfg, tally)
	defer stop()
	seed := maphash.MakeSeed()
	for _, p := range parts {
		if err := replaySlice(ctx, adm, cfg, p, seed, tally, rep, log); err != nil {
			return nil, err
		}
	}
	stop()
	slices.SortFunc(rep.Diffs, func(a, b CellDiff) int { return strings.Compare(a.Key, b.Key) })
	sort.Strings(rep.Skipped)
	rep.Records, rep.DeadLettered = tally.records, tally.deadLettered
	rep.Equal = len(rep.Diffs) == 0
	rep.Took = time.Since(start)
	log.Info("replay: cells compared", "partitions", len(parts), "records", rep.Records, "diffs", len(rep.Diffs), "took", rep.Took.Round(time.Millisecond))
	return rep, nil
}

// replaySlice compares partition p of the projection topics with a fold of
// partition p of every thread topic, and adds what it found to rep.
func replaySlice(ctx context.Context, adm *kadm.Client, cfg ReplayConfig, p int32, seed maphash.Seed, tally *replayTally, rep *ReplayReport, log *slog.Logger) error {
	only := func(q int32) bool { return q == p }
	// The thread is folded up to the offsets the projections group has
	// committed now, while the live cells are read: on a quiet stack (the
	// usual case, and always under spine verify) the snapshot holds at
	// these offsets, and the two long reads overlap. If it does not, that
	// fold is dropped and the thread folded again to the snapshot's.
	guess, err := groupOffsets(ctx, adm, cfg, only)
	if err != nil {
		return err
	}
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	spec := make(chan *threadFold, 1)
	specFold := newThreadFold(guess, seed)
	tally.current.Store(specFold)
	go func() { spec <- specFold.run(sctx, cfg) }()
	abandon := func() {
		scancel()
		<-spec
	}

	snap, err := liveSnapshot(ctx, adm, cfg, only, seed, log)
	if err != nil {
		abandon()
		return err
	}
	offsets := snap.offsets

	// The thread must still start at zero where there is something to fold.
	_, starts, err := endOffsets(ctx, adm, sourceTopicNames(cfg.Layout), only)
	if err != nil {
		abandon()
		return err
	}
	var trunc []string
	for t, ps := range offsets {
		for q, o := range ps {
			if o > 0 && starts[t][q] > 0 {
				trunc = append(trunc, fmt.Sprintf("%s/%d starts at %d", t, q, starts[t][q]))
			}
		}
	}
	if len(trunc) > 0 {
		abandon()
		sort.Strings(trunc)
		return fmt.Errorf("replay: %w: %s (raise SPINE_THREAD_RETENTION)", ErrThreadTruncated, strings.Join(trunc, ", "))
	}

	var tf *threadFold
	if sameOffsets(guess, offsets) {
		tf = <-spec
	} else {
		log.Info("replay: the live projections moved while the thread was folded; folding it again to the snapshot's offsets", "partition", p)
		abandon()
		tf = newThreadFold(offsets, seed)
		tally.current.Store(tf)
		tf = tf.run(ctx, cfg)
	}
	tally.add(tf)
	if tf.err != nil {
		return fmt.Errorf("replay: read the thread: %w", tf.err)
	}
	for t, ps := range offsets {
		for q, o := range ps {
			partOffsets(rep.Offsets).set(t, q, o)
		}
	}
	rebuilt := tf.cells
	rebuiltCells := map[string]int{}
	for _, sh := range rebuilt {
		sh.counts(rebuiltCells)
	}

	// Equal digests: every cell is equal, and the live ones are the
	// rebuilt ones, counted already.
	if len(snap.moving) == 0 {
		rsum, rn, ok := shardsDigest(seed, rebuilt)
		if lsum, ln := snap.cells.sum(); ok && rsum == lsum && rn == ln {
			for proj, n := range rebuiltCells {
				rep.LiveCells[proj] += n
				rep.RebuiltCells[proj] += n
			}
			log.Info("replay: partition compared", "partition", p, "records", tf.records, "live_cells", ln, "diffs", 0)
			return nil
		}
	}

	// Otherwise cell by cell, to name the differences.
	snap.cells = nil
	live, err := readLive(ctx, cfg, snap.ends)
	if err != nil {
		return err
	}
	if len(snap.moving) > 0 {
		// Leave out the cells of source partitions that kept moving.
		for s := range snap.moving {
			rep.Skipped = append(rep.Skipped, s.String())
		}
		keep := func(k string) bool {
			kk, err := ParseKey(k)
			return err != nil || !snap.moving[kk.Source]
		}
		maps.DeleteFunc(live, func(k string, _ []byte) bool { return !keep(k) })
		clear(rebuiltCells)
		for _, sh := range rebuilt {
			sh.drop(keep)
			sh.counts(rebuiltCells)
		}
	}
	for proj, n := range rebuiltCells {
		rep.RebuiltCells[proj] += n
	}
	diffs := diffCells(live, rebuilt)
	rep.Diffs = append(rep.Diffs, diffs...)
	for k := range live {
		if kk, err := ParseKey(k); err == nil {
			rep.LiveCells[kk.Projection]++
		}
	}
	log.Info("replay: partition compared", "partition", p, "records", tf.records, "live_cells", len(live), "diffs", len(diffs))
	return nil
}

// replayTally counts a replay's progress over its slices: what the folds
// it kept read, and the fold under way.
type replayTally struct {
	total                      int64
	pos, records, deadLettered int64 // of the folds kept; read by progress
	current                    atomic.Pointer[threadFold]
	mu                         sync.Mutex
}

func (t *replayTally) add(f *threadFold) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.current.Store(nil)
	t.pos += f.total
	t.records += atomic.LoadInt64(&f.records)
	t.deadLettered += atomic.LoadInt64(&f.deadLettered)
}

// read returns the position and the records read so far.
func (t *replayTally) read() (pos, records int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pos, records = t.pos, t.records
	if f := t.current.Load(); f != nil {
		pos += f.pos.Load()
		records += atomic.LoadInt64(&f.records)
	}
	return pos, records
}

// threadFold is one fold of the thread up to offsets.
type threadFold struct {
	offsets               partOffsets
	total                 int64
	pos                   atomic.Int64
	records, deadLettered int64
	cells                 []*shard // one per worker; their keys never meet
	seed                  maphash.Seed
	err                   error
}

func newThreadFold(offsets partOffsets, seed maphash.Seed) *threadFold {
	return &threadFold{offsets: offsets, total: offsets.total(), seed: seed}
}

// run reads the thread up to f.offsets and folds it. Decoding is most of a
// replay's work: the records are decoded and folded by one worker per CPU,
// each source partition by one worker in offset order. Every cell's key
// names its source partition, so the workers' cells never meet.
func (f *threadFold) run(ctx context.Context, cfg ReplayConfig) *threadFold {
	positions := partOffsets{}
	folds := newParallelFold(ctx, cfg, runtime.GOMAXPROCS(0), f.total, f.seed, &f.records, &f.deadLettered)
	err := readRecords(ctx, cfg.Kafka, f.offsets, time.Minute, cfg.Tap != nil, func(rec *kgo.Record) error {
		if cfg.Tap != nil {
			cfg.Tap(rec)
			if rec.Attrs.IsControl() {
				return nil
			}
		}
		prev := positions[rec.Topic][rec.Partition]
		positions.set(rec.Topic, rec.Partition, rec.Offset+1)
		f.pos.Add(rec.Offset + 1 - prev)
		return folds.add(rec)
	})
	f.cells, f.err = folds.wait()
	if err != nil {
		f.err = err
	}
	return f
}

// sameOffsets reports whether a and b list the same offset for every
// partition (a partition at 0 and one not listed are the same).
func sameOffsets(a, b partOffsets) bool {
	for _, x := range []partOffsets{a, b} {
		for t, ps := range x {
			for p, o := range ps {
				if a[t][p] != o || b[t][p] != o {
					return false
				}
			}
		}
	}
	return true
}

// decodeEvent decodes one thread record, retrying transient errors a few
// times (a registry hiccup must not fail a long replay).
func decodeEvent(ctx context.Context, codec pipeline.Codec, rec *kgo.Record) (*schemas.RuntimeEvent, schemas.ContractVersion, error) {
	var err error
	for attempt := range 5 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, 0, ctx.Err()
			case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
			}
		}
		var v any
		var writer schemas.ContractVersion
		v, writer, err = codec.Decode(ctx, pipeline.Topic(rec.Topic), rec.Value)
		if err == nil {
			ev, ok := v.(*schemas.RuntimeEvent)
			if !ok {
				return nil, 0, &pipeline.RejectError{Code: "unexpected_record_type", Reason: fmt.Sprintf("%T", v)}
			}
			return ev, writer, nil
		}
		if pipeline.CodeOf(err) != "" {
			return nil, 0, err
		}
	}
	return nil, 0, fmt.Errorf("decode %s/%d@%d: %w", rec.Topic, rec.Partition, rec.Offset, err)
}

// progress prints "replay: N records read, offset P / T (x%)" every
// interval until stop is called, and once more at the end; stop may be
// called more than once.
func progress(ctx context.Context, cfg ReplayConfig, tally *replayTally) (stop func()) {
	if cfg.Progress == nil {
		return func() {}
	}
	every := cfg.ProgressEvery
	if every <= 0 {
		every = time.Second
	}
	print := func() {
		p, records := tally.read()
		pct := 100.0
		if tally.total > 0 {
			pct = 100 * float64(p) / float64(tally.total)
		}
		fmt.Fprintf(cfg.Progress, "replay: %d records read, offset %d / %d (%.1f%%)\n", records, p, tally.total, pct)
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				print()
				return
			case <-ctx.Done():
				return
			case <-t.C:
				print()
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); <-finished }) }
}

// groupOffsets returns the offsets the projections group has committed on
// the source topics (on the partitions only accepts; nil: all).
func groupOffsets(ctx context.Context, adm *kadm.Client, cfg ReplayConfig, only func(int32) bool) (partOffsets, error) {
	group := cfg.Layout.Group(ProcessorName)
	resp, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return nil, fmt.Errorf("fetch offsets of group %s: %w (is Kafka reachable?)", group, err)
	}
	out := partOffsets{}
	for _, t := range SourceTopics(cfg.Layout) {
		out[string(t)] = map[int32]int64{}
	}
	resp.Each(func(o kadm.OffsetResponse) {
		if _, ok := out[o.Topic]; ok && o.Err == nil && o.At >= 0 && (only == nil || only(o.Partition)) {
			out[o.Topic][o.Partition] = o.At
		}
	})
	return out, nil
}

// snapshotAttempts bounds the tries for a snapshot during which no source
// partition moved; the last try accepts the partitions that held still.
const snapshotAttempts = 8

// liveSnap is the live projection cells of a slice, read while the
// projections group's committed offsets held still.
type liveSnap struct {
	// offsets are the group's committed offsets on the source topics the
	// cells were read at; moving the source partitions that kept moving
	// (their cells are not comparable).
	offsets partOffsets
	moving  map[Source]bool
	// ends are the projection topics' offsets the cells were read up to;
	// cells their digest.
	ends  partOffsets
	cells *liveDigest
}

// liveSnapshot reads the live projection cells (of the partitions only
// accepts) at a moment when the projections group's committed offsets
// (of the same partitions) hold still, into a digest. If some source
// partitions keep moving (say the canary analysis publishing while the
// stack runs), the last attempt returns them in moving: their cells are not
// comparable and the caller leaves them out.
func liveSnapshot(ctx context.Context, adm *kadm.Client, cfg ReplayConfig, only func(int32) bool, seed maphash.Seed, log *slog.Logger) (*liveSnap, error) {
	projTopics := projectionTopicNames(cfg.Layout)
	fetch := func() (partOffsets, error) { return groupOffsets(ctx, adm, cfg, only) }
	for attempt := range snapshotAttempts {
		if attempt > 0 {
			log.Info("live projections moved while reading them; trying again", "attempt", attempt)
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(500 * time.Millisecond):
			}
		}
		before, err := fetch()
		if err != nil {
			return nil, err
		}
		ends, starts, err := endOffsets(ctx, adm, projTopics, only)
		if err != nil {
			return nil, err
		}
		for t, ps := range ends {
			for p, o := range ps {
				if starts[t][p] >= o {
					ends[t][p] = 0
				}
			}
		}
		cells := newLiveDigest(seed)
		if err := readUntil(ctx, cfg.Kafka, ends, time.Minute, func(r *kgo.Record) error {
			cells.add(r)
			return nil
		}); err != nil {
			return nil, fmt.Errorf("read live projections: %w", err)
		}
		after, err := fetch()
		if err != nil {
			return nil, err
		}
		moving := movingSources(before, after, cfg.Layout.Prefix)
		if len(moving) == 0 || attempt == snapshotAttempts-1 {
			return &liveSnap{offsets: after, moving: moving, ends: ends, cells: cells}, nil
		}
	}
	panic("unreachable")
}

// readLive reads the live projection cells up to ends (a snapshot's), by
// key. A compacted topic read again to the same offsets holds the same
// last cell of each key, unless the live runner wrote the key since and
// the broker compacted the older cell away: readLive serves a slice whose
// digests differ, on a stack that should be quiet.
func readLive(ctx context.Context, cfg ReplayConfig, ends partOffsets) (map[string][]byte, error) {
	live := map[string][]byte{}
	if err := readUntil(ctx, cfg.Kafka, ends, time.Minute, func(r *kgo.Record) error {
		if r.Value == nil {
			delete(live, string(r.Key))
		} else {
			live[string(r.Key)] = r.Value
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read live projections: %w", err)
	}
	return live, nil
}

// movingSources lists the source partitions whose committed offset changed
// between a and b.
func movingSources(a, b partOffsets, prefix string) map[Source]bool {
	moving := map[Source]bool{}
	for t, ps := range b {
		for p, o := range ps {
			if a[t][p] != o {
				moving[Source{Topic: strings.TrimPrefix(t, prefix), Partition: p}] = true
			}
		}
	}
	for t, ps := range a {
		for p := range ps {
			if _, ok := b[t][p]; !ok {
				moving[Source{Topic: strings.TrimPrefix(t, prefix), Partition: p}] = true
			}
		}
	}
	return moving
}

// diffCells compares live encoded cells with rebuilt ones (in shards whose
// keys never meet) and returns the differences in key order.
func diffCells(live map[string][]byte, rebuilt []*shard) []CellDiff {
	// One worker per shard (a fold worker's): every rebuilt cell is
	// looked up in the live ones once, and the live keys are walked again
	// only if some had no rebuilt cell. Only the (few) differences are
	// sorted: sorting millions of keys cost more than comparing them.
	found := make([][]CellDiff, len(rebuilt))
	matched := make([]int, len(rebuilt))
	var wg sync.WaitGroup
	for w, sh := range rebuilt {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			sh.each(func(k string, c Cell, b []byte) {
				lb, lok := live[k]
				if lok {
					matched[w]++
				}
				if c == nil {
					if lok && bytes.Equal(b, lb) {
						return
					}
					var err error
					if c, err = decodeCell(thread.ProjRuns, b); err != nil {
						c = nil // cannot be: appendCell wrote it; shown as missing
					}
				} else if lok {
					// The common case first: the live cell holds exactly
					// the bytes the rebuilt one encodes to (both written
					// by EncodeCell), so the cells are equal without
					// decoding one and marshalling both. appendCell
					// writes EncodeCell's bytes without its reflection.
					enc, fast := appendCell(buf[:0], c)
					buf = enc
					if !fast {
						enc, _ = EncodeCell(c)
					}
					if bytes.Equal(enc, lb) {
						return
					}
				}
				if d, ok := diffCell(k, lb, lok, c); ok {
					found[w] = append(found[w], d)
				}
			})
		}()
	}
	wg.Wait()
	diffs := slices.Concat(found...)
	total := 0
	for _, n := range matched {
		total += n
	}
	if total < len(live) {
		for k, lb := range live {
			if !slices.ContainsFunc(rebuilt, func(sh *shard) bool { return sh.has(k) }) {
				if d, ok := diffCell(k, lb, true, nil); ok {
					diffs = append(diffs, d)
				}
			}
		}
	}
	slices.SortFunc(diffs, func(a, b CellDiff) int { return strings.Compare(a.Key, b.Key) })
	return diffs
}

// diffCell compares the live cell lb (if lok) of key k with the rebuilt
// cell c (nil if none), field by field, and returns their difference, if
// any.
func diffCell(k string, lb []byte, lok bool, c Cell) (CellDiff, bool) {
	var lj, rj []byte
	if lok {
		lc, err := DecodeCell(k, lb)
		if err != nil {
			lj, _ = json.Marshal(map[string]string{"undecodable": err.Error()})
		} else {
			lj, _ = json.Marshal(lc)
		}
	}
	if c != nil {
		rj, _ = json.Marshal(c)
	}
	if bytes.Equal(lj, rj) {
		return CellDiff{}, false
	}
	d := CellDiff{Key: k, Live: nullable(lj), Rebuilt: nullable(rj)}
	d.Fields = fieldDiffs(lj, rj)
	return d, true
}

func nullable(b []byte) json.RawMessage {
	if b == nil {
		return json.RawMessage("null")
	}
	return b
}

// fieldDiffs flattens both JSON documents into path → value and lists the
// paths whose values differ.
func fieldDiffs(a, b []byte) []FieldDiff {
	fa, fb := map[string]string{}, map[string]string{}
	flatten(a, fa)
	flatten(b, fb)
	paths := map[string]bool{}
	for p := range fa {
		paths[p] = true
	}
	for p := range fb {
		paths[p] = true
	}
	var out []FieldDiff
	for _, p := range slices.Sorted(maps.Keys(paths)) {
		va, oka := fa[p]
		vb, okb := fb[p]
		if oka && okb && va == vb {
			continue
		}
		if !oka {
			va = "(missing)"
		}
		if !okb {
			vb = "(missing)"
		}
		out = append(out, FieldDiff{Path: p, Live: va, Rebuilt: vb})
	}
	return out
}

func flatten(doc []byte, out map[string]string) {
	if doc == nil {
		return
	}
	var v any
	if err := json.Unmarshal(doc, &v); err != nil {
		out[""] = string(doc)
		return
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				walk(path+"."+k, x)
			}
		case []any:
			for i, x := range v {
				walk(fmt.Sprintf("%s[%d]", path, i), x)
			}
		default:
			b, _ := json.Marshal(v)
			out[path] = string(b)
		}
	}
	walk("", v)
}

// WriteText prints the report for people: "equal" and the totals, or each
// differing key with its differing fields (at most maxDiffs keys; 0 means
// all).
func (r *ReplayReport) WriteText(w io.Writer, maxDiffs int) {
	names := func(m map[string]int) string {
		var parts []string
		for _, n := range thread.ProjectionNames {
			parts = append(parts, fmt.Sprintf("%s=%d", n, m[n]))
		}
		return strings.Join(parts, " ")
	}
	if len(r.Skipped) > 0 {
		fmt.Fprintf(w, "note: %d source partitions kept moving and were not compared: %s (replay again when the stack is quiet)\n",
			len(r.Skipped), strings.Join(r.Skipped, ", "))
	}
	if r.Equal {
		fmt.Fprintf(w, "equal: %d records folded (%d undecodable skipped), cells %s, in %s\n",
			r.Records, r.DeadLettered, names(r.RebuiltCells), r.Took.Round(time.Millisecond))
		return
	}
	fmt.Fprintf(w, "DIFFERENT: %d of the cells differ (live %s; rebuilt %s); %d records folded\n",
		len(r.Diffs), names(r.LiveCells), names(r.RebuiltCells), r.Records)
	for i, d := range r.Diffs {
		if maxDiffs > 0 && i >= maxDiffs {
			fmt.Fprintf(w, "... and %d more (use --max-diffs 0 or --json)\n", len(r.Diffs)-i)
			break
		}
		switch {
		case string(d.Live) == "null":
			fmt.Fprintf(w, "+ %s only in the rebuilt projections\n", d.Key)
		case string(d.Rebuilt) == "null":
			fmt.Fprintf(w, "- %s only in the live projections\n", d.Key)
		default:
			fmt.Fprintf(w, "~ %s\n", d.Key)
		}
		for j, f := range d.Fields {
			if j >= 10 {
				fmt.Fprintf(w, "    ... %d more fields\n", len(d.Fields)-j)
				break
			}
			fmt.Fprintf(w, "    %s: live %s, rebuilt %s\n", f.Path, f.Live, f.Rebuilt)
		}
	}
}

// parallelFold decodes and folds records on n workers, each source
// partition on one of them, in the order added.
type parallelFold struct {
	ctx     context.Context
	cfg     ReplayConfig
	workers []chan []*kgo.Record
	batches [][]*kgo.Record
	shards  []*shard
	errs    []error
	wg      sync.WaitGroup
	failed  atomic.Bool
}

// foldBatch is how many records a worker is handed at once.
const foldBatch = 256

// cellsPerRecord guesses how many cells a thread's records fold into (a
// golden run's 13 thread records make 5 cells), to size the workers' maps
// up front: growing a map of millions of cells rehashes every key again.
const cellsPerRecord = 0.4

func newParallelFold(ctx context.Context, cfg ReplayConfig, n int, records int64, seed maphash.Seed, folded, deadLettered *int64) *parallelFold {
	n = max(n, 1)
	hint := int(min(float64(records)*cellsPerRecord/float64(n), 1<<26))
	f := &parallelFold{ctx: ctx, cfg: cfg, workers: make([]chan []*kgo.Record, n), batches: make([][]*kgo.Record, n),
		shards: make([]*shard, n), errs: make([]error, n)}
	for i := range n {
		f.workers[i] = make(chan []*kgo.Record, 4)
		sh := newShard(hint, seed)
		f.shards[i] = sh
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			folder := Folder{Window: cfg.Window, last: &aggKeys{}, canon: map[string]string{}}
			for batch := range f.workers[i] {
				if f.errs[i] != nil {
					continue // drain
				}
				for _, rec := range batch {
					ev, writer, err := decodeEvent(ctx, cfg.Codec, rec)
					if err != nil {
						if pipeline.CodeOf(err) != "" {
							atomic.AddInt64(deadLettered, 1)
							continue
						}
						f.errs[i] = err
						f.failed.Store(true)
						break
					}
					src := Source{Topic: strings.TrimPrefix(rec.Topic, cfg.Layout.Prefix), Partition: rec.Partition}
					sh.fold(&folder, src, ev, writer)
					atomic.AddInt64(folded, 1)
				}
			}
		}()
	}
	return f
}

// add hands rec to the worker of its source partition; it fails once a
// worker has failed.
func (f *parallelFold) add(rec *kgo.Record) error {
	if f.failed.Load() {
		return errors.New("a record could not be decoded")
	}
	i := int((topicHash(rec.Topic) ^ uint32(rec.Partition)*2654435761) % uint32(len(f.workers)))
	f.batches[i] = append(f.batches[i], rec)
	if len(f.batches[i]) >= foldBatch {
		select {
		case f.workers[i] <- f.batches[i]:
		case <-f.ctx.Done():
			return f.ctx.Err()
		}
		f.batches[i] = make([]*kgo.Record, 0, foldBatch)
	}
	return nil
}

// wait hands over what is left, waits for the workers and returns their
// cells (one map per worker, whose keys never meet: merging them would
// hash every key again), or the first error.
func (f *parallelFold) wait() ([]*shard, error) {
	for i, b := range f.batches {
		if len(b) > 0 {
			f.workers[i] <- b
		}
		close(f.workers[i])
	}
	f.wg.Wait()
	if err := errors.Join(f.errs...); err != nil {
		return nil, err
	}
	return f.shards, nil
}

// topicHash spreads topics over the workers.
func topicHash(t string) uint32 {
	var h uint32 = 2166136261
	for i := 0; i < len(t); i++ {
		h = (h ^ uint32(t[i])) * 16777619
	}
	return h
}

// shard is what one fold worker rebuilt: the aggregate cells, and the
// run parts, each still open (decoded) or, once it has ended
// (runFinished), encoded as appendCell encodes it. A finished part is
// encoded once, while it is still in the cache, and compared as bytes;
// held encoded it is a fraction of its decoded size and nothing for the
// collector to scan. An event for a finished part (a stale result, a
// refusal) decodes it back first. A run's part is found with one lookup
// of its key, built without allocating.
type shard struct {
	agg  Cells
	runs map[string]runSlot
	// doneSum is the sum of the cellHash of the parts held encoded, with
	// seed: the digest's share of the ended parts, summed while they were
	// in the cache.
	seed    maphash.Seed
	doneSum uint64
	arena   []byte // backs the encoded parts
	enc     []byte // scratch
	// key builds a run key; prefix is its "runs|<topic>|<partition>|" for
	// src.
	key    []byte
	src    Source
	prefix string
}

// runSlot is one run part of a shard: open, or ended and encoded. It holds
// its own key, so that it is stored again without building the key.
type runSlot struct {
	key  string
	open *RunPart
	enc  []byte
}

func newShard(hint int, seed maphash.Seed) *shard {
	return &shard{agg: Cells{}, runs: make(map[string]runSlot, hint), seed: seed}
}

// each calls fn with every cell: c when open, enc when held encoded.
func (sh *shard) each(fn func(k string, c Cell, enc []byte)) {
	for k, c := range sh.agg {
		fn(k, c, nil)
	}
	for k, s := range sh.runs {
		if s.open != nil {
			fn(k, s.open, nil)
		} else {
			fn(k, nil, s.enc)
		}
	}
}

// eachOpen calls fn with every cell not held encoded.
func (sh *shard) eachOpen(fn func(k string, c Cell)) {
	sh.each(func(k string, c Cell, _ []byte) {
		if c != nil {
			fn(k, c)
		}
	})
}

// counts adds the number of cells by projection to into.
func (sh *shard) counts(into map[string]int) {
	for _, c := range sh.agg {
		into[c.Projection()]++
	}
	into[thread.ProjRuns] += len(sh.runs)
}

// drop removes the cells whose keys keep refuses.
func (sh *shard) drop(keep func(k string) bool) {
	maps.DeleteFunc(sh.agg, func(k string, _ Cell) bool { return !keep(k) })
	maps.DeleteFunc(sh.runs, func(k string, s runSlot) bool {
		if keep(k) {
			return false
		}
		if s.open == nil {
			sh.doneSum -= cellHash(sh.seed, k, s.enc)
		}
		return true
	})
}

// has reports whether the shard rebuilt a cell of key k.
func (sh *shard) has(k string) bool {
	if _, ok := sh.runs[k]; ok {
		return true
	}
	_, ok := sh.agg[k]
	return ok
}

// arenaChunk is the size of the blocks finished parts are copied into.
const arenaChunk = 1 << 20

// fold folds ev read from src, as Folder.Fold into a single Cells would.
func (sh *shard) fold(f *Folder, src Source, ev *schemas.RuntimeEvent, writer schemas.ContractVersion) {
	if ev == nil {
		return
	}
	plan, ver, route, run := f.planAgg(src, ev, writer)
	if run {
		if src != sh.src || sh.prefix == "" {
			sh.src, sh.prefix = src, Key{Projection: thread.ProjRuns, Source: src}.String()
		}
		sh.key = append(append(sh.key[:0], sh.prefix...), ev.TraceID...)
		slot, ok := sh.runs[string(sh.key)]
		switch {
		case !ok:
			slot = runSlot{key: string(sh.key), open: &RunPart{TraceID: strings.Clone(ev.TraceID)}}
		case slot.open == nil:
			// An event after the part ended: decoded back first.
			c, err := decodeCell(thread.ProjRuns, slot.enc)
			p, _ := c.(*RunPart)
			if err != nil || p == nil {
				p = &RunPart{TraceID: strings.Clone(ev.TraceID)} // cannot be: appendCell wrote it
			}
			sh.doneSum -= cellHash(sh.seed, slot.key, slot.enc)
			slot = runSlot{key: slot.key, open: p}
		}
		p := slot.open
		f.foldRun(p, src, ev, ver, route)
		if runFinished(src.Topic, p) {
			enc, exact := appendCell(sh.enc[:0], p)
			sh.enc = enc[:0]
			if exact { // else it stays decoded, compared through EncodeCell
				if len(enc) > cap(sh.arena)-len(sh.arena) {
					sh.arena = make([]byte, 0, max(arenaChunk, len(enc)))
				}
				at := len(sh.arena)
				sh.arena = append(sh.arena, enc...)
				slot = runSlot{key: slot.key, enc: sh.arena[at:len(sh.arena):len(sh.arena)]}
				sh.doneSum += cellHash(sh.seed, slot.key, slot.enc)
			}
		}
		sh.runs[slot.key] = slot
	}
	f.foldAgg(sh.agg, plan, src, ev)
}
