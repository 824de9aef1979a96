package projections

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// projector is the projections' pipeline.BatchHandler: it folds each
// polled batch into its in-memory cells and returns every cell the batch
// changed, encoded, for the loop to write to its spine.proj.* topic (on the
// cell's source partition) in the batch's transaction. A cell belongs to
// one source partition, so exactly one group member writes it whatever the
// assignment.
//
// State is restored from the projection topics (never by replaying the
// thread) the first time a source partition is seen after start, a
// rebalance or an aborted transaction. Finished runs and old windows are
// evicted; an event for an evicted cell restores its source first.
//
// Goroutines: the loop goroutine calls HandleBatch, Committed and Aborted
// and owns the cells; Revoked (from the group's callbacks) only records
// which partitions to drop, under mu.
type projector struct {
	kafka      []kgo.Opt
	layout     pipeline.Layout
	retain     time.Duration
	sweepEvery time.Duration
	log        *slog.Logger
	folder     Folder
	metrics    *runnerMetrics
	live       *Live
	// logical maps a full thread topic name to its prefix-free name.
	logical map[string]string

	// Owned by the loop goroutine.
	adm      *kadm.Client // opened at the first restore, closed by close
	admCl    *kgo.Client
	cells    Cells
	restored map[Source]bool
	// evicted holds hashes of the keys swept from memory, by source; an
	// event for one of them pins the key and re-restores its source.
	evicted       map[Source]*evictions
	forgetEvicted time.Duration
	// spilled holds, by source, the encoded cells of finished runs the
	// sweep took out of memory (the bytes their last transaction wrote),
	// for retain of their source's event time: an event for one (a late or
	// stale result) decodes it back instead of restoring its source.
	spilled   map[Source]map[string]spill
	encodeAt  []byte // the sweep's encoding buffer
	pinned    map[string]bool
	lastSweep time.Time
	// The transaction in flight: whether HandleBatch was called in it and
	// began folding, what it folded and the cells it wrote.
	called, folding bool
	folded          int
	written         map[string]int
	// batch is what the transaction folded, for Live once it commits.
	batch []item

	mu      sync.Mutex
	dropAll bool
	drop    []int32
}

var (
	_ pipeline.BatchHandler = (*projector)(nil)
	_ pipeline.Settler      = (*projector)(nil)
	_ pipeline.Revoker      = (*projector)(nil)
)

func newProjector(cfg RunnerConfig, log *slog.Logger) *projector {
	r := &projector{
		kafka:         cfg.Kafka,
		layout:        cfg.Layout,
		retain:        cfg.Retain,
		sweepEvery:    cfg.SweepEvery,
		log:           log,
		folder:        Folder{Window: cfg.Window},
		metrics:       newRunnerMetrics(cfg.Registerer),
		live:          cfg.Live,
		logical:       map[string]string{},
		cells:         Cells{},
		restored:      map[Source]bool{},
		evicted:       map[Source]*evictions{},
		forgetEvicted: cfg.ForgetEvicted,
		spilled:       map[Source]map[string]spill{},
		pinned:        map[string]bool{},
	}
	for _, t := range SourceTopics(cfg.Layout) {
		r.logical[string(t)] = strings.TrimPrefix(string(t), cfg.Layout.Prefix)
	}
	return r
}

// Revoked implements pipeline.Revoker: the sources of the partitions are
// forgotten before the next batch (nil: every source).
func (r *projector) Revoked(parts []int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if parts == nil {
		r.dropAll = true
		return
	}
	r.drop = append(r.drop, parts...)
}

// applyDrops forgets the state of sources the group took away.
func (r *projector) applyDrops() {
	r.mu.Lock()
	all, drop := r.dropAll, r.drop
	r.dropAll, r.drop = false, nil
	r.mu.Unlock()
	if all {
		r.resetAll()
		return
	}
	if len(drop) == 0 {
		return
	}
	for s := range r.restored {
		if slices.Contains(drop, s.Partition) {
			r.forget(s)
		}
	}
}

func (r *projector) resetAll() {
	r.cells = Cells{}
	r.restored = map[Source]bool{}
	r.evicted = map[Source]*evictions{}
	r.spilled = map[Source]map[string]spill{}
	r.metrics.resident.Set(0)
	r.metrics.spilled.Set(0)
}

func (r *projector) forget(s Source) {
	if !r.restored[s] {
		return
	}
	delete(r.restored, s)
	delete(r.evicted, s)
	r.metrics.spilled.Sub(float64(len(r.spilled[s])))
	delete(r.spilled, s)
	for k := range r.cells {
		if ks, err := ParseKey(k); err == nil && ks.Source == s {
			delete(r.cells, k)
		}
	}
}

// evictions is what a source's cells evicted: the hashes of their keys in
// two generations of about forget of event time each. When a generation
// is dropped, horizon moves to the start of the one kept: what was evicted
// before it is forgotten, so a key not in memory of a run that started
// before it may have been evicted.
type evictions struct {
	cur, old map[uint64]struct{}
	since    time.Time // the source's newest window when cur began
	horizon  time.Time
}

func (e *evictions) has(h uint64) bool {
	_, ok := e.cur[h]
	if !ok {
		_, ok = e.old[h]
	}
	return ok
}

func (e *evictions) remove(h uint64) {
	delete(e.cur, h)
	delete(e.old, h)
}

// rotate drops the old generation once cur spans forget of the source's
// event time (newest, its newest window), and returns how many keys it
// forgot.
func (e *evictions) rotate(newest time.Time, forget time.Duration) (forgot int) {
	switch {
	case newest.IsZero():
	case e.since.IsZero():
		e.since = newest
	case newest.Sub(e.since) >= forget:
		if e.old != nil {
			e.horizon, forgot = e.since, len(e.old)
		}
		e.old, e.cur, e.since = e.cur, map[uint64]struct{}{}, newest
	}
	return forgot
}

func keyHash(k string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(k))
	return h.Sum64()
}

func (r *projector) evict(s Source, k string) {
	delete(r.cells, k)
	e := r.evicted[s]
	if e == nil {
		e = &evictions{cur: map[uint64]struct{}{}}
		r.evicted[s] = e
	}
	e.cur[keyHash(k)] = struct{}{}
	r.metrics.evictions.Inc()
}

// unevict forgets that k of s was evicted (it is in memory again, or gone).
func (r *projector) unevict(s Source, k string) {
	if e := r.evicted[s]; e != nil {
		e.remove(keyHash(k))
	}
}

// spill is a finished run's part taken out of memory by the sweep: its
// encoding (as its last transaction wrote it) and its source's newest
// window when it was taken, from which it stays for retain.
type spill struct {
	b  []byte
	at time.Time
}

// spillRun takes the finished run part c (key k of source s) out of
// memory, keeping its encoding, and reports whether it could (a part
// appendCell cannot encode exactly stays in memory).
func (r *projector) spillRun(s Source, k string, c Cell, newest time.Time) bool {
	b, ok := appendCell(r.encodeAt[:0], c)
	r.encodeAt = b[:0]
	if !ok {
		return false
	}
	m := r.spilled[s]
	if m == nil {
		m = map[string]spill{}
		r.spilled[s] = m
	}
	m[k] = spill{b: slices.Clone(b), at: newest}
	r.evict(s, k)
	r.metrics.spilled.Inc()
	return true
}

// unspill puts the spilled part k of s back in memory, if there is one,
// and reports whether it did. A spill that does not decode (it cannot:
// appendCell wrote it) is dropped, and k stays evicted: the source is
// restored from the topic as for any evicted key.
func (r *projector) unspill(s Source, k string) bool {
	sp, ok := r.spilled[s][k]
	if !ok {
		return false
	}
	delete(r.spilled[s], k)
	r.metrics.spilled.Dec()
	c, err := decodeCell(thread.ProjRuns, sp.b)
	if err != nil {
		r.log.Error("dropping a spilled projection cell that does not decode", "key", k, "err", err)
		return false
	}
	r.cells[k] = c
	r.unevict(s, k)
	r.metrics.unspilled.Inc()
	return true
}

// HeaderRunFinished marks a spine.proj.runs record whose run part is
// finished (runFinished): a restore leaves it on the topic without
// decoding it.
const HeaderRunFinished = "spine-run-finished"

var finishedHeaders = []kgo.RecordHeader{{Key: HeaderRunFinished, Value: []byte("1")}}

// CellHeaders returns the headers of the record of cell c of source src
// (HeaderRunFinished for a finished run's part; nil for any other), for
// whoever writes the projection topics as the runner does.
func CellHeaders(src Source, c Cell) []kgo.RecordHeader {
	if p, ok := c.(*RunPart); ok && runFinished(src.Topic, p) {
		return finishedHeaders
	}
	return nil
}

// finishedRecord reports whether rec carries HeaderRunFinished.
func finishedRecord(rec *kgo.Record) bool {
	for _, h := range rec.Headers {
		if h.Key == HeaderRunFinished {
			return string(h.Value) == "1"
		}
	}
	return false
}

// runStart is when ev's run started (its own time if it does not say).
func runStart(ev *schemas.RuntimeEvent) time.Time {
	if ev.RunStarted.IsZero() {
		return ev.Timestamp
	}
	return ev.RunStarted
}

// wasEvicted reports whether k of s, for an event of a run started at
// started, may be on the topic and not in memory: its eviction is
// remembered, or it is not in memory and the run started before the
// evictions s forgot.
func (r *projector) wasEvicted(s Source, k string, started time.Time) bool {
	e := r.evicted[s]
	if e == nil {
		return false
	}
	if e.has(keyHash(k)) {
		return true
	}
	if e.horizon.IsZero() || !started.Before(e.horizon) {
		return false
	}
	_, in := r.cells[k]
	return !in
}

// runFinished reports whether a run's part on topic expects no more
// events: the terminal outcome on the control topic, the delivery on the
// data plane, the judgement on a gate topic. A later event (a stale
// result, an illegal transition) is still folded exactly: it pins the part
// and its source is restored first.
func runFinished(topic string, p *RunPart) bool {
	switch {
	case topic == "spine.control":
		return p.Outcome != ""
	case topic == "spine.dataplane":
		_, ok := p.Hops[string(thread.ArtifactDelivered)]
		return ok
	case strings.HasPrefix(topic, "gate."):
		return len(p.Gates) > 0
	}
	return false
}

// sweep evicts finished runs and aggregate windows older than retain
// behind the newest window of their source, at most every sweepEvery.
func (r *projector) sweep(now time.Time) {
	if now.Sub(r.lastSweep) < r.sweepEvery {
		return
	}
	r.lastSweep = now
	newest := map[Source]time.Time{}
	keys := make(map[string]Key, len(r.cells))
	for k := range r.cells {
		kk, err := ParseKey(k)
		if err != nil {
			continue
		}
		keys[k] = kk
		if kk.Projection != thread.ProjRuns && kk.Window.After(newest[kk.Source]) {
			newest[kk.Source] = kk.Window
		}
	}
	for k, kk := range keys {
		if kk.Projection == thread.ProjRuns {
			// Finished: spilled, its encoding kept for retain of its
			// source's event time, so that stale results of a retried
			// attempt still find it without a restore.
			if p, ok := r.cells[k].(*RunPart); ok && runFinished(kk.Source.Topic, p) {
				if !r.spillRun(kk.Source, k, p, newest[kk.Source]) && p.LastAt.Before(newest[kk.Source].Add(-r.retain)) {
					r.evict(kk.Source, k)
				}
			}
			continue
		}
		if kk.Window.Before(newest[kk.Source].Add(-r.retain)) {
			r.evict(kk.Source, k)
		}
	}
	for s, m := range r.spilled {
		for k, sp := range m {
			if sp.at.Before(newest[s].Add(-r.retain)) {
				delete(m, k) // evicted: on the topic only
				r.metrics.spilled.Dec()
			}
		}
	}
	for s, e := range r.evicted {
		r.metrics.forgotten.Add(float64(e.rotate(newest[s], r.forgetEvicted)))
	}
	r.metrics.resident.Set(float64(len(r.cells)))
}

// item is one input of a batch.
type item struct {
	src    Source
	ev     *schemas.RuntimeEvent
	writer schemas.ContractVersion
}

// HandleBatch implements pipeline.BatchHandler: it restores the sources of
// the batch that are not in memory, folds the batch and returns every cell
// it changed, encoded, once. The loop has dead-lettered the records that
// do not decode to a RuntimeEvent (eventCodec).
func (r *projector) HandleBatch(ctx context.Context, batch []pipeline.Input) ([]pipeline.Record, error) {
	r.applyDrops()
	r.called = true
	items := make([]item, 0, len(batch))
	for _, in := range batch {
		ev, ok := in.Value.(*schemas.RuntimeEvent)
		if !ok {
			return nil, fmt.Errorf("%T on %s is not a RuntimeEvent (is the codec wrapped by eventCodec?)", in.Value, in.Topic)
		}
		items = append(items, item{src: Source{Topic: r.logical[string(in.Topic)], Partition: in.Partition}, ev: ev, writer: in.Version})
	}

	// An event for an evicted cell (a late or stale one) makes its source
	// partition be restored again, so the fold starts from the committed
	// cell; and every cell the batch touches in a source about to be
	// restored is pinned, so restoring loads it instead of evicting it.
	// A spilled part comes back from its encoding instead.
	again := map[Source]bool{}
	for _, it := range items {
		if !r.restored[it.src] {
			continue
		}
		for _, k := range r.folder.Plan(it.src, it.ev, it.writer).Keys() {
			if _, in := r.cells[k]; in || r.unspill(it.src, k) {
				continue
			}
			if r.wasEvicted(it.src, k, runStart(it.ev)) {
				again[it.src] = true
				r.metrics.pinned.Inc()
			}
		}
	}
	for s := range again {
		r.forget(s)
	}
	for _, it := range items {
		if !r.restored[it.src] {
			for _, k := range r.folder.Plan(it.src, it.ev, it.writer).Keys() {
				r.pinned[k] = true
			}
		}
	}

	// Restore every source partition of this batch not in memory. Nothing
	// of this transaction is on the broker yet (the loop sends it when it
	// ends), so it does not hold back the stable offsets read to.
	need := map[int32][]Source{}
	for _, it := range items {
		s := it.src
		if !r.restored[s] && !slices.Contains(need[s.Partition], s) {
			need[s.Partition] = append(need[s.Partition], s)
		}
	}
	if len(need) > 0 {
		if err := r.restore(ctx, need); err != nil {
			return nil, fmt.Errorf("restore projections: %w", err)
		}
	}

	r.folding = true
	changed := map[string]Source{} // key → its source (its partition is the record's)
	for _, it := range items {
		for _, k := range r.folder.Fold(r.cells, it.src, it.ev, it.writer) {
			changed[k] = it.src
		}
		r.folded++
	}
	if r.live != nil {
		r.batch = items
	}
	out := make([]pipeline.Record, 0, len(changed))
	r.written = map[string]int{}
	for _, k := range slices.Sorted(maps.Keys(changed)) {
		c := r.cells[k]
		b, err := EncodeCell(c)
		if err != nil {
			return nil, err
		}
		out = append(out, pipeline.Record{
			Topic:     r.layout.Projection(c.Projection()),
			Partition: changed[k].Partition,
			Key:       []byte(k),
			Value:     b,
			Headers:   CellHeaders(changed[k], c),
		})
		r.written[c.Projection()]++
	}
	return out, nil
}

// Committed implements pipeline.Settler: the batch's cells are committed;
// it counts them and sweeps.
func (r *projector) Committed(c pipeline.BatchCommit) {
	defer r.settled()
	r.metrics.txns.WithLabelValues("committed").Inc()
	r.metrics.txnSeconds.Observe(c.Took.Seconds())
	r.metrics.records.WithLabelValues("folded").Add(float64(r.folded))
	r.metrics.records.WithLabelValues("dead_lettered").Add(float64(c.DeadLettered))
	for proj, n := range r.written {
		r.metrics.cells.WithLabelValues(proj).Add(float64(n))
	}
	r.live.observe(r.batch)
	r.sweep(time.Now())
}

// Aborted implements pipeline.Settler: the cells may hold the aborted
// batch's folds, so they are dropped and restored from the projection
// topics as the loop polls the batch again.
func (r *projector) Aborted() {
	defer r.settled()
	switch {
	case r.folding:
		r.resetAll()
		r.metrics.txns.WithLabelValues("aborted").Inc()
	case !r.called:
		// The batch could not be decoded yet (a registry outage).
		r.metrics.txns.WithLabelValues("retried").Inc()
	default:
		// Restoring failed before anything was folded.
		r.resetAll()
	}
}

func (r *projector) settled() {
	r.called, r.folding, r.folded, r.written, r.batch = false, false, 0, nil, nil
}

// admin returns the admin client restores list offsets with, opening it
// the first time.
func (r *projector) admin() (*kadm.Client, error) {
	if r.adm != nil {
		return r.adm, nil
	}
	cl, err := kgo.NewClient(r.kafka...)
	if err != nil {
		return nil, fmt.Errorf("admin client: %w", err)
	}
	r.admCl, r.adm = cl, kadm.NewClient(cl)
	return r.adm, nil
}

// close releases the admin client; call it once the processor stopped.
func (r *projector) close() {
	if r.admCl != nil {
		r.admCl.Close()
		r.admCl, r.adm = nil, nil
	}
}

// restore loads the committed cells of the given source partitions (by
// partition) from the projection topics.
func (r *projector) restore(ctx context.Context, need map[int32][]Source) error {
	start := time.Now()
	adm, err := r.admin()
	if err != nil {
		return err
	}
	topics := projectionTopicNames(r.layout)
	ends, starts, err := endOffsets(ctx, adm, topics, func(p int32) bool { _, ok := need[p]; return ok })
	if err != nil {
		return err
	}
	for t, ps := range ends {
		for p, o := range ps {
			if starts[t][p] >= o {
				ends[t][p] = 0
			}
		}
	}
	loaded := 0
	err = readUntil(ctx, r.kafka, ends, time.Minute, func(rec *kgo.Record) error {
		k, err := ParseKey(string(rec.Key))
		if err != nil {
			r.log.Warn("skipping projection record with a bad key", "topic", rec.Topic, "offset", rec.Offset, "err", err)
			return nil
		}
		s := k.Source
		if !slices.Contains(need[rec.Partition], s) {
			return nil
		}
		key := string(rec.Key)
		if rec.Value == nil {
			delete(r.cells, key)
			r.unevict(s, key)
			return nil
		}
		if !r.pinned[key] && finishedRecord(rec) {
			// A finished run's part, as its header says: left on the
			// topic without decoding it (most of a restart's restore).
			delete(r.cells, key)
			r.evict(s, key)
			return nil
		}
		c, err := decodeCell(k.Projection, rec.Value)
		if err != nil {
			r.log.Error("skipping corrupt projection cell", "key", key, "err", err, "code", Code(err))
			return nil
		}
		if p, ok := c.(*RunPart); ok && !r.pinned[key] && runFinished(s.Topic, p) {
			// Finished runs stay on the topic, not in memory.
			delete(r.cells, key)
			r.evict(s, key)
			return nil
		}
		r.unevict(s, key)
		r.cells[key] = c
		loaded++
		return nil
	})
	if err != nil {
		return err
	}
	for _, ss := range need {
		for _, s := range ss {
			r.restored[s] = true
		}
	}
	for k := range r.pinned {
		if kk, err := ParseKey(k); err == nil && slices.Contains(need[kk.Source.Partition], kk.Source) {
			delete(r.pinned, k)
		}
	}
	r.metrics.resident.Set(float64(len(r.cells)))
	r.metrics.restoreSeconds.Observe(time.Since(start).Seconds())
	r.log.Debug("restored projection state", "partitions", len(need), "cells", loaded, "took", time.Since(start))
	return nil
}

// eventCodec decodes thread records to RuntimeEvents only: any other value
// is poison (code unexpected_record_type), dead-lettered by the loop.
type eventCodec struct{ pipeline.Codec }

func (c eventCodec) Decode(ctx context.Context, topic pipeline.Topic, b []byte) (any, schemas.ContractVersion, error) {
	v, writer, err := c.Codec.Decode(ctx, topic, b)
	if err != nil {
		return nil, writer, err
	}
	if _, ok := v.(*schemas.RuntimeEvent); !ok {
		return nil, writer, &pipeline.RejectError{Code: "unexpected_record_type", Reason: fmt.Sprintf("%T on %s is not a RuntimeEvent", v, topic)}
	}
	return v, writer, nil
}

type runnerMetrics struct {
	resident       prometheus.Gauge
	spilled        prometheus.Gauge
	unspilled      prometheus.Counter
	evictions      prometheus.Counter
	forgotten      prometheus.Counter
	pinned         prometheus.Counter
	records        *prometheus.CounterVec
	txns           *prometheus.CounterVec
	cells          *prometheus.CounterVec
	txnSeconds     prometheus.Histogram
	restoreSeconds prometheus.Histogram
}

func newRunnerMetrics(reg prometheus.Registerer) *runnerMetrics {
	m := &runnerMetrics{
		resident: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spine_projection_cells_resident", Help: "Projection cells the runner holds in memory.",
		}),
		spilled: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spine_projection_cells_spilled", Help: "Finished runs' cells the runner keeps encoded, not decoded, for a late event (RunnerConfig.Retain of event time).",
		}),
		unspilled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spine_projection_cells_unspilled_total", Help: "Events for a finished run's cell that found it spilled and decoded it back (no restore).",
		}),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spine_projection_cells_evicted_total", Help: "Finished runs and old windows swept from the runner's memory (they stay on the topics).",
		}),
		forgotten: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spine_projection_evictions_forgotten_total", Help: "Evicted keys the runner stopped remembering (ForgetEvicted of event time after their eviction); a late event for one restores its source all the same.",
		}),
		pinned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spine_projection_late_events_total", Help: "Events for evicted cells, each of which restored its source partition first.",
		}),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spine_projection_records_total", Help: "Thread records the projections consumed, by outcome (folded, dead_lettered).",
		}, []string{"outcome"}),
		txns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spine_projection_transactions_total", Help: "Projection transactions by outcome (committed, aborted; retried: a batch that could not be decoded yet, aborted before anything was folded).",
		}, []string{"outcome"}),
		cells: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spine_projection_cells_written_total", Help: "Projection cells written to the compacted topics (committed), by projection.",
		}, []string{"projection"}),
		txnSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "spine_projection_transaction_seconds", Help: "Duration of committed projection transactions.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		restoreSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "spine_projection_restore_seconds", Help: "Duration of restoring projection state from the compacted topics.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
	}
	if reg != nil {
		reg.MustRegister(m.resident, m.spilled, m.unspilled, m.evictions, m.forgotten, m.pinned, m.records, m.txns, m.cells, m.txnSeconds, m.restoreSeconds)
	}
	return m
}
