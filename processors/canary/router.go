// Package canary routes runs between the v1 baseline and the v2 canary by a
// feature flag, and analyses the rollout: every interval it compares canary
// with baseline on the projections, publishes the evidence and its decision
// as a gate.canary event, and moves the flag (step up, promote, roll back or
// pause) — each move itself a recorded flag change.
//
// Goroutines: Router has none (it reads the flag store lock-free). An
// Analyzer runs one goroutine, Run, which owns all of its mutable state; its
// Analyses method reads a copy under a mutex. Any number of processes may
// run an Analyzer: with a pipeline.Leader only the leading one decides.
package canary

import (
	"math/bits"

	"github.com/spinerun/spine/processors/orchestrator"
	"github.com/spinerun/spine/schemas/thread"
)

// Buckets is the number of hash buckets: one per basis point of weight.
const Buckets = 10000

// RolloutSource is where the router and the analyzer read the rollout from
// (a *Rollouts). Rollout must be safe for concurrent use and cheap.
type RolloutSource interface {
	Rollout() Rollout
}

// RolloutSourceFunc adapts a function to RolloutSource.
type RolloutSourceFunc func() Rollout

// Rollout calls f.
func (f RolloutSourceFunc) Rollout() Rollout { return f() }

// Router is the flag-backed orchestrator.Router: a run goes to the canary
// when the bucket of its key — FNV-1a (64-bit) of the trace id, or of the
// actor when the rollout's route_key says so, mixed and reduced to
// [0, 10000) — is below the rollout's weight in basis points. The split is
// exact over many keys, a key always takes the same route at a given
// weight, and raising the weight only moves baseline keys to the canary.
// A flag change applies to the next intent. Router is safe for concurrent
// use.
type Router struct {
	src RolloutSource
}

var _ orchestrator.Router = (*Router)(nil)

// NewRouter returns a router reading the weight from src.
func NewRouter(src RolloutSource) *Router { return &Router{src: src} }

// Route implements orchestrator.Router.
func (r *Router) Route(traceID, actor string) string {
	ro := r.src.Rollout()
	key := traceID
	if ro.RouteKey == "actor" {
		key = actor
	}
	return RouteFor(key, ro.Weight)
}

// RouteFor returns the route of key at weight (basis points).
func RouteFor(key string, weight int) string {
	if Bucket(key) < weight {
		return thread.RouteCanary
	}
	return thread.RouteBaseline
}

// Bucket returns the bucket of key in [0, 10000): FNV-1a 64 of key,
// finished with the SplitMix64 mixer so that keys differing in one trailing
// character spread evenly, then reduced by multiply-shift (no modulo bias).
func Bucket(key string) int {
	const (
		offset64 = 14695981039346656037
		prime64  = 1099511628211
	)
	h := uint64(offset64)
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= prime64
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	hi, _ := bits.Mul64(h, Buckets)
	return int(hi)
}
