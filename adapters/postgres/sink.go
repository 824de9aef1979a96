package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/projections"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// Name is the sink's part name (`spine run pgsink`), consumer group stem
// and metrics label.
const Name = "pgsink"

// SinkConfig is what a Sink is built from.
type SinkConfig struct {
	Config
	// Kafka are the client options (brokers, TLS, SASL); the sink adds its
	// consumer group options.
	Kafka  []kgo.Opt
	Layout pipeline.Layout
	// Codec decodes the thread's records.
	Codec pipeline.Codec
	// Group is the consumer group; default Layout.Group("pgsink"). It also
	// names the sink's rows in kafka_offsets.
	Group string
	// SessionTimeout is the consumer group session timeout (0: kgo's).
	SessionTimeout time.Duration
	// InstanceID, when set, joins the group as a static member (KIP-345)
	// with this group.instance.id: a restarted instance takes its
	// partitions back at once instead of waiting out its crashed
	// predecessor's session. Give each instance its own, stable id.
	InstanceID string
	// RetryBackoff is the wait before a failed session starts again
	// (default 1s).
	RetryBackoff time.Duration
	// WriteTimeout bounds one batch's transaction, which a stop lets
	// finish (default 30s).
	WriteTimeout time.Duration
	Logger       *slog.Logger
	Registerer   prometheus.Registerer
}

// Sink folds the thread into PostgreSQL, exactly once. See the package
// documentation. Build one with New; run it with Run.
type Sink struct {
	cfg     SinkConfig
	topics  []string
	logical map[string]string // topic → topic without the layout's prefix
	canary  string            // the canary analysis topic: no runs
	arts    string            // the artifacts topic
	log     *slog.Logger
	m       *metrics
}

// New returns a sink for cfg. It does no I/O.
func New(cfg SinkConfig) (*Sink, error) {
	if !cfg.Enabled() {
		return nil, errors.New("postgres sink: no database (set SPINE_PG_URL)")
	}
	if errs := cfg.Validate(); len(errs) > 0 {
		return nil, fmt.Errorf("postgres sink: %w", errors.Join(errs...))
	}
	if cfg.Codec == nil {
		return nil, errors.New("postgres sink: no codec")
	}
	if cfg.Group == "" {
		cfg.Group = cfg.Layout.Group(Name)
	}
	if cfg.RetryBackoff <= 0 {
		cfg.RetryBackoff = time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Sink{cfg: cfg, logical: map[string]string{}, log: cfg.Logger.With("processor", Name)}
	for _, t := range projections.SourceTopics(cfg.Layout) {
		s.topics = append(s.topics, string(t))
		s.logical[string(t)] = strings.TrimPrefix(string(t), cfg.Layout.Prefix)
	}
	s.arts = string(cfg.Layout.Artifacts())
	s.topics = append(s.topics, s.arts)
	s.canary = string(cfg.Layout.Gate(thread.CanaryGate))
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s.m = m
	return s, nil
}

// Topics are the topics the sink reads.
func (s *Sink) Topics() []string { return s.topics }

// Group is the sink's consumer group.
func (s *Sink) Group() string { return s.cfg.Group }

// Run connects to the database, migrates the schema, and writes the thread
// until ctx ends. A failed session (the database or Kafka gone, a fenced
// write) is abandoned whole — nothing of its open transaction lands — and
// a new one starts from the offsets in the database. Run returns nil when
// ctx ends.
func (s *Sink) Run(ctx context.Context) error {
	for {
		err := s.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		s.m.restarts.Inc()
		s.log.Warn("postgres sink session ended; starting again", "err", err, "after", s.cfg.RetryBackoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(s.cfg.RetryBackoff):
		}
	}
}

// tp is a topic partition.
type tp struct {
	topic     string
	partition int32
}

// session is one connection to the database and one group membership.
type session struct {
	s  *Sink
	db *pgx.Conn // the batches'; used by the polling goroutine only
	// end ends the session from a callback (its poll returns).
	end context.CancelCauseFunc

	mu     sync.Mutex
	lookup *pgx.Conn    // the offsets lookups of AdjustFetchOffsetsFn; nil when broken
	next   map[tp]int64 // owned partitions: the next offset the database holds
}

func (s *Sink) connect(ctx context.Context) (*pgx.Conn, error) {
	pc, err := pgx.ParseConfig(string(s.cfg.URL))
	if err != nil {
		return nil, errors.New("SPINE_PG_URL cannot be parsed")
	}
	pc.RuntimeParams["search_path"] = s.cfg.Schema
	pc.RuntimeParams["application_name"] = "spine-" + Name
	if pc.ConnectTimeout == 0 {
		pc.ConnectTimeout = 10 * time.Second
	}
	conn, err := pgx.ConnectConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL at %s:%d: %w (is it running, and SPINE_PG_URL right?)", pc.Host, pc.Port, redactErr(err))
	}
	return conn, nil
}

// redactErr keeps the password out of an error: pgx's connect errors name
// the host and user, not the password, but a DSN-parsing error could quote it.
func redactErr(err error) error {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		return errors.New("cannot parse the connection string")
	}
	return err
}

func (s *Sink) session(ctx context.Context) error {
	db, err := s.connect(ctx)
	if err != nil {
		return err
	}
	defer db.Close(context.WithoutCancel(ctx))
	if applied, err := Migrate(ctx, db, s.cfg.Schema); err != nil {
		return err
	} else if len(applied) > 0 {
		s.log.Info("migrated the database", "schema", s.cfg.Schema, "versions", applied)
	}
	if err := prepareStaging(ctx, db); err != nil {
		return err
	}
	lookup, err := s.connect(ctx)
	if err != nil {
		return err
	}
	sctx, end := context.WithCancelCause(ctx)
	defer end(nil)
	sess := &session{s: s, db: db, end: end, lookup: lookup, next: map[tp]int64{}}
	defer func() {
		sess.mu.Lock()
		defer sess.mu.Unlock()
		if sess.lookup != nil {
			_ = sess.lookup.Close(context.WithoutCancel(ctx))
		}
	}()

	opts := append(append([]kgo.Opt{}, s.cfg.Kafka...),
		kgo.ClientID("spine-"+Name),
		kgo.ConsumerGroup(s.cfg.Group),
		kgo.ConsumeTopics(s.topics...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.AdjustFetchOffsetsFn(sess.adjust),
		kgo.OnPartitionsRevoked(sess.drop),
		kgo.OnPartitionsLost(sess.drop),
		kgo.FetchMaxWait(250*time.Millisecond),
	)
	if s.cfg.SessionTimeout > 0 {
		opts = append(opts, kgo.SessionTimeout(s.cfg.SessionTimeout))
	}
	if s.cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(s.cfg.InstanceID))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	for {
		fs := cl.PollRecords(sctx, s.cfg.BatchRecords)
		if sctx.Err() != nil {
			cl.AllowRebalance()
			return context.Cause(sctx)
		}
		if fs.IsClientClosed() {
			return errors.New("kafka client closed")
		}
		fs.EachError(func(t string, p int32, err error) {
			s.log.Warn("fetch error", "topic", t, "partition", p, "err", err)
		})
		// A batch polled is written whole even when the sink is stopping
		// (stop polling, finish the work in flight), bounded.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(sctx), s.cfg.WriteTimeout)
		err := sess.write(wctx, fs)
		cancel()
		cl.AllowRebalance()
		if err != nil {
			return err
		}
	}
}

// adjust runs on every assignment, before fetching starts: the offsets
// come from the database, never from Kafka's group offsets. A lookup that
// keeps failing (the database gone) ends the session: the next one joins
// the group again with fresh connections.
func (ss *session) adjust(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	var topics []string
	var parts []int32
	for t, ps := range offsets {
		for p := range ps {
			topics = append(topics, t)
			parts = append(parts, p)
		}
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	stored := map[tp]int64{}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if ss.lookup == nil || ss.lookup.IsClosed() {
			if ss.lookup, err = ss.s.connect(ctx); err != nil {
				ss.lookup = nil
			}
		}
		if ss.lookup != nil {
			if err = ss.claim(ctx, topics, parts, stored); err == nil {
				break
			}
			_ = ss.lookup.Close(context.WithoutCancel(ctx))
			ss.lookup = nil
		}
		if ctx.Err() != nil {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if err != nil {
		err = fmt.Errorf("read the stored offsets of the assigned partitions: %w", err)
		ss.end(err)
		return nil, err
	}
	out := make(map[string]map[int32]kgo.Offset, len(offsets))
	for t, ps := range offsets {
		out[t] = make(map[int32]kgo.Offset, len(ps))
		for p := range ps {
			k := tp{t, p}
			n, ok := stored[k]
			if !ok {
				n = -1
			}
			ss.next[k] = n
			if n < 0 {
				out[t][p] = kgo.NewOffset().AtStart()
			} else {
				out[t][p] = kgo.NewOffset().At(n).WithEpoch(-1)
			}
		}
	}
	ss.s.log.Info("partitions assigned; resuming from the database's offsets", "partitions", len(parts))
	return out, nil
}

func (ss *session) claim(ctx context.Context, topics []string, parts []int32, stored map[tp]int64) error {
	rows, err := ss.lookup.Query(ctx, claimOffsets, ss.s.cfg.Group, topics, parts)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var t string
		var p int32
		var n int64
		if err := rows.Scan(&t, &p, &n); err != nil {
			return err
		}
		stored[tp{t, p}] = n
	}
	return rows.Err()
}

// drop forgets partitions revoked or lost. With BlockRebalanceOnPoll the
// batch in flight has been committed or rolled back before this runs.
func (ss *session) drop(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for t, ps := range lost {
		for _, p := range ps {
			delete(ss.next, tp{t, p})
		}
	}
}

// batch is what one transaction writes.
type batch struct {
	events, gates, artifacts [][]any
	traces                   map[string]bool
	next                     map[tp]int64 // the next offset per partition after the batch
	expected                 map[tp]int64
}

// write writes the fetched records and their offsets in one transaction.
func (ss *session) write(ctx context.Context, fs kgo.Fetches) error {
	s := ss.s
	b := batch{traces: map[string]bool{}, next: map[tp]int64{}, expected: map[tp]int64{}}
	ss.mu.Lock()
	owned := make(map[tp]int64, len(ss.next))
	for k, v := range ss.next {
		owned[k] = v
	}
	ss.mu.Unlock()
	var decErr error
	fs.EachRecord(func(rec *kgo.Record) {
		if decErr != nil {
			return
		}
		k := tp{rec.Topic, rec.Partition}
		exp, ok := owned[k]
		if !ok || rec.Offset < exp {
			s.m.skipped.WithLabelValues("not_owned").Inc()
			return // not ours (any more), or already in the database
		}
		if _, seen := b.expected[k]; !seen {
			b.expected[k] = exp
		}
		b.next[k] = rec.Offset + 1
		if rec.Topic == s.arts {
			if row := artifactRow(rec, s.cfg.MaxArtifactBytes); row != nil {
				b.artifacts = append(b.artifacts, row)
			}
			return
		}
		v, writer, err := s.cfg.Codec.Decode(ctx, pipeline.Topic(rec.Topic), rec.Value)
		ev, isEvent := v.(*schemas.RuntimeEvent)
		if err != nil || !isEvent {
			if err != nil && pipeline.CodeOf(err) == "" {
				decErr = fmt.Errorf("decode %s/%d@%d: %w", rec.Topic, rec.Partition, rec.Offset, err)
				return
			}
			s.m.skipped.WithLabelValues("undecodable").Inc()
			s.log.Warn("skipping a record that is not a RuntimeEvent", "topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "err", err)
			return
		}
		row, err := eventRow(rec, ev, writer)
		if err != nil {
			decErr = err
			return
		}
		b.events = append(b.events, row)
		logical := s.logical[rec.Topic]
		if isGate(ev, logical) {
			g, err := gateRow(rec, logical, ev, writer)
			if err != nil {
				decErr = err
				return
			}
			b.gates = append(b.gates, g)
		}
		// Canary analyses and drift windows are about no one run.
		if ev.TraceID != "" && rec.Topic != s.canary && !thread.IsDriftTrace(ev.TraceID) {
			b.traces[ev.TraceID] = true
		}
	})
	if decErr != nil {
		return decErr // transient (the registry): the session starts again
	}
	if len(b.next) == 0 {
		return nil
	}
	start := time.Now()
	if err := ss.commit(ctx, &b); err != nil {
		return err
	}
	s.m.batch.Observe(time.Since(start).Seconds())
	s.m.rows.WithLabelValues("events").Add(float64(len(b.events)))
	s.m.rows.WithLabelValues("gates").Add(float64(len(b.gates)))
	s.m.rows.WithLabelValues("artifacts").Add(float64(len(b.artifacts)))
	s.m.rows.WithLabelValues("runs").Add(float64(len(b.traces)))
	ss.mu.Lock()
	for k, n := range b.next {
		if _, ok := ss.next[k]; ok {
			ss.next[k] = n
		}
	}
	ss.mu.Unlock()
	return nil
}

func (ss *session) commit(ctx context.Context, b *batch) error {
	s := ss.s
	var took []any // statement timings, for the debug log
	lap := time.Now()
	step := func(name string) {
		took = append(took, name, time.Since(lap).Round(time.Microsecond).String())
		lap = time.Now()
	}
	defer func() {
		s.log.Debug("batch written", append(took, "n_events", len(b.events), "n_runs", len(b.traces))...)
	}()
	return pgx.BeginFunc(ctx, ss.db, func(tx pgx.Tx) error {
		// The fence first: its row locks order this transaction after
		// any other writer of the same partitions.
		var topics []string
		var parts []int32
		var exp, next []int64
		for k, n := range b.next {
			topics, parts = append(topics, k.topic), append(parts, k.partition)
			exp, next = append(exp, b.expected[k]), append(next, n)
		}
		tag, err := tx.Exec(ctx, fenceOffsets, s.cfg.Group, topics, parts, exp, next)
		if err != nil {
			return fmt.Errorf("update offsets: %w", err)
		}
		if int(tag.RowsAffected()) != len(topics) {
			s.m.skipped.WithLabelValues("fenced").Inc()
			return fmt.Errorf("%w (%d of %d partitions)", ErrFenced, len(topics)-int(tag.RowsAffected()), len(topics))
		}
		step("fence")
		for _, st := range []struct {
			table string
			cols  []string
			rows  [][]any
			key   string
		}{
			{"events", eventColumns, b.events, "(topic, partition, kafka_offset)"},
			{"gates", gateColumns, b.gates, "(topic, partition, kafka_offset)"},
			{"artifacts", artifactColumns, b.artifacts, "(artifact_id)"},
		} {
			if len(st.rows) == 0 {
				continue
			}
			stage := "stage_" + st.table
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{stage}, st.cols, pgx.CopyFromRows(st.rows)); err != nil {
				return fmt.Errorf("copy %s: %w", st.table, err)
			}
			cols := strings.Join(st.cols, ", ")
			if _, err := tx.Exec(ctx, "INSERT INTO "+st.table+" ("+cols+") SELECT "+cols+" FROM "+stage+" ON CONFLICT "+st.key+" DO NOTHING"); err != nil {
				return fmt.Errorf("insert %s: %w", st.table, err)
			}
			step(st.table)
		}
		if len(b.traces) > 0 {
			traces := make([]string, 0, len(b.traces))
			for t := range b.traces {
				traces = append(traces, t)
			}
			sort.Strings(traces)
			if _, err := tx.Exec(ctx, lockRuns, traces); err != nil {
				return fmt.Errorf("lock runs: %w", err)
			}
			step("lock")
			if _, err := tx.Exec(ctx, upsertRuns, traces, s.canary); err != nil {
				return fmt.Errorf("upsert runs: %w", err)
			}
			step("runs")
		}
		return nil
	})
}

// prepareStaging creates the session's temporary staging tables, emptied
// at every commit.
func prepareStaging(ctx context.Context, db *pgx.Conn) error {
	for _, t := range []string{"events", "gates", "artifacts"} {
		if _, err := db.Exec(ctx, "CREATE TEMP TABLE IF NOT EXISTS stage_"+t+" (LIKE "+t+" INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"); err != nil {
			return fmt.Errorf("staging table for %s: %w", t, err)
		}
	}
	return nil
}
