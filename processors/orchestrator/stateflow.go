package orchestrator

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

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
)

// Entry is one way into a state: from any of From on trigger On.
type Entry struct {
	From []State
	On   Trigger
}

// RetryPolicy says how a failed or timed-out state is retried, in Temporal's
// vocabulary. The delay before retry attempt n (n ≥ 1) is
// InitialInterval × BackoffCoefficient^(n-1), capped at MaximumInterval.
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

// Backoff returns the delay before retry attempt n (n ≥ 1; attempt 0 is the
// first execution and has no delay).
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
	// Timeout bounds how long a run may stay; 0 for none.
	Timeout time.Duration
	// Retry, if set, lets a failure or a timeout in this state re-dispatch
	// the run (attempt+1) instead of taking the fallback.
	Retry *RetryPolicy
	// Fallback is the terminal state a timeout leads to once retries are
	// exhausted; required when Timeout is set.
	Fallback State
	// Terminal marks an end state: exactly one per run.
	Terminal bool
}

// Stateflow is a validated table of states. It is immutable and safe for
// concurrent use.
type Stateflow struct {
	specs map[State]*Spec
	// next[from][on] is the state trigger on leads to from state from.
	next map[State]map[Trigger]State
}

// ErrStateflow is returned by NewStateflow for a table that contradicts
// itself.
var ErrStateflow = errors.New("invalid stateflow")

// NewStateflow validates specs: unique states with an entry event, entries
// from known states, at most one target per (state, trigger), fallbacks that
// are terminal and enterable on timeout, and no way out of a terminal state.
func NewStateflow(specs []Spec) (*Stateflow, error) {
	f := &Stateflow{specs: map[State]*Spec{}, next: map[State]map[Trigger]State{}}
	var errs []error
	for i := range specs {
		s := specs[i]
		if s.State == StateNone || s.Event == "" {
			errs = append(errs, fmt.Errorf("%w: state %q needs a name and an event", ErrStateflow, s.State))
			continue
		}
		if _, dup := f.specs[s.State]; dup {
			errs = append(errs, fmt.Errorf("%w: state %q declared twice", ErrStateflow, s.State))
			continue
		}
		if s.Retry != nil {
			if err := s.Retry.validate(); err != nil {
				errs = append(errs, fmt.Errorf("%w: state %q: %v", ErrStateflow, s.State, err))
			}
		}
		f.specs[s.State] = &s
	}
	for _, s := range f.specs {
		for _, e := range s.Entry {
			for _, from := range e.From {
				if from != StateNone {
					if fs, ok := f.specs[from]; !ok {
						errs = append(errs, fmt.Errorf("%w: state %q entered from unknown state %q", ErrStateflow, s.State, from))
						continue
					} else if fs.Terminal {
						errs = append(errs, fmt.Errorf("%w: state %q entered from terminal state %q", ErrStateflow, s.State, from))
						continue
					}
				}
				m := f.next[from]
				if m == nil {
					m = map[Trigger]State{}
					f.next[from] = m
				}
				if prev, dup := m[e.On]; dup && prev != s.State {
					errs = append(errs, fmt.Errorf("%w: %q on %q leads to both %q and %q", ErrStateflow, from, e.On, prev, s.State))
					continue
				}
				m[e.On] = s.State
			}
		}
		if s.Timeout > 0 {
			fb, ok := f.specs[s.Fallback]
			switch {
			case !ok:
				errs = append(errs, fmt.Errorf("%w: state %q has a timeout but no known fallback", ErrStateflow, s.State))
			case !fb.Terminal:
				errs = append(errs, fmt.Errorf("%w: fallback %q of %q is not terminal", ErrStateflow, s.Fallback, s.State))
			}
		}
	}
	for _, s := range f.specs {
		if s.Timeout > 0 {
			if to, ok := f.next[s.State][OnTimeout]; ok && to != s.Fallback {
				errs = append(errs, fmt.Errorf("%w: %q times out into %q, not its fallback %q", ErrStateflow, s.State, to, s.Fallback))
			} else if !ok {
				errs = append(errs, fmt.Errorf("%w: fallback %q of %q has no entry from %q on %q", ErrStateflow, s.Fallback, s.State, s.State, OnTimeout))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return f, nil
}

// MustStateflow is NewStateflow for tables known to be valid.
func MustStateflow(specs []Spec) *Stateflow {
	f, err := NewStateflow(specs)
	if err != nil {
		panic(err)
	}
	return f
}

// Spec returns the declaration of s.
func (f *Stateflow) Spec(s State) (*Spec, bool) {
	sp, ok := f.specs[s]
	return sp, ok
}

// Next returns the state trigger on leads to from state from, or false when
// the table has no such entry: the transition is illegal.
func (f *Stateflow) Next(from State, on Trigger) (State, bool) {
	to, ok := f.next[from][on]
	return to, ok
}

// Terminal reports whether s is an end state.
func (f *Stateflow) Terminal(s State) bool {
	sp, ok := f.specs[s]
	return ok && sp.Terminal
}

// States lists the declared states, sorted.
func (f *Stateflow) States() []State {
	out := make([]State, 0, len(f.specs))
	for s := range f.specs {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// DefaultRetry is the dispatch retry policy of DefaultStates: three attempts,
// 200 ms then 400 ms apart, no retry for a rejected input.
var DefaultRetry = RetryPolicy{
	InitialInterval:        200 * time.Millisecond,
	BackoffCoefficient:     2,
	MaximumInterval:        5 * time.Second,
	MaximumAttempts:        3,
	NonRetryableErrorKinds: []string{"invalid_input", "unsupported"},
}

// DefaultStates returns the stateflow of THE THREAD with the given dispatch
// retry policy and timeouts: dispatched and executing time out after
// execTimeout and retry per retry, gating after gateTimeout without retry;
// all three fall back to timed_out.
func DefaultStates(retry RetryPolicy, execTimeout, gateTimeout time.Duration) []Spec {
	active := []State{StateReceived, StateRouted, StateQueued, StateDispatched, StateExecuting, StateDelivered, StateGating}
	r := retry
	return []Spec{
		{State: StateReceived, Event: thread.IntentReceived, Entry: []Entry{{From: []State{StateNone}, On: OnIntent}}},
		{State: StateRouted, Event: thread.RunRouted, Entry: []Entry{{From: []State{StateReceived}, On: OnRouted}}},
		{State: StateQueued, Event: thread.RunQueued, Entry: []Entry{{From: []State{StateRouted}, On: OnQueue}}},
		{State: StateDispatched, Event: thread.RunDispatch,
			Entry: []Entry{
				{From: []State{StateRouted, StateQueued}, On: OnAdmit},
				{From: []State{StateDispatched, StateExecuting}, On: OnRetry},
			},
			Timeout: execTimeout, Retry: &r, Fallback: StateTimedOut},
		{State: StateExecuting, Event: thread.RunExecuting, Entry: []Entry{{From: []State{StateDispatched}, On: OnStarted}},
			Timeout: execTimeout, Retry: &r, Fallback: StateTimedOut},
		{State: StateDelivered, Event: thread.RunDelivered, Entry: []Entry{{From: []State{StateDispatched, StateExecuting}, On: OnDelivered}}},
		{State: StateGating, Event: thread.RunGating, Entry: []Entry{{From: []State{StateDelivered}, On: OnGate}},
			Timeout: gateTimeout, Fallback: StateTimedOut},
		{State: StateCompleted, Event: thread.RunCompleted, Terminal: true, Entry: []Entry{{From: []State{StateGating}, On: OnPassed}}},
		{State: StateRejected, Event: thread.RunRejected, Terminal: true, Entry: []Entry{{From: []State{StateGating}, On: OnRejected}}},
		{State: StateFailed, Event: thread.RunFailed, Terminal: true, Entry: []Entry{{From: []State{StateDispatched, StateExecuting}, On: OnFailure}}},
		{State: StateTimedOut, Event: thread.RunTimedOut, Terminal: true, Entry: []Entry{
			{From: []State{StateDispatched, StateExecuting, StateGating}, On: OnTimeout},
			{From: active, On: OnRunTimeout},
		}},
	}
}
