package e2e

import (
	"context"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/spinerun/spine/adapters/synthetic"
	"github.com/spinerun/spine/internal/spinetest"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
	"github.com/spinerun/spine/processors/dataplane"
	"github.com/spinerun/spine/processors/gatekeeper"
	"github.com/spinerun/spine/processors/orchestrator"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/registry"
	"github.com/spinerun/spine/schemas/registry/registrytest"
	"github.com/spinerun/spine/schemas/thread"
)

// brokerEnv is a cluster (kfake, or the real Kafka of KAFKA_BROKERS) with
// the layout's topics, Spine's own schema registry and the production codec:
// the three processors run on the real transactional loop.
type brokerEnv struct {
	brokers []string
	layout  pipeline.Layout
	codec   *pipeline.SchemaCodec
	cl      *kgo.Client
}

func newBrokerEnv(t *testing.T) *brokerEnv {
	t.Helper()
	brokers, prefix := kafkatest.Brokers(t), kafkatest.Prefix(t)
	l := pipeline.Layout{Prefix: prefix, Partitions: 3}
	cl := kafkatest.Client(t, brokers, kgo.ProducerLinger(0))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := pipeline.EnsureTopics(ctx, kadm.NewClient(cl), l, -1); err != nil {
		t.Fatal(err)
	}
	reg := registrytest.Start(t,
		registry.WithKafka(kgo.SeedBrokers(brokers...)),
		registry.WithTopic(string(l.Schemas())),
		registry.WithTransactionalID(prefix+"schema-registry"),
	)
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(srv.Close)
	src, err := sr.NewClient(sr.URLs(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	serde, err := schemas.NewSerde(src, schemas.WithAutoRegister())
	if err != nil {
		t.Fatal(err)
	}
	return &brokerEnv{brokers: brokers, layout: l, codec: pipeline.NewSchemaCodec(serde, l), cl: cl}
}

type topicked interface {
	pipeline.Handler
	Topics() []pipeline.Topic
}

// startThread runs the orchestrator o, the dataplane dp and a gatekeeper
// with no checks (the verdict only) as instance "a".
func (e *brokerEnv) startThread(t *testing.T, o, dp topicked) {
	t.Helper()
	gr, err := gatekeeper.New(e.layout, gatekeeper.Config{})
	if err != nil {
		t.Fatal(err)
	}
	e.start(t, orchestrator.Name, "a", o)
	e.start(t, dataplane.Name, "a", dp)
	e.start(t, gatekeeper.Name, "a", gr)
}

func (e *brokerEnv) start(t *testing.T, name, instance string, h topicked) (stop func()) {
	t.Helper()
	p, err := pipeline.NewProcessor(name, h,
		pipeline.WithKafka(kgo.SeedBrokers(e.brokers...)),
		pipeline.WithLayout(e.layout),
		pipeline.WithInputs(h.Topics()...),
		pipeline.WithCodec(e.codec),
		pipeline.WithInstanceID(instance),
		pipeline.WithTransactionTimeout(5*time.Second),
		pipeline.WithGroupTimeouts(6*time.Second, 10*time.Second),
	)
	if err != nil {
		t.Fatal(err)
	}
	return spinetest.Start(t, name+"-"+instance, p.Run)
}

func (e *brokerEnv) produceIntents(t *testing.T, its []*schemas.Intent, v schemas.ContractVersion) {
	t.Helper()
	var recs []*kgo.Record
	for _, it := range its {
		b, err := e.codec.Encode(t.Context(), e.layout.Intents(), v, it)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: string(e.layout.Intents()), Key: []byte(it.TraceID), Value: b})
	}
	if err := e.cl.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// readControl reads committed spine.control events until done says so or
// the deadline passes, and returns them by run.
func (e *brokerEnv) readControl(t *testing.T, within time.Duration, done func(byRun map[string][]*schemas.RuntimeEvent) bool) map[string][]*schemas.RuntimeEvent {
	t.Helper()
	cl := kafkatest.Client(t, e.brokers, kgo.ConsumeTopics(string(e.layout.Control())), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	byRun := map[string][]*schemas.RuntimeEvent{}
	ctx, cancel := context.WithTimeout(t.Context(), within)
	defer cancel()
	for !done(byRun) {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("not done within %s: %d runs seen", within, len(byRun))
		}
		fs.EachRecord(func(r *kgo.Record) {
			if _, ok := thread.IsActorKey(r.Key); ok {
				return
			}
			v, _, err := e.codec.Decode(ctx, e.layout.Control(), r.Value)
			if err != nil {
				t.Errorf("decode control record: %v", err)
				return
			}
			ev := v.(*schemas.RuntimeEvent)
			byRun[ev.TraceID] = append(byRun[ev.TraceID], ev)
		})
	}
	return byRun
}

func terminals(evs []*schemas.RuntimeEvent) (n int, last schemas.EventType) {
	for _, e := range evs {
		switch e.EventType {
		case thread.RunCompleted, thread.RunRejected, thread.RunFailed, thread.RunTimedOut:
			n++
			last = e.EventType
		}
	}
	return n, last
}

func allEnded(want int) func(map[string][]*schemas.RuntimeEvent) bool {
	return func(byRun map[string][]*schemas.RuntimeEvent) bool {
		ended := 0
		for _, evs := range byRun {
			if n, _ := terminals(evs); n > 0 {
				ended++
			}
		}
		return ended >= want
	}
}

// TestThreadOnBroker runs the three processors on the transactional loop:
// every intent (V1 baseline and V2 canary, with execution failures retried)
// ends in exactly one terminal event, in FSM order, with no event id twice.
func TestThreadOnBroker(t *testing.T) {
	if testing.Short() {
		t.Skip("broker test")
	}
	t.Parallel()
	e := newBrokerEnv(t)
	// Generous execution and gate timeouts, below the read's deadline: no
	// run may time out, and a slow reply on a loaded machine is not what
	// this test is about (TestTimeoutsOnBroker covers timeouts).
	flow := orchestrator.MustStateflow(orchestrator.DefaultStates(orchestrator.RetryPolicy{InitialInterval: 20 * time.Millisecond, BackoffCoefficient: 2, MaximumAttempts: 3}, 90*time.Second, 90*time.Second))
	o, err := orchestrator.New(e.layout, orchestrator.WithStateflow(flow), orchestrator.WithRouter(orchestrator.HashRouter{Weight: func() int { return 5000 }}))
	if err != nil {
		t.Fatal(err)
	}
	p := synthetic.Default()
	p.FailureRate = 0.15
	dp, err := newSyntheticDataplane(t, e.layout, map[string]synthetic.Params{"baseline": p, "canary": p}, false)
	if err != nil {
		t.Fatal(err)
	}
	e.startThread(t, o, dp)
	const n = 300
	var v1, v2 []*schemas.Intent
	for i := range n {
		it := brokerIntent(fmt.Sprintf("run-%d", i), fmt.Sprintf("actor-%d", i%7), orchestrator.DefaultIntentKinds[i%5])
		it.Timestamp = time.Now()
		if i%2 == 0 {
			it.Priority = int32(i % 3)
			v2 = append(v2, it)
		} else {
			v1 = append(v1, it)
		}
	}
	e.produceIntents(t, v1, schemas.V1)
	e.produceIntents(t, v2, schemas.V2)
	e.produceIntents(t, v1[:10], schemas.V1) // duplicates: deduplicated
	byRun := e.readControl(t, 120*time.Second, allEnded(n))
	outcomes := map[schemas.EventType]int{}
	for trace, evs := range byRun {
		if k, last := terminals(evs); k != 1 {
			t.Errorf("%s: %d terminal events", trace, k)
		} else {
			outcomes[last]++
			if last == thread.RunTimedOut && outcomes[last] < 3 {
				for _, ev := range evs {
					t.Logf("%s %s %s attempt %d at %s", trace, ev.EventType, ev.State, ev.Attempt, ev.Timestamp.Format("15:04:05.000"))
				}
			}
		}
		if evs[0].EventType != thread.IntentReceived {
			t.Errorf("%s starts with %s", trace, evs[0].EventType)
		}
		for _, ev := range evs {
			if ev.Route == thread.RouteCanary && ev.SchemaVersion != schemas.V2 {
				t.Errorf("%s: canary event written as %v", trace, ev.SchemaVersion)
			}
		}
	}
	if len(byRun) != n {
		t.Fatalf("%d runs, want %d", len(byRun), n)
	}
	t.Logf("outcomes: %v", outcomes)
	if outcomes[thread.RunCompleted] < n*9/10 || outcomes[thread.RunTimedOut] != 0 {
		t.Fatalf("outcomes %v: want ≥ 90%% completed, none timed out", outcomes)
	}
}

// TestTimeoutsOnBroker: a data plane that never answers makes every run
// time out after its retries; the same holds when the orchestrator stops
// while the timers are pending and a new instance takes over its state.
func TestTimeoutsOnBroker(t *testing.T) {
	if testing.Short() {
		t.Skip("broker test")
	}
	t.Parallel()
	e := newBrokerEnv(t)
	pol := orchestrator.RetryPolicy{InitialInterval: 100 * time.Millisecond, BackoffCoefficient: 2, MaximumAttempts: 2}
	newOrch := func() *orchestrator.Orchestrator {
		o, err := orchestrator.New(e.layout, orchestrator.WithStateflow(orchestrator.MustStateflow(orchestrator.DefaultStates(pol, 1500*time.Millisecond, time.Second))))
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	hang := synthetic.Default()
	hang.HangRate = 1
	dp, err := newSyntheticDataplane(t, e.layout, map[string]synthetic.Params{"baseline": hang}, false)
	if err != nil {
		t.Fatal(err)
	}
	stopOrch := e.start(t, orchestrator.Name, "a", newOrch())
	e.start(t, dataplane.Name, "a", dp)
	const n = 30
	var its []*schemas.Intent
	for i := range n {
		it := brokerIntent(fmt.Sprintf("hang-%d", i), "alice", "answer")
		it.Timestamp = time.Now()
		its = append(its, it)
	}
	e.produceIntents(t, its, schemas.V1)
	// Once every run is dispatched, stop the orchestrator with its timers
	// pending, and start a new instance on the same state.
	e.readControl(t, 30*time.Second, func(byRun map[string][]*schemas.RuntimeEvent) bool {
		k := 0
		for _, evs := range byRun {
			if lastOf(evs, thread.RunDispatch) != nil {
				k++
			}
		}
		return k == n
	})
	stopOrch()
	e.start(t, orchestrator.Name, "b", newOrch())
	byRun := e.readControl(t, 60*time.Second, allEnded(n))
	for trace, evs := range byRun {
		// Whether the hung worker said dataplane.started before each
		// timeout depends on when it joined its group; the decisions do not.
		// A worker that joined after the run ended says it afterwards: the
		// ended run refuses it (run.illegal_transition), and nothing else.
		var got []schemas.EventType
		ended := false
		for _, ev := range evs {
			switch {
			case ev.EventType == thread.RunExecuting || ev.EventType == thread.RunStale:
			case ended && ev.EventType == thread.RunIllegal && ev.Error != nil && strings.Contains(*ev.Error, string(thread.DataplaneStarted)+" in state "):
				t.Logf("%s: after its end: %s", trace, *ev.Error)
			default:
				got = append(got, ev.EventType)
			}
			ended = ended || ev.EventType == thread.RunTimedOut
		}
		want := []schemas.EventType{thread.IntentReceived, thread.RunRouted, thread.RunDispatch, thread.RunRetryScheduled, thread.RunDispatch, thread.RunTimedOut}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: %v, want %v", trace, got, want)
			for _, ev := range evs {
				t.Logf("%s %s %s attempt %d at %s %s", trace, ev.EventType, ev.State, ev.Attempt, ev.Timestamp.Format("15:04:05.000"), textOr(ev.Error))
			}
		}
	}
}

// TestArbitrationOnBroker: with at most two runs per actor, the ledger on
// spine.control (read back by the orchestrator) queues the rest by
// priority; every run completes and no more than two of one actor are ever
// between dispatch and their end.
func TestArbitrationOnBroker(t *testing.T) {
	if testing.Short() {
		t.Skip("broker test")
	}
	t.Parallel()
	e := newBrokerEnv(t)
	o, err := orchestrator.New(e.layout, orchestrator.WithMaxPerActor(2))
	if err != nil {
		t.Fatal(err)
	}
	slow := synthetic.Default()
	slow.LatencyMean, slow.LatencyP99 = 30*time.Millisecond, 30*time.Millisecond
	dp, err := newSyntheticDataplane(t, e.layout, map[string]synthetic.Params{"baseline": slow}, true)
	if err != nil {
		t.Fatal(err)
	}
	e.startThread(t, o, dp)
	const n = 24
	var its []*schemas.Intent
	for i := range n {
		it := brokerIntent(fmt.Sprintf("arb-%d", i), fmt.Sprintf("actor-%d", i%2), "summarize")
		it.Timestamp = time.Now()
		it.Priority = int32(i % 3)
		its = append(its, it)
	}
	e.produceIntents(t, its, schemas.V2)
	byRun := e.readControl(t, 60*time.Second, allEnded(n))
	type edge struct {
		at    time.Time
		delta int
	}
	perActor := map[string][]edge{}
	queued := 0
	for trace, evs := range byRun {
		if k, last := terminals(evs); k != 1 || last != thread.RunCompleted {
			t.Errorf("%s: %d terminals, last %s", trace, k, last)
		}
		if d := lastOf(evs, thread.RunDispatch); d != nil {
			first := evs[0]
			for _, ev := range evs {
				if ev.EventType == thread.RunDispatch {
					first = ev
					break
				}
			}
			end := evs[len(evs)-1]
			perActor[d.Actor] = append(perActor[d.Actor], edge{first.Timestamp, 1}, edge{end.Timestamp, -1})
		}
		if lastOf(evs, thread.RunQueued) != nil {
			queued++
		}
	}
	if queued == 0 {
		t.Fatal("no run was ever queued")
	}
	for actor, edges := range perActor {
		slices.SortFunc(edges, func(a, b edge) int {
			if c := a.at.Compare(b.at); c != 0 {
				return c
			}
			return a.delta - b.delta // an end before a start at the same millisecond
		})
		running := 0
		for _, e := range edges {
			running += e.delta
			if running > 2 {
				t.Fatalf("%s had %d runs at once at %s", actor, running, e.at)
			}
		}
	}
}

// newSyntheticDataplane is the dataplane on the synthetic executor with
// routes.
func newSyntheticDataplane(t *testing.T, l pipeline.Layout, routes map[string]synthetic.Params, sleep bool) (*dataplane.Dataplane, error) {
	t.Helper()
	x, err := synthetic.NewExecutor(routes, sleep)
	if err != nil {
		return nil, err
	}
	return dataplane.New(l, dataplane.Config{Executor: x})
}

func brokerIntent(trace, actor, kind string) *schemas.Intent {
	return &schemas.Intent{IntentID: "i-" + trace, TraceID: trace, Actor: actor, Kind: kind, Input: "hello", SchemaVersion: schemas.V1, Timestamp: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)}
}

// lastOf returns the last event of type typ in evs, or nil.
func lastOf(evs []*schemas.RuntimeEvent, typ schemas.EventType) *schemas.RuntimeEvent {
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].EventType == typ {
			return evs[i]
		}
	}
	return nil
}

// textOr is *s, or "" for nil.
func textOr(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
