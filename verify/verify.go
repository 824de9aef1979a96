package verify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/projections"
)

// Kind names an anomaly; the names are stable (a user's script reads them).
type Kind string

// The anomaly kinds.
const (
	// DuplicateEvent: an event_id seen twice.
	DuplicateEvent Kind = "duplicate_event"
	// LostTerminal: a run without a terminal outcome past its deadline
	// (its state's timeout, or the run's end-to-end deadline, plus the
	// grace).
	LostTerminal Kind = "lost_terminal"
	// MultipleTerminals: a run with more than one terminal outcome.
	MultipleTerminals Kind = "multiple_terminals"
	// IllegalTransition: a run's control events move it between states
	// the stateflow does not connect, or move it after its end.
	IllegalTransition Kind = "illegal_transition"
	// LostIntent: an intent that started no run and was not dead-lettered,
	// past the grace.
	LostIntent Kind = "lost_intent"
	// AbortedRead: a record of an aborted transaction was visible.
	AbortedRead Kind = "aborted_read"
	// VerdictMismatch: a gate.verdict that disagrees with the gate events
	// of the same artifact, or a terminal that disagrees with its verdict.
	VerdictMismatch Kind = "verdict_mismatch"
	// MissingArtifact: an artifact.delivered whose artifact is not on the
	// artifacts topic.
	MissingArtifact Kind = "missing_artifact"
	// ProjectionMismatch: a live projection cell that differs from a
	// replay of the thread.
	ProjectionMismatch Kind = "projection_mismatch"
	// BadDeadLetter: a dead letter without its dead-letter headers, without
	// a reason (error code and message), or whose bytes are not the
	// original record's.
	BadDeadLetter Kind = "bad_dead_letter"
)

// Kinds lists every anomaly kind, in report order.
var Kinds = []Kind{DuplicateEvent, LostTerminal, MultipleTerminals, IllegalTransition, LostIntent, AbortedRead,
	VerdictMismatch, MissingArtifact, ProjectionMismatch, BadDeadLetter}

// Anomaly is one broken invariant.
type Anomaly struct {
	Kind Kind `json:"kind"`
	// TraceID is the run it concerns; empty for an anomaly of no run (an
	// aggregate projection cell, a dead letter of an unkeyed record).
	TraceID string `json:"trace_id,omitempty"`
	// Where is the record it was found at, topic/partition@offset, when
	// there is one.
	Where  string `json:"where,omitempty"`
	Detail string `json:"detail"`
}

// Config configures Run.
type Config struct {
	// Kafka are the connection options. Required.
	Kafka []kgo.Opt
	// Layout names the topics. Required.
	Layout pipeline.Layout
	// Codec decodes what the fast envelope scan cannot read, and serves the
	// projections replay. Required.
	Codec pipeline.Codec
	// SchemaText returns the writer schema of a registry id; verify reads
	// each id once to choose the envelope scan or a full decode. Required.
	SchemaText func(ctx context.Context, id int) (string, error)
	// Legal reports whether the stateflow lets control event event take a
	// run from state from to state to (from is "" for a run's first event):
	// a state's entry event along one of its entries, or an event that
	// records without moving the run (run.dequeued, run.retry_scheduled,
	// a refusal) with to equal to from. Required: the orchestrator's
	// stateflow answers it (see cmd/spine); it is the package's only
	// knowledge of the stateflow.
	Legal func(from, to, event string) bool
	// Timeout returns how long a run may stay in state (the stateflow's
	// timeout; 0 for none). A run stuck in a state past its timeout plus
	// Grace has lost its terminal. Nil: no state bounds a run.
	Timeout func(state string) time.Duration
	// RunDeadline is the end-to-end deadline of a run (SPINE_RUN_DEADLINE);
	// 0 for none.
	RunDeadline time.Duration
	// Grace is the slack on every deadline (a timer fires a little late, a
	// producer's clock differs). Default 30s.
	Grace time.Duration
	// Since and Until bound the check to runs that started within them
	// (zero: unbounded). Records are read from Since less Lookback to Until
	// plus Grace.
	Since, Until time.Time
	// Lookback is how far before Since records are read (an intent waits in
	// spine.intents before its run starts). Default 5m.
	Lookback time.Duration
	// Projections compares the live projections with a replay of the
	// thread (projections.Replay; the whole thread, whatever the window).
	Projections bool
	// ReadUncommitted reads as a read_uncommitted consumer would: records
	// of aborted transactions then show as AbortedRead. It exists to prove
	// that detector on a real aborted transaction; a check of a stack
	// leaves it false (read_committed).
	ReadUncommitted bool
	// MaxAnomalies bounds the anomalies kept in the report (their counts by
	// kind are always complete). Default 10000.
	MaxAnomalies int
	// Now is the clock deadlines are judged by (default time.Now); Until,
	// when earlier, replaces it.
	Now func() time.Time
	// Logger receives progress logs; nil discards them.
	Logger *slog.Logger
}

func (c *Config) validate() error {
	var errs []error
	if len(c.Kafka) == 0 {
		errs = append(errs, errors.New("verify: no Kafka options"))
	}
	if c.Codec == nil || c.SchemaText == nil {
		errs = append(errs, errors.New("verify: a codec and a schema lookup are required"))
	}
	if c.Legal == nil {
		errs = append(errs, errors.New("verify: no stateflow (Legal)"))
	}
	if !c.Since.IsZero() && !c.Until.IsZero() && !c.Until.After(c.Since) {
		errs = append(errs, fmt.Errorf("verify: until %s is not after since %s", c.Until.Format(time.RFC3339), c.Since.Format(time.RFC3339)))
	}
	if c.Grace < 0 || c.Lookback < 0 || c.RunDeadline < 0 {
		errs = append(errs, errors.New("verify: negative duration"))
	}
	return errors.Join(errs...)
}

// Report is what Run found.
type Report struct {
	// Clean is true when no anomaly was found.
	Clean bool `json:"clean"`
	// Records counts the records read, by topic (without the prefix).
	Records map[string]int64 `json:"records"`
	// Runs counts the runs checked; Outcomes their terminal outcomes, with
	// "in_flight" for runs still within their deadline.
	Runs     int            `json:"runs"`
	Outcomes map[string]int `json:"outcomes"`
	// OutOfWindow counts runs seen only in part (started before Since or
	// before the thread's retention): not checked.
	OutOfWindow int `json:"out_of_window"`
	// Intents counts intent records; IntentsDeadLettered those that
	// started no run because they were dead-lettered.
	Intents             int `json:"intents"`
	IntentsDeadLettered int `json:"intents_dead_lettered"`
	// Refused counts the events the orchestrator refused and recorded
	// (run.illegal_transition, run.stale_event): the stateflow at work,
	// not anomalies.
	Refused int `json:"refused"`
	// Foreign counts, by topic, the records of the thread's internal topics
	// (spine.control, spine.dataplane, gate.*) written outside a
	// transaction. Every Spine processor writes them in one, so these came
	// from elsewhere — a forged or replayed event, a tool — and are not
	// Spine's record: they are counted, not judged. What the processors did
	// with them (a refusal, a dead letter) is.
	Foreign map[string]int `json:"foreign,omitempty"`
	// Verdicts, Artifacts and DeadLetters count what was checked.
	Verdicts    int `json:"verdicts"`
	Artifacts   int `json:"artifacts"`
	DeadLetters int `json:"dead_letters"`
	// DeadLettersUnchecked counts dead letters whose original is outside
	// the read (retention, window): their bytes were not compared.
	DeadLettersUnchecked int `json:"dead_letters_unchecked"`
	// EndedIdle lists the partitions whose read ended when nothing more
	// came, short of their end offset (a tail of aborted records).
	EndedIdle []string `json:"ended_idle,omitempty"`
	// Undecodable counts thread records verify could not decode.
	Undecodable int `json:"undecodable"`
	// AbortedSeen counts records of aborted transactions that were visible.
	AbortedSeen int `json:"aborted_seen"`
	// Counts are the anomalies by kind; Anomalies the first MaxAnomalies.
	Counts    map[Kind]int `json:"counts"`
	Anomalies []Anomaly    `json:"anomalies"`
	// Projections is the replay's summary, nil when not compared;
	// ProjectionsNote says why they were not compared, if they were asked
	// for.
	Projections     *ProjectionsSummary `json:"projections,omitempty"`
	ProjectionsNote string              `json:"projections_note,omitempty"`
	// SharedRead counts the records of the thread (transaction markers
	// aside) read through the projections replay's read, a tap, instead
	// of the verifier's own.
	SharedRead int64 `json:"shared_read,omitempty"`
	// Isolation is the read's isolation level.
	Isolation string `json:"isolation"`
	// Took is the whole check; ScanTook the thread's read and checks (with
	// a shared read, SharedRead > 0, they end with the replay's read).
	Took     time.Duration `json:"took_ns"`
	ScanTook time.Duration `json:"scan_took_ns"`
}

// ProjectionsSummary is what the projections comparison saw.
type ProjectionsSummary struct {
	Records int64          `json:"records"`
	Cells   map[string]int `json:"cells"`
	Diffs   int            `json:"diffs"`
	Skipped []string       `json:"skipped_sources,omitempty"`
	Took    time.Duration  `json:"took_ns"`
}

// ErrAnomalies is wrapped by the error a caller returns for a report that
// is not clean.
var ErrAnomalies = errors.New("anomalies found")

// Run reads the thread (spine.intents, spine.control, spine.dataplane,
// gate.*), the artifacts topic and the DLQ of a stack with a
// read_committed consumer, checks every invariant (see Kinds), compares
// the projections with a replay when asked, and returns the report. It
// returns an error only when it cannot read; anomalies are in the report.
// It blocks until the read ends or ctx does.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	start := time.Now()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Grace == 0 {
		cfg.Grace = 30 * time.Second
	}
	if cfg.Lookback == 0 {
		cfg.Lookback = 5 * time.Minute
	}
	if cfg.MaxAnomalies <= 0 {
		cfg.MaxAnomalies = 10000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	v := newVerifier(cfg)

	cl, err := kgo.NewClient(cfg.Kafka...)
	if err != nil {
		return nil, fmt.Errorf("verify: client: %w", err)
	}
	defer cl.Close()
	if err := v.plan(ctx, kadm.NewClient(cl)); err != nil {
		return nil, err
	}
	if err := v.read(ctx, []*topicInfo{v.dlq}); err != nil {
		return nil, err
	}

	type replayResult struct {
		rep *projections.ReplayReport
		err error
	}
	var replayed chan replayResult
	var t *tap
	own := v.scanned
	if cfg.Projections {
		// The replay reads alongside. Read committed, as the verifier
		// reads, it shares its read of the thread through a tap (tap.go);
		// the verifier reads the rest itself meanwhile. A read that fails
		// ends the replay and waits for it, so Run leaves no goroutine
		// behind.
		rcfg := projections.ReplayConfig{Kafka: cfg.Kafka, Layout: cfg.Layout, Codec: cfg.Codec, Logger: cfg.Logger}
		if !cfg.ReadUncommitted {
			var folded []string
			for _, tp := range projections.SourceTopics(cfg.Layout) {
				folded = append(folded, string(tp))
			}
			t = v.newTap(folded)
			rcfg.Tap = t.add
			own = slices.DeleteFunc(slices.Clone(own), func(ti *topicInfo) bool { return ti.tapped })
		}
		rctx, cancel := context.WithCancel(ctx)
		replayed = make(chan replayResult, 1)
		done := make(chan struct{})
		go func() {
			defer close(done)
			rep, err := projections.Replay(rctx, rcfg)
			if t != nil {
				t.close()
			}
			replayed <- replayResult{rep, err}
		}()
		defer func() { cancel(); <-done }()
	}

	if err := v.read(ctx, own); err != nil {
		return nil, err
	}
	var r replayResult
	if replayed != nil && t != nil {
		// What the replay did not read of the tapped topics.
		r = <-replayed
		replayed = nil
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err := v.read(ctx, t.topics); err != nil {
			return nil, err
		}
	}
	v.finish()
	v.rep.ScanTook = time.Since(start)

	if replayed != nil {
		r = <-replayed
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	if cfg.Projections {
		v.projections(r.rep, r.err)
	}
	v.rep.Clean = len(v.rep.Counts) == 0
	v.rep.Took = time.Since(start)
	return v.rep, nil
}
