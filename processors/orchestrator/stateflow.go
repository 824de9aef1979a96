package orchestrator

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/google/cel-go/cel"

	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// State is a stateflow state of a run.
type State string

// The states of a run. StateNone is the state of a run not yet known.
const (
	StateNone       State = ""
	StateReceived   State = "received"
	StateRouted     State = "routed"
	StateQueued     State = "queued"
	StateDispatched State = "dispatched"
	StateExecuting  State = "executing"
	StateDelivered  State = "delivered"
	StateGating     State = "gating"
	StateCompleted  State = "completed"
	StateRejected   State = "rejected"
	StateFailed     State = "failed"
	StateTimedOut   State = "timed_out"
)

// Trigger is what moves a run: an input event, a timer, or a decision the
// orchestrator takes in the same step.
type Trigger string

// The triggers of the stateflow.
const (
	OnIntent     Trigger = "intent"                          // an Intent on spine.intents
	OnRouted     Trigger = "routed"                          // the routing decision
	OnQueue      Trigger = "queue"                           // arbitration: actor over its limit
	OnAdmit      Trigger = "admit"                           // arbitration: a slot granted
	OnStarted    Trigger = Trigger(thread.DataplaneStarted)  // the data plane began executing
	OnDelivered  Trigger = Trigger(thread.ArtifactDelivered) // the data plane delivered an artifact
	OnFailure    Trigger = Trigger(thread.DataplaneFailed)   // the data plane failed, no retry left
	OnRetry      Trigger = "retry"                           // a retry's backoff elapsed
	OnGate       Trigger = "gate"                            // the artifact went to the gates
	OnPassed     Trigger = "verdict.passed"                  // the gate verdict passed
	OnRejected   Trigger = "verdict.failed"                  // the gate verdict failed
	OnTimeout    Trigger = "timeout"                         // the state's timer fired, no retry left
	OnRunTimeout Trigger = "run_timeout"                     // the run's end-to-end deadline passed
	OnDenied     Trigger = "denied"                          // admission denied the run (policy, unauthenticated)
	OnFallback   Trigger = "fallback"                        // retries spent: the run degrades to its agent's fallback agent
)

// Entry is one way into a state: from any of From on trigger On, when the
// guard When (a CEL condition on the run, see Guard) holds. Guarded entries
// with the same (from, trigger) are tried in declaration order, then the one
// unguarded entry, if any; when none matches the trigger is refused.
type Entry struct {
	From []State
	On   Trigger
	// When is the entry's CEL guard; empty for none.
	When string
	// Line is where the entry is declared in its file; 0 for a Go table.
	Line int
	// whenLine and whenBlock place When's CEL errors in the file.
	whenLine  int
	whenBlock bool
	// anyFrom: From was written "*" (every non-terminal state).
	anyFrom bool
}

// RetryPolicy says how a failed or timed-out state is retried, in Temporal's
// vocabulary. The delay before retry attempt n (n ≥ 1) is drawn uniformly
// from [0, InitialInterval × BackoffCoefficient^(n-1)] capped at
// MaximumInterval ("full jitter"), seeded by the run so a replay draws the
// same delays.
type RetryPolicy struct {
	// InitialInterval is the delay before the first retry.
	InitialInterval time.Duration
	// BackoffCoefficient multiplies the delay at each retry (≥ 1).
	BackoffCoefficient float64
	// MaximumInterval caps the delay; 0 means 100 × InitialInterval.
	MaximumInterval time.Duration
	// MaximumAttempts counts every attempt, the first included: 1 means no
	// retry, 0 means unlimited (Temporal's meaning; use with a run deadline).
	MaximumAttempts int32
	// NonRetryableErrorKinds are error kinds that go straight to the
	// fallback.
	NonRetryableErrorKinds []string
}

// Backoff returns the ceiling of the delay before retry attempt n (n ≥ 1;
// attempt 0 is the first execution and has no delay): the exponential
// backoff without jitter.
func (p RetryPolicy) Backoff(n int32) time.Duration {
	if n < 1 || p.InitialInterval <= 0 {
		return 0
	}
	maxI := p.MaximumInterval
	if maxI <= 0 {
		maxI = 100 * p.InitialInterval
	}
	c := p.BackoffCoefficient
	if c < 1 {
		c = 1
	}
	d := float64(p.InitialInterval) * math.Pow(c, float64(n-1))
	if d > float64(maxI) || math.IsInf(d, 0) || math.IsNaN(d) {
		return maxI
	}
	return time.Duration(d)
}

// Jittered returns the delay before retry attempt n of the run seeded by
// seed (its trace id): full jitter, uniform in [0, Backoff(n)], the same for
// the same seed and n, so a replayed run schedules the same retries. It
// costs one FNV-1a hash of seed.
func (p RetryPolicy) Jittered(n int32, seed string) time.Duration {
	ceil := p.Backoff(n)
	if ceil <= 0 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(seed))
	var nb [4]byte
	nb[0], nb[1], nb[2], nb[3] = byte(n), byte(n>>8), byte(n>>16), byte(n>>24)
	h.Write(nb[:])
	// splitmix64's finalizer spreads FNV's low-entropy high bits.
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	// Whole milliseconds: run state keeps its deadlines in milliseconds.
	return time.Duration(x % (uint64(ceil) + 1)).Truncate(time.Millisecond)
}

// Allows reports whether attempt next (0-based) may run after a failure of
// the given kind.
func (p RetryPolicy) Allows(next int32, kind string) bool {
	if slices.Contains(p.NonRetryableErrorKinds, kind) {
		return false
	}
	return p.MaximumAttempts == 0 || next < p.MaximumAttempts
}

func (p RetryPolicy) validate() error {
	switch {
	case p.InitialInterval < 0, p.MaximumInterval < 0:
		return errors.New("negative retry interval")
	case p.BackoffCoefficient != 0 && p.BackoffCoefficient < 1:
		return fmt.Errorf("backoff coefficient %v < 1", p.BackoffCoefficient)
	case p.MaximumAttempts < 0:
		return errors.New("negative maximum attempts")
	case p.MaximumInterval != 0 && p.MaximumInterval < p.InitialInterval:
		return errors.New("maximum interval below initial interval")
	}
	return nil
}

// Spec declares one state as data.
type Spec struct {
	State State
	// Event is the canonical event_type emitted on entry.
	Event schemas.EventType
	// Entry lists the ways into the state; any other way is illegal.
	Entry []Entry
	// Timeout bounds how long a run may stay; 0 for none (then the state
	// must be Transient or Terminal).
	Timeout time.Duration
	// Retry, if set, lets a failure or a timeout in this state re-dispatch
	// the run (attempt+1) instead of taking the fallback.
	Retry *RetryPolicy
	// Fallback is the state a timeout leads to once retries are exhausted;
	// required when Timeout is set. A non-terminal fallback must itself be
	// bounded; the chain of fallbacks must end in a terminal state.
	Fallback State
	// Terminal marks an end state: exactly one per run.
	Terminal bool
	// Transient marks a state the orchestrator leaves in the step that
	// enters it (received, delivered): it needs no timeout.
	Transient bool
	// Line is where the state is declared in its file; 0 for a Go table.
	Line int
}

// Stateflow is a validated table of states. It is immutable and safe for
// concurrent use.
type Stateflow struct {
	specs map[State]*Spec
	order []State
	// next[from][on] is where trigger on leads from state from.
	next    map[State]map[Trigger]*edge
	version string
	path    string
}

// edge is where one (state, trigger) leads: the guarded targets, tried in
// order, then the unguarded one (if any). Without guards it is one field
// read, as cheap as the table before guards.
type edge struct {
	guarded []guardedEdge
	to      State
	hasTo   bool
}

type guardedEdge struct {
	to   State
	when string
	prg  cel.Program
}

// maxFallbackChain bounds a chain of fallbacks (a state's fallback, its
// fallback's fallback, …) before a terminal state.
const maxFallbackChain = 4

// ErrStateflow is returned (wrapped in a *StateflowError) for a table that
// contradicts itself.
var ErrStateflow = errors.New("invalid stateflow")

// Problem is one problem of a stateflow, at its line (0 when the table is
// Go, not a file).
type Problem struct {
	Line int
	Msg  string
}

// StateflowError lists every problem of a stateflow, in line order. It
// wraps ErrStateflow.
type StateflowError struct {
	// Path is the file, "" for a Go table.
	Path     string
	Problems []Problem
}

func (e *StateflowError) Error() string {
	var b strings.Builder
	b.WriteString(ErrStateflow.Error())
	for i, p := range e.Problems {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		switch {
		case p.Line > 0 && e.Path != "":
			fmt.Fprintf(&b, "%s:%d: ", e.Path, p.Line)
		case p.Line > 0:
			fmt.Fprintf(&b, "line %d: ", p.Line)
		}
		b.WriteString(p.Msg)
	}
	return b.String()
}

// Unwrap returns ErrStateflow.
func (e *StateflowError) Unwrap() error { return ErrStateflow }

// NewStateflow validates specs: unique states with a known entry event,
// entries from known states on known triggers, guards that compile to a
// bool, at most one unguarded target per (state, trigger),
// every state reachable, every non-terminal state bounded (a timeout with a
// fallback, or transient) and ended by the run's deadline (an entry on
// run_timeout), fallbacks enterable on timeout whose chains are acyclic,
// end in a terminal state and are at most 4 long, and no way out of a
// terminal state.
func NewStateflow(specs []Spec) (*Stateflow, error) {
	return newStateflow("", specs)
}

func newStateflow(path string, specs []Spec) (*Stateflow, error) {
	f := &Stateflow{specs: map[State]*Spec{}, next: map[State]map[Trigger]*edge{}, path: path}
	var probs []Problem
	bad := func(line int, format string, args ...any) {
		probs = append(probs, Problem{Line: line, Msg: fmt.Sprintf(format, args...)})
	}
	for i := range specs {
		s := specs[i]
		if s.State == StateNone || s.Event == "" {
			bad(s.Line, "state %q needs a name and an event", s.State)
			continue
		}
		if _, dup := f.specs[s.State]; dup {
			bad(s.Line, "state %q declared twice", s.State)
			continue
		}
		if !slices.Contains(thread.EventTypes, s.Event) {
			bad(s.Line, "state %q: unknown event %q", s.State, s.Event)
		}
		if s.Retry != nil {
			if err := s.Retry.validate(); err != nil {
				bad(s.Line, "state %q: %v", s.State, err)
			}
		}
		if s.Terminal && s.Transient {
			bad(s.Line, "state %q is both terminal and transient", s.State)
		}
		s.Entry = slices.Clone(s.Entry)
		f.specs[s.State] = &s
		f.order = append(f.order, s.State)
	}
	env, envErr := guardEnv()
	if envErr != nil {
		bad(0, "CEL environment: %v", envErr)
	}
	for _, st := range f.order {
		s := f.specs[st]
		for ei := range s.Entry {
			e := &s.Entry[ei]
			line := e.Line
			if line == 0 {
				line = s.Line
			}
			if !slices.Contains(Triggers, e.On) {
				bad(line, "state %q: unknown trigger %q (want one of %s)", s.State, e.On, triggerList())
				continue
			}
			var prg cel.Program
			if e.When != "" && env != nil {
				var cprobs []Problem
				prg, cprobs = compileGuard(env, e, line)
				if len(cprobs) > 0 {
					probs = append(probs, cprobs...)
					continue
				}
			}
			for _, from := range e.From {
				if from != StateNone {
					if fs, ok := f.specs[from]; !ok {
						bad(line, "state %q entered from unknown state %q", s.State, from)
						continue
					} else if fs.Terminal {
						bad(line, "state %q entered from terminal state %q", s.State, from)
						continue
					}
				}
				m := f.next[from]
				if m == nil {
					m = map[Trigger]*edge{}
					f.next[from] = m
				}
				ed := m[e.On]
				if ed == nil {
					ed = &edge{}
					m[e.On] = ed
				}
				if e.On == OnFallback && s.Event != thread.RunDispatch {
					bad(line, "state %q is entered on %q but does not dispatch (event %s): a fallback re-runs the intent on another agent", s.State, e.On, thread.RunDispatch)
					continue
				}
				switch {
				case ed.hasTo && ed.to != s.State:
					bad(line, "%q on %q leads to both %q and %q", from, e.On, ed.to, s.State)
				case ed.hasTo:
					bad(line, "%q on %q to %q declared twice", from, e.On, s.State)
				case prg == nil:
					ed.to, ed.hasTo = s.State, true
				default:
					ed.guarded = append(ed.guarded, guardedEdge{to: s.State, when: e.When, prg: prg})
				}
			}
		}
	}
	for _, st := range f.order {
		s := f.specs[st]
		if s.Timeout < 0 {
			bad(s.Line, "state %q: negative timeout %s", s.State, s.Timeout)
		}
		if s.Timeout > 0 {
			fb, ok := f.specs[s.Fallback]
			switch {
			case !ok:
				bad(s.Line, "state %q has a timeout but no known fallback (%q)", s.State, s.Fallback)
			case fb.State == s.State:
				bad(s.Line, "state %q is its own fallback", s.State)
			default:
				if ed := f.next[s.State][OnTimeout]; ed == nil || !ed.hasTo {
					bad(s.Line, "fallback %q of %q has no unguarded entry from %q on %q", s.Fallback, s.State, s.State, OnTimeout)
				} else if ed.to != s.Fallback {
					bad(s.Line, "%q times out into %q, not its fallback %q", s.State, ed.to, s.Fallback)
				}
			}
		} else if s.Fallback != "" && s.Retry == nil {
			bad(s.Line, "state %q has a fallback but no timeout", s.State)
		}
		if !s.Terminal {
			if s.Timeout == 0 && !s.Transient {
				bad(s.Line, "state %q is unbounded: give it a timeout and a fallback, or mark it transient", s.State)
			}
			if ed := f.next[s.State][OnRunTimeout]; ed == nil || !ed.hasTo {
				bad(s.Line, "state %q has no unguarded entry on %q: the run's deadline could not end it", s.State, OnRunTimeout)
			}
		}
	}
	// Fallback chains: acyclic, bounded, ending in a terminal state.
	for _, st := range f.order {
		s := f.specs[st]
		if s.Timeout <= 0 {
			continue
		}
		chain := []State{s.State}
		for cur := s; !cur.Terminal && cur.Timeout > 0; {
			fb, ok := f.specs[cur.Fallback]
			if !ok {
				break
			}
			if slices.Contains(chain, fb.State) {
				bad(s.Line, "fallback chain %s → %s is cyclic", joinStates(chain), fb.State)
				break
			}
			chain = append(chain, fb.State)
			if len(chain)-1 > maxFallbackChain {
				bad(s.Line, "fallback chain %s is longer than %d", joinStates(chain), maxFallbackChain)
				break
			}
			cur = fb
		}
	}
	// Reachability from a run not yet known.
	seen := map[State]bool{StateNone: true}
	queue := []State{StateNone}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, ed := range f.next[cur] {
			for _, to := range ed.targets() {
				if !seen[to] {
					seen[to] = true
					queue = append(queue, to)
				}
			}
		}
	}
	for _, st := range f.order {
		if !seen[st] {
			bad(f.specs[st].Line, "state %q is unreachable from a new run", st)
		}
	}
	if len(probs) > 0 {
		slices.SortStableFunc(probs, func(a, b Problem) int { return a.Line - b.Line })
		return nil, &StateflowError{Path: path, Problems: probs}
	}
	f.version = versionOf([]byte(f.Text()))
	return f, nil
}

func (e *edge) targets() []State {
	out := make([]State, 0, len(e.guarded)+1)
	for _, g := range e.guarded {
		out = append(out, g.to)
	}
	if e.hasTo {
		out = append(out, e.to)
	}
	return out
}

func joinStates(ss []State) string {
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = string(s)
	}
	return strings.Join(parts, " → ")
}

// versionOf is the version of a stateflow's content: "sha256:" and the
// first 12 hex digits of its SHA-256 (the policy file's form).
func versionOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])[:12]
}

// MustStateflow is NewStateflow for tables known to be valid.
func MustStateflow(specs []Spec) *Stateflow {
	f, err := NewStateflow(specs)
	if err != nil {
		panic(err)
	}
	return f
}

// Version is the stateflow's version: "sha256:" and 12 hex digits of its
// table (Text), so two processes running the same machine agree on it.
func (f *Stateflow) Version() string { return f.version }

// Path is the file the stateflow was read from, "" for the built-in one.
func (f *Stateflow) Path() string { return f.path }

// Spec returns the declaration of s.
func (f *Stateflow) Spec(s State) (*Spec, bool) {
	sp, ok := f.specs[s]
	return sp, ok
}

// Next returns the state trigger on leads to from state from when no guard
// is asked (the unguarded entry, else the first guarded one), or false when
// the table has no entry for it: the transition is illegal whatever the
// run.
func (f *Stateflow) Next(from State, on Trigger) (State, bool) {
	ed := f.next[from][on]
	switch {
	case ed == nil:
		return "", false
	case ed.hasTo && len(ed.guarded) == 0:
		return ed.to, true
	case len(ed.guarded) > 0:
		return ed.guarded[0].to, true
	}
	return ed.to, ed.hasTo
}

// Resolve returns the state trigger on leads to from state from for run g:
// the first entry whose guard holds, else the unguarded entry; false when
// none matches (the transition is refused).
func (f *Stateflow) Resolve(from State, on Trigger, g Guard) (State, bool) {
	ed := f.next[from][on]
	if ed == nil {
		return "", false
	}
	return ed.resolve(g)
}

// edge is where on leads from from, nil for nowhere.
func (f *Stateflow) edge(from State, on Trigger) *edge { return f.next[from][on] }

// resolve evaluates e's guards on g in order, then takes the unguarded
// target. A guard that cannot be evaluated does not hold.
func (e *edge) resolve(g Guard) (State, bool) {
	if len(e.guarded) > 0 {
		act := g.activation()
		for _, ge := range e.guarded {
			out, _, err := ge.prg.Eval(act)
			if err != nil {
				continue
			}
			if b, ok := out.Value().(bool); ok && b {
				return ge.to, true
			}
		}
	}
	return e.to, e.hasTo
}

// Terminal reports whether s is an end state.
func (f *Stateflow) Terminal(s State) bool {
	sp, ok := f.specs[s]
	return ok && sp.Terminal
}

// States lists the declared states, sorted.
func (f *Stateflow) States() []State {
	out := slices.Clone(f.order)
	slices.Sort(out)
	return out
}

// Specs lists the declarations in declaration order.
func (f *Stateflow) Specs() []Spec {
	out := make([]Spec, len(f.order))
	for i, s := range f.order {
		out[i] = *f.specs[s]
	}
	return out
}

// DefaultRetry is the dispatch retry policy of DefaultStates: three attempts,
// 200 ms then 400 ms apart, no retry for a rejected input.
var DefaultRetry = RetryPolicy{
	InitialInterval:        200 * time.Millisecond,
	BackoffCoefficient:     2,
	MaximumInterval:        5 * time.Second,
	MaximumAttempts:        3,
	NonRetryableErrorKinds: thread.NonRetryableErrorKinds,
}

// DefaultStates returns the stateflow of THE THREAD, the built-in file
// (stateflow.yaml, embedded) with the given dispatch retry policy and
// timeouts: dispatched and executing time out after execTimeout and retry
// per retry, gating after gateTimeout; see the file for the rest.
func DefaultStates(retry RetryPolicy, execTimeout, gateTimeout time.Duration) []Spec {
	specs, probs := parseStateflowFile(DefaultFile)
	if len(probs) > 0 {
		panic(&StateflowError{Path: DefaultFileName, Problems: probs}) // the build's own file: a test keeps it valid
	}
	for i := range specs {
		switch specs[i].State {
		case StateDispatched, StateExecuting:
			r := retry
			specs[i].Timeout, specs[i].Retry = execTimeout, &r
		case StateGating:
			specs[i].Timeout = gateTimeout
		}
	}
	return specs
}

// Triggers are the known triggers, in the order of the stateflow.
var Triggers = []Trigger{OnIntent, OnRouted, OnQueue, OnAdmit, OnStarted, OnDelivered, OnFailure, OnRetry, OnGate,
	OnPassed, OnRejected, OnTimeout, OnRunTimeout, OnDenied, OnFallback}

func triggerList() string {
	parts := make([]string, len(Triggers))
	for i, t := range Triggers {
		parts[i] = string(t)
	}
	return strings.Join(parts, ", ")
}

// Legal reports whether control event event may take a run from state from
// to state to (from "" for its first event): a state's entry event comes
// along one of its entries; any other event of the thread that enters no
// state (run.dequeued, run.retry_scheduled) leaves the run where it is.
// It is the one question spine verify asks of the stateflow.
func (f *Stateflow) Legal(from, to, event string) bool {
	sp, ok := f.Spec(State(to))
	if !ok {
		return false
	}
	if string(sp.Event) != event {
		for _, s := range f.States() {
			if other, _ := f.Spec(s); string(other.Event) == event {
				return false
			}
		}
		return from == to
	}
	for _, e := range sp.Entry {
		if slices.Contains(e.From, State(from)) {
			return true
		}
	}
	return false
}

// StateTimeout is how long a run may stay in state s; 0 for none.
func (f *Stateflow) StateTimeout(s string) time.Duration {
	if sp, ok := f.Spec(State(s)); ok {
		return sp.Timeout
	}
	return 0
}
