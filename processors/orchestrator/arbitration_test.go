package orchestrator_test

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/spinerun/spine/pipeline"
	"github.com/spinerun/spine/processors/orchestrator"
	"github.com/spinerun/spine/schemas"
	"github.com/spinerun/spine/schemas/thread"
)

// pump feeds the arbitration messages among outs back to the orchestrator,
// as the loop does when it consumes spine.control, until none is left.
func (h *harness) pump(outs []pipeline.Output) {
	h.t.Helper()
	queue := slices.Clone(outs)
	for len(queue) > 0 {
		o := queue[0]
		queue = queue[1:]
		ev := o.Value.(*schemas.RuntimeEvent)
		switch ev.EventType {
		case thread.ArbitrationAcquire, thread.ArbitrationRelease, thread.ArbitrationGrant, thread.ArbitrationQueued:
		default:
			continue
		}
		more, err := h.handle(o.Topic, string(o.Key), ev, o.Version)
		if err != nil {
			h.t.Fatalf("arbitration %s: %v", ev.EventType, err)
		}
		queue = append(queue, more...)
	}
}

func (h *harness) stateOf(trace string) string {
	evs := h.runEvents(trace)
	for i := len(evs) - 1; i >= 0; i-- {
		switch evs[i].EventType {
		case thread.RunIllegal, thread.RunStale, thread.ArbitrationAcquire, thread.ArbitrationRelease:
			continue
		}
		return evs[i].State
	}
	return ""
}

func TestArbitration(t *testing.T) {
	t.Parallel()
	h := newHarness(t, orchestrator.WithMaxPerActor(2))
	if !slices.Contains(h.o.Topics(), h.layout.Control()) {
		t.Fatal("with arbitration the orchestrator must consume spine.control")
	}
	prio := map[string]int32{"r0": 0, "r1": 0, "r2": 1, "r3": 5, "r4": 5, "o0": 0}
	for _, tr := range []string{"r0", "r1", "r2", "r3", "r4"} {
		it := newIntent(tr, "alice", "summarize")
		it.Priority = prio[tr]
		outs, err := h.intent(it)
		if err != nil {
			t.Fatal(err)
		}
		h.pump(outs)
	}
	// Another actor is not limited by alice's runs.
	outs, _ := h.intent(newIntent("o0", "bob", "summarize"))
	h.pump(outs)
	for tr, want := range map[string]string{"r0": "dispatched", "r1": "dispatched", "r2": "queued", "r3": "queued", "r4": "queued", "o0": "dispatched"} {
		if got := h.stateOf(tr); got != want {
			t.Errorf("%s is %s, want %s", tr, got, want)
		}
	}
	// Finishing runs dequeues by priority, then arrival: r3, r4, r2.
	var order []string
	finish := func(tr string) {
		t.Helper()
		d := last(h.runEvents(tr), thread.RunDispatch)
		f := reply(d, thread.DataplaneFailed, 0)
		msg := "invalid_input: x"
		f.Error = &msg
		outs, err := h.data(f)
		if err != nil {
			t.Fatal(err)
		}
		if last(events(outs), thread.ArbitrationRelease) == nil {
			t.Fatalf("%s ended without releasing its slot: %v", tr, types(events(outs)))
		}
		before := len(h.out)
		h.pump(outs)
		for _, e := range events(h.out[before:]) {
			if e.EventType == thread.RunDequeued {
				order = append(order, e.TraceID)
			}
		}
	}
	finish("r0")
	finish("r1")
	finish("r3")
	if want := []string{"r3", "r4", "r2"}; !slices.Equal(order, want) {
		t.Fatalf("dequeue order %v, want %v", order, want)
	}
	for _, tr := range []string{"r2", "r4"} {
		if got := types(h.runEvents(tr)); !slices.Contains(got, thread.RunQueued) || got[len(got)-1] != thread.RunDispatch {
			t.Errorf("%s events %v", tr, got)
		}
	}
	// Both remaining runs end: alice's ledger is empty again (a tombstone).
	finish("r4")
	finish("r2")
	if _, ok := h.states[string(thread.ActorKey("alice"))]; ok {
		t.Fatal("an idle actor still has a ledger")
	}
}

func TestHashRouter(t *testing.T) {
	t.Parallel()
	for _, w := range []int{0, 500, 2000, 5000, 10000} {
		r := orchestrator.HashRouter{Weight: func() int { return w }, Salt: "v2_rollout"}
		canary := 0
		const n = 10000
		for i := range n {
			tr := fmt.Sprintf("trace-%d", i)
			route := r.Route(tr, "a")
			if route != r.Route(tr, "a") {
				t.Fatal("route not sticky")
			}
			if route == thread.RouteCanary {
				canary++
			}
		}
		if got := float64(canary) / n * 100; math.Abs(got-float64(w)/100) > 1 {
			t.Errorf("weight %d bp: %.2f%% canary", w, got)
		}
	}
	// Raising the weight only moves baseline keys to the canary.
	lo := orchestrator.HashRouter{Weight: func() int { return 1000 }}
	hi := orchestrator.HashRouter{Weight: func() int { return 3000 }}
	for i := range 2000 {
		tr := fmt.Sprintf("t%d", i)
		if lo.Route(tr, "") == thread.RouteCanary && hi.Route(tr, "") != thread.RouteCanary {
			t.Fatalf("%s left the canary when the weight rose", tr)
		}
	}
	byActor := orchestrator.HashRouter{Key: orchestrator.ByActor, Weight: func() int { return 5000 }}
	for i := range 100 {
		if byActor.Route(fmt.Sprint(i), "carol") != byActor.Route("x", "carol") {
			t.Fatal("ByActor routes one actor two ways")
		}
	}
}

// TestRoutingSticky: the route is decided once per run and every event of
// the run carries it and its contract version, even if the router changes
// its mind afterwards.
func TestRoutingSticky(t *testing.T) {
	t.Parallel()
	w := 10000
	h := newHarness(t, orchestrator.WithRouter(orchestrator.HashRouter{Weight: func() int { return w }}))
	it := newIntent("tr", "a", "summarize")
	it.Priority = 7
	it.Tenant = "acme"
	d := last(h.must(h.intent(it)), thread.RunDispatch)
	w = 0
	h.must(h.data(reply(d, thread.DataplaneStarted, 0)))
	dl := reply(d, thread.ArtifactDelivered, 0)
	h.must(h.data(dl))
	h.must(h.gate(verdict(dl, true)))
	for _, e := range h.runEvents("tr") {
		if e.Route != thread.RouteCanary || e.SchemaVersion != schemas.V2 || e.Priority != 7 || e.Tenant != "acme" {
			t.Fatalf("%s: route %q version %v priority %d tenant %q", e.EventType, e.Route, e.SchemaVersion, e.Priority, e.Tenant)
		}
	}
	for _, o := range h.out {
		if o.Version != schemas.V2 {
			t.Fatalf("canary output encoded as %v", o.Version)
		}
	}
}
