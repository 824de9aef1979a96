package pipeline_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/spinerun/spine/internal/spinetest"
	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/pipeline/kafkatest"
)

// caller is an Async test handler without processor logic: an input asks
// for work named by its id (the key's state is that id), the work is
// whatever work does, and Complete emits one "done" output naming the work
// and deletes the key. Each input also emits an "accepted" output.
type caller struct {
	out pipeline.Topic
	// work runs the work; nil returns at once.
	work func(ctx context.Context, key, id string) any

	running, peak atomic.Int64
	started       atomic.Int64
	cancelled     atomic.Int64
	mu            sync.Mutex
	starts        map[string]int // id → Work calls
}

var _ pipeline.Async = (*caller)(nil)

func (c *caller) Handle(_ context.Context, _ []byte, in pipeline.Input) (pipeline.Result, error) {
	m := in.Value.(*msg)
	return pipeline.Result{State: []byte("work:" + m.ID), StateChanged: true,
		Outputs: []pipeline.Output{{Topic: c.out, Key: in.Key, Value: &msg{ID: m.ID, Kind: "accepted"}}}}, nil
}

func (c *caller) Pending(state []byte) string {
	id, _ := strings.CutPrefix(string(state), "work:")
	return id
}

func (c *caller) Work(ctx context.Context, key, state []byte) any {
	id := c.Pending(state)
	c.mu.Lock()
	if c.starts == nil {
		c.starts = map[string]int{}
	}
	c.starts[id]++
	c.mu.Unlock()
	c.started.Add(1)
	n := c.running.Add(1)
	defer c.running.Add(-1)
	for {
		p := c.peak.Load()
		if n <= p || c.peak.CompareAndSwap(p, n) {
			break
		}
	}
	var out any = "ok"
	if c.work != nil {
		out = c.work(ctx, string(key), id)
	}
	if ctx.Err() != nil {
		c.cancelled.Add(1)
	}
	return out
}

func (c *caller) Complete(_ context.Context, key, state []byte, out any) (pipeline.Result, error) {
	return pipeline.Result{StateChanged: true, // a tombstone
		Outputs: []pipeline.Output{{Topic: c.out, Key: key, Value: &msg{ID: c.Pending(state), Kind: "done:" + fmt.Sprint(out)}}}}, nil
}

func (c *caller) startsOf(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.starts[id]
}

// kinds counts the committed outputs per kind and id.
func kinds(t *testing.T, e *env, n int, settle time.Duration) map[string]map[string]int {
	return countKinds(t, e, n, settle)
}

// stateTail reads the committed state changelog and returns each key's
// last value (nil: a tombstone) once want records were read and no more
// came for a while.
func (e *env) stateTail(t *testing.T, name string, want int) map[string][]byte {
	t.Helper()
	last := map[string][]byte{}
	for _, r := range e.readAll(t, e.layout.State(name), want, time.Second, true) {
		last[string(r.Key)] = r.Value
	}
	return last
}

// asyncName is a processor with a state topic in the test layout.
const asyncName = "dataplane"

func asyncKey(i int) string { return fmt.Sprintf("k%d", i) }

func TestAsyncWorkStartsAfterCommitAndCompletesOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 3)
	// Each work checks that the state naming it is committed: a
	// read_committed reader of the changelog sees it.
	reader := kafkatest.Client(t, e.brokers, kgo.ConsumeTopics(string(e.layout.State(asyncName))),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(50*time.Millisecond))
	var seenMu sync.Mutex
	seen := map[string]string{}
	var early atomic.Int64
	h := &caller{out: e.layout.Control(), work: func(ctx context.Context, key, id string) any {
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			seenMu.Lock()
			if seen[key] == "work:"+id {
				seenMu.Unlock()
				return "ok"
			}
			pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			fs := reader.PollFetches(pctx)
			cancel()
			fs.EachRecord(func(r *kgo.Record) { seen[string(r.Key)] = string(r.Value) })
			seenMu.Unlock()
		}
		early.Add(1)
		return "early"
	}}
	e.start(t, asyncName, h)
	const n = 20
	e.produce(t, e.layout.Intents(), msgs("a", n, ""), asyncKey)
	got := kinds(t, e, 2*n, 500*time.Millisecond)
	for i := range n {
		id := fmt.Sprintf("a-%d", i)
		if got["accepted"][id] != 1 || got["done:ok"][id] != 1 {
			t.Errorf("%s: accepted %d, done %d times; want 1 and 1", id, got["accepted"][id], got["done:ok"][id])
		}
	}
	if early.Load() != 0 {
		t.Errorf("%d works started before their state was committed", early.Load())
	}
	// Compaction may have removed each key's first record already.
	for k, v := range e.stateTail(t, asyncName, n) {
		if v != nil {
			t.Errorf("key %s: last state %q, want a tombstone", k, v)
		}
	}
}

func TestAsyncStaleCompletionDropped(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	release := make(chan struct{})
	h := &caller{out: e.layout.Control(), work: func(ctx context.Context, _, id string) any {
		if id == "old" {
			<-ctx.Done() // replaced: cancelled
			return "cancelled"
		}
		<-release
		return "ok"
	}}
	e.start(t, asyncName, h)
	e.produce(t, e.layout.Intents(), []msg{{ID: "old"}}, func(int) string { return "k" })
	waitFor(t, 30*time.Second, func() bool { return h.startsOf("old") == 1 }, "the old work to start")
	e.produce(t, e.layout.Intents(), []msg{{ID: "new"}}, func(int) string { return "k" })
	waitFor(t, 30*time.Second, func() bool { return h.cancelled.Load() == 1 }, "the old work to be cancelled")
	close(release)
	got := kinds(t, e, 3, 500*time.Millisecond)
	if got["done:ok"]["new"] != 1 || len(got["done:cancelled"]) != 0 {
		t.Errorf("outputs %v: want one done for new, none for old", got)
	}
}

func TestAsyncRestartRunsInterruptedWorkAgain(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	h1 := &caller{out: e.layout.Control(), work: func(ctx context.Context, _, _ string) any {
		<-ctx.Done() // runs until the processor stops
		return "cut"
	}}
	stop := e.start(t, asyncName, h1)
	const n = 10
	e.produce(t, e.layout.Intents(), msgs("r", n, ""), asyncKey)
	waitFor(t, 30*time.Second, func() bool { return h1.running.Load() == n }, "every work to be running")
	stop()
	if c := h1.cancelled.Load(); c != n {
		t.Errorf("%d works cancelled at stop, want %d", c, n)
	}
	h2 := &caller{out: e.layout.Control()}
	e.start(t, asyncName, h2)
	got := kinds(t, e, 2*n, 500*time.Millisecond)
	for i := range n {
		id := fmt.Sprintf("r-%d", i)
		if got["done:ok"][id] != 1 || h2.startsOf(id) != 1 {
			t.Errorf("%s: done %d times after %d starts on restart; want 1 and 1", id, got["done:ok"][id], h2.startsOf(id))
		}
	}
	if len(got["done:cut"]) != 0 {
		t.Errorf("a cancelled work completed: %v", got["done:cut"])
	}
}

func TestAsyncConcurrencyBoundAndBackpressure(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	release := make(chan struct{})
	h := &caller{out: e.layout.Control(), work: func(ctx context.Context, _, _ string) any {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return "ok"
	}}
	reg := prometheus.NewRegistry()
	// 4 run at once; more than 8 waiting pause fetching until 4 or fewer
	// wait.
	e.start(t, asyncName, h, pipeline.WithAsync(4, 8), pipeline.WithRegisterer(reg))
	const n = 40
	e.produce(t, e.layout.Intents(), msgs("b", n, ""), asyncKey)
	paused := func() float64 { return spinetest.MetricValue(t, reg, "spine_processor_paused", asyncName) }
	waitFor(t, 30*time.Second, func() bool { return h.running.Load() == 4 && paused() == 1 }, "4 works running and fetching paused")
	// More input while paused, for other keys (an input for a key whose
	// work is pending replaces that work).
	e.produce(t, e.layout.Intents(), msgs("c", n, ""), func(i int) string { return fmt.Sprintf("j%d", i) })
	close(release)
	got := kinds(t, e, 4*n, 500*time.Millisecond)
	for _, p := range []string{"b", "c"} {
		for i := range n {
			id := fmt.Sprintf("%s-%d", p, i)
			if got["done:ok"][id] != 1 {
				t.Errorf("%s done %d times, want 1", id, got["done:ok"][id])
			}
		}
	}
	if p := h.peak.Load(); p != 4 {
		t.Errorf("at most %d works ran at once, want 4", p)
	}
	waitFor(t, 10*time.Second, func() bool { return paused() == 0 }, "fetching to resume")
}

func TestAsyncOptionsValidated(t *testing.T) {
	t.Parallel()
	for _, o := range []pipeline.ProcessorOpt{pipeline.WithAsync(0, 0), pipeline.WithAsync(1, -1)} {
		_, err := pipeline.NewProcessor(asyncName, &caller{}, pipeline.WithKafka(kgo.SeedBrokers("x:1")),
			pipeline.WithInputs("in"), pipeline.WithCodec(&jsonCodec{}), o)
		if err == nil {
			t.Error("invalid WithAsync accepted")
		}
	}
}

// TestAsyncRevokeCancelsAndNewOwnerRunsAgain: a second instance joins;
// the partitions the first one gives up have their works cancelled there
// and run again by the new owner, which restored the states asking for
// them; each work completes once.
func TestAsyncRevokeCancelsAndNewOwnerRunsAgain(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 4)
	release := make(chan struct{})
	block := func(ctx context.Context, _, _ string) any {
		select {
		case <-release:
			return "ok"
		case <-ctx.Done():
			return "cut"
		}
	}
	h1 := &caller{out: e.layout.Control(), work: block}
	e.start(t, asyncName, h1)
	const n = 40
	e.produce(t, e.layout.Intents(), msgs("v", n, ""), asyncKey)
	waitFor(t, 30*time.Second, func() bool { return h1.running.Load() == n }, "every work running on the first instance")
	h2 := &caller{out: e.layout.Control(), work: block}
	e.start(t, asyncName, h2, pipeline.WithInstanceID("i1"))
	// The range balancer is eager: the first instance gives up every
	// partition, then gets its share back and restores it.
	waitFor(t, 60*time.Second, func() bool {
		return h1.cancelled.Load() > 0 && h2.running.Load() > 0 && h1.running.Load()+h2.running.Load() == n
	}, "the works to run again, split between the instances")
	close(release)
	got := kinds(t, e, 2*n, time.Second)
	for i := range n {
		id := fmt.Sprintf("v-%d", i)
		if got["done:ok"][id] != 1 {
			t.Errorf("%s done %d times, want 1", id, got["done:ok"][id])
		}
	}
	if len(got["done:cut"]) != 0 {
		t.Errorf("cancelled works completed: %v", got["done:cut"])
	}
	t.Logf("%d of %d works moved with their partitions", h2.started.Load(), n)
}
