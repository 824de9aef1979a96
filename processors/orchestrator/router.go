package orchestrator

import (
	"crypto/sha256"
	"encoding/binary"

	"github.com/spinerun/spine/schemas/thread"
)

// Router decides the route of a new run: thread.RouteBaseline (contract V1)
// or thread.RouteCanary (V2). It is called once per run, when the intent is
// received; the route is then kept in the run's state and carried by every
// event of the run, so it is sticky even if the router's weights change.
// Route must be safe for concurrent use.
type Router interface {
	Route(traceID, actor string) (route string)
}

// RouterFunc adapts a function to Router.
type RouterFunc func(traceID, actor string) string

// Route calls f.
func (f RouterFunc) Route(traceID, actor string) string { return f(traceID, actor) }

// Baseline routes every run to the baseline: the default Router.
var Baseline Router = RouterFunc(func(string, string) string { return thread.RouteBaseline })

// RouteKey says which field a HashRouter hashes.
type RouteKey int

// The keys a HashRouter may hash: the trace id (each run on its own) or the
// actor (every run of one actor takes the same route).
const (
	ByTrace RouteKey = iota
	ByActor
)

// HashRouter routes a run to the canary when a stable hash of its key falls
// below the canary weight, in basis points (0–10000). The hash is SHA-256 of
// Salt and the key, so the split is exact over many keys and sticky for one
// key at a fixed weight; raising the weight only moves baseline keys to the
// canary, never back. Weight is read on every call so a flag-backed weight
// applies without a restart; it must be safe for concurrent use.
type HashRouter struct {
	Key    RouteKey
	Salt   string
	Weight func() int
}

// Bucket returns the key's bucket in [0, 10000).
func (h HashRouter) Bucket(traceID, actor string) int {
	k := traceID
	if h.Key == ByActor {
		k = actor
	}
	s := sha256.Sum256([]byte(h.Salt + "\x00" + k))
	return int(binary.BigEndian.Uint64(s[:8]) % 10000)
}

// Route implements Router.
func (h HashRouter) Route(traceID, actor string) string {
	w := 0
	if h.Weight != nil {
		w = h.Weight()
	}
	if h.Bucket(traceID, actor) < w {
		return thread.RouteCanary
	}
	return thread.RouteBaseline
}
