package ingress

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"
)

// idemCache remembers, per caller and Idempotency-Key, the body's hash and
// the answer given, for TTL, at most max entries (the oldest go first). An
// entry is in flight until its first request is answered; a retry waits
// for it. mu guards the map and the list, never held while waiting.
type idemCache struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu    sync.Mutex
	byKey map[string]*list.Element // of *idemEntry
	order *list.List               // oldest first
}

type idemEntry struct {
	key     string
	hash    [32]byte
	expires time.Time
	done    chan struct{} // closed when answer or failed is set
	answer  *Accepted
	failed  bool // the first request failed: the key is free again
}

func newIdemCache(ttl time.Duration, max int, now func() time.Time) *idemCache {
	return &idemCache{ttl: ttl, max: max, now: now, byKey: map[string]*list.Element{}, order: list.New()}
}

// claim returns the entry of key: fresh (owner true: the caller must
// finish it) or existing with the same hash (owner false), or conflict
// when it exists with another hash.
func (c *idemCache) claim(key string, hash [32]byte) (e *idemEntry, owner, conflict bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	for f := c.order.Front(); f != nil; f = c.order.Front() {
		old := f.Value.(*idemEntry)
		if now.Before(old.expires) && c.order.Len() < c.max {
			break
		}
		c.order.Remove(f)
		delete(c.byKey, old.key)
	}
	if el, ok := c.byKey[key]; ok {
		e := el.Value.(*idemEntry)
		if e.hash != hash {
			return e, false, true
		}
		return e, false, false
	}
	e = &idemEntry{key: key, hash: hash, expires: now.Add(c.ttl), done: make(chan struct{})}
	c.byKey[key] = c.order.PushBack(e)
	return e, true, false
}

// finish records the answer of an owned entry, or on failure frees its
// key for a retry.
func (c *idemCache) finish(e *idemEntry, a *Accepted) {
	c.mu.Lock()
	if a == nil {
		e.failed = true
		if el, ok := c.byKey[e.key]; ok && el.Value == e {
			c.order.Remove(el)
			delete(c.byKey, e.key)
		}
	} else {
		e.answer = a
	}
	c.mu.Unlock()
	close(e.done)
}

// wait waits for an entry owned by another request.
func (e *idemEntry) wait(ctx context.Context) (*Accepted, bool) {
	select {
	case <-e.done:
		return e.answer, !e.failed
	case <-ctx.Done():
		return nil, false
	}
}

// derivedID is the id a caller's idempotency key stands for: the same on
// every instance, so a retry anywhere carries the same trace id.
func derivedID(what, scope, key string) string {
	h := sha256.New()
	h.Write([]byte("spine/ingress/v1\x00" + what + "\x00"))
	h.Write([]byte(scope))
	h.Write([]byte{0})
	h.Write([]byte(key))
	return hex.EncodeToString(h.Sum(nil)[:16])
}
