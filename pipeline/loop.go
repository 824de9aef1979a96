package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"
	"github.com/twmb/franz-go/plugin/kslog"

	"github.com/spinerun/spine/internal/promreg"
)

// Processor runs one Handler on the transactional consume→process→produce
// loop: it consumes its inputs in the consumer group Layout.Group(name),
// keeps the handler's state in the compacted changelog Layout.State(name),
// dead-letters poison input to Layout.DLQ(), and fires durable timers of a
// Timed handler. See pipeline/DESIGN.md for goroutines and locks. One
// built with NewBatchProcessor runs a BatchHandler instead, without a
// changelog or timers.
//
// A Processor is built with NewProcessor (no I/O) and runs with Run. Run may
// be called once at a time.
type Processor struct {
	name  string
	h     Handler
	timed Timed
	cfg   processorConfig

	group      string
	txnID      string
	stateTopic Topic
	dlqTopic   Topic
	inputs     map[string]bool

	m     *loopMetrics
	store *store

	// async runs the works of an Async handler (nil for other handlers);
	// asyncS is the loop goroutine's side of it.
	async  *asyncRunner
	asyncS asyncSession
	// rebalances counts revocations and losses (see end); pending counts
	// the rebalances the loop held back (OnPartitionsCallbackBlocked).
	rebalances atomic.Int64
	pending    atomic.Int64

	running atomic.Bool
	fatalMu sync.Mutex
	fatal   error

	backoff time.Duration // loop goroutine only
	// deferredSince is when records passed over without a transaction
	// first left their offsets uncommitted (zero: none); loop goroutine only.
	deferredSince time.Time

	// A batch processor's handler (NewBatchProcessor; nil otherwise) and
	// the optional interfaces it implements.
	bh      BatchHandler
	settler Settler
	revoker Revoker
}

// NewProcessor returns a processor named name (it names the group, the
// state topic and the transactional id) running h. It does no I/O.
func NewProcessor(name string, h Handler, opts ...ProcessorOpt) (*Processor, error) {
	cfg := defaultProcessorConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if err := cfg.validate(name, h); err != nil {
		return nil, err
	}
	m, err := newLoopMetrics(cfg.reg)
	if err != nil {
		return nil, fmt.Errorf("pipeline: register metrics of processor %s: %w", name, err)
	}
	p := &Processor{
		name:       name,
		h:          h,
		cfg:        cfg,
		group:      cfg.layout.Group(name),
		stateTopic: cfg.layout.State(name),
		dlqTopic:   cfg.layout.DLQ(),
		inputs:     map[string]bool{},
		m:          m,
		store:      newStore(),
	}
	p.txnID = p.group + "-" + cfg.instance
	p.timed, _ = h.(Timed)
	if a, ok := h.(Async); ok {
		am, err := newAsyncMetrics(cfg.reg)
		if err != nil {
			return nil, fmt.Errorf("pipeline: register metrics of processor %s: %w", name, err)
		}
		p.async = newAsyncRunner(name, a, cfg.asyncConcurrency, cfg.asyncQueue, cfg.log.With("processor", name, "instance", cfg.instance), am)
	}
	for _, t := range cfg.inputs {
		p.inputs[string(t)] = true
	}
	p.cfg.log = cfg.log.With("processor", name, "instance", cfg.instance)
	return p, nil
}

// Name returns the processor's name.
func (p *Processor) Name() string { return p.name }

// TransactionalID returns the transactional id this instance uses.
func (p *Processor) TransactionalID() string { return p.txnID }

// ErrAlreadyRunning is returned by Run when the processor is running.
var ErrAlreadyRunning = errors.New("pipeline: processor is already running")

// Run consumes, processes and produces until ctx ends, then finishes the
// transaction in flight, commits it, leaves the group and closes the client
// within the shutdown timeout. It returns nil after a clean shutdown. A
// failed client (fenced, or an unrecoverable transaction error) is rebuilt
// after a backoff; only an invalid client configuration is returned as an
// error.
func (p *Processor) Run(ctx context.Context) error {
	if !p.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	defer p.running.Store(false)
	backoff := p.cfg.retryInitial
	for {
		began := time.Now()
		err := p.session(ctx)
		if time.Since(began) > time.Minute {
			backoff = p.cfg.retryInitial // it ran fine for a while
		}
		if ctx.Err() != nil {
			return nil
		}
		var ce *clientError
		if errors.As(err, &ce) {
			return err
		}
		hint := ""
		if errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch) || errors.Is(err, kerr.FencedInstanceID) {
			hint = "fenced by another instance with the same transactional id: is a second instance running with SPINE_INSTANCE_ID=" + p.cfg.instance + "?"
		}
		p.cfg.log.Error("processor session failed; restarting it", "err", err, "backoff", backoff, "hint", hint)
		if !sleepCtx(ctx, backoff) {
			return nil
		}
		backoff = min(backoff*2, p.cfg.retryMax)
	}
}

// clientError is a configuration the Kafka client refused.
type clientError struct{ err error }

func (e *clientError) Error() string { return e.err.Error() }
func (e *clientError) Unwrap() error { return e.err }

func (p *Processor) setFatal(err error) {
	p.fatalMu.Lock()
	if p.fatal == nil {
		p.fatal = err
	}
	p.fatalMu.Unlock()
}

func (p *Processor) takeFatal() error {
	p.fatalMu.Lock()
	defer p.fatalMu.Unlock()
	err := p.fatal
	p.fatal = nil
	return err
}

// session runs one client's lifetime.
func (p *Processor) session(ctx context.Context) error {
	log := p.cfg.log
	p.store.dropAll()
	p.asyncStart()
	p.deferredSince = time.Time{}
	_ = p.takeFatal()

	klog := kslog.New(slog.New(minLevelHandler{h: log.Handler(), min: slog.LevelWarn}))
	base := append(slices.Clone(p.cfg.kafka), kgo.WithLogger(klog))

	// The restorer reads the changelog with its own plain client; its admin
	// requests go through a separate client too so they never queue behind
	// the session's.
	admCl, err := kgo.NewClient(base...)
	if err != nil {
		return &clientError{fmt.Errorf("pipeline: processor %s: %w", p.name, err)}
	}
	defer admCl.Close()
	rs := &restorer{
		topic:   p.stateTopic,
		opts:    base,
		adm:     kadm.NewClient(admCl),
		settle:  2 * p.cfg.txnTimeout,
		timeout: 2*p.cfg.txnTimeout + 30*time.Second,
		quiet:   5 * time.Second,
		timed:   p.timed,
		log:     log,
	}
	opts := append(slices.Clone(base),
		kgo.ConsumerGroup(p.group),
		kgo.ConsumeTopics(topicStrings(p.cfg.inputs)...),
		kgo.Balancers(kgo.RangeBalancer()), // co-partitioned: partition p of every input goes to one member
		kgo.BlockRebalanceOnPoll(),
		kgo.SessionTimeout(p.cfg.sessionTimeout),
		// Heartbeats are how a member learns of a rebalance: frequent ones
		// shorten the stall when an instance joins or leaves.
		kgo.HeartbeatInterval(max(p.cfg.sessionTimeout/10, 200*time.Millisecond)),
		kgo.RebalanceTimeout(p.cfg.rebalanceTime),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Control records (transaction markers) are polled too, never
		// handled: they tell the loop how far it has read, which the
		// catch-up wait of timers compares with the last stable offset.
		kgo.KeepControlRecords(),
		kgo.TransactionalID(p.txnID),
		kgo.TransactionTimeout(p.cfg.txnTimeout),
		// A transaction's records are sent when it ends, in the fewest
		// batches: one per partition (ManualFlushing, then Flush before End;
		// ending without flushing would wait out a linger every time).
		kgo.ManualFlushing(),
		kgo.MaxBufferedRecords(p.cfg.maxBuffered),
		kgo.ProducerLinger(0),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.RecordDeliveryTimeout(p.cfg.txnTimeout),
		kgo.RecordPartitioner(p.partitioner()),
		kgo.OnPartitionsAssigned(func(cbctx context.Context, cl *kgo.Client, assigned map[string][]int32) {
			// Once per rebalance and member: the generation names the
			// rebalance (the fault soak counts them from these lines).
			member, generation := cl.GroupMetadata()
			log.Info("partitions assigned", "group", p.group, "generation", generation, "member_id", member, "partitions", p.partitionsOf(assigned))
			// The restore ends with Run's ctx too: a stopping processor
			// leaves the group at once instead of finishing a restore
			// (which can wait out a crashed predecessor's transaction).
			rctx, stop := context.WithCancel(cbctx)
			defer stop()
			defer context.AfterFunc(ctx, stop)()
			p.onAssigned(rctx, rs, rs.adm, assigned)
		}),
		kgo.OnPartitionsRevoked(p.onRevoked),
		kgo.OnPartitionsLost(p.onRevoked),
		// A rebalance waiting for the loop: the group may complete it
		// without this member (kicked out after the rebalance timeout) and
		// give its partitions to another. A transaction that commits no
		// offsets has no generation check, so it must not commit then.
		kgo.OnPartitionsCallbackBlocked(func(context.Context, *kgo.Client) { p.pending.Add(1) }),
	)
	if p.cfg.static {
		opts = append(opts, kgo.InstanceID(p.txnID))
	}
	if p.cfg.reg != nil {
		km := kprom.NewMetrics("spine_kafka",
			kprom.Registerer(promreg.Tolerant{Registerer: p.cfg.reg}),
			kprom.WithStaticLabel(prometheus.Labels{"processor": p.name}))
		opts = append(opts, kgo.WithHooks(km))
	}

	sess, err := kgo.NewGroupTransactSession(opts...)
	if err != nil {
		return &clientError{fmt.Errorf("pipeline: processor %s: %w", p.name, err)}
	}
	defer p.close(sess)

	// Initialising the producer id now fences a predecessor with the same
	// transactional id and aborts its open transaction, so read_committed
	// readers (and our own restore) need not wait out its timeout.
	fctx, cancel := context.WithTimeout(ctx, p.cfg.txnTimeout)
	_, _, err = sess.Client().ProducerID(fctx)
	cancel()
	if err != nil && ctx.Err() == nil {
		log.Warn("could not initialise the transactional producer yet", "err", err)
	}
	log.Info("processor started", "group", p.group, "transactional_id", p.txnID, "inputs", p.cfg.inputs)

	for {
		if err := p.takeFatal(); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		pctx, cancel := p.pollContext(ctx)
		fs := sess.PollRecords(pctx, p.cfg.maxBatch)
		cancel()
		if fs.IsClientClosed() {
			return errors.New("kafka client closed")
		}
		fs.EachError(func(t string, part int32, err error) {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				return
			}
			log.Warn("fetch error", "topic", t, "partition", part, "err", err)
		})
		recs := fs.Records()
		var read map[int32]map[string]int64
		if len(recs) > 0 {
			recs, read = p.splitControl(recs, p.timed != nil && p.store.holding())
		}
		var due map[int32][]timer
		if p.timed != nil {
			now := time.Now()
			p.logReleased(p.store.releaseExpired(now))
			due = p.store.dueTimers(now)
		}
		var done []completion
		if p.async != nil {
			done = p.async.take()
		}
		now := time.Now()
		switch {
		case len(due) == 0 && len(done) == 0 && len(recs) > 0 && p.skippable(recs) && p.deferring(now):
			// Every record is of a type this processor passes over:
			// nothing to produce, so no transaction. Their offsets are
			// committed with the next one (at most skipCommitDelay
			// later); read again after a crash, they are passed over
			// again. This spares brokers the offset-only transactions
			// that Kafka 4.1 with transaction.version 2 often aborts.
			p.m.records.WithLabelValues(p.name, "skipped").Add(float64(len(recs)))
			p.advanceRead(read)
		case p.bh != nil && (len(recs) > 0 || p.deferralDue(now)):
			if err := p.transactBatch(ctx, sess, recs); err != nil {
				sess.AllowRebalance()
				return err
			}
		case len(recs) > 0 || len(due) > 0 || len(done) > 0 || p.deferralDue(now):
			if err := p.transact(ctx, sess, recs, due, done, read); err != nil {
				sess.AllowRebalance()
				return err
			}
		case len(read) > 0:
			// Only transaction markers: nothing to handle or commit,
			// but the catch-up waits move on.
			p.advanceRead(read)
		}
		p.backpressure(sess.Client())
		sess.AllowRebalance()
	}
}

// skipCommitDelay bounds how long the offsets of records passed over
// without a transaction (WithEventTypes) wait for the next one.
const skipCommitDelay = time.Second

// skippable reports whether the handler is handed none of recs: each names
// in its HeaderEventType a type outside WithEventTypes.
func (p *Processor) skippable(recs []*kgo.Record) bool {
	if p.cfg.eventTypes == nil {
		return false
	}
	for _, r := range recs {
		if has, wanted := typeWanted(p.cfg.eventTypes, r); !has || wanted {
			return false
		}
	}
	return true
}

// deferring starts or continues a deferral of skipped records' offsets and
// reports whether it may go on (it is younger than skipCommitDelay).
func (p *Processor) deferring(now time.Time) bool {
	if p.deferredSince.IsZero() {
		p.deferredSince = now
	}
	return now.Sub(p.deferredSince) < skipCommitDelay
}

// deferralDue reports whether skipped records' offsets have waited
// skipCommitDelay for a transaction: an offset-only one commits them.
func (p *Processor) deferralDue(now time.Time) bool {
	return !p.deferredSince.IsZero() && now.Sub(p.deferredSince) >= skipCommitDelay
}

// advanceRead moves the catch-up positions past records that needed no
// transaction.
func (p *Processor) advanceRead(read map[int32]map[string]int64) {
	if len(read) == 0 {
		return
	}
	ov := p.store.newOverlay()
	advanceAll(ov, read)
	p.logReleased(ov.apply(p.timed))
}

// close leaves the group and closes the client, bounded by the shutdown
// timeout.
func (p *Processor) close(sess *kgo.GroupTransactSession) {
	p.asyncStop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		sess.CloseAllowingRebalance()
	}()
	select {
	case <-done:
		p.cfg.log.Info("processor stopped")
	case <-time.After(p.cfg.shutdownTimeout):
		p.cfg.log.Error("processor did not close within the shutdown timeout", "timeout", p.cfg.shutdownTimeout)
	}
	p.store.dropAll()
	p.revokeAll()
}

// finishing returns the context a transaction in flight finishes in
// (two-step shutdown): it outlives ctx, but ends after d, or the shutdown
// timeout after ctx ended, whichever comes first. A transaction
// whose broker stopped answering (a restart, a partition) would otherwise
// hold a stopping process for all of d; aborted instead, its records are
// read again by the partitions' next owner.
func (p *Processor) finishing(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d)
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(p.cfg.shutdownTimeout, cancel)
		context.AfterFunc(fctx, func() { t.Stop() })
	})
	return fctx, func() { stop(); cancel() }
}

func (p *Processor) partitionsOf(m map[string][]int32) []int32 {
	var out []int32
	for t, ps := range m {
		if !p.inputs[t] {
			continue
		}
		for _, part := range ps {
			if !slices.Contains(out, part) {
				out = append(out, part)
			}
		}
	}
	slices.Sort(out)
	return out
}

// onAssigned restores the assigned partitions' state before fetching from
// them begins (BlockRebalanceOnPoll keeps it serial with the loop). For a
// Timed handler it first notes how far each input must be read before the
// partitions' timers may fire.
func (p *Processor) onAssigned(ctx context.Context, rs *restorer, adm *kadm.Client, assigned map[string][]int32) {
	parts := p.partitionsOf(assigned)
	if len(parts) == 0 || p.bh != nil { // a batch handler keeps its own state
		return
	}
	var holds map[int32]*catchUp
	if p.timed != nil && p.cfg.catchUpGrace > 0 {
		holds = p.catchUpTargets(ctx, adm, parts)
	}
	states, err := rs.restore(ctx, parts)
	if err != nil {
		p.setFatal(fmt.Errorf("restore state of partitions %v: %w", parts, err))
		return
	}
	// The grace counts from now: a restore that waited for a crashed
	// predecessor's transaction does not use it up.
	now := time.Now()
	for part, ps := range states {
		if h := holds[part]; h != nil && len(h.targets) > 0 {
			h.since, h.until = now, now.Add(p.cfg.catchUpGrace)
			ps.hold = h
		}
		if p.async != nil {
			p.async.own(part, ps)
		}
		p.store.install(part, ps)
	}
}

// catchUpTargets returns, for each partition, the input offsets the loop
// must read to before the partition's timers fire: each input topic's last
// stable offset now, unless the group's committed offset is already there.
// If the offsets cannot be listed, the partitions' timers wait out the
// grace period (a timer held too long is late; one fired too early refuses
// an answer that was in time).
func (p *Processor) catchUpTargets(ctx context.Context, adm *kadm.Client, parts []int32) map[int32]*catchUp {
	holds := make(map[int32]*catchUp, len(parts))
	for _, part := range parts {
		holds[part] = &catchUp{targets: map[string]int64{}} // since and until are set once restored
	}
	topics := topicStrings(p.cfg.inputs)
	ctx, cancel := context.WithTimeout(ctx, p.cfg.txnTimeout)
	defer cancel()
	fail := func(err error) map[int32]*catchUp {
		p.cfg.log.Warn("cannot list the inputs' offsets; timers of the assigned partitions wait out the catch-up grace",
			"partitions", parts, "grace", p.cfg.catchUpGrace, "err", err)
		for _, h := range holds {
			h.targets[""] = 1 // unreachable: only the grace ends the wait
		}
		return holds
	}
	stable, err := adm.ListCommittedOffsets(ctx, topics...)
	if err == nil {
		err = stable.Error()
	}
	if err != nil {
		return fail(fmt.Errorf("last stable offsets: %w", err))
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return fail(fmt.Errorf("start offsets: %w", err))
	}
	committed, err := adm.FetchOffsets(ctx, p.group)
	if err == nil {
		err = committed.Error()
	}
	if err != nil {
		return fail(fmt.Errorf("committed offsets of group %s: %w", p.group, err))
	}
	for _, part := range parts {
		for _, t := range topics {
			end, ok := stable.Lookup(t, part)
			if !ok {
				return fail(fmt.Errorf("input %s has no partition %d", t, part))
			}
			from := int64(-1)
			if c, ok := committed.Lookup(t, part); ok && c.Err == nil {
				from = c.At
			}
			if from < 0 { // nothing committed: consuming starts at the log start
				if s, ok := starts.Lookup(t, part); ok {
					from = s.Offset
				}
			}
			if end.Offset > from {
				holds[part].targets[t] = end.Offset
			}
		}
	}
	return holds
}

// splitControl drops the transaction markers from recs and, with track
// (a partition is catching up), returns per partition and input topic the
// offset just past the last record read (markers included).
func (p *Processor) splitControl(recs []*kgo.Record, track bool) ([]*kgo.Record, map[int32]map[string]int64) {
	var read map[int32]map[string]int64
	if track {
		read = map[int32]map[string]int64{}
	}
	var data []*kgo.Record
	for i, r := range recs {
		if track {
			m := read[r.Partition]
			if m == nil {
				m = map[string]int64{}
				read[r.Partition] = m
			}
			if r.Offset+1 > m[r.Topic] {
				m[r.Topic] = r.Offset + 1
			}
		}
		if r.Attrs.IsControl() {
			if data == nil {
				data = append(make([]*kgo.Record, 0, len(recs)), recs[:i]...)
			}
			continue
		}
		if data != nil {
			data = append(data, r)
		}
	}
	if data == nil {
		return recs, read
	}
	return data, read
}

func advanceAll(ov *overlay, read map[int32]map[string]int64) {
	for part, m := range read {
		for t, off := range m {
			ov.advance(t, part, off)
		}
	}
}

// logReleased logs the partitions whose timers the catch-up wait released.
func (p *Processor) logReleased(hs []held) {
	for _, h := range hs {
		if h.expired {
			p.cfg.log.Warn("timers released by the catch-up grace before the inputs were read to their offsets at assignment",
				"partition", h.partition, "behind", h.behind, "waited", h.waited.Round(time.Millisecond))
			continue
		}
		p.cfg.log.Info("inputs read to their offsets at assignment; timers released",
			"partition", h.partition, "waited", h.waited.Round(time.Millisecond))
	}
}

// onRevoked drops the state of revoked or lost partitions; their new owner
// restores it from the changelog.
func (p *Processor) onRevoked(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
	p.rebalances.Add(1)
	parts := p.partitionsOf(revoked)
	p.store.drop(parts)
	if p.async != nil {
		p.async.release(parts)
	}
	if p.revoker != nil && len(parts) > 0 {
		p.revoker.Revoked(parts)
	}
	if len(parts) > 0 {
		p.cfg.log.Info("partitions revoked; state dropped", "partitions", parts)
	}
}

// statePartitioner writes state records to the partition the loop chose
// (the input's partition) and partitions everything else by key hash
// (Kafka's murmur2, as kgo's default).
type statePartitioner struct {
	state string
	rest  kgo.Partitioner
}

func (s statePartitioner) ForTopic(t string) kgo.TopicPartitioner {
	if t == s.state {
		return manualTopicPartitioner{}
	}
	return s.rest.ForTopic(t)
}

type manualTopicPartitioner struct{}

func (manualTopicPartitioner) RequiresConsistency(*kgo.Record) bool { return true }
func (manualTopicPartitioner) Partition(r *kgo.Record, n int) int {
	if int(r.Partition) >= n {
		return -1 // kgo fails the record
	}
	return int(r.Partition)
}

// minLevelHandler raises a handler's minimum level, so the Kafka client's
// per-transaction info logs stay out of an info-level process log.
type minLevelHandler struct {
	h   slog.Handler
	min slog.Level
}

func (m minLevelHandler) Enabled(ctx context.Context, l slog.Level) bool {
	if m.h.Enabled(ctx, slog.LevelDebug) {
		return true
	}
	return l >= m.min && m.h.Enabled(ctx, l)
}
func (m minLevelHandler) Handle(ctx context.Context, r slog.Record) error { return m.h.Handle(ctx, r) }
func (m minLevelHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevelHandler{h: m.h.WithAttrs(as), min: m.min}
}
func (m minLevelHandler) WithGroup(n string) slog.Handler {
	return minLevelHandler{h: m.h.WithGroup(n), min: m.min}
}

func topicStrings(ts []Topic) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = string(t)
	}
	return out
}

// sleepCtx sleeps d or until ctx ends; it reports whether d elapsed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
