package ingress

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxLimiters bounds how many callers' buckets are kept.
const maxLimiters = 10000

// limiters is a token bucket per caller. mu guards the map.
type limiters struct {
	r     rate.Limit
	burst int
	now   func() time.Time

	mu sync.Mutex
	m  map[string]*rate.Limiter
}

func newLimiters(perSecond float64, burst int, now func() time.Time) *limiters {
	if perSecond <= 0 {
		return nil
	}
	return &limiters{r: rate.Limit(perSecond), burst: max(burst, 1), now: now, m: map[string]*rate.Limiter{}}
}

// allow takes a token of who's bucket, or says how long to wait for one.
func (l *limiters) allow(who string) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	now := l.now()
	l.mu.Lock()
	lim, ok := l.m[who]
	if !ok {
		if len(l.m) >= maxLimiters {
			l.evict(now)
		}
		lim = rate.NewLimiter(l.r, l.burst)
		l.m[who] = lim
	}
	l.mu.Unlock()
	res := lim.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}

// evict drops the buckets that are full again (as good as new), or, when
// none is, one at random. Called with mu held.
func (l *limiters) evict(now time.Time) {
	for who, lim := range l.m {
		if lim.TokensAt(now) >= float64(l.burst) {
			delete(l.m, who)
		}
	}
	if len(l.m) >= maxLimiters {
		for who := range l.m {
			delete(l.m, who)
			break
		}
	}
}

// retryAfter is a Retry-After value: whole seconds, at least 1.
func retryAfter(d time.Duration) int { return int(math.Max(1, math.Ceil(d.Seconds()))) }
