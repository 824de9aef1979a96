// Package orchestrator is the control plane of Spine: the stateflow FSM that
// is the only authority over a run's state.
//
// A run is keyed by its trace id. The orchestrator consumes spine.intents
// (an Intent starts a run), spine.dataplane (dataplane.started,
// artifact.delivered, dataplane.failed) and gate.verdict, and emits one
// canonical event per state change on spine.control: intent.received,
// run.routed, run.queued/run.dequeued, run.dispatch (the command to the data
// plane), run.executing, run.delivered, run.gating and exactly one terminal
// event (run.completed, run.rejected, run.failed or run.timed_out).
//
// # States as data
//
// Every state is a Spec in a Stateflow table: its entry criteria (from which
// states, on which trigger), timeout, retry policy in Temporal's vocabulary,
// fallback and the event_type emitted on entry. A transition the table does
// not list is refused: the state is unchanged and a run.illegal_transition
// event records it. A data-plane event whose parent span is not the run's
// current run.dispatch (a result of an earlier attempt) or a verdict on
// another artifact is stale: ignored and recorded as run.stale_event.
//
// The table is a file: stateflow.yaml (embedded, DefaultFile) or one
// SPINE_STATEFLOW names, parsed by ParseStateflow and validated whole, each
// problem at its line: every state reachable, every non-terminal state
// bounded (a timeout and fallback, or transient), every one ended by the
// run's deadline, fallback chains acyclic, triggers and events known, CEL
// guards (see Guard) compiled to bools. An entry's guard is evaluated only
// when its (state, trigger) has guards; otherwise a transition is one map
// read, as before guards. Retries back off with full jitter seeded by the
// trace id. When a run's retries on its agent are spent and its state has
// an entry on OnFallback, the run degrades to the agent's fallback agent
// (WithAgentFallbacks): run.fallback, then a run.dispatch naming that agent
// as its kind. A run records the Version of the stateflow it started under
// and stamps it on every event; it finishes under it
// (WithPreviousStateflows keeps earlier ones across a deploy).
//
// # Timers
//
// Deadlines (the state's timeout, a retry's backoff, the run's end-to-end
// deadline) live in the run's own state, so the pipeline loop restores them
// with the state and calls Fire once they pass (see pipeline.Timed). Fire acts
// only on a deadline the state still holds and clears or replaces it in the
// same step, so a timer fires exactly once and never after the run moved on.
//
// # Ids
//
// Event ids and span ids derive from the trace id and the run's step counter
// (see package thread), so a transaction the loop retries, or a run replayed
// from the same inputs, reproduces the same ids.
//
// # Arbitration
//
// With WithMaxPerActor(n), at most n runs of one actor are between dispatch
// and their terminal state. Runs of one actor live on different partitions
// (they are keyed by trace id), so the count cannot live in a run's state,
// and an in-memory counter would be per instance and lost on restart. The
// count instead lives in a ledger keyed by thread.ActorKey(actor), a key of
// the orchestrator's own state like any run, on the partition that key
// hashes to. A routed run sends arbitration.acquire to its actor's ledger on
// spine.control; the ledger answers with arbitration.grant (dispatch now) or
// arbitration.queued (the run emits run.queued and waits), and a run that
// ends sends arbitration.release, upon which the ledger grants the waiting
// run of highest priority (then oldest). All of these are records on
// spine.control produced in the pipeline's transactions, so the limit is
// exact across instances and restarts. The price is two more hops before
// dispatch, which is why arbitration is off (n = 0) by default; when it is
// on, the orchestrator must also consume spine.control (see Topics).
//
// Deduplication: an intent whose trace id is already known (whatever its
// intent id) is a duplicate: no events, no rejection. An intent id is only
// recognised under its own trace id; producers retry with the same trace id.
// An ended run's state is kept for the retention (WithRetention, default 15
// minutes) and then deleted, which bounds the state; a duplicate arriving
// after that starts a new run.
//
// An Orchestrator is safe for concurrent use: it keeps no mutable state of
// its own.
package orchestrator

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/spinerun/spine/gates"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// Name is the processor name: its group, state topic and metrics label.
const Name = "orchestrator"

// DefaultIntentKinds are the intent kinds accepted unless WithIntentKinds
// says otherwise.
var DefaultIntentKinds = []string{"summarize", "classify", "extract", "answer", "tool_call"}

// Orchestrator is the control-plane Handler (and pipeline.Timed).
type Orchestrator struct {
	layout      pipeline.Layout
	control     pipeline.Topic // layout.Control(), named once: every event goes there
	policyTopic pipeline.Topic // layout.Gate(gates.PolicyName)
	flow        *Stateflow
	flows       map[string]*Stateflow // earlier versions, for runs in flight
	router      Router
	kinds       map[string]bool
	versions    map[string]schemas.ContractVersion
	maxPerActor int
	runDeadline time.Duration
	kindDL      map[string]time.Duration
	fallbacks   map[string]string // agent kind → its fallback agent's
	retention   time.Duration
	maxSkew     time.Duration
	maxInput    int
	verifier    Verifier
	policy      PolicySource
	now         func() time.Time
	log         *slog.Logger
}

var (
	_ pipeline.Handler = (*Orchestrator)(nil)
	_ pipeline.Timed   = (*Orchestrator)(nil)
)

// Option configures an Orchestrator.
type Option func(*Orchestrator)

// WithStateflow replaces the default stateflow table.
func WithStateflow(f *Stateflow) Option { return func(o *Orchestrator) { o.flow = f } }

// WithPreviousStateflows keeps earlier stateflows so that runs started
// under one of them finish under it (a run's state and events name the
// version it started under). A run whose version is not known continues
// under the current stateflow, if that declares its state.
func WithPreviousStateflows(fs ...*Stateflow) Option {
	return func(o *Orchestrator) {
		for _, f := range fs {
			if f != nil {
				o.flows[f.Version()] = f
			}
		}
	}
}

// WithAgentFallbacks sets each agent's fallback agent (agents-file kinds,
// see agents.File.Fallbacks): when a run's retries on its agent are spent
// and the stateflow has an entry on "fallback" from its state, the intent
// runs on the fallback agent instead of failing. Chains must be acyclic and
// at most 4 long.
func WithAgentFallbacks(m map[string]string) Option {
	return func(o *Orchestrator) { o.fallbacks = maps.Clone(m) }
}

// WithRouter sets the Router (default Baseline).
func WithRouter(r Router) Option { return func(o *Orchestrator) { o.router = r } }

// WithIntentKinds sets the accepted intent kinds (default DefaultIntentKinds).
func WithIntentKinds(kinds ...string) Option {
	return func(o *Orchestrator) {
		o.kinds = map[string]bool{}
		for _, k := range kinds {
			o.kinds[k] = true
		}
	}
}

// WithRouteVersion sets the contract version of a route (defaults: baseline
// V1, canary V2).
func WithRouteVersion(route string, v schemas.ContractVersion) Option {
	return func(o *Orchestrator) { o.versions[route] = v }
}

// WithMaxPerActor limits the concurrent runs of one actor (0, the default,
// means no limit and no arbitration hops).
func WithMaxPerActor(n int) Option { return func(o *Orchestrator) { o.maxPerActor = n } }

// WithRunDeadline sets the end-to-end deadline of a run whose intent gives
// none (deadline_ms 0); 0, the default, means none.
func WithRunDeadline(d time.Duration) Option { return func(o *Orchestrator) { o.runDeadline = d } }

// WithKindDeadlines sets the end-to-end deadline of runs of the given
// kinds whose intent gives none, overriding WithRunDeadline for them.
func WithKindDeadlines(m map[string]time.Duration) Option {
	return func(o *Orchestrator) { o.kindDL = maps.Clone(m) }
}

// WithRetention sets how long an ended run's state is kept (default 15
// minutes): within it a duplicate intent is recognised and late events are
// refused as illegal transitions; after it the state is deleted (a
// tombstone in the changelog), so state does not grow with every run ever
// seen. 0 keeps ended runs forever.
func WithRetention(d time.Duration) Option { return func(o *Orchestrator) { o.retention = d } }

// WithMaxClockSkew sets how far in the future an intent's timestamp may be
// (default 5 minutes).
func WithMaxClockSkew(d time.Duration) Option { return func(o *Orchestrator) { o.maxSkew = d } }

// WithMaxInputBytes sets the largest input admitted (default
// schemas.DefaultInputLimit, at most schemas.MaxInputBytes); a larger one
// is rejected as input_too_large before the run starts.
func WithMaxInputBytes(n int) Option { return func(o *Orchestrator) { o.maxInput = n } }

// WithClock sets the clock (default time.Now).
func WithClock(now func() time.Time) Option { return func(o *Orchestrator) { o.now = now } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *Orchestrator) { o.log = l } }

// New returns an Orchestrator writing to the topics of layout. It does no
// I/O.
func New(layout pipeline.Layout, opts ...Option) (*Orchestrator, error) {
	o := &Orchestrator{
		layout:      layout,
		control:     layout.Control(),
		policyTopic: layout.Gate(gates.PolicyName),
		router:      Baseline,
		versions:    map[string]schemas.ContractVersion{thread.RouteBaseline: schemas.V1, thread.RouteCanary: schemas.V2},
		flows:       map[string]*Stateflow{},
		maxSkew:     5 * time.Minute,
		retention:   15 * time.Minute,
		maxInput:    schemas.DefaultInputLimit,
		now:         time.Now,
	}
	WithIntentKinds(DefaultIntentKinds...)(o)
	for _, opt := range opts {
		opt(o)
	}
	if o.flow == nil {
		f, err := NewStateflow(DefaultStates(DefaultRetry, 30*time.Second, 30*time.Second))
		if err != nil {
			return nil, err
		}
		o.flow = f
	}
	if o.log == nil {
		o.log = slog.Default()
	}
	o.log = o.log.With("processor", Name)
	if err := o.validate(); err != nil {
		return nil, err
	}
	return o, nil
}

func (o *Orchestrator) validate() error {
	switch {
	case o.router == nil:
		return fmt.Errorf("orchestrator: nil router")
	case len(o.kinds) == 0:
		return fmt.Errorf("orchestrator: no intent kinds allowed")
	case o.maxPerActor < 0:
		return fmt.Errorf("orchestrator: negative max runs per actor %d", o.maxPerActor)
	case o.runDeadline < 0, o.maxSkew < 0, o.retention < 0:
		return fmt.Errorf("orchestrator: negative duration")
	}
	for k := range o.fallbacks {
		seen := []string{k}
		for cur := o.fallbacks[k]; cur != ""; cur = o.fallbacks[cur] {
			if slices.Contains(seen, cur) || len(seen) > maxFallbackChain {
				return fmt.Errorf("orchestrator: agent fallback chain from %q is cyclic or longer than %d", k, maxFallbackChain)
			}
			seen = append(seen, cur)
		}
	}
	for k, d := range o.kindDL {
		if d <= 0 {
			return fmt.Errorf("orchestrator: run deadline of kind %q is %s, want positive", k, d)
		}
	}
	switch {
	case o.maxInput < 1 || o.maxInput > schemas.MaxInputBytes:
		return fmt.Errorf("orchestrator: max input %d bytes is not in [1, %d]", o.maxInput, schemas.MaxInputBytes)
	}
	for r, v := range o.versions {
		if !v.Valid() {
			return fmt.Errorf("orchestrator: route %q has invalid contract version %d", r, int(v))
		}
	}
	for _, s := range []State{StateReceived, StateRouted, StateDispatched, StateExecuting, StateDelivered, StateGating,
		StateCompleted, StateRejected, StateFailed, StateTimedOut} {
		if _, ok := o.flow.Spec(s); !ok {
			return fmt.Errorf("orchestrator: stateflow lacks state %q", s)
		}
	}
	if err := o.validateAdmission(); err != nil {
		return err
	}
	if o.maxPerActor > 0 {
		if _, ok := o.flow.Spec(StateQueued); !ok {
			return fmt.Errorf("orchestrator: arbitration needs state %q", StateQueued)
		}
	}
	return nil
}

// Stateflow returns the orchestrator's table.
func (o *Orchestrator) Stateflow() *Stateflow { return o.flow }

// Topics lists the topics the orchestrator consumes: spine.intents,
// spine.dataplane and gate.verdict, and spine.control when arbitration is on.
func (o *Orchestrator) Topics() []pipeline.Topic {
	ts := []pipeline.Topic{o.layout.Intents(), o.layout.Dataplane(), o.layout.Gate(thread.VerdictGate)}
	if o.maxPerActor > 0 {
		ts = append(ts, o.layout.Control())
	}
	return ts
}

// step is the work of one Handle or Fire call on one run.
type step struct {
	o *Orchestrator
	// f is the run's stateflow: the one it started under.
	f   *Stateflow
	r   *runState
	now time.Time
	out []pipeline.Output
	// errKind is the kind of the failure being handled, for guards.
	errKind string
}

// Handle implements pipeline.Handler.
func (o *Orchestrator) Handle(ctx context.Context, state []byte, in pipeline.Input) (pipeline.Result, error) {
	switch v := in.Value.(type) {
	case *schemas.Intent:
		return o.handleIntent(ctx, state, in, v)
	case *schemas.RuntimeEvent:
		if in.Topic == o.layout.Intents() {
			return pipeline.Result{}, pipeline.Reject(CodeIllegalTransition, "a %s event on %s cannot start or move a run", v.EventType, in.Topic)
		}
		if actor, ok := thread.IsActorKey(in.Key); ok {
			return o.handleLedger(state, actor, v)
		}
		switch v.EventType {
		case thread.DataplaneStarted, thread.ArtifactDelivered, thread.DataplaneFailed:
			return o.handleData(state, in, v)
		case thread.GateVerdict:
			return o.handleVerdict(state, in, v)
		case thread.ArbitrationGrant, thread.ArbitrationQueued:
			return o.handleAdmission(state, v)
		}
		// Everything else (dataplane.dispatched, the orchestrator's own
		// control events read back for arbitration) carries no decision.
		return pipeline.Result{}, nil
	}
	return pipeline.Result{}, pipeline.Reject(CodeUnexpectedValue, "value of type %T on %s is neither an intent nor a runtime event", in.Value, in.Topic)
}

func (o *Orchestrator) handleIntent(ctx context.Context, state []byte, in pipeline.Input, it *schemas.Intent) (pipeline.Result, error) {
	now := o.now()
	if err := o.checkIntent(in, it, now); err != nil {
		return pipeline.Result{}, err
	}
	if len(state) > 0 {
		old, err := o.loadRun(state)
		if err != nil {
			return pipeline.Result{}, err
		}
		o.log.Debug("duplicate intent", "trace_id", it.TraceID, "intent_id", it.IntentID, "known_intent_id", old.IntentID, "state", old.State)
		return pipeline.Result{}, nil
	}
	prov, actor, deny, err := o.caller(ctx, in, it)
	if err != nil {
		return pipeline.Result{}, err
	}
	route := o.router.Route(it.TraceID, actor)
	ver, ok := o.versions[route]
	if !ok {
		ver = schemas.V1
	}
	r := &runState{
		Trace: it.TraceID, IntentID: it.IntentID, Actor: actor, Kind: it.Kind, Tenant: it.Tenant,
		Route: route, Version: ver, Priority: it.Priority, Started: ms(now), Input: it.Input, Prov: prov,
		Flow: o.flow.version,
	}
	if len(it.Attributes) > 0 {
		r.Attrs = it.Attributes
	}
	if it.DeadlineMs > 0 {
		r.RunDeadline = ms(now) + it.DeadlineMs
	} else if d, ok := o.kindDL[it.Kind]; ok && d > 0 {
		r.RunDeadline = ms(now.Add(d))
	} else if o.runDeadline > 0 {
		r.RunDeadline = ms(now.Add(o.runDeadline))
	}
	s := &step{o: o, f: o.flow, r: r, now: now}
	s.enter(OnIntent, nil)
	if ok, err := s.admission(ctx, it, deny); err != nil {
		return pipeline.Result{}, err
	} else if !ok {
		return s.result()
	}
	s.enter(OnRouted, nil)
	if o.maxPerActor > 0 {
		r.Waiting = true
		s.toLedger(thread.ArbitrationAcquire)
	} else {
		s.admit()
	}
	return s.result()
}

func (o *Orchestrator) checkIntent(in pipeline.Input, it *schemas.Intent, now time.Time) error {
	switch {
	case it.TraceID == "":
		return pipeline.Reject(CodeMissingField, "intent has no trace_id")
	case it.IntentID == "":
		return pipeline.Reject(CodeMissingField, "intent %s has no intent_id", it.TraceID)
	case it.Actor == "":
		return pipeline.Reject(CodeMissingField, "intent %s has no actor", it.TraceID)
	case !utf8.ValidString(it.TraceID) || !utf8.ValidString(it.Actor) || !utf8.ValidString(it.Kind) || !utf8.ValidString(it.IntentID):
		return pipeline.Reject(CodeInvalidUTF8, "intent %q has an id, actor or kind that is not valid UTF-8", it.TraceID)
	case len(in.Key) > 0 && string(in.Key) != it.TraceID:
		return pipeline.Reject(CodeKeyMismatch, "intent %s is keyed %q, not by its trace_id", it.TraceID, in.Key)
	case !o.kinds[it.Kind]:
		return pipeline.Reject(CodeUnknownIntentKind, "intent %s has kind %q; allowed: %v", it.TraceID, it.Kind, o.kindList())
	case len(it.Input) > o.maxInput:
		return pipeline.Reject(CodeInputTooLarge, "intent %s input is %d bytes, more than the %d SPINE_MAX_INPUT_BYTES admits", it.TraceID, len(it.Input), o.maxInput)
	case it.Timestamp.After(now.Add(o.maxSkew)):
		return pipeline.Reject(CodeFutureTimestamp, "intent %s timestamp %s is more than %s ahead of %s", it.TraceID, it.Timestamp.Format(time.RFC3339), o.maxSkew, now.Format(time.RFC3339))
	}
	return nil
}

func (o *Orchestrator) kindList() []string {
	ks := make([]string, 0, len(o.kinds))
	for k := range o.kinds {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func (o *Orchestrator) handleData(state []byte, in pipeline.Input, ev *schemas.RuntimeEvent) (pipeline.Result, error) {
	r, err := o.loadRun(state)
	if err != nil {
		return pipeline.Result{}, err
	}
	if r == nil {
		return pipeline.Result{}, pipeline.Reject(CodeUnknownRun, "%s for unknown run %q", ev.EventType, ev.TraceID)
	}
	s := o.newStep(r, o.now())
	on := triggerOf(ev)
	if _, ok := s.f.Next(r.State, on); !ok {
		s.illegal(ev, on)
		return s.result()
	}
	if r.Dispatch == "" || ev.ParentSpanID != r.Dispatch {
		s.stale(ev, "parent span is not the current dispatch")
		return s.result()
	}
	switch ev.EventType {
	case thread.DataplaneStarted:
		s.enter(OnStarted, ev)
	case thread.ArtifactDelivered:
		r.Artifact = ev.ArtifactID
		r.Delivered = ev.SpanID
		if s.enter(OnDelivered, ev) != nil && s.enter(OnGate, nil) != nil {
			if early := r.Early; early != nil {
				r.Early = nil
				s.verdict(early)
			}
		}
	case thread.DataplaneFailed:
		s.failOrRetry(errorKind(ev), errorText(ev), OnFailure, ev)
	}
	return s.result()
}

func (o *Orchestrator) handleVerdict(state []byte, in pipeline.Input, ev *schemas.RuntimeEvent) (pipeline.Result, error) {
	r, err := o.loadRun(state)
	if err != nil {
		return pipeline.Result{}, err
	}
	if r == nil {
		return pipeline.Result{}, pipeline.Reject(CodeUnknownRun, "gate.verdict for unknown run %q", ev.TraceID)
	}
	s := o.newStep(r, o.now())
	if _, ok := s.f.Next(r.State, verdictTrigger(ev)); !ok && r.Early == nil && ev.ParentSpanID != r.Delivered {
		if _, waiting := s.f.Next(r.State, OnDelivered); waiting {
			// The verdict overtook its artifact (another topic): keep it
			// until the artifact.delivered arrives.
			r.Early = ev
			return s.result()
		}
	}
	s.verdict(ev)
	return s.result()
}

// verdictTrigger is the trigger of a gate.verdict.
func verdictTrigger(ev *schemas.RuntimeEvent) Trigger {
	if ev.Gate != nil && ev.Gate.Passed {
		return OnPassed
	}
	return OnRejected
}

// verdict applies a gate.verdict to the run: complete or reject it, or
// record the verdict as illegal (the run is not gating) or stale (it judges
// another artifact).
func (s *step) verdict(ev *schemas.RuntimeEvent) {
	on := verdictTrigger(ev)
	if _, ok := s.f.Next(s.r.State, on); !ok {
		s.illegal(ev, on)
		return
	}
	if s.r.Delivered == "" || ev.ParentSpanID != s.r.Delivered {
		s.stale(ev, "verdict on another artifact")
		return
	}
	s.enter(on, ev)
}

// Deadline implements pipeline.Timed: the earliest of the run's pending
// retry, state timeout and end-to-end deadline; for an ended run, the end of
// its retention.
func (o *Orchestrator) Deadline(state []byte) (time.Time, bool) {
	r, err := o.loadRun(state)
	if err != nil || r == nil {
		return time.Time{}, false
	}
	return r.deadline()
}

// Fire implements pipeline.Timed. It acts on the deadlines state holds that
// are due at now, in this order: the run's end-to-end deadline (timed_out),
// a pending retry (re-dispatch), the state's timeout (retry per policy, else
// the state's fallback); an ended run whose retention is over is deleted.
// A state with nothing due is left unchanged, so a timer that fires late,
// twice, or after the run moved on does nothing.
func (o *Orchestrator) Fire(ctx context.Context, key []byte, state []byte, now time.Time) (pipeline.Result, error) {
	if _, ok := thread.IsActorKey(key); ok {
		return pipeline.Result{}, nil
	}
	r, err := o.loadRun(state)
	if err != nil || r == nil {
		return pipeline.Result{}, err
	}
	nowMs := ms(now)
	s := o.newStep(r, now)
	if s.f.Terminal(r.State) {
		if r.Deadline > 0 && nowMs >= r.Deadline {
			return pipeline.Result{State: nil, StateChanged: true}, nil // retention over: a tombstone
		}
		return pipeline.Result{}, nil
	}
	switch {
	case r.RunDeadline > 0 && nowMs >= r.RunDeadline:
		s.enter(OnRunTimeout, nil)
	case r.RetryAt > 0 && nowMs >= r.RetryAt:
		r.RetryAt = 0
		r.Attempt++
		s.enter(OnRetry, nil)
	case r.Deadline > 0 && nowMs >= r.Deadline:
		s.failOrRetry("timeout", fmt.Sprintf("state %s timed out", r.State), OnTimeout, nil)
	default:
		return pipeline.Result{}, nil
	}
	return s.result()
}

// flowOf is the stateflow run r started under: the current one (one
// string comparison on the hot path), an earlier one kept by
// WithPreviousStateflows, or the current one when the version is unknown.
func (o *Orchestrator) flowOf(r *runState) *Stateflow {
	if r.Flow == "" || r.Flow == o.flow.version {
		return o.flow
	}
	if f, ok := o.flows[r.Flow]; ok {
		return f
	}
	return o.flow
}

func (o *Orchestrator) newStep(r *runState, now time.Time) *step {
	return &step{o: o, f: o.flowOf(r), r: r, now: now}
}

func triggerOf(ev *schemas.RuntimeEvent) Trigger {
	switch ev.EventType {
	case thread.DataplaneStarted:
		return OnStarted
	case thread.ArtifactDelivered:
		return OnDelivered
	case thread.DataplaneFailed:
		return OnFailure
	}
	return Trigger(ev.EventType)
}

// loadRun decodes a run's stored state and checks its state is one of the
// table's; a state that fails either is a bad_state rejection.
func (o *Orchestrator) loadRun(b []byte) (*runState, error) {
	r, err := decodeRun(b, o.flow.version)
	if err != nil || r == nil {
		return r, err
	}
	if _, ok := o.flowOf(r).Spec(r.State); !ok {
		return nil, pipeline.Reject(CodeBadState, "run %s is in state %q, which the stateflow does not declare", r.Trace, r.State)
	}
	return r, nil
}
