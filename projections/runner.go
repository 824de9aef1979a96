package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
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
}

func (r *Runner) forget(s Source) {
	if !r.restored[s] {
		return
	}
	delete(r.restored, s)
	for k := range r.cells {
		if ks, err := ParseKey(k); err == nil && ks.Source == s {
			delete(r.cells, k)
		}
	}
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

// transact folds one polled batch in one transaction. On anything but a
// commit it drops the in-memory cells: the session rewinds to the committed
// offsets and the cells are restored from the projection topics.
func (r *Runner) transact(ctx context.Context, sess *kgo.GroupTransactSession, adm *kadm.Client, fs kgo.Fetches) (committed bool, err error) {
	start := time.Now()
	defer func() {
		if !committed {
			r.resetAll()
			r.metrics.txns.WithLabelValues("aborted").Inc()
		} else {
			r.metrics.txns.WithLabelValues("committed").Inc()
			r.metrics.txnSeconds.Observe(time.Since(start).Seconds())
		}
	}()

	// Restore every source partition of this batch not in memory yet,
	// before the transaction begins (our own open transaction would hold
	// back the stable offset we read to).
	need := map[int32][]Source{}
	fs.EachPartition(func(fp kgo.FetchTopicPartition) {
		s := Source{Topic: r.logical[fp.Topic], Partition: fp.Partition}
		if !r.restored[s] && !slices.Contains(need[fp.Partition], s) {
			need[fp.Partition] = append(need[fp.Partition], s)
		}
	})
	if len(need) > 0 {
		if err := r.restore(ctx, adm, need); err != nil {
			return false, fmt.Errorf("restore projections: %w", err)
		}
	}

	if err := sess.Begin(); err != nil {
		return false, &fatalError{fmt.Errorf("begin transaction: %w", err)}
	}
	changed := map[string]int32{} // key → projection partition
	var outs []*kgo.Record
	folded, dead := 0, 0
	var decErr error
	fs.EachRecord(func(rec *kgo.Record) {
		if decErr != nil {
			return
		}
		src := Source{Topic: r.logical[rec.Topic], Partition: rec.Partition}
		v, writer, err := r.cfg.Codec.Decode(ctx, pipeline.Topic(rec.Topic), rec.Value)
		ev, ok := v.(*schemas.RuntimeEvent)
		if err == nil && !ok {
			err = &pipeline.RejectError{Code: "unexpected_record_type", Reason: fmt.Sprintf("%T on %s is not a RuntimeEvent", v, rec.Topic)}
		}
		if err != nil {
			code := pipeline.CodeOf(err)
			if code == "" {
				decErr = fmt.Errorf("decode %s/%d@%d: %w", rec.Topic, rec.Partition, rec.Offset, err)
				return
			}
			outs = append(outs, r.deadLetter(rec, code, err))
			dead++
			return
		}
		for _, k := range r.folder.Fold(r.cells, src, ev, writer) {
			changed[k] = rec.Partition
		}
		folded++
	})
	if decErr != nil {
		_, _ = sess.End(ctx, kgo.TryAbort)
		return false, decErr
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
		perr = sess.ProduceSync(ctx, outs...).FirstErr()
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
	}
	return committed, nil
}

// deadLetter builds the DLQ record of an undecodable thread record: the
// original key and value, and Spring Kafka's headers plus x-error-code.
func (r *Runner) deadLetter(rec *kgo.Record, code string, err error) *kgo.Record {
	h := func(k, v string) kgo.RecordHeader { return kgo.RecordHeader{Key: k, Value: []byte(v)} }
	return &kgo.Record{
		Topic:     string(r.cfg.Layout.DLQ()),
		Partition: rec.Partition % max(r.cfg.Layout.Partitions, 1),
		Key:       rec.Key,
		Value:     rec.Value,
		Headers: append(slices.Clone(rec.Headers),
			h("kafka_dlt-original-topic", rec.Topic),
			h("kafka_dlt-original-partition", strconv.Itoa(int(rec.Partition))),
			h("kafka_dlt-original-offset", strconv.FormatInt(rec.Offset, 10)),
			h("kafka_dlt-original-timestamp", strconv.FormatInt(rec.Timestamp.UnixMilli(), 10)),
			h("kafka_dlt-original-consumer-group", r.cfg.Layout.Group(ProcessorName)),
			h("kafka_dlt-exception-message", err.Error()),
			h("x-error-code", code),
			h("x-processor", ProcessorName),
		),
	}
}

// restore loads the committed cells of the given source partitions (by
// partition) from the projection topics.
func (r *Runner) restore(ctx context.Context, adm *kadm.Client, need map[int32][]Source) error {
	start := time.Now()
	var topics []string
	for _, n := range Names {
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
			return nil
		}
		c, err := decodeCell(k.Projection, rec.Value)
		if err != nil {
			r.log.Error("skipping corrupt projection cell", "key", key, "err", err, "code", Code(err))
			return nil
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
	r.metrics.restoreSeconds.Observe(time.Since(start).Seconds())
	r.log.Debug("restored projection state", "partitions", len(need), "cells", loaded, "took", time.Since(start))
	return nil
}

type runnerMetrics struct {
	records        *prometheus.CounterVec
	txns           *prometheus.CounterVec
	cells          *prometheus.CounterVec
	txnSeconds     prometheus.Histogram
	restoreSeconds prometheus.Histogram
}

func newRunnerMetrics(reg prometheus.Registerer) *runnerMetrics {
	m := &runnerMetrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spine_projection_records_total", Help: "Thread records the projections consumed, by outcome (folded, dead_lettered).",
		}, []string{"outcome"}),
		txns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spine_projection_transactions_total", Help: "Projection transactions by outcome (committed, aborted).",
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
		reg.MustRegister(m.records, m.txns, m.cells, m.txnSeconds, m.restoreSeconds)
	}
	return m
}
