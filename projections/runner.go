package projections

import (
	"cmp"
	"context"
	"errors"
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

// ProcessorName is the projections processor's name: its consumer group is
// Layout.Group(ProcessorName).
const ProcessorName = "projections"

// RunnerConfig configures a Runner.
type RunnerConfig struct {
	// Kafka are the connection options (seed brokers, SASL, TLS), for
	// example from pipeline.Config.KafkaOpts. Required.
	Kafka []kgo.Opt
	// Layout names the topics. Required: all thread topics must have
	// Layout.Partitions partitions, like the projection topics.
	Layout pipeline.Layout
	// Codec decodes thread records (schemas.Serde in production). Required.
	Codec pipeline.Codec
	// Window is the aggregate window width (default DefaultWindow). Replay
	// must use the same width.
	Window time.Duration
	// TransactionalID is the producer's transactional id; stable across
	// restarts of one instance so a restart fences its predecessor's open
	// transaction at once. Default Layout.Group("projections") + "-0".
	TransactionalID string
	// StaticMembership joins the group as a static member named
	// InstanceID: a restarted instance takes its partitions back at once
	// instead of after the session timeout. A cleanly stopped runner
	// leaves the group explicitly. Default false.
	StaticMembership bool
	// InstanceID is the group.instance.id under StaticMembership. Default:
	// the transactional id. Two live instances must not share it.
	InstanceID string
	// SessionTimeout is the group session timeout: how long a crashed
	// instance keeps its partitions (without StaticMembership, how long a
	// restart waits for them). Default 10s.
	SessionTimeout time.Duration
	// TransactionTimeout bounds how long a crashed instance's open
	// transaction blocks the partitions it held. Default 10s.
	TransactionTimeout time.Duration
	// MaxPollRecords bounds the records per transaction. Default 2000.
	MaxPollRecords int
	// Retain is how far behind the newest window of its source partition
	// an aggregate cell stays in memory; older ones are evicted. Default
	// 2m. Finished runs (terminal on the control topic, delivered on the
	// data plane, judged on a gate topic) quiet for as long are evicted
	// too. An event for an
	// evicted cell (a late or stale one) makes the runner restore that
	// source partition from the projection topics first, so eviction
	// bounds memory without changing any cell.
	Retain time.Duration
	// SweepEvery is how often (at most) the runner evicts. Default 10s.
	SweepEvery time.Duration
	// Logger receives the runner's logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the runner's metrics; nil registers none.
	Registerer prometheus.Registerer
}

func (c *RunnerConfig) validate() error {
	var errs []error
	if len(c.Kafka) == 0 {
		errs = append(errs, errors.New("projections runner: no Kafka options"))
	}
	if c.Codec == nil {
		errs = append(errs, errors.New("projections runner: no codec"))
	}
	if c.Layout.Partitions < 1 {
		errs = append(errs, errors.New("projections runner: layout has no partitions"))
	}
	return errors.Join(errs...)
}

// Runner is the projections processor: it folds the thread (every
// RuntimeEvent topic: spine.control, spine.dataplane, gate.*) into the
// compacted spine.proj.* topics, exactly once. One transaction holds a batch
// of input offsets and the new value of every cell the batch changed; a
// cell belongs to one source partition, so exactly one group member writes
// it whatever the assignment. State is restored from the projection topics
// (never by replaying the thread) the first time a source partition is
// seen after start, a rebalance or an aborted transaction. Undecodable
// records go to spine.dlq in the same transaction.
//
// Goroutines: Run's loop owns the cells; the group's revoke/lost callbacks
// only record which sources to drop, under mu.
type Runner struct {
	cfg     RunnerConfig
	log     *slog.Logger
	folder  Folder
	metrics *runnerMetrics
	// logical maps a full thread topic name to its prefix-free name.
	logical map[string]string

	// Owned by Run's goroutine.
	cells    Cells
	restored map[Source]bool
	// evicted holds hashes of the keys swept from memory, by source; an
	// event for one of them pins the key and re-restores its source.
	evicted   map[Source]map[uint64]struct{}
	pinned    map[string]bool
	lastSweep time.Time

	mu      sync.Mutex
	dropAll bool
	drop    []Source
}

var _ interface{ Run(context.Context) error } = (*Runner)(nil)

// NewRunner validates cfg and returns a Runner; it does no I/O.
func NewRunner(cfg RunnerConfig) (*Runner, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.TransactionalID == "" {
		cfg.TransactionalID = cfg.Layout.Group(ProcessorName) + "-0"
	}
	if cfg.InstanceID == "" {
		cfg.InstanceID = cfg.TransactionalID
	}
	if cfg.TransactionTimeout <= 0 {
		cfg.TransactionTimeout = 10 * time.Second
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = 10 * time.Second
	}
	if cfg.MaxPollRecords <= 0 {
		cfg.MaxPollRecords = 2000
	}
	if cfg.Retain <= 0 {
		cfg.Retain = 2 * time.Minute
	}
	if cfg.SweepEvery <= 0 {
		cfg.SweepEvery = 10 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Runner{
		cfg:      cfg,
		log:      log.With("processor", ProcessorName),
		folder:   Folder{Window: cfg.Window},
		metrics:  newRunnerMetrics(cfg.Registerer),
		logical:  map[string]string{},
		cells:    Cells{},
		restored: map[Source]bool{},
		evicted:  map[Source]map[uint64]struct{}{},
		pinned:   map[string]bool{},
	}
	for _, t := range SourceTopics(cfg.Layout) {
		r.logical[string(t)] = strings.TrimPrefix(string(t), cfg.Layout.Prefix)
	}
	return r, nil
}

// SourceTopics are the thread topics the projections fold: every topic
// carrying RuntimeEvents (the intents topic carries Intents and is seen
// through intent.received instead).
func SourceTopics(l pipeline.Layout) []pipeline.Topic {
	var ts []pipeline.Topic
	for _, t := range l.ThreadTopics() {
		if t != l.Intents() {
			ts = append(ts, t)
		}
	}
	return ts
}

func (r *Runner) onDrop(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for t, ps := range lost {
		for _, p := range ps {
			r.drop = append(r.drop, Source{Topic: r.logical[t], Partition: p})
		}
	}
}

// applyDrops forgets the state of sources the group took away.
func (r *Runner) applyDrops() {
	r.mu.Lock()
	all, drop := r.dropAll, r.drop
	r.dropAll, r.drop = false, nil
	r.mu.Unlock()
	if all {
		r.resetAll()
		return
	}
	for _, s := range drop {
		r.forget(s)
	}
}

func (r *Runner) resetAll() {
	r.cells = Cells{}
	r.restored = map[Source]bool{}
	r.evicted = map[Source]map[uint64]struct{}{}
	r.metrics.resident.Set(0)
}

func (r *Runner) forget(s Source) {
	if !r.restored[s] {
		return
	}
	delete(r.restored, s)
	delete(r.evicted, s)
	for k := range r.cells {
		if ks, err := ParseKey(k); err == nil && ks.Source == s {
			delete(r.cells, k)
		}
	}
}

func keyHash(k string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(k))
	return h.Sum64()
}

func (r *Runner) evict(s Source, k string) {
	delete(r.cells, k)
	m := r.evicted[s]
	if m == nil {
		m = map[uint64]struct{}{}
		r.evicted[s] = m
	}
	m[keyHash(k)] = struct{}{}
	r.metrics.evictions.Inc()
}

func (r *Runner) wasEvicted(s Source, k string) bool {
	_, ok := r.evicted[s][keyHash(k)]
	return ok
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

// sweep evicts finished runs and aggregate windows older than Retain
// behind the newest window of their source, at most every SweepEvery.
func (r *Runner) sweep(now time.Time) {
	if now.Sub(r.lastSweep) < r.cfg.SweepEvery {
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
			// Finished, and quiet for Retain of its source's event time,
			// so stale results of a retried attempt mostly still find it.
			if p, ok := r.cells[k].(*RunPart); ok && runFinished(kk.Source.Topic, p) && p.LastAt.Before(newest[kk.Source].Add(-r.cfg.Retain)) {
				r.evict(kk.Source, k)
			}
			continue
		}
		if kk.Window.Before(newest[kk.Source].Add(-r.cfg.Retain)) {
			r.evict(kk.Source, k)
		}
	}
	r.metrics.resident.Set(float64(len(r.cells)))
}

// Run consumes the thread and maintains the projections until ctx ends.
func (r *Runner) Run(ctx context.Context) error {
	l := r.cfg.Layout
	topics := make([]string, 0, len(r.logical))
	for t := range r.logical {
		topics = append(topics, t)
	}
	slices.Sort(topics)
	opts := append([]kgo.Opt{}, r.cfg.Kafka...)
	if r.cfg.StaticMembership {
		opts = append(opts, kgo.InstanceID(r.cfg.InstanceID))
	}
	sess, err := kgo.NewGroupTransactSession(append(opts,
		kgo.ConsumerGroup(l.Group(ProcessorName)),
		kgo.SessionTimeout(r.cfg.SessionTimeout),
		kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.TransactionalID(r.cfg.TransactionalID),
		kgo.TransactionTimeout(r.cfg.TransactionTimeout),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		// A transaction's cells are sent when it ends, in one batch per
		// partition (Produce, then Flush before End): the embedded kfake
		// broker compacts past the last stable offset, except a
		// partition's last batch, so a transaction whose cells spanned two
		// batches could, if it then aborted, take committed cells with it.
		kgo.ManualFlushing(),
		kgo.ProducerLinger(0),
		// Cells are small JSON written once per transaction; compressing
		// them costs more CPU than it saves on a local broker.
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.OnPartitionsRevoked(r.onDrop),
		kgo.OnPartitionsLost(r.onDrop),
	)...)
	if err != nil {
		return fmt.Errorf("projections: transactional session: %w", err)
	}
	defer func() {
		sess.Close()
		if r.cfg.StaticMembership {
			r.leaveGroup()
		}
	}()
	adm := kadm.NewClient(sess.Client())
	// Initialising the producer id fences a predecessor with our
	// transactional id (a crashed incarnation) and aborts its open
	// transaction at once, so restoring need not wait for its timeout.
	fctx, cancel := context.WithTimeout(ctx, r.cfg.TransactionTimeout)
	_, _, err = sess.Client().ProducerID(fctx)
	cancel()
	if err != nil && ctx.Err() == nil {
		r.log.Warn("could not initialise the transactional producer yet", "err", err)
	}
	r.log.Info("projections runner started", "group", l.Group(ProcessorName), "topics", len(topics))
	backoff := 100 * time.Millisecond
	for {
		fs := sess.PollRecords(ctx, r.cfg.MaxPollRecords)
		if ctx.Err() != nil {
			return nil
		}
		if fs.IsClientClosed() {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			r.log.Warn("fetch error", "topic", t, "partition", p, "err", err)
		})
		r.applyDrops()
		if fs.NumRecords() == 0 {
			if len(fs.Errors()) > 0 {
				// Do not spin on a persistent fetch error (a missing topic).
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(time.Second):
				}
			}
			continue
		}
		// Finish the polled batch even if shutdown begins meanwhile
		// (bounded), so a clean stop commits what it consumed.
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		committed, err := r.transact(tctx, sess, adm, fs)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			var fatal *fatalError
			if errors.As(err, &fatal) {
				return err
			}
			r.log.Warn("projection transaction failed; retrying from the last commit", "err", err, "backoff", backoff)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
		} else if committed {
			backoff = 100 * time.Millisecond
		}
	}
}

// leaveGroup makes a clean stop leave the group at once: a static member
// does not leave on Close, and its partitions would otherwise wait for the
// session timeout before another instance takes them.
func (r *Runner) leaveGroup() {
	cl, err := kgo.NewClient(r.cfg.Kafka...)
	if err != nil {
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(cl).LeaveGroup(ctx, kadm.LeaveGroup(r.cfg.Layout.Group(ProcessorName)).InstanceIDs(r.cfg.InstanceID).Reason("clean shutdown"))
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		r.log.Warn("could not leave the group on shutdown; its partitions wait for the session timeout", "err", err)
	}
}

// fatalError ends Run: the transactional producer is in a state it cannot
// leave.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

// item is one polled record, decoded.
type item struct {
	rec    *kgo.Record
	src    Source
	ev     *schemas.RuntimeEvent
	writer schemas.ContractVersion
	code   string // non-empty: poison, dead-lettered with this code
	err    error
}

// transact folds one polled batch in one transaction. Once the transaction
// has begun, anything but a commit drops the in-memory cells: the session
// rewinds to the committed offsets and the cells are restored from the
// projection topics.
func (r *Runner) transact(ctx context.Context, sess *kgo.GroupTransactSession, adm *kadm.Client, fs kgo.Fetches) (committed bool, err error) {
	start := time.Now()
	begun := false
	defer func() {
		if committed {
			r.metrics.txns.WithLabelValues("committed").Inc()
			r.metrics.txnSeconds.Observe(time.Since(start).Seconds())
			return
		}
		if begun {
			r.resetAll()
			r.metrics.txns.WithLabelValues("aborted").Inc()
		}
	}()

	// Decode the batch first: a transient error (a registry outage) is
	// retried before anything changes.
	var items []item
	var decErr error
	fs.EachRecord(func(rec *kgo.Record) {
		if decErr != nil {
			return
		}
		it := item{rec: rec, src: Source{Topic: r.logical[rec.Topic], Partition: rec.Partition}}
		v, writer, err := r.cfg.Codec.Decode(ctx, pipeline.Topic(rec.Topic), rec.Value)
		ev, ok := v.(*schemas.RuntimeEvent)
		if err == nil && !ok {
			err = &pipeline.RejectError{Code: "unexpected_record_type", Reason: fmt.Sprintf("%T on %s is not a RuntimeEvent", v, rec.Topic)}
		}
		if err != nil {
			if it.code = pipeline.CodeOf(err); it.code == "" {
				decErr = fmt.Errorf("decode %s/%d@%d: %w", rec.Topic, rec.Partition, rec.Offset, err)
				return
			}
			it.err = err
		} else {
			it.ev, it.writer = ev, writer
		}
		items = append(items, it)
	})
	// rewind makes the session poll the batch again from the committed
	// offsets (ending a transaction with abort resets them) when it is
	// given up before anything changed.
	rewind := func() {
		if err := sess.Begin(); err == nil {
			_, _ = sess.End(ctx, kgo.TryAbort)
		}
	}
	if decErr != nil {
		r.metrics.txns.WithLabelValues("retried").Inc()
		rewind()
		return false, decErr
	}

	// An event for an evicted cell (a late or stale one) makes its source
	// partition be restored again, so the fold starts from the committed
	// cell; and every cell the batch touches in a source about to be
	// restored is pinned, so restoring loads it instead of evicting it.
	again := map[Source]bool{}
	for _, it := range items {
		if it.ev == nil || !r.restored[it.src] {
			continue
		}
		for _, k := range r.folder.Plan(it.src, it.ev, it.writer).Keys() {
			if r.wasEvicted(it.src, k) {
				again[it.src] = true
				r.metrics.pinned.Inc()
			}
		}
	}
	for s := range again {
		r.forget(s)
	}
	for _, it := range items {
		if it.ev != nil && !r.restored[it.src] {
			for _, k := range r.folder.Plan(it.src, it.ev, it.writer).Keys() {
				r.pinned[k] = true
			}
		}
	}

	// Restore every source partition of this batch not in memory, before
	// the transaction begins (our own open transaction would hold back the
	// stable offset we read to).
	need := map[int32][]Source{}
	for _, it := range items {
		s := it.src
		if !r.restored[s] && !slices.Contains(need[s.Partition], s) {
			need[s.Partition] = append(need[s.Partition], s)
		}
	}
	if len(need) > 0 {
		if err := r.restore(ctx, adm, need); err != nil {
			r.resetAll()
			rewind()
			return false, fmt.Errorf("restore projections: %w", err)
		}
	}

	if err := sess.Begin(); err != nil {
		return false, &fatalError{fmt.Errorf("begin transaction: %w", err)}
	}
	begun = true
	changed := map[string]int32{} // key → projection partition
	var outs []*kgo.Record
	folded, dead := 0, 0
	for _, it := range items {
		if it.ev == nil {
			outs = append(outs, r.deadLetter(it.rec, it.err))
			dead++
			continue
		}
		for _, k := range r.folder.Fold(r.cells, it.src, it.ev, it.writer) {
			changed[k] = it.rec.Partition
		}
		folded++
	}
	for _, k := range slices.Sorted(maps.Keys(changed)) {
		c := r.cells[k]
		b, err := EncodeCell(c)
		if err != nil {
			_, _ = sess.End(ctx, kgo.TryAbort)
			return false, err
		}
		outs = append(outs, &kgo.Record{
			Topic:     string(r.cfg.Layout.Projection(c.Projection())),
			Partition: changed[k],
			Key:       []byte(k),
			Value:     b,
		})
		r.metrics.cells.WithLabelValues(c.Projection()).Inc()
	}
	var perr error
	if len(outs) > 0 {
		var mu sync.Mutex
		for _, rec := range outs {
			sess.Produce(ctx, rec, func(_ *kgo.Record, err error) {
				if err != nil {
					mu.Lock()
					perr = cmp.Or(perr, err)
					mu.Unlock()
				}
			})
		}
		ferr := sess.Client().Flush(ctx)
		mu.Lock()
		perr = cmp.Or(perr, ferr)
		mu.Unlock()
	}
	if perr != nil {
		_, _ = sess.End(ctx, kgo.TryAbort)
		return false, fmt.Errorf("produce projections: %w", perr)
	}
	committed, err = sess.End(ctx, kgo.TryCommit)
	if err != nil {
		return false, &fatalError{fmt.Errorf("end transaction: %w", err)}
	}
	if committed {
		r.metrics.records.WithLabelValues("folded").Add(float64(folded))
		r.metrics.records.WithLabelValues("dead_lettered").Add(float64(dead))
		r.sweep(time.Now())
	}
	return committed, nil
}

// deadLetter builds the DLQ record of an undecodable thread record with
// the program's one dead-letter writer (pipeline.DeadLetterRecord), on the
// DLQ partition of its source partition.
func (r *Runner) deadLetter(rec *kgo.Record, err error) *kgo.Record {
	dl := pipeline.DeadLetterRecord(r.cfg.Layout.DLQ(), r.cfg.Layout.Group(ProcessorName), ProcessorName, rec, err)
	dl.Partition = rec.Partition % max(r.cfg.Layout.Partitions, 1)
	return dl
}

// restore loads the committed cells of the given source partitions (by
// partition) from the projection topics.
func (r *Runner) restore(ctx context.Context, adm *kadm.Client, need map[int32][]Source) error {
	start := time.Now()
	var topics []string
	for _, n := range thread.ProjectionNames {
		topics = append(topics, string(r.cfg.Layout.Projection(n)))
	}
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
	err = readUntil(ctx, r.cfg.Kafka, ends, time.Minute, func(rec *kgo.Record) error {
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
			if m := r.evicted[s]; m != nil {
				delete(m, keyHash(key))
			}
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
		if m := r.evicted[s]; m != nil {
			delete(m, keyHash(key))
		}
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

type runnerMetrics struct {
	resident       prometheus.Gauge
	evictions      prometheus.Counter
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
		evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spine_projection_cells_evicted_total", Help: "Finished runs and old windows swept from the runner's memory (they stay on the topics).",
		}),
		pinned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spine_projection_late_events_total", Help: "Events for evicted cells, each of which restored its source partition first.",
		}),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spine_projection_records_total", Help: "Thread records the projections consumed, by outcome (folded, dead_lettered).",
		}, []string{"outcome"}),
		txns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spine_projection_transactions_total", Help: "Projection transactions by outcome (committed, aborted; retried: a batch that could not be decoded yet, before any transaction).",
		}, []string{"outcome"}),
		cells: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spine_projection_cells_written_total", Help: "Projection cells written to the compacted topics, by projection.",
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
		reg.MustRegister(m.resident, m.evictions, m.pinned, m.records, m.txns, m.cells, m.txnSeconds, m.restoreSeconds)
	}
	return m
}
