package projections

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/pipeline"
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
	// InstanceID names this instance: its transactional id is
	// Layout.Group(ProcessorName) + "-" + InstanceID, stable across
	// restarts of one instance so a restart fences its predecessor's open
	// transaction at once, and unique among live instances. Default "0".
	InstanceID string
	// StaticMembership joins the group as a static member whose
	// group.instance.id is the transactional id: a restarted instance
	// takes its partitions back at once instead of after the session
	// timeout. A cleanly stopped runner leaves the group explicitly.
	// Default false.
	StaticMembership bool
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
	// 2m. A finished run's part (terminal on the control topic, delivered
	// on the data plane, judged on a gate topic) leaves memory at the next
	// sweep but stays spilled, encoded, for as long: an event for it
	// decodes it back. An event for an evicted cell (a late or stale one,
	// past Retain) makes the runner restore that source partition from the
	// projection topics first, so eviction bounds memory without changing
	// any cell.
	Retain time.Duration
	// ForgetEvicted is how long (in event time) the runner remembers which
	// keys it evicted. Default 30m. Past it, an event of a run that started
	// before the evictions it forgot, for a key not in memory, restores its
	// source as an evicted one's does: forgetting costs restores, never a
	// wrong cell, and the memory of evictions stays bounded.
	ForgetEvicted time.Duration
	// SweepEvery is how often (at most) the runner evicts. Default 10s.
	SweepEvery time.Duration
	// Live, when set, is given every event of each committed batch (the
	// dashboard's per-second view); nil: none.
	Live *Live
	// Logger receives the runner's logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the runner's metrics and its loop's
	// (spine_processor_* with processor="projections"); nil registers
	// none.
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

// Runner is the projections processor: a batch handler (projector) on the
// pipeline's transactional loop that folds the thread (every RuntimeEvent
// topic: spine.control, spine.dataplane, gate.*) into the compacted
// spine.proj.* topics, exactly once. One transaction holds a batch of
// input offsets and the new value of every cell the batch changed, each on
// its source partition, sent as one batch per partition. Undecodable
// records go to spine.dlq in the same transaction, through the loop's
// dead-letter writer.
type Runner struct {
	cfg     RunnerConfig
	log     *slog.Logger
	proj    *projector
	proc    *pipeline.Processor
	metrics *runnerMetrics
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
	if cfg.InstanceID == "" {
		cfg.InstanceID = "0"
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
	if cfg.ForgetEvicted <= 0 {
		cfg.ForgetEvicted = 30 * time.Minute
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	proj := newProjector(cfg, log.With("processor", ProcessorName))
	opts := []pipeline.ProcessorOpt{
		pipeline.WithKafka(cfg.Kafka...),
		pipeline.WithLayout(cfg.Layout),
		pipeline.WithInputs(SourceTopics(cfg.Layout)...),
		pipeline.WithCodec(eventCodec{cfg.Codec}),
		pipeline.WithLogger(log),
		pipeline.WithInstanceID(cfg.InstanceID),
		pipeline.WithBatchSize(cfg.MaxPollRecords),
		pipeline.WithTransactionTimeout(cfg.TransactionTimeout),
		// The rebalance timeout is the Kafka client's default.
		pipeline.WithGroupTimeouts(cfg.SessionTimeout, time.Minute),
		pipeline.WithRetryBackoff(100*time.Millisecond, 5*time.Second),
	}
	if cfg.Registerer != nil {
		opts = append(opts, pipeline.WithRegisterer(cfg.Registerer))
	}
	if cfg.StaticMembership {
		opts = append(opts, pipeline.WithStaticMembership())
	}
	proc, err := pipeline.NewBatchProcessor(ProcessorName, proj, opts...)
	if err != nil {
		return nil, err
	}
	return &Runner{cfg: cfg, log: log.With("processor", ProcessorName), proj: proj, proc: proc, metrics: proj.metrics}, nil
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

// sourceTopicNames and projectionTopicNames name the thread topics the
// projections fold and the projection topics, as Kafka names them.
func sourceTopicNames(l pipeline.Layout) []string {
	var ts []string
	for _, t := range SourceTopics(l) {
		ts = append(ts, string(t))
	}
	return ts
}

func projectionTopicNames(l pipeline.Layout) []string {
	var ts []string
	for _, n := range thread.ProjectionNames {
		ts = append(ts, string(l.Projection(n)))
	}
	return ts
}

// Run consumes the thread and maintains the projections until ctx ends,
// then finishes the transaction in flight and leaves the group (see
// pipeline.Processor.Run).
func (r *Runner) Run(ctx context.Context) error {
	l := r.cfg.Layout
	r.log.Info("projections runner started", "group", l.Group(ProcessorName), "topics", len(r.proj.logical))
	err := r.proc.Run(ctx)
	if errors.Is(err, pipeline.ErrAlreadyRunning) {
		return err // the other Run owns the projector and the membership
	}
	r.proj.close()
	if r.cfg.StaticMembership {
		r.leaveGroup()
	}
	return err
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
	resp, err := kadm.NewClient(cl).LeaveGroup(ctx, kadm.LeaveGroup(r.cfg.Layout.Group(ProcessorName)).InstanceIDs(r.proc.TransactionalID()).Reason("clean shutdown"))
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		r.log.Warn("could not leave the group on shutdown; its partitions wait for the session timeout", "err", err)
	}
}
