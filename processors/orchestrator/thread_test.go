package orchestrator_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/spinerun/spine/adapters/synthetic"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/dataplane"
	"github.com/spinerun/spine/processors/gatekeeper"
	"github.com/spinerun/spine/processors/orchestrator"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// thread simulates the three processors on one partition of every topic,
// without a broker: each topic is an ordered log, each processor has an
// offset per topic it consumes, and a random scheduler interleaves them and
// the timers.
type simThread struct {
	t      *testing.T
	rng    *rand.Rand
	h      *harness
	dp     *dataplane.Dataplane
	gr     *gatekeeper.Runner
	logs   map[pipeline.Topic][]pipeline.Output
	offset map[string]int // processor/topic → next offset
	dupes  bool
}

type consumer struct {
	name   string
	topics []pipeline.Topic
	handle func(in pipeline.Input) []pipeline.Output
}

func newSimThread(t *testing.T, seed uint64, params synthetic.Params, opts ...orchestrator.Option) *simThread {
	h := newHarness(t, opts...)
	x, err := synthetic.NewExecutor(map[string]synthetic.Params{thread.RouteBaseline: params, thread.RouteCanary: params}, false)
	if err != nil {
		t.Fatal(err)
	}
	dp, err := dataplane.New(h.layout, dataplane.Config{Executor: x, Now: h.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	gr, err := gatekeeper.New(h.layout, gatekeeper.Config{Now: h.clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return &simThread{t: t, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), h: h, dp: dp, gr: gr, logs: map[pipeline.Topic][]pipeline.Output{}, offset: map[string]int{}}
}

func (s *simThread) produce(outs []pipeline.Output) {
	for _, o := range outs {
		s.logs[o.Topic] = append(s.logs[o.Topic], o)
	}
}

func (s *simThread) consumers() []consumer {
	orch := func(in pipeline.Input) []pipeline.Output {
		outs, err := s.h.handle(in.Topic, string(in.Key), in.Value, in.Version)
		if err != nil {
			s.t.Fatalf("orchestrator on %s: %v", in.Topic, err)
		}
		return outs
	}
	stateless := func(hd pipeline.Handler) func(pipeline.Input) []pipeline.Output {
		return func(in pipeline.Input) []pipeline.Output {
			res, err := hd.Handle(context.Background(), nil, in)
			if err != nil {
				s.t.Fatalf("handler on %s: %v", in.Topic, err)
			}
			return res.Outputs
		}
	}
	// The dataplane runs each call after its dispatch commits and commits
	// the result with its state deleted (pipeline.Async); here the call
	// runs at once and the state lives for the moment of the call.
	dataplane := func(in pipeline.Input) []pipeline.Output {
		ctx := context.Background()
		res, err := s.dp.Handle(ctx, nil, in)
		if err != nil {
			s.t.Fatalf("dataplane on %s: %v", in.Topic, err)
		}
		outs := res.Outputs
		if !res.StateChanged || s.dp.Pending(res.State) == "" {
			return outs
		}
		done, err := s.dp.Complete(ctx, in.Key, res.State, s.dp.Work(ctx, in.Key, res.State))
		if err != nil {
			s.t.Fatalf("dataplane completing %s: %v", in.Key, err)
		}
		for _, o := range done.Outputs {
			if o.Raw == nil { // the artifact's content is not an event
				outs = append(outs, o)
			}
		}
		return outs
	}
	return []consumer{
		{"orchestrator", s.h.o.Topics(), orch},
		{"dataplane", s.dp.Topics(), dataplane},
		{"gates", s.gr.Topics(), stateless(s.gr)},
	}
}

// step does one random thing; it reports false when nothing is pending.
func (s *simThread) step(cs []consumer) bool {
	type ready struct {
		c consumer
		t pipeline.Topic
	}
	var rs []ready
	for _, c := range cs {
		for _, t := range c.topics {
			if s.offset[c.name+"/"+string(t)] < len(s.logs[t]) {
				rs = append(rs, ready{c, t})
			}
		}
	}
	if len(rs) == 0 {
		return false
	}
	r := rs[s.rng.IntN(len(rs))]
	k := r.c.name + "/" + string(r.t)
	o := s.logs[r.t][s.offset[k]]
	s.offset[k]++
	in := pipeline.Input{Topic: r.t, Key: o.Key, Value: o.Value, Version: o.Version}
	s.produce(r.c.handle(in))
	if s.dupes && r.c.name == "orchestrator" && r.t == s.h.layout.Dataplane() && s.rng.IntN(10) == 0 {
		s.produce(r.c.handle(in)) // an at-least-once redelivery
	}
	return true
}

func (s *simThread) fireAll() {
	for key := range s.h.states {
		s.produce(outputsOf(s.h, key))
	}
}

func outputsOf(h *harness, key string) []pipeline.Output {
	n := len(h.out)
	h.fire(key)
	return h.out[n:]
}

// TestThreadProperty drives many runs through the three handlers in random
// interleavings, with failures, hangs (timeouts), retries, duplicate intents
// and redelivered events, and checks that every run ends with exactly one
// terminal event, that each run's state entries follow the table, and that
// no event id repeats.
func TestThreadProperty(t *testing.T) {
	t.Parallel()
	params := synthetic.Default()
	params.FailureRate = 0.2
	params.HangRate = 0.15
	params.LatencyMean, params.LatencyP99 = 600*time.Millisecond, 4*time.Second // some artifacts fail the performance gate
	pol := orchestrator.RetryPolicy{InitialInterval: 100 * time.Millisecond, BackoffCoefficient: 2, MaximumAttempts: 3}
	flow := orchestrator.MustStateflow(orchestrator.DefaultStates(pol, 500*time.Millisecond, time.Second))
	for seed := range uint64(12) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Parallel()
			opts := []orchestrator.Option{orchestrator.WithStateflow(flow), orchestrator.WithRouter(orchestrator.HashRouter{Weight: func() int { return 5000 }})}
			if seed%3 == 0 {
				opts = append(opts, orchestrator.WithMaxPerActor(2))
			}
			s := newSimThread(t, seed, params, opts...)
			s.dupes = seed%2 == 1
			cs := s.consumers()
			const runs = 40
			for i := range runs {
				it := newIntent(fmt.Sprintf("s%d-r%d", seed, i), fmt.Sprintf("actor-%d", i%3), orchestrator.DefaultIntentKinds[i%5])
				it.Priority = int32(i % 4)
				s.produce([]pipeline.Output{{Topic: s.h.layout.Intents(), Key: []byte(it.TraceID), Value: it, Version: schemas.V2}})
				if i%7 == 0 { // a duplicate intent
					s.produce([]pipeline.Output{{Topic: s.h.layout.Intents(), Key: []byte(it.TraceID), Value: it, Version: schemas.V2}})
				}
			}
			for range 200000 {
				if s.rng.IntN(60) == 0 {
					s.h.clk.Add(time.Duration(s.rng.IntN(100)) * time.Millisecond)
					s.fireAll()
				}
				if !s.step(cs) {
					s.h.clk.Add(200 * time.Millisecond)
					s.fireAll()
					if !s.step(cs) && s.idle() {
						break
					}
				}
			}
			s.check(t, runs, flow)
		})
	}
}

func (s *simThread) idle() bool {
	for key := range s.h.states {
		if _, ok := s.h.o.Deadline(s.h.states[key]); ok {
			return false
		}
	}
	return true
}

func (s *simThread) check(t *testing.T, runs int, flow *orchestrator.Stateflow) {
	ids := map[string]schemas.EventType{}
	for topic, log := range s.logs {
		for _, o := range log {
			ev, ok := o.Value.(*schemas.RuntimeEvent)
			if !ok {
				continue
			}
			if prev, dup := ids[ev.EventID]; dup {
				t.Fatalf("event id %s twice: %s and %s on %s", ev.EventID, prev, ev.EventType, topic)
			}
			ids[ev.EventID] = ev.EventType
		}
	}
	triggers := []orchestrator.Trigger{orchestrator.OnIntent, orchestrator.OnRouted, orchestrator.OnQueue, orchestrator.OnAdmit, orchestrator.OnStarted,
		orchestrator.OnDelivered, orchestrator.OnFailure, orchestrator.OnRetry, orchestrator.OnGate, orchestrator.OnPassed, orchestrator.OnRejected,
		orchestrator.OnTimeout, orchestrator.OnRunTimeout}
	terminals := map[string]int{}
	byRun := map[string][]*schemas.RuntimeEvent{}
	for _, o := range s.logs[s.h.layout.Control()] {
		ev := o.Value.(*schemas.RuntimeEvent)
		if _, actor := thread.IsActorKey(o.Key); actor {
			continue
		}
		byRun[ev.TraceID] = append(byRun[ev.TraceID], ev)
	}
	if len(byRun) != runs {
		t.Fatalf("%d runs on spine.control, want %d", len(byRun), runs)
	}
	kinds := map[schemas.EventType]int{}
	for _, evs := range byRun {
		for _, ev := range evs {
			kinds[ev.EventType]++
		}
	}
	t.Logf("event counts: %v", kinds)
	for trace, evs := range byRun {
		prev := orchestrator.StateNone
		ended := false
		for _, ev := range evs {
			switch ev.EventType {
			case thread.RunIllegal, thread.RunStale, thread.RunRetryScheduled, thread.RunDequeued,
				thread.ArbitrationGrant, thread.ArbitrationQueued:
				continue
			}
			if ended {
				t.Fatalf("%s: %s after the terminal event", trace, ev.EventType)
			}
			to := orchestrator.State(ev.State)
			legal := false
			for _, tr := range triggers {
				if n, ok := flow.Next(prev, tr); ok && n == to {
					legal = true
				}
			}
			if !legal {
				t.Fatalf("%s: %s entered %s from %s, which the table forbids", trace, ev.EventType, to, prev)
			}
			prev = to
			if flow.Terminal(to) {
				terminals[trace]++
				ended = true
			}
		}
		if terminals[trace] != 1 {
			t.Fatalf("%s: %d terminal events, want 1 (%v)", trace, terminals[trace], types(evs))
		}
	}
}

// TestThreadPropertyNoLoss: when nothing fails and no time passes, every run
// completes or is rejected, whatever order the topics are read in (a verdict
// may overtake its artifact, a ledger reply its run's other events).
func TestThreadPropertyNoLoss(t *testing.T) {
	t.Parallel()
	params := synthetic.Default()
	params.LatencyMean, params.LatencyP99 = 600*time.Millisecond, 4*time.Second // some fail the performance gate
	for seed := range uint64(8) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Parallel()
			var opts []orchestrator.Option
			if seed%2 == 0 {
				opts = append(opts, orchestrator.WithMaxPerActor(1))
			}
			s := newSimThread(t, seed+100, params, opts...)
			cs := s.consumers()
			const runs = 40
			for i := range runs {
				it := newIntent(fmt.Sprintf("n%d-r%d", seed, i), fmt.Sprintf("actor-%d", i%4), orchestrator.DefaultIntentKinds[i%5])
				it.Priority = int32(i % 3)
				s.produce([]pipeline.Output{{Topic: s.h.layout.Intents(), Key: []byte(it.TraceID), Value: it, Version: schemas.V2}})
			}
			for s.step(cs) {
			}
			outcomes := map[schemas.EventType]int{}
			for trace, evs := range s.runs() {
				n, last := terminals(evs)
				if n != 1 || (last != thread.RunCompleted && last != thread.RunRejected) {
					t.Fatalf("%s ended %d times, last %q: %v", trace, n, last, types(evs))
				}
				outcomes[last]++
			}
			if outcomes[thread.RunCompleted]+outcomes[thread.RunRejected] != runs {
				t.Fatalf("outcomes %v, want %d runs ended", outcomes, runs)
			}
		})
	}
}

func (s *simThread) runs() map[string][]*schemas.RuntimeEvent {
	byRun := map[string][]*schemas.RuntimeEvent{}
	for _, o := range s.logs[s.h.layout.Control()] {
		if _, actor := thread.IsActorKey(o.Key); actor {
			continue
		}
		ev := o.Value.(*schemas.RuntimeEvent)
		byRun[ev.TraceID] = append(byRun[ev.TraceID], ev)
	}
	return byRun
}
