package orchestrator

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// defaultMachine is the default stateflow written out by hand, independent
// of stateflow.yaml: where each trigger leads from each state. Every pair
// not listed must be refused.
var defaultMachine = map[State]map[Trigger]State{
	StateNone:       {OnIntent: StateReceived},
	StateReceived:   {OnRouted: StateRouted, OnDenied: StateRejected, OnRunTimeout: StateTimedOut},
	StateRouted:     {OnQueue: StateQueued, OnAdmit: StateDispatched, OnTimeout: StateTimedOut, OnRunTimeout: StateTimedOut},
	StateQueued:     {OnAdmit: StateDispatched, OnTimeout: StateTimedOut, OnRunTimeout: StateTimedOut},
	StateDispatched: {OnStarted: StateExecuting, OnDelivered: StateDelivered, OnFailure: StateFailed, OnRetry: StateDispatched, OnFallback: StateDispatched, OnTimeout: StateTimedOut, OnRunTimeout: StateTimedOut},
	StateExecuting:  {OnDelivered: StateDelivered, OnFailure: StateFailed, OnRetry: StateDispatched, OnFallback: StateDispatched, OnTimeout: StateTimedOut, OnRunTimeout: StateTimedOut},
	StateDelivered:  {OnGate: StateGating, OnRunTimeout: StateTimedOut},
	StateGating:     {OnPassed: StateCompleted, OnRejected: StateRejected, OnRetry: StateGating, OnTimeout: StateTimedOut, OnRunTimeout: StateTimedOut},
	StateCompleted:  {},
	StateRejected:   {},
	StateFailed:     {},
	StateTimedOut:   {},
}

func walkOrchestrator(t testing.TB, now *time.Time, opts ...Option) *Orchestrator {
	t.Helper()
	o, err := New(pipeline.Layout{Prefix: "w."}, append([]Option{WithClock(func() time.Time { return *now }), WithRunDeadline(10 * time.Minute)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func runIn(st State, now time.Time) *runState {
	return &runState{Trace: "tr-walk", IntentID: "i", Actor: "alice", Kind: "summarize", Route: thread.RouteBaseline, Version: schemas.V1,
		State: st, Seq: 5, Started: ms(now), Span: "sp-prev", Dispatch: "sp-dispatch", Delivered: "sp-delivered", Input: "hello",
		RunDeadline: ms(now.Add(10 * time.Minute))}
}

func stepEvents(outs []pipeline.Output) []*schemas.RuntimeEvent {
	var evs []*schemas.RuntimeEvent
	for _, o := range outs {
		if ev, ok := o.Value.(*schemas.RuntimeEvent); ok && !strings.HasPrefix(string(ev.EventType), "arbitration.") {
			evs = append(evs, ev)
		}
	}
	return evs
}

// TestDefaultMachineWalk walks every state of the default machine through
// every trigger: a listed transition emits the target's event and moves
// the run; any other is refused, recorded as run.illegal_transition, and
// leaves the state as it was.
func TestDefaultMachineWalk(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	o := walkOrchestrator(t, &now)
	if got, want := len(o.flow.States()), len(defaultMachine)-1; got != want {
		t.Fatalf("the file declares %d states, the walk knows %d", got, want)
	}
	for from, row := range defaultMachine {
		for _, on := range Triggers {
			t.Run(fmt.Sprintf("%s/%s", stateName(from), on), func(t *testing.T) {
				t.Parallel()
				r := runIn(from, now)
				s := o.newStep(r, now)
				ev := s.enter(on, nil)
				evs := stepEvents(s.out)
				want, legal := row[on]
				if !legal {
					if ev != nil || len(evs) != 1 || evs[0].EventType != thread.RunIllegal || r.State != from {
						t.Fatalf("%s on %s: want refused, got %v in %s", stateName(from), on, evTypes(evs), r.State)
					}
					return
				}
				spec, _ := o.flow.Spec(want)
				if ev == nil || len(evs) != 1 || evs[0].EventType != spec.Event || r.State != want || ev.State != string(want) {
					t.Fatalf("%s on %s: want %s (%s), got %v in %s", stateName(from), on, want, spec.Event, evTypes(evs), r.State)
				}
				switch {
				case spec.Terminal && (r.Deadline != ms(now.Add(o.retention)) || r.RunDeadline != 0 || r.RetryAt != 0):
					t.Fatalf("ended run keeps timers: %+v", r)
				case !spec.Terminal && spec.Timeout > 0 && r.Deadline != ms(now.Add(spec.Timeout)):
					t.Fatalf("%s entered without its %s bound", want, spec.Timeout)
				case want == StateDispatched && (r.Dispatch != ev.SpanID || ev.Input != "hello"):
					t.Fatalf("dispatch does not carry its span and input")
				}
			})
		}
	}
}

// TestDefaultMachineTimeouts: for every bounded state, its timeout retries
// per the state's policy (run.retry_scheduled, then the retry's event once
// the jittered backoff passes) until the attempts are spent, then takes
// the fallback; the end-to-end deadline ends a run in any non-terminal
// state.
func TestDefaultMachineTimeouts(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, sp := range DefaultStates(DefaultRetry, 30*time.Second, 30*time.Second) {
		if sp.Terminal {
			continue
		}
		t.Run(string(sp.State)+"/run_timeout", func(t *testing.T) {
			t.Parallel()
			now := start
			o := walkOrchestrator(t, &now)
			r := runIn(sp.State, now)
			now = fromMs(r.RunDeadline)
			evs := fireRun(t, o, r, now)
			if len(evs) != 1 || evs[0].EventType != thread.RunTimedOut {
				t.Fatalf("run deadline in %s: %v", sp.State, evTypes(evs))
			}
		})
		if sp.Timeout == 0 {
			continue
		}
		t.Run(string(sp.State)+"/timeout", func(t *testing.T) {
			t.Parallel()
			now := start
			o := walkOrchestrator(t, &now)
			r := runIn(sp.State, now)
			r.Deadline = ms(now.Add(sp.Timeout))
			retries := int32(0)
			for {
				now = fromMs(r.Deadline)
				evs := fireRun(t, o, r, now)
				if sp.Retry == nil || !sp.Retry.Allows(r.Attempt+1, "timeout") {
					if len(evs) != 1 || evs[0].EventType != thread.RunTimedOut || evs[0].Error == nil {
						t.Fatalf("timeout after %d retries: %v", retries, evTypes(evs))
					}
					break
				}
				retries++
				if len(evs) == 0 || evs[0].EventType != thread.RunRetryScheduled || evs[0].Attempt != retries {
					t.Fatalf("timeout %d: %v", retries, evTypes(evs))
				}
				delay := sp.Retry.Jittered(retries, r.Trace)
				if len(evs) == 1 {
					if got := fromMs(r.RetryAt).Sub(now); got != delay {
						t.Fatalf("retry %d due in %s, want %s (jittered ≤ %s)", retries, got, delay, sp.Retry.Backoff(retries))
					}
					now = fromMs(r.RetryAt)
					evs = fireRun(t, o, r, now)
				} else {
					evs = evs[1:] // a zero delay retries in the same step
				}
				next, _ := o.flow.Next(sp.State, OnRetry)
				nspec, _ := o.flow.Spec(next)
				if len(evs) != 1 || evs[0].EventType != nspec.Event || evs[0].Attempt != retries || r.State != next {
					t.Fatalf("retry %d: %v in %s", retries, evTypes(evs), r.State)
				}
				r.State = sp.State // walk the state's own bound again
				r.Deadline = ms(now.Add(sp.Timeout))
			}
			if retries != max(0, maxAttempts(sp)-1) {
				t.Fatalf("%d retries, want %d", retries, maxAttempts(sp)-1)
			}
		})
	}
}

func maxAttempts(sp Spec) int32 {
	if sp.Retry == nil {
		return 1
	}
	return sp.Retry.MaximumAttempts
}

// fireRun fires r's due timers at now through the public Fire, updating r.
func fireRun(t testing.TB, o *Orchestrator, r *runState, now time.Time) []*schemas.RuntimeEvent {
	t.Helper()
	b, err := encodeRun(r)
	if err != nil {
		t.Fatal(err)
	}
	res, err := o.Fire(context.Background(), []byte(r.Trace), b, now)
	if err != nil {
		t.Fatal(err)
	}
	if res.StateChanged && res.State != nil {
		nr, err := decodeRun(res.State, "")
		if err != nil {
			t.Fatal(err)
		}
		*r = *nr
	}
	return stepEvents(res.Outputs)
}

func evTypes(evs []*schemas.RuntimeEvent) []schemas.EventType {
	out := make([]schemas.EventType, len(evs))
	for i, e := range evs {
		out[i] = e.EventType
	}
	return out
}

// TestStateflowProperty drives runs through random orders of every input
// a run can meet (data-plane events of the current or an earlier dispatch,
// verdicts on the current or another artifact, arbitration answers, timers
// fired early, late or twice), seeded so a failure replays. No order leaves
// a run in an undeclared state, emits a second terminal event, moves a run
// after its end, or leaves a non-terminal run without a pending deadline;
// firing its timers in turn always ends it.
func TestStateflowProperty(t *testing.T) {
	t.Parallel()
	outcomes := map[schemas.EventType]int{}
	for seed := uint64(1); seed <= 300; seed++ {
		rng := rand.New(rand.NewPCG(seed, seed*7919))
		now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		var opts []Option
		arbitration := rng.IntN(2) == 0
		if arbitration {
			opts = append(opts, WithMaxPerActor(1))
		}
		o := walkOrchestrator(t, &now, opts...)
		trace := fmt.Sprintf("tr-%d", seed)
		it := &schemas.Intent{IntentID: "i", TraceID: trace, Actor: "alice", Kind: "summarize", Input: "hi", SchemaVersion: schemas.V1, Timestamp: now}
		res, err := o.Handle(context.Background(), nil, pipeline.Input{Topic: o.layout.Intents(), Key: []byte(trace), Value: it, Version: schemas.V1})
		if err != nil {
			t.Fatal(err)
		}
		state := res.State
		var dispatches, delivered []*schemas.RuntimeEvent
		terminals := 0
		check := func(step string, res pipeline.Result) {
			t.Helper()
			if res.StateChanged {
				state = res.State
			}
			for _, ev := range stepEvents(res.Outputs) {
				switch ev.EventType {
				case thread.RunDispatch:
					dispatches = append(dispatches, ev)
				case thread.RunCompleted, thread.RunRejected, thread.RunFailed, thread.RunTimedOut:
					terminals++
					outcomes[ev.EventType]++
				}
				if terminals > 1 {
					t.Fatalf("seed %d, %s: a second terminal event %s", seed, step, ev.EventType)
				}
			}
			if state == nil {
				return
			}
			r, err := o.loadRun(state)
			if err != nil {
				t.Fatalf("seed %d, %s: %v", seed, step, err)
			}
			if _, ok := o.flow.Spec(r.State); !ok {
				t.Fatalf("seed %d, %s: undeclared state %q", seed, step, r.State)
			}
			if !o.flow.Terminal(r.State) {
				if _, ok := r.deadline(); !ok || r.RunDeadline == 0 {
					t.Fatalf("seed %d, %s: run in %s is unbounded", seed, step, r.State)
				}
			}
			if terminals > 0 && !o.flow.Terminal(r.State) {
				t.Fatalf("seed %d, %s: run moved to %s after its end", seed, step, r.State)
			}
		}
		check("intent", res)
		pick := func(evs []*schemas.RuntimeEvent) *schemas.RuntimeEvent {
			if len(evs) == 0 {
				return nil
			}
			if rng.IntN(4) == 0 {
				return evs[rng.IntN(len(evs))] // perhaps an earlier one: stale
			}
			return evs[len(evs)-1]
		}
		ctx := context.Background()
		for n := range 40 {
			var in *schemas.RuntimeEvent
			topic := o.layout.Dataplane()
			switch k := rng.IntN(8); k {
			case 0, 1, 2:
				d := pick(dispatches)
				if d == nil {
					continue
				}
				typ := []schemas.EventType{thread.DataplaneStarted, thread.ArtifactDelivered, thread.DataplaneFailed}[rng.IntN(3)]
				in = walkReply(d, typ, n)
				if typ == thread.ArtifactDelivered {
					delivered = append(delivered, in)
				}
			case 3:
				d := pick(delivered)
				if d == nil {
					continue
				}
				in = &schemas.RuntimeEvent{EventID: fmt.Sprint("v", n), TraceID: trace, SpanID: fmt.Sprint("vs", n), ParentSpanID: d.SpanID,
					SchemaVersion: schemas.V1, EventType: thread.GateVerdict, Gate: &schemas.GateOutcome{Name: "verdict", Passed: rng.IntN(3) > 0}}
				topic = o.layout.Gate(thread.VerdictGate)
			case 4:
				if !arbitration {
					continue
				}
				typ := []schemas.EventType{thread.ArbitrationGrant, thread.ArbitrationQueued}[rng.IntN(2)]
				in = &schemas.RuntimeEvent{EventID: fmt.Sprint("a", n), TraceID: trace, SpanID: fmt.Sprint("as", n), SchemaVersion: schemas.V2, EventType: typ}
				topic = o.layout.Control()
			default:
				now = now.Add(time.Duration(rng.Int64N(int64(40 * time.Second))))
				res, err := o.Fire(ctx, []byte(trace), state, now)
				if err != nil {
					t.Fatal(err)
				}
				check("fire", res)
				continue
			}
			if state == nil {
				break
			}
			res, err := o.Handle(ctx, state, pipeline.Input{Topic: topic, Key: []byte(trace), Value: in, Version: in.SchemaVersion})
			if err != nil {
				t.Fatalf("seed %d: %s: %v", seed, in.EventType, err)
			}
			check(string(in.EventType), res)
		}
		// Nothing more arrives: the run's own timers end it.
		for i := 0; state != nil; i++ {
			r, _ := o.loadRun(state)
			if o.flow.Terminal(r.State) {
				break
			}
			if i > 100 {
				t.Fatalf("seed %d: run in %s never ends", seed, r.State)
			}
			at, _ := r.deadline()
			now = at
			res, err := o.Fire(ctx, []byte(trace), state, now)
			if err != nil {
				t.Fatal(err)
			}
			check("drain", res)
		}
		if terminals != 1 {
			t.Fatalf("seed %d: %d terminal events", seed, terminals)
		}
	}
	// The random orders reach every end (else the test proves little).
	for _, end := range []schemas.EventType{thread.RunCompleted, thread.RunRejected, thread.RunFailed, thread.RunTimedOut} {
		if outcomes[end] == 0 {
			t.Errorf("no seed ended in %s: %v", end, outcomes)
		}
	}
}

func walkReply(d *schemas.RuntimeEvent, typ schemas.EventType, n int) *schemas.RuntimeEvent {
	ev := &schemas.RuntimeEvent{EventID: fmt.Sprint("d", n), TraceID: d.TraceID, SpanID: fmt.Sprint("ds", n), ParentSpanID: d.SpanID,
		SchemaVersion: d.SchemaVersion, Phase: schemas.PhaseData, EventType: typ, Attempt: d.Attempt}
	switch typ {
	case thread.ArtifactDelivered:
		ev.ArtifactID = fmt.Sprint("art-", n)
	case thread.DataplaneFailed:
		msg := "unavailable: 503"
		ev.Error = &msg
	}
	return ev
}
