package canary_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"testing"

	"github.com/spinerun/spine/processors/canary"
	"github.com/spinerun/spine/schemas/thread"
)

func fixed(weight int, key string) canary.RolloutSource {
	r := canary.DefaultRollout()
	r.Weight, r.RouteKey = weight, key
	return canary.RolloutSourceFunc(func() canary.Rollout { return r })
}

func TestRouterSplitIsExact(t *testing.T) {
	t.Parallel()
	// W3C-style trace ids from a seeded generator: the split is a property
	// of the hash, and a fixed sample keeps the test from failing on the
	// binomial noise of a fresh random sample (σ ≈ 0.5 point at 50%).
	const n = 10000
	rng := rand.New(rand.NewPCG(20261126, 1))
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%016x%016x", rng.Uint64(), rng.Uint64())
	}
	for _, w := range []int{0, 1, 100, 1000, 2500, 5000, 9000, 9999, 10000} {
		t.Run(fmt.Sprintf("weight=%dbp", w), func(t *testing.T) {
			t.Parallel()
			r := canary.NewRouter(fixed(w, "trace_id"))
			var c int
			for _, id := range ids {
				if r.Route(id, "actor") == thread.RouteCanary {
					c++
				}
			}
			got := 100 * float64(c) / n
			want := float64(w) / 100
			t.Logf("weight %.2f%%: measured %.2f%% over %d trace ids", want, got, n)
			if math.Abs(got-want) > 1 {
				t.Fatalf("measured split %.2f%%, want %.2f%% ± 1 point", got, want)
			}
			if (w == 0 && c != 0) || (w == 10000 && c != n) {
				t.Fatalf("weight %d routed %d of %d to the canary", w, c, n)
			}
		})
	}
}

func TestRouterSplitOfSequentialIDs(t *testing.T) {
	t.Parallel()
	// Keys that differ only in their last characters (trace-000001, ...)
	// split as exactly as random ones.
	r := canary.NewRouter(fixed(1000, "trace_id"))
	var c int
	for i := range 10000 {
		if r.Route(fmt.Sprintf("trace-%06d", i), "") == thread.RouteCanary {
			c++
		}
	}
	if got := float64(c) / 100; math.Abs(got-10) > 1 {
		t.Fatalf("sequential ids: measured %.2f%%, want 10%% ± 1", got)
	}
}

func TestRouterIsSticky(t *testing.T) {
	t.Parallel()
	var w atomic.Int64
	src := canary.RolloutSourceFunc(func() canary.Rollout {
		r := canary.DefaultRollout()
		r.Weight = int(w.Load())
		return r
	})
	r := canary.NewRouter(src)
	ids := make([]string, 2000)
	for i := range ids {
		ids[i] = fmt.Sprintf("%016x%016x", rand.Uint64(), rand.Uint64())
	}
	w.Store(2000)
	first := make([]string, len(ids))
	for i, id := range ids {
		first[i] = r.Route(id, "")
	}
	for range 3 {
		for i, id := range ids {
			if got := r.Route(id, ""); got != first[i] {
				t.Fatalf("key %s took %s, then %s", id, first[i], got)
			}
		}
	}
	// Raising the weight (a flag change, applied on the next call) only
	// moves baseline keys to the canary.
	w.Store(5000)
	moved := 0
	for i, id := range ids {
		got := r.Route(id, "")
		if first[i] == thread.RouteCanary && got != thread.RouteCanary {
			t.Fatalf("key %s left the canary when the weight rose", id)
		}
		if got != first[i] {
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("raising the weight moved no key")
	}
}

func TestRouterByActor(t *testing.T) {
	t.Parallel()
	r := canary.NewRouter(fixed(5000, "actor"))
	for _, actor := range []string{"alice", "bob", "carol", "dave"} {
		want := r.Route("t0", actor)
		for i := range 200 {
			if got := r.Route(fmt.Sprintf("t%d", i), actor); got != want {
				t.Fatalf("actor %s: trace t%d took %s, want %s (every run of an actor takes one route)", actor, i, got, want)
			}
		}
	}
}

func BenchmarkRoute(b *testing.B) {
	r := canary.NewRouter(fixed(2500, "trace_id"))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.Route("0123456789abcdef0123456789abcdef", "actor")
	}
}

func ExampleRouteFor() {
	// A key's bucket is fixed; it is on the canary while the weight (in
	// basis points) is above its bucket.
	b := canary.Bucket("trace-42")
	fmt.Println(canary.RouteFor("trace-42", b), canary.RouteFor("trace-42", b+1))
	// Output: baseline canary
}
