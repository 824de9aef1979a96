package pipeline

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

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
	// asyncConcurrency and asyncQueue bound an Async handler's works
	// (WithAsync).
	asyncConcurrency int
	asyncQueue       int
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

		asyncConcurrency: DefaultAsyncConcurrency,
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

// WithShutdownTimeout bounds a clean stop: the transaction in flight when
// Run's context ends gets it to commit (else it is aborted), and leaving
// the group and closing the client get it again. Default 10s.
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
// transaction per batch as always). It pays off for handlers with much CPU
// work per record; a handler that waits on the outside world implements
// Async instead (its calls then run outside transactions, WithAsync at
// once). The handler must be safe for concurrent calls on different
// partitions. Default 1: one record at a time.
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
	if c.asyncConcurrency < 1 || c.asyncQueue < 0 {
		bad("async concurrency %d must be at least 1 and its queue %d not negative", c.asyncConcurrency, c.asyncQueue)
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
