package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
// the topic and is the only writer of the in-memory view; readers take mu
// (or load the typed rollout atomically, lock-free, for the router's hot
// path). Set produces synchronously and waits until Run applied the change.

// FlagV2Rollout is the flag that holds the v2 canary rollout.
const FlagV2Rollout = "v2_rollout"

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

// RolloutPhase is where a rollout stands.
type RolloutPhase string

// The phases of a rollout.
const (
	// PhaseProgressing: the analyzer analyses every interval and steps the
	// weight up or rolls back.
	PhaseProgressing RolloutPhase = "progressing"
	// PhasePromoted: every analysis passed up to the max weight; the
	// analyzer stops.
	PhasePromoted RolloutPhase = "promoted"
	// PhaseRolledBack: the failure limit was reached; the weight is 0 and
	// the analyzer stops.
	PhaseRolledBack RolloutPhase = "rolled_back"
	// PhasePaused: no decision is taken. A pause the analyzer took because
	// an analysis was inconclusive (PauseReason "inconclusive") resumes by
	// itself once there are enough samples; any other pause waits for a
	// person to set the phase back to progressing.
	PhasePaused RolloutPhase = "paused"
)

// PauseInconclusive is the PauseReason of a pause taken by the analyzer.
const PauseInconclusive = "inconclusive"

// Valid reports whether p is a known phase.
func (p RolloutPhase) Valid() bool {
	switch p {
	case PhaseProgressing, PhasePromoted, PhaseRolledBack, PhasePaused:
		return true
	}
	return false
}

// Duration is a time.Duration that reads and writes as text ("30s").
type Duration time.Duration

// MarshalText encodes d as Go duration text.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText decodes Go duration text.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// RolloutThresholds are the canary analysis thresholds. A zero value
// disables its check.
type RolloutThresholds struct {
	// SuccessRateMin is the lowest canary success rate (0..1).
	SuccessRateMin float64 `json:"success_rate_min"`
	// ErrorRateMax is the highest canary execution failure rate (0..1).
	ErrorRateMax float64 `json:"error_rate_max"`
	// GatePassRateMin is the lowest canary pass rate of each gate (0..1).
	GatePassRateMin float64 `json:"gate_pass_rate_min"`
	// LatencyP99MaxRatio is the highest canary p99 as a multiple of the
	// baseline's.
	LatencyP99MaxRatio float64 `json:"latency_p99_max_ratio"`
	// LatencyP99MaxMs is the highest canary p99 in milliseconds.
	LatencyP99MaxMs float64 `json:"latency_p99_max_ms"`
	// DriftMethod is "psi" or "ks".
	DriftMethod string `json:"drift_method"`
	// DriftMax is the highest drift statistic of the score distribution.
	DriftMax float64 `json:"drift_max"`
}

// Rollout is the typed value of FlagV2Rollout: the canary's weight, how
// the analyzer moves it, and where the rollout stands. Weights are basis
// points (0..10000; 100 bp = 1%).
type Rollout struct {
	// Weight is the share of runs routed to the canary.
	Weight int `json:"weight_bp"`
	// StepWeight is added after each passing analysis.
	StepWeight int `json:"step_weight_bp"`
	// MaxWeight is where a passing analysis promotes.
	MaxWeight int `json:"max_weight_bp"`
	// Interval is the time between analyses.
	Interval Duration `json:"interval"`
	// RouteKey is what the router hashes: "trace_id" (default) or "actor".
	RouteKey string `json:"route_key"`
	// FailureLimit is the number of failed analyses that rolls back.
	FailureLimit int `json:"failure_limit"`
	// MinSamples is the number of finished runs each side needs before an
	// analysis decides (fewer is inconclusive).
	MinSamples int64 `json:"min_samples"`
	// Thresholds are what the canary is held to.
	Thresholds RolloutThresholds `json:"thresholds"`
	// Phase is where the rollout stands.
	Phase RolloutPhase `json:"phase"`
	// PauseReason says why a paused rollout pauses.
	PauseReason string `json:"pause_reason,omitempty"`
	// Failures counts failed analyses in this rollout.
	Failures int `json:"failures"`
	// CanaryRunsAtLast is the canary's finished runs at the last
	// conclusive analysis; the next needs MinSamples more.
	CanaryRunsAtLast int64 `json:"canary_runs_at_last,omitempty"`
	// Started is when this rollout (its analysis window) began.
	Started time.Time `json:"started,omitzero"`
}

// DefaultRollout is the rollout before anyone set the flag: no canary
// traffic, 10% steps to 50%, analysed every 30 s.
func DefaultRollout() Rollout {
	return Rollout{
		Weight: 0, StepWeight: 1000, MaxWeight: 5000,
		Interval: Duration(30 * time.Second), RouteKey: "trace_id",
		FailureLimit: 3, MinSamples: 50,
		Thresholds: RolloutThresholds{
			SuccessRateMin: 0.95, ErrorRateMax: 0.05, GatePassRateMin: 0.95,
			LatencyP99MaxRatio: 1.5, DriftMethod: "psi", DriftMax: 0.2,
		},
		Phase: PhaseProgressing,
	}
}

// Validate reports every problem of r at once, wrapped in ErrInvalidFlag.
func (r Rollout) Validate() error {
	var errs []string
	bad := func(f string, a ...any) { errs = append(errs, fmt.Sprintf(f, a...)) }
	inBP := func(name string, v, lo int) {
		if v < lo || v > 10000 {
			bad("%s %d bp is not in %d..10000", name, v, lo)
		}
	}
	inBP("weight", r.Weight, 0)
	inBP("step_weight", r.StepWeight, 1)
	inBP("max_weight", r.MaxWeight, 1)
	if r.Interval < Duration(10*time.Millisecond) {
		bad("interval %s is below 10ms", time.Duration(r.Interval))
	}
	if r.RouteKey != "trace_id" && r.RouteKey != "actor" {
		bad("route_key %q is not trace_id or actor", r.RouteKey)
	}
	if r.FailureLimit < 1 {
		bad("failure_limit %d is below 1", r.FailureLimit)
	}
	if r.MinSamples < 1 {
		bad("min_samples %d is below 1", r.MinSamples)
	}
	if r.Failures < 0 {
		bad("failures %d is negative", r.Failures)
	}
	if r.CanaryRunsAtLast < 0 {
		bad("canary_runs_at_last %d is negative", r.CanaryRunsAtLast)
	}
	th := r.Thresholds
	for name, v := range map[string]float64{"success_rate_min": th.SuccessRateMin, "error_rate_max": th.ErrorRateMax, "gate_pass_rate_min": th.GatePassRateMin} {
		if !(v >= 0 && v <= 1) {
			bad("%s %v is not in 0..1", name, v)
		}
	}
	for name, v := range map[string]float64{"latency_p99_max_ratio": th.LatencyP99MaxRatio, "latency_p99_max_ms": th.LatencyP99MaxMs, "drift_max": th.DriftMax} {
		if !(v >= 0) || math.IsInf(v, 0) {
			bad("%s %v is negative or not finite", name, v)
		}
	}
	if th.DriftMethod != "psi" && th.DriftMethod != "ks" {
		bad("drift_method %q is not psi or ks", th.DriftMethod)
	}
	if !r.Phase.Valid() {
		bad("phase %q is not progressing, promoted, rolled_back or paused", r.Phase)
	}
	if len(errs) > 0 {
		slices.Sort(errs)
		return fmt.Errorf("%w %s: %s", ErrInvalidFlag, FlagV2Rollout, strings.Join(errs, "; "))
	}
	return nil
}

// RolloutSettings lists the names Rollout.Apply accepts, for help texts.
var RolloutSettings = []string{
	"weight", "step_weight", "max_weight", "interval", "route_key",
	"failure_limit", "min_samples", "failures", "phase",
	"success_rate_min", "error_rate_max", "gate_pass_rate_min",
	"latency_p99_max_ratio", "latency_p99_max_ms", "drift_method", "drift_max",
}

// ParseWeight parses a weight given as a percentage ("10", "10%", "12.5%")
// or in basis points ("1000bp") into basis points.
func ParseWeight(s string) (int, error) {
	s = strings.TrimSpace(s)
	if b, ok := strings.CutSuffix(s, "bp"); ok {
		v, err := strconv.Atoi(strings.TrimSpace(b))
		if err != nil || v < 0 || v > 10000 {
			return 0, fmt.Errorf("%w: weight %q is not 0bp..10000bp", ErrInvalidFlag, s)
		}
		return v, nil
	}
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if err != nil || !(v >= 0 && v <= 100) {
		return 0, fmt.Errorf("%w: weight %q is not a percentage 0..100 (or 0bp..10000bp)", ErrInvalidFlag, s)
	}
	return int(math.Round(v * 100)), nil
}

// Apply sets one named setting of r from text (see RolloutSettings); weights
// are percentages or basis points (ParseWeight). Moving a finished or
// paused rollout back to progressing starts a new rollout at now: the
// failure count is reset and the analysis window restarts.
func (r *Rollout) Apply(name, value string, now time.Time) error {
	value = strings.TrimSpace(value)
	fl := func(dst *float64) error {
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return fmt.Errorf("%w: %s %q is not a number", ErrInvalidFlag, name, value)
		}
		*dst = v
		return nil
	}
	in := func(dst *int) error {
		v, err := strconv.Atoi(value)
		if err != nil {
			return fmt.Errorf("%w: %s %q is not an integer", ErrInvalidFlag, name, value)
		}
		*dst = v
		return nil
	}
	w := func(dst *int) error {
		v, err := ParseWeight(value)
		if err != nil {
			return err
		}
		*dst = v
		return nil
	}
	th := &r.Thresholds
	switch name {
	case "weight":
		return w(&r.Weight)
	case "step_weight":
		return w(&r.StepWeight)
	case "max_weight":
		return w(&r.MaxWeight)
	case "interval":
		d, err := time.ParseDuration(value)
		if err != nil {
			return fmt.Errorf("%w: interval %q is not a duration such as 30s", ErrInvalidFlag, value)
		}
		r.Interval = Duration(d)
	case "route_key":
		r.RouteKey = value
	case "failure_limit":
		return in(&r.FailureLimit)
	case "failures":
		return in(&r.Failures)
	case "min_samples":
		v, err := strconv.ParseInt(value, 10, 64)
		if err != nil {
			return fmt.Errorf("%w: min_samples %q is not an integer", ErrInvalidFlag, value)
		}
		r.MinSamples = v
	case "phase":
		p := RolloutPhase(value)
		if p == PhaseProgressing && r.Phase != PhaseProgressing {
			r.Failures, r.Started, r.PauseReason, r.CanaryRunsAtLast = 0, now.UTC(), "", 0
		}
		if p == PhasePaused {
			r.PauseReason = "manual"
		}
		r.Phase = p
	case "success_rate_min":
		return fl(&th.SuccessRateMin)
	case "error_rate_max":
		return fl(&th.ErrorRateMax)
	case "gate_pass_rate_min":
		return fl(&th.GatePassRateMin)
	case "latency_p99_max_ratio":
		return fl(&th.LatencyP99MaxRatio)
	case "latency_p99_max_ms":
		return fl(&th.LatencyP99MaxMs)
	case "drift_method":
		th.DriftMethod = strings.ToLower(value)
	case "drift_max":
		return fl(&th.DriftMax)
	default:
		return fmt.Errorf("%w: %s has no setting %q (settings: %s)", ErrInvalidFlag, FlagV2Rollout, name, strings.Join(RolloutSettings, ", "))
	}
	return nil
}

// FlagChange is one change of one flag: the record on spine.flags.
type FlagChange struct {
	Flag string `json:"flag"`
	// Rev is the flag's revision, 1 for its first change.
	Rev int64 `json:"rev"`
	// Value is the flag's whole new value (for FlagV2Rollout, a Rollout).
	Value json.RawMessage `json:"value"`
	// Who made the change (a user, or "canary-analyzer").
	Who string `json:"who"`
	// Why, in a sentence.
	Why string    `json:"why"`
	At  time.Time `json:"at"`
	// Offset is the record's offset on spine.flags (set when read).
	Offset int64 `json:"offset"`
}

// Rollout decodes the change's value as a Rollout.
func (c FlagChange) Rollout() (Rollout, error) {
	r := DefaultRollout()
	dec := json.NewDecoder(bytes.NewReader(c.Value))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Rollout{}, fmt.Errorf("%w: %s rev %d: %v", ErrInvalidFlag, c.Flag, c.Rev, err)
	}
	return r, nil
}

// knownFlags validates each flag's value; a flag not listed is unknown.
var knownFlags = map[string]func(json.RawMessage) error{
	FlagV2Rollout: func(v json.RawMessage) error {
		r, err := FlagChange{Flag: FlagV2Rollout, Value: v}.Rollout()
		if err != nil {
			return err
		}
		return r.Validate()
	},
}

// historyKey is the record key of one revision of a flag.
func historyKey(flag string, rev int64) string { return fmt.Sprintf("%s@%020d", flag, rev) }

// FlagsOpt configures a Flags store.
type FlagsOpt func(*flagsConfig)

type flagsConfig struct {
	log *slog.Logger
	reg prometheus.Registerer
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

	rollout atomic.Pointer[rolloutRev] // the current typed v2_rollout

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
	c := flagsConfig{log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(&c)
	}
	f := &Flags{
		topic:   layout.Flags(),
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
	f.rollout.Store(&rolloutRev{r: DefaultRollout()})
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
	if v, ok := knownFlags[c.Flag]; ok {
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
	if newer {
		f.current[c.Flag] = c
	}
	watch := slices.Clone(f.watch)
	f.mu.Unlock()
	if !newer {
		return
	}
	if c.Flag == FlagV2Rollout {
		ro, _ := c.Rollout()
		f.rollout.Store(&rolloutRev{r: ro, rev: c.Rev})
	}
	f.perFlag.WithLabelValues(c.Flag).Inc()
	for _, fn := range watch {
		fn(c)
	}
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

// Rollout returns the current v2 rollout (DefaultRollout until the flag is
// set). It is lock-free and cheap enough for every routed intent.
func (f *Flags) Rollout() Rollout { return f.rollout.Load().r }

// rolloutRev is a rollout and the revision it came from.
type rolloutRev struct {
	r   Rollout
	rev int64
}

// RolloutRev returns the current v2 rollout and its revision (0 before
// the flag was ever set), for a later SetRolloutIf.
func (f *Flags) RolloutRev() (Rollout, int64) {
	p := f.rollout.Load()
	return p.r, p.rev
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

// Set writes a change of flag to value (any JSON-encodable value; for
// FlagV2Rollout a Rollout) and waits until this store applied it, so a Get
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
	validate, ok := knownFlags[flag]
	if !ok {
		return FlagChange{}, fmt.Errorf("%w %q (known: %s)", ErrUnknownFlag, flag, FlagV2Rollout)
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

// SetRollout validates r and writes it as FlagV2Rollout.
func (f *Flags) SetRollout(ctx context.Context, r Rollout, who, why string) (FlagChange, error) {
	if err := r.Validate(); err != nil {
		return FlagChange{}, err
	}
	return f.Set(ctx, FlagV2Rollout, r, who, why)
}

// SetRolloutIf is SetRollout on the condition that the rollout is still at
// revision expect (see SetIf).
func (f *Flags) SetRolloutIf(ctx context.Context, r Rollout, expect int64, who, why string) (FlagChange, error) {
	if err := r.Validate(); err != nil {
		return FlagChange{}, err
	}
	return f.SetIf(ctx, FlagV2Rollout, r, expect, who, why)
}

// Leader elects one process among every process that runs a Leader with
// the same name on the same layout: the member of the consumer group
// Layout.Group(name) that is assigned the one partition of the flag topic
// leads. When it stops or dies the group reassigns the partition and
// another member leads (on a crash, after the session timeout, 10 s). The
// canary analyzer runs under one, so that several `spine up` processes on
// one cluster take one decision per interval, not several. A Leader is
// safe for concurrent use.
type Leader struct {
	kopts   []kgo.Opt
	group   string
	topic   Topic
	log     *slog.Logger
	leading atomic.Bool
}

// NewLeader returns a Leader for name; it does no I/O.
func NewLeader(kopts []kgo.Opt, layout Layout, name string, log *slog.Logger) *Leader {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Leader{kopts: kopts, group: layout.Group(name), topic: layout.Flags(), log: log.With("component", "leader", "group", layout.Group(name))}
}

// Leading reports whether this process leads now.
func (l *Leader) Leading() bool { return l.leading.Load() }

// Run takes part in the election until ctx ends; it returns nil then, after
// leaving the group so another member takes over at once.
func (l *Leader) Run(ctx context.Context) error {
	set := func(parts map[string][]int32, v bool) {
		if slices.Contains(parts[string(l.topic)], 0) && l.leading.Swap(v) != v {
			l.log.Info("leadership changed", "leading", v)
		}
	}
	cl, err := kgo.NewClient(append(slices.Clone(l.kopts),
		kgo.ConsumerGroup(l.group),
		kgo.ConsumeTopics(string(l.topic)),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()),
		kgo.DisableAutoCommit(),
		kgo.SessionTimeout(10*time.Second),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, p map[string][]int32) { set(p, true) }),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, p map[string][]int32) { set(p, false) }),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, p map[string][]int32) { set(p, false) }),
	)...)
	if err != nil {
		return fmt.Errorf("leader client: %w", err)
	}
	defer func() {
		l.leading.Store(false)
		cl.Close() // leaves the group
	}()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			l.log.Debug("leader: fetch error", "topic", t, "partition", p, "err", err)
		})
	}
}
