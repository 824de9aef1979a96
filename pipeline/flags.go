package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Feature flags live on the compacted, one-partition topic Layout.Flags()
// (spine.flags). Every change is a record, so every change is an event with
// who, why and when. A change is written twice in one produce: under the
// flag's name (the current value; compaction keeps the last) and under
// "<flag>@<revision>" (the history; compaction keeps every revision). Every
// process tails the topic with a Flags store and applies a change as soon as
// it is read, within the poll latency (well under a second).
//
// Concurrency: a Flags is safe for concurrent use. One goroutine (Run) reads
// the topic and is the only writer of the in-memory view; readers take mu.
// Set produces synchronously and waits until Run applied the change. The
// store knows only the flags it was given (WithFlag) and their validation;
// what a flag means lives with its user (the canary's v2_rollout is
// processors/canary.Rollouts, a typed view over this store).

// Errors of the flag store.
var (
	// ErrInvalidFlag marks a flag value or setting that does not validate
	// (stable code "invalid_flag").
	ErrInvalidFlag = errors.New("invalid flag")
	// ErrUnknownFlag marks a flag name the store does not know (stable code
	// "unknown_flag").
	ErrUnknownFlag = errors.New("unknown flag")
	// ErrFlagsNotRunning is returned by Set when Run has not been called or
	// has returned.
	ErrFlagsNotRunning = errors.New("flag store is not running")
	// ErrFlagConflict is returned by SetIf when the flag moved past the
	// expected revision (stable code "flag_conflict").
	ErrFlagConflict = errors.New("flag changed concurrently")
)

// FlagChange is one change of one flag: the record on spine.flags.
type FlagChange struct {
	Flag string `json:"flag"`
	// Rev is the flag's revision, 1 for its first change.
	Rev int64 `json:"rev"`
	// Value is the flag's whole new value, JSON.
	Value json.RawMessage `json:"value"`
	// Who made the change (a user, or "canary-analyzer").
	Who string `json:"who"`
	// Why, in a sentence.
	Why string    `json:"why"`
	At  time.Time `json:"at"`
	// Offset is the record's offset on spine.flags (set when read).
	Offset int64 `json:"offset"`
}

// historyKey is the record key of one revision of a flag.
func historyKey(flag string, rev int64) string { return fmt.Sprintf("%s@%020d", flag, rev) }

// FlagsOpt configures a Flags store.
type FlagsOpt func(*flagsConfig)

type flagsConfig struct {
	log   *slog.Logger
	reg   prometheus.Registerer
	known map[string]func(json.RawMessage) error
}

// WithFlag makes flag known to the store, its values checked by validate
// (nil: any JSON) before they are written and when they are read; a
// record of a flag the store does not know is kept but not validated, and
// Set refuses an unknown flag.
func WithFlag(flag string, validate func(json.RawMessage) error) FlagsOpt {
	return func(c *flagsConfig) {
		if validate == nil {
			validate = func(json.RawMessage) error { return nil }
		}
		c.known[flag] = validate
	}
}

// WithFlagsLogger sets the store's logger. Default: discard.
func WithFlagsLogger(l *slog.Logger) FlagsOpt { return func(c *flagsConfig) { c.log = l } }

// WithFlagsRegisterer registers spine_flag_changes_total{flag} (changes
// applied) and spine_flag_invalid_records_total on reg. Default: none.
func WithFlagsRegisterer(reg prometheus.Registerer) FlagsOpt {
	return func(c *flagsConfig) { c.reg = reg }
}

// Flags is a process's view of the feature flags, kept current by Run
// tailing spine.flags. It is safe for concurrent use.
type Flags struct {
	topic Topic
	kopts []kgo.Opt
	log   *slog.Logger

	perFlag *prometheus.CounterVec
	invalid prometheus.Counter

	known map[string]func(json.RawMessage) error

	mu      sync.Mutex
	cl      *kgo.Client
	current map[string]FlagChange
	history map[string][]FlagChange
	ready   bool
	readyCh chan struct{}
	applied chan struct{} // closed and replaced after every applied batch
	watch   []func(FlagChange)
}

// NewFlags returns a store for layout's flag topic, reached through kopts
// (Config.KafkaOpts). It does no I/O; Run connects.
func NewFlags(kopts []kgo.Opt, layout Layout, opts ...FlagsOpt) *Flags {
	c := flagsConfig{log: slog.New(slog.DiscardHandler), known: map[string]func(json.RawMessage) error{}}
	for _, o := range opts {
		o(&c)
	}
	f := &Flags{
		topic:   layout.Flags(),
		known:   c.known,
		kopts:   kopts,
		log:     c.log.With("component", "flags"),
		current: map[string]FlagChange{},
		history: map[string][]FlagChange{},
		readyCh: make(chan struct{}),
		applied: make(chan struct{}),
		perFlag: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spine_flag_changes_total", Help: "Flag changes applied by this process, by flag."}, []string{"flag"}),
		invalid: prometheus.NewCounter(prometheus.CounterOpts{Name: "spine_flag_invalid_records_total", Help: "Records on the flag topic that did not decode or validate and were skipped."}),
	}
	if c.reg != nil {
		c.reg.MustRegister(f.perFlag, f.invalid)
	}
	return f
}

// OnChange registers fn, called from Run's goroutine after each change is
// applied (also for changes read while catching up). Register before Run;
// fn must not block.
func (f *Flags) OnChange(fn func(FlagChange)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.watch = append(f.watch, fn)
}

// Run reads spine.flags from the beginning and keeps applying changes until
// ctx ends. It returns nil when ctx ends, or the error that stopped it.
func (f *Flags) Run(ctx context.Context) error {
	opts := append(slices.Clone(f.kopts),
		kgo.ConsumeTopics(string(f.topic)),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(200*time.Millisecond),
		kgo.ProducerLinger(0),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("flags client: %w", err)
	}
	defer cl.Close()
	f.mu.Lock()
	f.cl = cl
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.cl = nil
		f.mu.Unlock()
	}()

	// The end offset at start: once read up to it, the view is current.
	var end int64 = -1
	for end < 0 {
		ends, err := kadm.NewClient(cl).ListCommittedOffsets(ctx, string(f.topic))
		if err == nil {
			err = ends.Error()
		}
		if err == nil {
			o, ok := ends.Lookup(string(f.topic), 0)
			if ok {
				end = o.Offset
				break
			}
			err = fmt.Errorf("topic %s has no partition 0", f.topic)
		}
		if ctx.Err() != nil {
			return nil
		}
		f.log.Warn("flags: cannot read the end of the flag topic yet; retrying", "topic", f.topic, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	if end == 0 {
		f.markReady()
	}
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			f.log.Warn("flags: fetch error", "topic", t, "partition", p, "err", err)
		})
		var last int64 = -1
		fs.EachRecord(func(r *kgo.Record) {
			f.apply(r)
			last = r.Offset
		})
		f.mu.Lock()
		// The view is current once the record before the start-time end
		// offset is read (flag writes are not transactional, so that last
		// offset is a record, never a commit marker).
		if !f.ready && last+1 >= end {
			f.ready = true
			close(f.readyCh)
		}
		close(f.applied)
		f.applied = make(chan struct{})
		f.mu.Unlock()
	}
}

func (f *Flags) markReady() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.ready {
		f.ready = true
		close(f.readyCh)
	}
}

// apply folds one record into the view.
func (f *Flags) apply(r *kgo.Record) {
	var c FlagChange
	if err := json.Unmarshal(r.Value, &c); err != nil || c.Flag == "" || c.Rev < 1 {
		f.invalid.Inc()
		f.log.Warn("flags: skipping a record that is not a flag change", "offset", r.Offset, "key", string(r.Key), "err", err)
		return
	}
	c.Offset = r.Offset
	if v, ok := f.known[c.Flag]; ok {
		if err := v(c.Value); err != nil {
			f.invalid.Inc()
			f.log.Warn("flags: skipping an invalid flag value", "offset", r.Offset, "flag", c.Flag, "rev", c.Rev, "err", err)
			return
		}
	}
	f.mu.Lock()
	hist := f.history[c.Flag]
	if !slices.ContainsFunc(hist, func(h FlagChange) bool { return h.Rev == c.Rev && h.At.Equal(c.At) && h.Who == c.Who }) {
		f.history[c.Flag] = append(hist, c)
		slices.SortStableFunc(f.history[c.Flag], func(a, b FlagChange) int { return int(a.Rev - b.Rev) })
	}
	// Each change is read twice (history key, then current key); a second
	// write of the same revision by someone else (a race between two
	// writers) wins by offset order.
	cur, had := f.current[c.Flag]
	dup := had && c.Rev == cur.Rev && c.At.Equal(cur.At) && c.Who == cur.Who
	newer := !had || c.Rev > cur.Rev || (c.Rev == cur.Rev && !dup && c.Offset > cur.Offset)
	watch := slices.Clone(f.watch)
	f.mu.Unlock()
	if !newer {
		return
	}
	f.perFlag.WithLabelValues(c.Flag).Inc()
	// The watchers (a typed view such as canary.Rollouts) hear of the
	// change before the store's own view shows it, so a Set that returns
	// once the store shows its write finds every view updated. apply runs
	// on Run's goroutine only: nothing else writes current meanwhile.
	for _, fn := range watch {
		fn(c)
	}
	f.mu.Lock()
	f.current[c.Flag] = c
	f.mu.Unlock()
}

// WaitReady blocks until Run has read every change that existed when it
// started, or ctx ends.
func (f *Flags) WaitReady(ctx context.Context) error {
	select {
	case <-f.readyCh:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("flags: waiting for the flag topic %s: %w (is Kafka reachable?)", f.topic, ctx.Err())
	}
}

// Get returns the latest change of flag, if any.
func (f *Flags) Get(flag string) (FlagChange, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.current[flag]
	return c, ok
}

// History returns every change of flag read so far, oldest first.
func (f *Flags) History(flag string) []FlagChange {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.history[flag])
}

// Set writes a change of flag to value (any JSON-encodable value) and waits until this store applied it, so a Get
// after Set sees it. The revision is the current one plus one; value is
// validated first. Run must be running and ready.
func (f *Flags) Set(ctx context.Context, flag string, value any, who, why string) (FlagChange, error) {
	return f.set(ctx, flag, value, -1, who, why)
}

// SetIf is Set on the condition that the flag is still at revision expect
// in this store's view; otherwise it writes nothing and returns an error
// wrapping ErrFlagConflict. It narrows, but cannot close, the window in
// which two writers in different processes both write the same revision;
// readers then keep the later record.
func (f *Flags) SetIf(ctx context.Context, flag string, value any, expect int64, who, why string) (FlagChange, error) {
	return f.set(ctx, flag, value, expect, who, why)
}

func (f *Flags) set(ctx context.Context, flag string, value any, expect int64, who, why string) (FlagChange, error) {
	validate, ok := f.known[flag]
	if !ok {
		known := slices.Sorted(maps.Keys(f.known))
		return FlagChange{}, fmt.Errorf("%w %q (known: %s)", ErrUnknownFlag, flag, strings.Join(known, ", "))
	}
	raw, err := json.Marshal(value)
	if err != nil {
		return FlagChange{}, fmt.Errorf("%w %s: %v", ErrInvalidFlag, flag, err)
	}
	if err := validate(raw); err != nil {
		return FlagChange{}, err
	}
	if err := f.WaitReady(ctx); err != nil {
		return FlagChange{}, err
	}
	f.mu.Lock()
	cl := f.cl
	rev := f.current[flag].Rev + 1
	f.mu.Unlock()
	if cl == nil {
		return FlagChange{}, ErrFlagsNotRunning
	}
	if expect >= 0 && rev-1 != expect {
		return FlagChange{}, fmt.Errorf("%w: %s is at revision %d, not %d", ErrFlagConflict, flag, rev-1, expect)
	}
	if who == "" {
		who = "unknown"
	}
	c := FlagChange{Flag: flag, Rev: rev, Value: raw, Who: who, Why: why, At: time.Now().UTC().Truncate(time.Millisecond)}
	b, err := json.Marshal(c)
	if err != nil {
		return FlagChange{}, err
	}
	res := cl.ProduceSync(ctx,
		&kgo.Record{Topic: string(f.topic), Partition: 0, Key: []byte(historyKey(flag, rev)), Value: b},
		&kgo.Record{Topic: string(f.topic), Partition: 0, Key: []byte(flag), Value: b},
	)
	if err := res.FirstErr(); err != nil {
		return FlagChange{}, fmt.Errorf("write flag %s to %s: %w", flag, f.topic, err)
	}
	c.Offset = res[1].Record.Offset
	// Read our own write: wait until Run applied it.
	for {
		f.mu.Lock()
		got := f.current[flag]
		ch := f.applied
		f.mu.Unlock()
		if got.Rev >= rev {
			return c, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return c, fmt.Errorf("flag %s rev %d written but not read back: %w", flag, rev, ctx.Err())
		}
	}
}
