package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Opt configures a Registry.
type Opt func(*config)

type config struct {
	kafka        []kgo.Opt
	topic        string
	txnID        string
	log          *slog.Logger
	reg          prometheus.Registerer
	user, pass   string
	writeAuth    func(ctx context.Context, token string) error
	maxBody      int64
	replication  int16
	defaultLevel Level
	writeTimeout time.Duration
}

// WithKafka sets the kgo options that reach the cluster storing the
// registry: at least kgo.SeedBrokers. Required.
func WithKafka(opts ...kgo.Opt) Opt {
	return func(c *config) { c.kafka = append(c.kafka, opts...) }
}

// WithTopic names the storage topic. Default "_schemas"; pass
// pipeline.Layout.Schemas() so the topic prefix applies.
func WithTopic(topic string) Opt { return func(c *config) { c.topic = topic } }

// WithTransactionalID sets the transactional id that makes one instance the
// single writer of the topic. Default "spine-schema-registry-<topic>".
func WithTransactionalID(id string) Opt { return func(c *config) { c.txnID = id } }

// WithLogger sets the logger. Default: discard.
func WithLogger(l *slog.Logger) Opt { return func(c *config) { c.log = l } }

// WithRegisterer registers the registry's metrics. Default: none.
func WithRegisterer(r prometheus.Registerer) Opt { return func(c *config) { c.reg = r } }

// WithBasicAuth requires HTTP basic auth on every request. Default: none.
func WithBasicAuth(user, pass string) Opt {
	return func(c *config) { c.user, c.pass = user, pass }
}

// WithWriteAuth requires a bearer token that check accepts on every request
// that changes the registry: registering a schema, deleting a subject or a
// version, setting or deleting a compatibility level. Reads, and the POSTs
// that only read (looking a schema up under a subject, testing
// compatibility), stay open. A refused token is answered 401; an error
// whose Temporary() is true (the issuer is unreachable) 503.
// The in-process transport (InProcess) is not checked. Exclusive with
// WithBasicAuth. Default: none.
func WithWriteAuth(check func(ctx context.Context, token string) error) Opt {
	return func(c *config) { c.writeAuth = check }
}

// WithMaxBodyBytes caps request bodies. Default 4 MiB.
func WithMaxBodyBytes(n int64) Opt { return func(c *config) { c.maxBody = n } }

// WithReplicationFactor is the replication factor used when the topic is
// created. Default -1 (the broker's default).
func WithReplicationFactor(n int16) Opt { return func(c *config) { c.replication = n } }

// WithDefaultLevel is the global compatibility level until one is set.
// Default BACKWARD, as Confluent.
func WithDefaultLevel(l Level) Opt { return func(c *config) { c.defaultLevel = l } }

// WithWriteTimeout bounds one write (catch up, produce, read back).
// Default 15s.
func WithWriteTimeout(d time.Duration) Opt { return func(c *config) { c.writeTimeout = d } }

func (c *config) validate() error {
	var errs []error
	if len(c.kafka) == 0 {
		errs = append(errs, errors.New("registry: WithKafka is required (the seed brokers of the cluster storing _schemas)"))
	}
	if c.topic == "" {
		errs = append(errs, errors.New("registry: empty topic"))
	}
	if (c.user == "") != (c.pass == "") {
		errs = append(errs, errors.New("registry: basic auth needs both a username and a password"))
	}
	if c.user != "" && c.writeAuth != nil {
		errs = append(errs, errors.New("registry: basic auth and bearer write auth exclude each other (a request carries one Authorization header)"))
	}
	if c.maxBody <= 0 {
		errs = append(errs, fmt.Errorf("registry: max body %d must be positive", c.maxBody))
	}
	if _, err := ParseLevel(string(c.defaultLevel)); err != nil {
		errs = append(errs, fmt.Errorf("registry: default level %q is not a compatibility level", c.defaultLevel))
	}
	if c.writeTimeout <= 0 {
		errs = append(errs, errors.New("registry: write timeout must be positive"))
	}
	return errors.Join(errs...)
}

// Registry is a Confluent-compatible schema registry for Avro, storing its
// state in a compacted Kafka topic. Build it with New, run it with Run, and
// serve Handler. All methods are safe for concurrent use.
//
// Goroutines and locks: Run owns one goroutine, the reader, which consumes
// the topic and applies each record to the state under mu (write lock);
// HTTP handlers read the state under mu (read lock). Writes are serialized
// by wmu: the writer takes wmu, catches up with the log end, validates
// against the state, produces in a Kafka transaction under the registry's
// transactional id (so a writer on another instance fences this one rather
// than interleaving), and waits until the reader has applied its records.
// Lock order: wmu before mu; mu is never held across I/O.
type Registry struct {
	cfg config
	log *slog.Logger
	met *metrics

	ready chan struct{}

	mu      sync.RWMutex
	st      *state
	pos     int64         // next offset the reader will apply
	advance chan struct{} // closed and replaced whenever pos moves
	runErr  error         // set when the reader stops

	wmu      sync.Mutex
	producer *kgo.Client
	cl       *kgo.Client // reader, also used for admin
}

// New returns a Registry. It does no I/O: Run connects.
func New(opts ...Opt) (*Registry, error) {
	c := config{
		topic:        "_schemas",
		maxBody:      4 << 20,
		replication:  -1,
		defaultLevel: Backward,
		writeTimeout: 15 * time.Second,
	}
	for _, o := range opts {
		o(&c)
	}
	if c.txnID == "" {
		c.txnID = "spine-schema-registry-" + c.topic
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	r := &Registry{
		cfg:     c,
		log:     c.log.With("component", "schema-registry", "topic", c.topic),
		ready:   make(chan struct{}),
		st:      newState(),
		advance: make(chan struct{}),
	}
	r.met = newMetrics(c.reg)
	return r, nil
}

// Ready is closed once the registry has replayed its topic up to the end it
// found at start, and serves reads consistent with the log.
func (r *Registry) Ready() <-chan struct{} { return r.ready }

// Topic is the storage topic.
func (r *Registry) Topic() string { return r.cfg.topic }

// Run creates the topic if missing (one partition, compacted), replays it,
// and keeps applying new records until ctx ends or the topic can no longer
// be read. It returns nil on a clean stop.
func (r *Registry) Run(ctx context.Context) error {
	cl, err := kgo.NewClient(append(slices.Clone(r.cfg.kafka),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{r.cfg.topic: {0: kgo.NewOffset().AtStart()}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(500*time.Millisecond),
	)...)
	if err != nil {
		return fmt.Errorf("schema registry: kafka client: %w", err)
	}
	defer cl.Close()
	defer func() {
		r.wmu.Lock()
		if r.producer != nil {
			r.producer.Close()
			r.producer = nil
		}
		r.wmu.Unlock()
	}()
	r.mu.Lock()
	r.cl = cl
	r.mu.Unlock()

	if err := r.ensureTopic(ctx, cl); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	var end int64
	for deadline := time.Now().Add(30 * time.Second); ; {
		if end, err = r.endOffset(ctx); err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("schema registry: %w", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	readErr := make(chan error, 1)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { readErr <- r.read(rctx, cl) }()

	if err := r.waitApplied(ctx, end); err != nil {
		cancel()
		<-readErr
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("schema registry: replay %s: %w", r.cfg.topic, err)
	}
	r.mu.RLock()
	n, subjects := len(r.st.byID), len(r.st.subjectNames(false))
	r.mu.RUnlock()
	r.log.Info("schema registry replayed its topic", "offset", end, "schemas", n, "subjects", subjects)
	close(r.ready)

	err = <-readErr
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (r *Registry) ensureTopic(ctx context.Context, cl *kgo.Client) error {
	adm := kadm.NewClient(cl)
	deadline := time.Now().Add(30 * time.Second)
	for {
		compact := "compact"
		resp, err := adm.CreateTopic(ctx, 1, r.cfg.replication, map[string]*string{"cleanup.policy": &compact}, r.cfg.topic)
		if err == nil {
			err = resp.Err
		}
		if err == nil || errors.Is(err, kerr.TopicAlreadyExists) {
			if err == nil {
				r.log.Info("created schema registry topic", "partitions", 1, "cleanup.policy", "compact")
			}
			return r.checkTopic(ctx, adm)
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return fmt.Errorf("schema registry: create topic %s: %w (is Kafka reachable?)", r.cfg.topic, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// checkTopic refuses a storage topic with more than one partition: the log
// order is the registry's truth, and only one partition has one.
func (r *Registry) checkTopic(ctx context.Context, adm *kadm.Client) error {
	td, err := adm.ListTopics(ctx, r.cfg.topic)
	if err != nil {
		return fmt.Errorf("schema registry: describe topic %s: %w", r.cfg.topic, err)
	}
	if d, ok := td[r.cfg.topic]; ok && d.Err == nil && len(d.Partitions) != 1 {
		return fmt.Errorf("schema registry: topic %s has %d partitions; it must have exactly one", r.cfg.topic, len(d.Partitions))
	}
	return nil
}

// endOffset is the current high watermark of the storage partition.
func (r *Registry) endOffset(ctx context.Context) (int64, error) {
	r.mu.RLock()
	cl := r.cl
	r.mu.RUnlock()
	if cl == nil {
		return 0, ErrNotReady
	}
	offs, err := kadm.NewClient(cl).ListEndOffsets(ctx, r.cfg.topic)
	if err != nil {
		return 0, fmt.Errorf("list end offset of %s: %w", r.cfg.topic, err)
	}
	o, ok := offs.Lookup(r.cfg.topic, 0)
	if !ok {
		return 0, fmt.Errorf("list end offset of %s: partition 0 missing", r.cfg.topic)
	}
	if o.Err != nil {
		return 0, fmt.Errorf("list end offset of %s: %w", r.cfg.topic, o.Err)
	}
	return o.Offset, nil
}

// read consumes the topic and applies every record until ctx ends. When
// it stops, waiting writers are released with errStopped.
func (r *Registry) read(ctx context.Context, cl *kgo.Client) error {
	defer func() {
		r.mu.Lock()
		if r.runErr == nil {
			r.runErr = errStopped
		}
		close(r.advance)
		r.advance = make(chan struct{})
		r.mu.Unlock()
	}()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var fatal error
		fs.EachError(func(t string, p int32, err error) {
			if errors.Is(err, context.Canceled) {
				return
			}
			r.log.Warn("schema registry fetch error", "partition", p, "err", err)
			if errors.Is(err, kgo.ErrClientClosed) {
				fatal = err
			}
		})
		if fatal != nil {
			return fmt.Errorf("schema registry: read %s: %w", r.cfg.topic, fatal)
		}
		var recs []*kgo.Record
		fs.EachRecord(func(rec *kgo.Record) { recs = append(recs, rec) })
		if len(recs) == 0 {
			continue
		}
		r.mu.Lock()
		for _, rec := range recs {
			if !rec.Attrs.IsControl() {
				if err := r.st.apply(rec.Key, rec.Value); err != nil {
					r.met.badRecords.Inc()
					r.log.Warn("schema registry skipped a record it cannot apply", "offset", rec.Offset, "err", err)
				}
			}
			r.pos = max(r.pos, rec.Offset+1)
		}
		close(r.advance)
		r.advance = make(chan struct{})
		r.mu.Unlock()
	}
}

var errStopped = errors.New("the registry is not running")

// waitApplied blocks until every record before offset has been applied.
func (r *Registry) waitApplied(ctx context.Context, offset int64) error {
	for {
		r.mu.RLock()
		pos, adv, rerr := r.pos, r.advance, r.runErr
		r.mu.RUnlock()
		if pos >= offset {
			return nil
		}
		if rerr != nil {
			return rerr
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-adv:
		}
	}
}

// write runs one serialized write: catch up with the log, let plan decide
// on the current state which records to produce (or fail), produce them in
// one transaction, and wait until they are applied. plan is called with
// r.mu read-locked and must not block. The records are acknowledged only
// once they are in the log and in this instance's state.
func (r *Registry) write(ctx context.Context, plan func(st *state) ([]*kgo.Record, error)) error {
	select {
	case <-r.ready:
	case <-ctx.Done():
		return errf(ErrOperationTimeout, "the registry has not replayed %s yet", r.cfg.topic)
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.writeTimeout)
	defer cancel()
	r.wmu.Lock()
	defer r.wmu.Unlock()
	// Another instance taking the writer role fences this one mid-write:
	// retry, with a growing jittered pause so two busy instances do not
	// fence each other forever, until the write timeout.
	var lastErr error
	for attempt := 0; ; attempt++ {
		done, err := r.tryWrite(ctx, plan)
		if done {
			return err
		}
		lastErr = err
		r.log.Debug("schema registry write will be retried", "attempt", attempt+1, "err", err)
		pause := min(20*time.Millisecond<<min(attempt, 6), time.Second)
		pause = pause/2 + time.Duration(rand.Int64N(int64(pause)))
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
		if ctx.Err() != nil {
			break
		}
	}
	r.met.storeErrors.Inc()
	if ctx.Err() != nil {
		return errf(ErrOperationTimeout, "write to %s timed out: %v", r.cfg.topic, lastErr)
	}
	return errf(ErrStore, "write to %s failed: %v", r.cfg.topic, lastErr)
}

// tryWrite makes one attempt. done reports whether err is final (a
// validation answer or success) rather than a storage failure to retry.
func (r *Registry) tryWrite(ctx context.Context, plan func(st *state) ([]*kgo.Record, error)) (done bool, err error) {
	if err := r.ensureProducer(ctx); err != nil {
		return false, err
	}
	end, err := r.endOffset(ctx)
	if err != nil {
		return false, err
	}
	if err := r.waitApplied(ctx, end); err != nil {
		return false, fmt.Errorf("catch up with %s: %w", r.cfg.topic, err)
	}
	r.mu.RLock()
	recs, perr := plan(r.st)
	r.mu.RUnlock()
	if perr != nil || len(recs) == 0 {
		return true, perr
	}
	last, err := r.produce(ctx, recs)
	if err != nil {
		r.dropProducer()
		return false, err
	}
	if err := r.waitApplied(ctx, last+1); err != nil {
		return false, fmt.Errorf("read back from %s: %w", r.cfg.topic, err)
	}
	return true, nil
}

// ensureProducer makes this instance the topic's writer: a transactional
// producer whose first (NOOP) transaction fences any other instance's.
func (r *Registry) ensureProducer(ctx context.Context) error {
	if r.producer != nil {
		return nil
	}
	p, err := kgo.NewClient(append(slices.Clone(r.cfg.kafka),
		kgo.TransactionalID(r.cfg.txnID),
		kgo.TransactionTimeout(r.cfg.writeTimeout+5*time.Second),
		kgo.DefaultProduceTopic(r.cfg.topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
	)...)
	if err != nil {
		return fmt.Errorf("writer client: %w", err)
	}
	r.producer = p
	if _, err := r.produce(ctx, []*kgo.Record{{Key: noopKey(), Value: []byte("{}")}}); err != nil {
		r.dropProducer()
		return fmt.Errorf("take the writer role on %s: %w", r.cfg.topic, err)
	}
	r.log.Info("schema registry took the writer role", "transactional_id", r.cfg.txnID)
	return nil
}

func (r *Registry) dropProducer() {
	if r.producer != nil {
		r.producer.Close()
		r.producer = nil
	}
}

// produce writes recs in one transaction and returns the last offset.
func (r *Registry) produce(ctx context.Context, recs []*kgo.Record) (int64, error) {
	p := r.producer
	if err := p.BeginTransaction(); err != nil {
		return 0, fmt.Errorf("begin transaction: %w", err)
	}
	var last int64 = -1
	for _, rec := range recs {
		rec.Topic, rec.Partition = r.cfg.topic, 0
	}
	res := p.ProduceSync(ctx, recs...)
	perr := res.FirstErr()
	for _, pr := range res {
		if pr.Err == nil {
			last = max(last, pr.Record.Offset)
		}
	}
	commit := kgo.TryCommit
	if perr != nil {
		commit = kgo.TryAbort
	}
	if err := p.EndTransaction(ctx, commit); err != nil {
		return 0, fmt.Errorf("end transaction: %w", errors.Join(perr, err))
	}
	if perr != nil {
		return 0, fmt.Errorf("produce: %w", perr)
	}
	return last, nil
}
