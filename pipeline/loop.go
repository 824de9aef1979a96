package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
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
	"github.com/spinerun/spine/schemas"
)

// ProcessorOpt configures a Processor.
type ProcessorOpt func(*processorConfig)

type processorConfig struct {
	kafka           []kgo.Opt
	layout          Layout
	inputs          []Topic
	codec           Codec
	log             *slog.Logger
	reg             prometheus.Registerer
	instance        string
	maxBatch        int
	txnTimeout      time.Duration
	shutdownTimeout time.Duration
	tick            time.Duration
	observers       []Observer
	retryInitial    time.Duration
	retryMax        time.Duration
	inPlaceRetries  int
	sessionTimeout  time.Duration
	rebalanceTime   time.Duration
	static          bool
	maxBuffered     int
	concurrency     int
	catchUpGrace    time.Duration
	// eventTypes, when set, are the only event types handed to the
	// handler (WithEventTypes).
	eventTypes map[schemas.EventType]bool
}

func defaultProcessorConfig() processorConfig {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "0"
	}
	return processorConfig{
		log:             slog.New(slog.DiscardHandler),
		instance:        host,
		maxBatch:        1000,
		txnTimeout:      10 * time.Second,
		shutdownTimeout: 10 * time.Second,
		tick:            50 * time.Millisecond,
		retryInitial:    100 * time.Millisecond,
		retryMax:        10 * time.Second,
		inPlaceRetries:  3,
		sessionTimeout:  10 * time.Second,
		rebalanceTime:   30 * time.Second,
		maxBuffered:     1 << 17,
		concurrency:     1,
		catchUpGrace:    30 * time.Second,
	}
}

// WithKafka sets the client options that reach the cluster: seed brokers,
// SASL, TLS (Config.KafkaOpts). Required.
func WithKafka(opts ...kgo.Opt) ProcessorOpt {
	return func(c *processorConfig) { c.kafka = append(c.kafka, opts...) }
}

// WithLayout sets the topic layout (prefix; the state, DLQ topics and the
// group name derive from it). Default: the zero Layout, no prefix.
func WithLayout(l Layout) ProcessorOpt { return func(c *processorConfig) { c.layout = l } }

// WithInputs sets the topics the processor consumes. Required. They must be
// co-partitioned with the processor's state topic (same partition count,
// keyed by trace_id).
func WithInputs(topics ...Topic) ProcessorOpt {
	return func(c *processorConfig) { c.inputs = append(c.inputs, topics...) }
}

// WithCodec sets the codec that decodes inputs and encodes outputs.
// Required.
func WithCodec(codec Codec) ProcessorOpt { return func(c *processorConfig) { c.codec = codec } }

// WithLogger sets the logger; the Kafka client logs through it (kslog) at
// warn and above unless it is enabled for debug. Default: discard.
func WithLogger(l *slog.Logger) ProcessorOpt { return func(c *processorConfig) { c.log = l } }

// WithRegisterer registers the loop's metrics and the Kafka client's
// (kprom, namespace spine_kafka, const label processor) on reg. Default:
// none. Several processors may share one registry.
func WithRegisterer(reg prometheus.Registerer) ProcessorOpt {
	return func(c *processorConfig) { c.reg = reg }
}

// WithInstanceID names this instance of the processor. The transactional id
// is Layout.Group(name)+"-"+id, so it must be stable across restarts of the
// same instance (a restart then fences its predecessor's open transaction at
// once) and unique among live instances. Default: the host name.
func WithInstanceID(id string) ProcessorOpt { return func(c *processorConfig) { c.instance = id } }

// WithBatchSize bounds the records handled in one transaction. Default 1000.
func WithBatchSize(n int) ProcessorOpt { return func(c *processorConfig) { c.maxBatch = n } }

// WithTransactionTimeout sets the transaction timeout. Default 10s.
func WithTransactionTimeout(d time.Duration) ProcessorOpt {
	return func(c *processorConfig) { c.txnTimeout = d }
}

// WithShutdownTimeout bounds leaving the group and closing the client
// after the last transaction ended. Default 10s.
func WithShutdownTimeout(d time.Duration) ProcessorOpt {
	return func(c *processorConfig) { c.shutdownTimeout = d }
}

// WithTimerTick sets how often due timers are looked for (and the longest a
// poll waits). Default 50ms.
func WithTimerTick(d time.Duration) ProcessorOpt { return func(c *processorConfig) { c.tick = d } }

// WithObserver adds an Observer told of every committed transaction's
// outputs (for example a GoldenPath).
func WithObserver(o Observer) ProcessorOpt {
	return func(c *processorConfig) { c.observers = append(c.observers, o) }
}

// WithRetryBackoff sets the backoff of transient errors: it starts at
// initial and doubles up to max, while the processor stays blocked on the
// failing record. Defaults 100ms and 10s.
func WithRetryBackoff(initial, max time.Duration) ProcessorOpt {
	return func(c *processorConfig) { c.retryInitial, c.retryMax = initial, max }
}

// WithGroupTimeouts sets the consumer group's session and rebalance
// timeouts: how long a crashed member keeps its partitions, and how long a
// rebalance waits for members. Defaults 10s and 30s.
func WithGroupTimeouts(session, rebalance time.Duration) ProcessorOpt {
	return func(c *processorConfig) { c.sessionTimeout, c.rebalanceTime = session, rebalance }
}

// WithMaxBuffered bounds the records one transaction buffers before they
// are sent (they are sent when it ends, one batch per partition); a
// transaction producing more is sent part way. Default 131072.
func WithMaxBuffered(n int) ProcessorOpt { return func(c *processorConfig) { c.maxBuffered = n } }

// WithConcurrency lets the loop handle the records of up to n partitions
// of a batch at once (each partition's records still in order, one
// transaction per batch as always). It pays off for handlers that wait (a
// dataplane executor calling out); the handler must then be safe for
// concurrent calls on different partitions. Default 1: one record at a
// time.
func WithConcurrency(n int) ProcessorOpt { return func(c *processorConfig) { c.concurrency = n } }

// WithCatchUpGrace bounds how long, after a partition is assigned, its
// timers wait for the loop to read the partition's inputs up to their last
// stable offsets at assignment (the backlog that built up while no one
// owned it): a timer that came due meanwhile must not fire before an input
// committed before its deadline is read. After d the timers fire even if
// an input could not be read that far (logged at warn). 0 turns the wait
// off. Default 30s.
func WithCatchUpGrace(d time.Duration) ProcessorOpt {
	return func(c *processorConfig) { c.catchUpGrace = d }
}

// WithStaticMembership joins the group as a static member (KIP-345) whose
// group.instance.id is the transactional id: a restarted instance takes its
// partitions back at once, without a rebalance or waiting out the session
// timeout of its crashed predecessor. The price: a cleanly stopped static
// member does not leave the group, so its partitions move to other
// instances only after the session timeout. Default off.
func WithStaticMembership() ProcessorOpt { return func(c *processorConfig) { c.static = true } }

// WithEventTypes hands the handler only the records whose event type is one
// of types. The loop writes each RuntimeEvent it produces with its type in
// the HeaderEventType header; a record whose header names another type is
// committed without being decoded (counted as outcome "skipped"). Records
// without the header (written by other producers) are decoded and handed
// over as before, so the handler must still ignore what it does not want.
// Default: every record.
func WithEventTypes(types ...schemas.EventType) ProcessorOpt {
	return func(c *processorConfig) {
		c.eventTypes = make(map[schemas.EventType]bool, len(types))
		for _, t := range types {
			c.eventTypes[t] = true
		}
	}
}

func (c *processorConfig) validate(name string, h Handler) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if name == "" || strings.ContainsAny(name, " /\\,:") {
		bad("processor name %q must be non-empty and a valid topic name part", name)
	}
	if h == nil {
		bad("handler is nil")
	}
	if len(c.kafka) == 0 {
		bad("no Kafka options: pass WithKafka(cfg.KafkaOpts(...))")
	}
	if len(c.inputs) == 0 {
		bad("no input topics: pass WithInputs")
	}
	for _, t := range c.inputs {
		if t == c.layout.State(name) || t == c.layout.DLQ() {
			bad("input topic %s is the processor's own state or dead-letter topic", t)
		}
	}
	if c.codec == nil {
		bad("no codec: pass WithCodec")
	}
	if c.log == nil {
		bad("logger is nil")
	}
	if c.instance == "" || strings.ContainsAny(c.instance, " /\\,:") {
		bad("instance id %q must be non-empty without spaces or separators", c.instance)
	}
	if c.catchUpGrace < 0 {
		bad("catch-up grace %s must not be negative", c.catchUpGrace)
	}
	if c.concurrency < 1 {
		bad("concurrency %d must be at least 1", c.concurrency)
	}
	if c.maxBuffered < 2 {
		bad("max buffered records %d must be at least 2", c.maxBuffered)
	}
	if c.maxBatch < 1 {
		bad("batch size %d must be at least 1", c.maxBatch)
	}
	if c.txnTimeout < time.Second {
		bad("transaction timeout %s must be at least 1s", c.txnTimeout)
	}
	if c.shutdownTimeout <= 0 {
		bad("shutdown timeout %s must be positive", c.shutdownTimeout)
	}
	if c.tick <= 0 || c.tick > time.Second {
		bad("timer tick %s must be in (0, 1s]", c.tick)
	}
	if c.retryInitial <= 0 || c.retryMax < c.retryInitial {
		bad("retry backoff %s..%s: want 0 < initial <= max", c.retryInitial, c.retryMax)
	}
	if c.sessionTimeout <= 0 || c.rebalanceTime <= 0 {
		bad("group timeouts must be positive")
	}
	for i, o := range c.observers {
		if o == nil {
			bad("observer %d is nil", i)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("pipeline: invalid processor %q: %w", name, errors.Join(errs...))
	}
	return nil
}

// ProcessorOpts returns the options a Config implies: the cluster, the
// layout, the instance id, batch size, transaction, group and shutdown
// timeouts, static membership.
// brokers overrides c.Brokers (the embedded broker's addresses).
func (c *Config) ProcessorOpts(brokers ...string) ([]ProcessorOpt, error) {
	kopts, err := c.KafkaOpts(brokers...)
	if err != nil {
		return nil, err
	}
	opts := []ProcessorOpt{
		WithKafka(kopts...),
		WithLayout(NewLayout(c)),
		WithShutdownTimeout(c.ShutdownTimeout),
	}
	if c.InstanceID != "" {
		opts = append(opts, WithInstanceID(c.InstanceID))
	}
	if c.BatchMaxRecords > 0 {
		opts = append(opts, WithBatchSize(c.BatchMaxRecords))
	}
	if c.TransactionTimeout > 0 {
		opts = append(opts, WithTransactionTimeout(c.TransactionTimeout))
	}
	if c.GroupSessionTimeout > 0 {
		opts = append(opts, WithGroupTimeouts(c.GroupSessionTimeout, max(30*time.Second, 3*c.TransactionTimeout)))
	}
	if c.StaticMembership {
		opts = append(opts, WithStaticMembership())
	}
	return opts, nil
}

// Processor runs one Handler on the transactional consume→process→produce
// loop: it consumes its inputs in the consumer group Layout.Group(name),
// keeps the handler's state in the compacted changelog Layout.State(name),
// dead-letters poison input to Layout.DLQ(), and fires durable timers of a
// Timed handler. See pipeline/DESIGN.md for goroutines and locks.
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

	running atomic.Bool
	fatalMu sync.Mutex
	fatal   error

	backoff time.Duration // loop goroutine only
	// deferredSince is when records passed over without a transaction
	// first left their offsets uncommitted (zero: none); loop goroutine only.
	deferredSince time.Time
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
		kgo.RecordPartitioner(statePartitioner{state: string(p.stateTopic), rest: kgo.StickyKeyPartitioner(nil)}),
		kgo.OnPartitionsAssigned(func(ctx context.Context, _ *kgo.Client, assigned map[string][]int32) {
			p.onAssigned(ctx, rs, rs.adm, assigned)
		}),
		kgo.OnPartitionsRevoked(p.onRevoked),
		kgo.OnPartitionsLost(p.onRevoked),
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
		pctx, cancel := context.WithTimeout(ctx, p.cfg.tick)
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
		now := time.Now()
		switch {
		case len(due) == 0 && len(recs) > 0 && p.skippable(recs) && p.deferring(now):
			// Every record is of a type this processor passes over:
			// nothing to produce, so no transaction. Their offsets are
			// committed with the next one (at most skipCommitDelay
			// later); read again after a crash, they are passed over
			// again. This spares brokers the offset-only transactions
			// that Kafka 4.1 with transaction.version 2 often aborts.
			p.m.records.WithLabelValues(p.name, "skipped").Add(float64(len(recs)))
			p.advanceRead(read)
		case len(recs) > 0 || len(due) > 0 || p.deferralDue(now):
			if err := p.transact(ctx, sess, recs, due, read); err != nil {
				sess.AllowRebalance()
				return err
			}
		case len(read) > 0:
			// Only transaction markers: nothing to handle or commit,
			// but the catch-up waits move on.
			p.advanceRead(read)
		}
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
		if t, ok := eventTypeHeader(r); !ok || p.cfg.eventTypes[t] {
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
	if len(parts) == 0 {
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
	parts := p.partitionsOf(revoked)
	p.store.drop(parts)
	if len(parts) > 0 {
		p.cfg.log.Info("partitions revoked; state dropped", "partitions", parts)
	}
}

// batch is one transaction's work: the uncommitted state overlay, the
// outputs to report after commit, and what was dead-lettered.
type batch struct {
	ov      *overlay
	outputs []Output
	records int
	skipped int
	dlq     map[string]int
	fired   map[int32][]timer

	mu      sync.Mutex
	prodErr error
}

// errBlocked marks a batch aborted because a record kept failing with a
// transient error.
type errBlocked struct{ err error }

func (e *errBlocked) Error() string { return e.err.Error() }
func (e *errBlocked) Unwrap() error { return e.err }

// transact handles recs and due timers in one transaction. It returns an
// error only when the session is unusable.
func (p *Processor) transact(ctx context.Context, sess *kgo.GroupTransactSession, recs []*kgo.Record, due map[int32][]timer, read map[int32]map[string]int64) error {
	// In-flight work finishes even when ctx ends (two-step shutdown); the
	// transaction timeout bounds it.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.txnTimeout+5*time.Second)
	defer cancel()
	start := time.Now()
	if err := sess.Begin(); err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	b := &batch{ov: p.store.newOverlay(), dlq: map[string]int{}, fired: due}
	var buffered atomic.Int64
	promise := func(r *kgo.Record, err error) {
		if err != nil {
			b.mu.Lock()
			b.prodErr = errors.Join(b.prodErr, fmt.Errorf("produce to %s: %w", r.Topic, err))
			b.mu.Unlock()
		}
	}
	produce := func(r *kgo.Record) {
		if buffered.Add(1) >= int64(p.cfg.maxBuffered) {
			// A huge transaction: send what is buffered so far.
			if err := sess.Client().Flush(wctx); err != nil {
				b.mu.Lock()
				b.prodErr = errors.Join(b.prodErr, fmt.Errorf("flush: %w", err))
				b.mu.Unlock()
			}
			buffered.Store(1)
		}
		sess.Produce(wctx, r, promise)
	}

	var blocked error
	if p.cfg.concurrency > 1 && len(recs) > 1 {
		blocked = p.recordsConcurrently(ctx, wctx, b, recs, produce)
	} else {
		for _, r := range recs {
			if err := p.record(ctx, wctx, b, r, produce); err != nil {
				blocked = err
				break
			}
		}
	}
	if blocked == nil && len(due) > 0 {
		now := time.Now()
		for part, ts := range due {
			for _, t := range ts {
				if err := p.fire(ctx, wctx, b, part, t, now, produce); err != nil {
					blocked = err
					break
				}
			}
			if blocked != nil {
				break
			}
		}
	}
	commit := blocked == nil
	if commit {
		// Only each key's last state of the batch goes to the changelog.
		for part, po := range b.ov.parts {
			for k, d := range po.writes {
				produce(&kgo.Record{Topic: string(p.stateTopic), Key: []byte(k), Value: d.val, Partition: part})
			}
		}
		if err := sess.Client().Flush(wctx); err != nil {
			commit = false
			blocked = fmt.Errorf("flush: %w", err)
		}
		b.mu.Lock()
		if b.prodErr != nil {
			commit = false
			blocked = b.prodErr
		}
		b.mu.Unlock()
	}
	committed, err := sess.End(wctx, kgo.TransactionEndTry(commit))
	p.m.txn(p.name, committed, time.Since(start))
	if !committed {
		p.requeue(b)
		if err != nil {
			return fmt.Errorf("end transaction: %w", err)
		}
		if blocked != nil {
			p.block(ctx, blocked)
		} else {
			p.cfg.log.Info("transaction aborted by a rebalance; its records will be processed again", "records", len(recs))
		}
		return nil
	}
	p.deferredSince = time.Time{} // every polled offset is committed
	advanceAll(b.ov, read)
	p.logReleased(b.ov.apply(p.timed))
	if p.backoff != 0 {
		p.cfg.log.Info("processor unblocked")
		p.backoff = 0
		p.m.blocked.WithLabelValues(p.name).Set(0)
	}
	p.m.records.WithLabelValues(p.name, "ok").Add(float64(b.records))
	if b.skipped > 0 {
		p.m.records.WithLabelValues(p.name, "skipped").Add(float64(b.skipped))
	}
	for code, n := range b.dlq {
		p.m.records.WithLabelValues(p.name, "dlq").Add(float64(n))
		p.m.dlq.WithLabelValues(p.name, code).Add(float64(n))
	}
	if len(b.outputs) > 0 {
		for _, o := range p.cfg.observers {
			o.Committed(b.outputs)
		}
	}
	return nil
}

// recordsConcurrently handles recs with one goroutine per partition (at
// most WithConcurrency at a time), each partition's records in order. Every
// goroutine stages into its own batch sharing the overlay, whose partitions
// are created up front so each goroutine writes only its own; the batches
// are merged afterwards. It returns the first error that blocks.
func (p *Processor) recordsConcurrently(ctx, wctx context.Context, b *batch, recs []*kgo.Record, produce func(*kgo.Record)) error {
	byPart := map[int32][]*kgo.Record{}
	var order []int32
	for _, r := range recs {
		if _, ok := byPart[r.Partition]; !ok {
			order = append(order, r.Partition)
			b.ov.part(r.Partition)
		}
		byPart[r.Partition] = append(byPart[r.Partition], r)
	}
	subs := make([]*batch, len(order))
	errs := make([]error, len(order))
	sem := make(chan struct{}, p.cfg.concurrency)
	var wg sync.WaitGroup
	for i, part := range order {
		subs[i] = &batch{ov: b.ov, dlq: map[string]int{}}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			for _, r := range byPart[part] {
				if err := p.record(ctx, wctx, subs[i], r, produce); err != nil {
					errs[i] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	for i, sb := range subs {
		b.outputs = append(b.outputs, sb.outputs...)
		b.records += sb.records
		b.skipped += sb.skipped
		for code, n := range sb.dlq {
			b.dlq[code] += n
		}
		if errs[i] != nil {
			return errs[i]
		}
	}
	return nil
}

func (p *Processor) requeue(b *batch) {
	for part, ts := range b.fired {
		po, _ := b.ov.part(part)
		p.store.requeue(part, po.base, ts)
	}
}

// block waits out the backoff after a batch was aborted on a transient
// error; the same records are polled again afterwards.
func (p *Processor) block(ctx context.Context, err error) {
	if p.backoff == 0 {
		p.backoff = p.cfg.retryInitial
	} else {
		p.backoff = min(p.backoff*2, p.cfg.retryMax)
	}
	p.m.blocked.WithLabelValues(p.name).Set(1)
	p.cfg.log.Warn("transient error: processor blocked, retrying the batch", "err", err, "backoff", p.backoff)
	sleepCtx(ctx, p.backoff)
}

// record handles one input: decode, handle, encode, then stage its state
// write and outputs (or its dead letter). It returns an error only when a
// transient error persisted through the in-place retries.
func (p *Processor) record(ctx, wctx context.Context, b *batch, r *kgo.Record, produce func(*kgo.Record)) error {
	delay := p.cfg.retryInitial / 4
	for attempt := 0; ; attempt++ {
		err := p.try(wctx, b, r, produce)
		if err == nil {
			return nil
		}
		if code := CodeOf(err); code != "" {
			produce(DeadLetterRecord(p.dlqTopic, p.group, p.name, r, err))
			b.dlq[code]++
			p.cfg.log.Warn("dead-lettered a record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "code", code, "err", err)
			return nil
		}
		p.m.records.WithLabelValues(p.name, "retry").Inc()
		if attempt >= p.cfg.inPlaceRetries || ctx.Err() != nil {
			return &errBlocked{fmt.Errorf("%s[%d]@%d: %w", r.Topic, r.Partition, r.Offset, err)}
		}
		if !sleepCtx(ctx, delay) {
			return &errBlocked{err}
		}
		delay *= 2
	}
}

func (p *Processor) try(ctx context.Context, b *batch, r *kgo.Record, produce func(*kgo.Record)) error {
	if p.cfg.eventTypes != nil {
		if t, ok := eventTypeHeader(r); ok && !p.cfg.eventTypes[t] {
			b.skipped++
			return nil
		}
	}
	topic := Topic(r.Topic)
	value, ver, err := p.cfg.codec.Decode(ctx, topic, r.Value)
	if err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	key := string(r.Key)
	state, err := b.ov.get(r.Partition, key)
	if err != nil {
		return err
	}
	in := Input{
		Topic: topic, Partition: r.Partition, Offset: r.Offset, Key: r.Key,
		Value: value, Version: ver, Timestamp: r.Timestamp,
	}
	if len(r.Headers) > 0 {
		in.Headers = make(map[string]string, len(r.Headers))
		for _, h := range r.Headers {
			in.Headers[h.Key] = string(h.Value)
		}
	}
	res, err := safeHandle(func() (Result, error) { return p.h.Handle(ctx, state, in) })
	if err != nil {
		return err
	}
	if err := p.stage(ctx, b, r.Partition, r.Key, res, produce); err != nil {
		return err
	}
	b.records++
	return nil
}

// fire runs one due timer, re-checking that the key's current state still
// has that deadline due.
func (p *Processor) fire(ctx, wctx context.Context, b *batch, part int32, t timer, now time.Time, produce func(*kgo.Record)) error {
	delay := p.cfg.retryInitial / 4
	for attempt := 0; ; attempt++ {
		state, err := b.ov.get(part, t.key)
		if err != nil || state == nil {
			return nil // revoked, or the key is gone: no timer
		}
		at, ok := p.timed.Deadline(state)
		if !ok || at.After(now) {
			return nil // the state moved on; its own deadline is queued
		}
		res, err := safeHandle(func() (Result, error) { return p.timed.Fire(wctx, []byte(t.key), state, now) })
		if err == nil {
			err = p.stage(wctx, b, part, []byte(t.key), res, produce)
		}
		if err == nil {
			b.records++
			return nil
		}
		if code := CodeOf(err); code != "" {
			p.cfg.log.Error("timer rejected; dropped until the key's state changes", "key", t.key, "code", code, "err", err)
			return nil
		}
		p.m.records.WithLabelValues(p.name, "retry").Inc()
		if attempt >= p.cfg.inPlaceRetries || ctx.Err() != nil {
			return &errBlocked{fmt.Errorf("timer %q: %w", t.key, err)}
		}
		if !sleepCtx(ctx, delay) {
			return &errBlocked{err}
		}
		delay *= 2
	}
}

// stage encodes a result's outputs and, once all encoded, produces them and
// the state write into the open transaction.
func (p *Processor) stage(ctx context.Context, b *batch, part int32, key []byte, res Result, produce func(*kgo.Record)) error {
	recs := make([]*kgo.Record, 0, len(res.Outputs)+1)
	for i, o := range res.Outputs {
		v := o.Version
		if v == 0 {
			v = schemas.V1
		}
		val, err := p.cfg.codec.Encode(ctx, o.Topic, v, o.Value)
		if err != nil {
			return fmt.Errorf("encode output %d to %s: %w", i, o.Topic, err)
		}
		rec := &kgo.Record{Topic: string(o.Topic), Key: o.Key, Value: val}
		if ev, ok := o.Value.(*schemas.RuntimeEvent); ok {
			rec.Headers = []kgo.RecordHeader{{Key: HeaderEventType, Value: []byte(ev.EventType)}}
		}
		recs = append(recs, rec)
	}
	if res.StateChanged {
		// Written to the changelog once per key when the batch ends.
		b.ov.set(part, string(key), res.State, res.State == nil, res.Deadline, res.DeadlineSet)
	}
	for _, r := range recs {
		produce(r)
	}
	b.outputs = append(b.outputs, res.Outputs...)
	return nil
}

// HeaderEventType carries a RuntimeEvent's event_type on every record the
// loop produces, so consumers can pass over events they do not act on
// without decoding them (WithEventTypes, or any Kafka client).
const HeaderEventType = "x-event-type"

// eventTypeHeader returns the record's HeaderEventType, if it has one.
func eventTypeHeader(r *kgo.Record) (schemas.EventType, bool) {
	for _, h := range r.Headers {
		if h.Key == HeaderEventType {
			return schemas.EventType(h.Value), true
		}
	}
	return "", false
}

// PanicError is a handler panic, dead-lettered with code "handler_panic".
type PanicError struct{ Value any }

func (e *PanicError) Error() string { return fmt.Sprintf("handler panicked: %v", e.Value) }

// ErrorCode returns "handler_panic".
func (e *PanicError) ErrorCode() string { return "handler_panic" }

func safeHandle(f func() (Result, error)) (res Result, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v}
		}
	}()
	return f()
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
