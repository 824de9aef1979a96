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
	"slices"
	"sort"
	"strings"
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

	offsets, live, moving, err := liveSnapshot(ctx, adm, cfg, log)
	if err != nil {
		return nil, err
	}

	// The thread must still start at zero where there is something to fold.
	var srcTopics []string
	for _, t := range SourceTopics(cfg.Layout) {
		srcTopics = append(srcTopics, string(t))
	}
	_, starts, err := endOffsets(ctx, adm, srcTopics, nil)
	if err != nil {
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
		sort.Strings(trunc)
		return nil, fmt.Errorf("replay: %w: %s (raise SPINE_THREAD_RETENTION)", ErrThreadTruncated, strings.Join(trunc, ", "))
	}

	rep := &ReplayReport{Offsets: offsets, LiveCells: map[string]int{}, RebuiltCells: map[string]int{}}
	folder := Folder{Window: cfg.Window}
	rebuilt := Cells{}
	total := partOffsets(offsets).total()
	var pos atomic.Int64
	positions := partOffsets{}
	stop := progress(ctx, cfg, total, &pos, &rep.Records)
	err = readUntil(ctx, cfg.Kafka, offsets, time.Minute, func(rec *kgo.Record) error {
		prev := positions[rec.Topic][rec.Partition]
		positions.set(rec.Topic, rec.Partition, rec.Offset+1)
		pos.Add(rec.Offset + 1 - prev)
		ev, writer, derr := decodeEvent(ctx, cfg.Codec, rec)
		if derr != nil {
			if pipeline.CodeOf(derr) != "" {
				rep.DeadLettered++
				return nil
			}
			return derr
		}
		src := Source{Topic: strings.TrimPrefix(rec.Topic, cfg.Layout.Prefix), Partition: rec.Partition}
		folder.Fold(rebuilt, src, ev, writer)
		atomic.AddInt64(&rep.Records, 1)
		return nil
	})
	pos.Store(total)
	stop()
	if err != nil {
		return nil, fmt.Errorf("replay: read the thread: %w", err)
	}

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

// snapshotAttempts bounds the tries for a snapshot during which no source
// partition moved; the last try accepts the partitions that held still.
const snapshotAttempts = 8

// liveSnapshot reads the live projection cells at a moment when the
// projections group's committed offsets hold still. If some source
// partitions keep moving (say the canary analysis publishing while the
// stack runs), the last attempt returns them in moving: their cells are not
// comparable and the caller leaves them out.
func liveSnapshot(ctx context.Context, adm *kadm.Client, cfg ReplayConfig, log *slog.Logger) (partOffsets, map[string][]byte, map[Source]bool, error) {
	group := cfg.Layout.Group(ProcessorName)
	var projTopics []string
	for _, n := range thread.ProjectionNames {
		projTopics = append(projTopics, string(cfg.Layout.Projection(n)))
	}
	fetch := func() (partOffsets, error) {
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

// diffCells compares live encoded cells with rebuilt ones.
func diffCells(live map[string][]byte, rebuilt Cells) []CellDiff {
	keys := map[string]bool{}
	for k := range live {
		keys[k] = true
	}
	for k := range rebuilt {
		keys[k] = true
	}
	var diffs []CellDiff
	for _, k := range slices.Sorted(maps.Keys(keys)) {
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
			continue
		}
		d := CellDiff{Key: k, Live: nullable(lj), Rebuilt: nullable(rj)}
		d.Fields = fieldDiffs(lj, rj)
		diffs = append(diffs, d)
	}
	return diffs
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
