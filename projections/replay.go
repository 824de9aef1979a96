package projections

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

	rebuilt Cells
}

// Rebuilt returns the cells the replay rebuilt (its fresh namespace).
func (r *ReplayReport) Rebuilt() Cells { return r.rebuilt }

// Replay rebuilds every projection from the thread, from offset zero, into
// a fresh in-memory namespace, and compares it with the live projection
// topics. It folds recorded events only and calls no executor. To compare
// like with like it folds each source partition exactly up to the offsets
// the live projections group has committed, taking the live cells at a
// moment those offsets hold still. It retries while the live runner moves;
// source partitions that never hold still are left out of the comparison
// and listed in ReplayReport.Skipped.
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

	// The thread is folded up to the offsets the projections group has
	// committed now, while the live cells are read: on a quiet stack (the
	// usual case, and always under spine verify) the snapshot holds at
	// these offsets, and the two long reads overlap. If it does not, that
	// fold is dropped and the thread folded again to the snapshot's.
	guess, err := groupOffsets(ctx, adm, cfg)
	if err != nil {
		return nil, err
	}
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	spec := make(chan *threadFold, 1)
	specFold := newThreadFold(guess)
	stop := progress(ctx, cfg, specFold.total, &specFold.pos, &specFold.records)
	go func() { spec <- specFold.run(sctx, cfg) }()

	offsets, live, moving, err := liveSnapshot(ctx, adm, cfg, log)
	if err != nil {
		scancel()
		<-spec
		stop()
		return nil, err
	}
	log.Info("replay: live projections read", "cells", len(live), "took", time.Since(start).Round(time.Millisecond))

	// The thread must still start at zero where there is something to fold.
	var srcTopics []string
	for _, t := range SourceTopics(cfg.Layout) {
		srcTopics = append(srcTopics, string(t))
	}
	_, starts, err := endOffsets(ctx, adm, srcTopics, nil)
	if err != nil {
		scancel()
		<-spec
		stop()
		return nil, err
	}
	var trunc []string
	for t, ps := range offsets {
		for p, o := range ps {
			if o > 0 && starts[t][p] > 0 {
				trunc = append(trunc, fmt.Sprintf("%s/%d starts at %d", t, p, starts[t][p]))
			}
		}
	}
	if len(trunc) > 0 {
		scancel()
		<-spec
		stop()
		sort.Strings(trunc)
		return nil, fmt.Errorf("replay: %w: %s (raise SPINE_THREAD_RETENTION)", ErrThreadTruncated, strings.Join(trunc, ", "))
	}

	rep := &ReplayReport{Offsets: offsets, LiveCells: map[string]int{}, RebuiltCells: map[string]int{}}
	var tf *threadFold
	if sameOffsets(guess, offsets) {
		tf = <-spec
	} else {
		log.Info("replay: the live projections moved while the thread was folded; folding it again to the snapshot's offsets")
		scancel()
		<-spec
		stop()
		tf = newThreadFold(offsets)
		stop = progress(ctx, cfg, tf.total, &tf.pos, &tf.records)
		tf = tf.run(ctx, cfg)
	}
	tf.pos.Store(tf.total)
	stop()
	rep.Records, rep.DeadLettered = atomic.LoadInt64(&tf.records), atomic.LoadInt64(&tf.deadLettered)
	if tf.err != nil {
		return nil, fmt.Errorf("replay: read the thread: %w", tf.err)
	}
	rebuilt := tf.cells

	log.Info("replay: thread folded", "records", rep.Records, "cells", len(rebuilt), "took", time.Since(start).Round(time.Millisecond))
	rep.rebuilt = rebuilt
	if len(moving) > 0 {
		// Leave out the cells of source partitions that kept moving.
		for s := range moving {
			rep.Skipped = append(rep.Skipped, s.String())
		}
		sort.Strings(rep.Skipped)
		keep := func(k string) bool {
			kk, err := ParseKey(k)
			return err != nil || !moving[kk.Source]
		}
		live = maps.Collect(func(yield func(string, []byte) bool) {
			for k, v := range live {
				if keep(k) && !yield(k, v) {
					return
				}
			}
		})
		cmp := Cells{}
		for k, c := range rebuilt {
			if keep(k) {
				cmp[k] = c
			}
		}
		rebuilt = cmp
	}
	rep.Diffs = diffCells(live, rebuilt)
	log.Info("replay: cells compared", "diffs", len(rep.Diffs), "took", time.Since(start).Round(time.Millisecond))
	for k := range live {
		if kk, err := ParseKey(k); err == nil {
			rep.LiveCells[kk.Projection]++
		}
	}
	for _, c := range rebuilt {
		rep.RebuiltCells[c.Projection()]++
	}
	rep.Equal = len(rep.Diffs) == 0
	rep.Took = time.Since(start)
	return rep, nil
}

// threadFold is one fold of the thread up to offsets.
type threadFold struct {
	offsets               partOffsets
	total                 int64
	pos                   atomic.Int64
	records, deadLettered int64
	cells                 Cells
	err                   error
}

func newThreadFold(offsets partOffsets) *threadFold {
	return &threadFold{offsets: offsets, total: offsets.total()}
}

// run reads the thread up to f.offsets and folds it. Decoding is most of a
// replay's work: the records are decoded and folded by one worker per CPU,
// each source partition by one worker in offset order. Every cell's key
// names its source partition, so the workers' cells never meet.
func (f *threadFold) run(ctx context.Context, cfg ReplayConfig) *threadFold {
	positions := partOffsets{}
	folds := newParallelFold(ctx, cfg, runtime.GOMAXPROCS(0), f.total, &f.records, &f.deadLettered)
	err := readUntil(ctx, cfg.Kafka, f.offsets, time.Minute, func(rec *kgo.Record) error {
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

// progress prints "replay: read N records, offset P / T (x%)" every
// interval until stop is called, and once more at the end.
func progress(ctx context.Context, cfg ReplayConfig, total int64, pos *atomic.Int64, records *int64) func() {
	if cfg.Progress == nil {
		return func() {}
	}
	every := cfg.ProgressEvery
	if every <= 0 {
		every = time.Second
	}
	print := func() {
		p := pos.Load()
		pct := 100.0
		if total > 0 {
			pct = 100 * float64(p) / float64(total)
		}
		fmt.Fprintf(cfg.Progress, "replay: %d records read, offset %d / %d (%.1f%%)\n", atomic.LoadInt64(records), p, total, pct)
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
	return func() { close(done); <-finished }
}

// groupOffsets returns the offsets the projections group has committed on
// the source topics.
func groupOffsets(ctx context.Context, adm *kadm.Client, cfg ReplayConfig) (partOffsets, error) {
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
		if _, ok := out[o.Topic]; ok && o.Err == nil && o.At >= 0 {
			out[o.Topic][o.Partition] = o.At
		}
	})
	return out, nil
}

// snapshotAttempts bounds the tries for a snapshot during which no source
// partition moved; the last try accepts the partitions that held still.
const snapshotAttempts = 8

// liveSnapshot reads the live projection cells at a moment when the
// projections group's committed offsets hold still. If some source
// partitions keep moving (say the canary analysis publishing while the
// stack runs), the last attempt returns them in moving: their cells are not
// comparable and the caller leaves them out.
func liveSnapshot(ctx context.Context, adm *kadm.Client, cfg ReplayConfig, log *slog.Logger) (partOffsets, map[string][]byte, map[Source]bool, error) {
	var projTopics []string
	for _, n := range thread.ProjectionNames {
		projTopics = append(projTopics, string(cfg.Layout.Projection(n)))
	}
	fetch := func() (partOffsets, error) { return groupOffsets(ctx, adm, cfg) }
	for attempt := range snapshotAttempts {
		if attempt > 0 {
			log.Info("live projections moved while reading them; trying again", "attempt", attempt)
			select {
			case <-ctx.Done():
				return nil, nil, nil, ctx.Err()
			case <-time.After(500 * time.Millisecond):
			}
		}
		before, err := fetch()
		if err != nil {
			return nil, nil, nil, err
		}
		ends, starts, err := endOffsets(ctx, adm, projTopics, nil)
		if err != nil {
			return nil, nil, nil, err
		}
		for t, ps := range ends {
			for p, o := range ps {
				if starts[t][p] >= o {
					ends[t][p] = 0
				}
			}
		}
		live := map[string][]byte{}
		if err := readUntil(ctx, cfg.Kafka, ends, time.Minute, func(r *kgo.Record) error {
			if r.Value == nil {
				delete(live, string(r.Key))
			} else {
				live[string(r.Key)] = r.Value
			}
			return nil
		}); err != nil {
			return nil, nil, nil, fmt.Errorf("read live projections: %w", err)
		}
		after, err := fetch()
		if err != nil {
			return nil, nil, nil, err
		}
		moving := movingSources(before, after, cfg.Layout.Prefix)
		if len(moving) == 0 || attempt == snapshotAttempts-1 {
			return after, live, moving, nil
		}
	}
	panic("unreachable")
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

// diffCells compares live encoded cells with rebuilt ones and returns the
// differences in key order.
func diffCells(live map[string][]byte, rebuilt Cells) []CellDiff {
	// Every key once, unsorted: sorting millions of keys cost more than
	// comparing them; only the (few) differences are sorted.
	keys := make([]string, 0, max(len(live), len(rebuilt)))
	for k := range live {
		keys = append(keys, k)
	}
	for k := range rebuilt {
		if _, ok := live[k]; !ok {
			keys = append(keys, k)
		}
	}
	// Encoding every rebuilt cell is most of the comparison's work: the
	// keys are compared in one chunk per CPU.
	n := min(runtime.GOMAXPROCS(0), max(1, len(keys)/1024))
	found := make([][]CellDiff, n)
	var wg sync.WaitGroup
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lo, hi := w*len(keys)/n, (w+1)*len(keys)/n
			var buf []byte
			for _, k := range keys[lo:hi] {
				var d CellDiff
				var ok bool
				if d, ok, buf = diffCell(k, live, rebuilt, buf); ok {
					found[w] = append(found[w], d)
				}
			}
		}()
	}
	wg.Wait()
	diffs := slices.Concat(found...)
	slices.SortFunc(diffs, func(a, b CellDiff) int { return strings.Compare(a.Key, b.Key) })
	return diffs
}

// diffCell compares the cell of key k, live and rebuilt (either may be
// missing), and returns their difference, if any; buf is scratch space,
// returned for the next call.
func diffCell(k string, live map[string][]byte, rebuilt Cells, buf []byte) (CellDiff, bool, []byte) {
	// The common case first: the live cell holds exactly the bytes the
	// rebuilt one encodes to (both written by EncodeCell), so the cells
	// are equal without decoding one and marshalling both. appendCell
	// writes EncodeCell's bytes without its reflection.
	if b, ok := live[k]; ok {
		if c, ok := rebuilt[k]; ok {
			enc, fast := appendCell(buf[:0], c)
			buf = enc
			if !fast {
				enc, _ = EncodeCell(c)
			}
			if bytes.Equal(enc, b) {
				return CellDiff{}, false, buf
			}
		}
	}
	var lj, rj []byte
	if b, ok := live[k]; ok {
		c, err := DecodeCell(k, b)
		if err != nil {
			lj, _ = json.Marshal(map[string]string{"undecodable": err.Error()})
		} else {
			lj, _ = json.Marshal(c)
		}
	}
	if c, ok := rebuilt[k]; ok {
		rj, _ = json.Marshal(c)
	}
	if bytes.Equal(lj, rj) {
		return CellDiff{}, false, buf
	}
	d := CellDiff{Key: k, Live: nullable(lj), Rebuilt: nullable(rj)}
	d.Fields = fieldDiffs(lj, rj)
	return d, true, buf
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
	cells   []Cells
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

func newParallelFold(ctx context.Context, cfg ReplayConfig, n int, records int64, folded, deadLettered *int64) *parallelFold {
	n = max(n, 1)
	hint := int(min(float64(records)*cellsPerRecord/float64(n), 1<<26))
	f := &parallelFold{ctx: ctx, cfg: cfg, workers: make([]chan []*kgo.Record, n), batches: make([][]*kgo.Record, n),
		cells: make([]Cells, n), errs: make([]error, n)}
	for i := range n {
		f.workers[i] = make(chan []*kgo.Record, 4)
		f.cells[i] = make(Cells, hint)
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			folder := Folder{Window: cfg.Window, last: &aggKeys{}}
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
					folder.Fold(f.cells[i], src, ev, writer)
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
// cells, merged, or the first error.
func (f *parallelFold) wait() (Cells, error) {
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
	out := f.cells[0]
	for _, c := range f.cells[1:] {
		maps.Copy(out, c)
	}
	return out, nil
}

// topicHash spreads topics over the workers.
func topicHash(t string) uint32 {
	var h uint32 = 2166136261
	for i := 0; i < len(t); i++ {
		h = (h ^ uint32(t[i])) * 16777619
	}
	return h
}
