package auth

import (
	"sync"
	"testing"
	"time"
)

// FakeClock is a settable clock for the limiters and the verify cache.
type FakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// UseFakeClock replaces the package clock until the test ends.
func UseFakeClock(t *testing.T) *FakeClock {
	t.Helper()
	c := &FakeClock{t: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
	old := now
	now = c.Now
	t.Cleanup(func() { now = old })
	return c
}

// CacheLen returns the number of cached successful verifications.
func (u *Users) CacheLen() int { return u.db.Load().cache.len() }

// RateEntries returns the number of per-IP buckets of n.
func (n *Network) RateEntries() int {
	n.rate.mu.Lock()
	defer n.rate.mu.Unlock()
	return len(n.rate.buckets)
}

const MaxRateEntries = maxRateEntries
const CacheTTL = cacheTTL
