package auth

import (
	"net/netip"
	"sync"
	"time"
)

// The per-network message rate (auth.networks[].rate_limit): how many
// messages each address of a trusted network may start per rate_period.
// Password guessing is lockout.go's job, sending quotas per user and
// network quota.go's.

// maxRateEntries bounds the per-IP buckets of one network.
const maxRateEntries = 1 << 16

// rateLimiter is a per-IP token bucket: limit messages at once, refilled at
// limit per period.
type rateLimiter struct {
	limit  float64
	period time.Duration

	mu        sync.Mutex
	buckets   map[netip.Addr]*bucket
	lastSweep time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newRateLimiter(limit int, period time.Duration) *rateLimiter {
	return &rateLimiter{limit: float64(limit), period: period, buckets: map[netip.Addr]*bucket{}}
}

func (r *rateLimiter) allow(ip netip.Addr) bool {
	t := now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sweep(t)
	b := r.buckets[ip]
	if b == nil {
		if len(r.buckets) >= maxRateEntries {
			evictOne(r.buckets)
		}
		b = &bucket{tokens: r.limit, last: t}
		r.buckets[ip] = b
	}
	b.refill(t, r.limit, r.period)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

func (b *bucket) refill(t time.Time, limit float64, period time.Duration) {
	if el := t.Sub(b.last); el > 0 {
		b.tokens = min(limit, b.tokens+limit*float64(el)/float64(period))
		b.last = t
	}
}

// sweep drops buckets that have refilled completely (they hold no state a
// new bucket would not have), at most once per period.
func (r *rateLimiter) sweep(t time.Time) {
	if t.Sub(r.lastSweep) < r.period {
		return
	}
	r.lastSweep = t
	for ip, b := range r.buckets {
		if t.Sub(b.last) >= r.period {
			delete(r.buckets, ip)
		}
	}
}

// evictOne deletes an arbitrary entry (map order is random) to make room.
func evictOne[K comparable, V any](m map[K]V) {
	for k := range m {
		delete(m, k)
		return
	}
}
