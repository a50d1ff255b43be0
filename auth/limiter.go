package auth

import (
	"net/netip"
	"sync"
	"time"
)

// now is the clock of the limiters and caches; tests replace it.
var now = time.Now

// FailureLimiter slows down and then locks out clients that keep failing
// AUTH. IPv4 clients are tracked per address and IPv6 clients per /64, since
// one host usually owns a whole /64. Memory is bounded by MaxEntries.
//
// Use: Check before starting an exchange; after a bad password call Failure,
// then wait Delay before replying; after a good one call Success.
type FailureLimiter struct {
	// MaxFailures failures in a row (each within Lockout of the previous one)
	// lock the client out for Lockout. 0 disables lockouts.
	MaxFailures int
	Lockout     time.Duration
	// Delay after the n-th failure is BaseDelay·2^(n-1), at most MaxDelay.
	BaseDelay time.Duration
	MaxDelay  time.Duration
	// MaxEntries bounds the number of clients tracked.
	MaxEntries int

	mu        sync.Mutex
	clients   map[netip.Addr]*failState
	lastSweep time.Time
}

type failState struct {
	failures    int
	last        time.Time // last failure
	lockedUntil time.Time
}

// Defaults of NewFailureLimiter.
const (
	DefaultLockout    = 15 * time.Minute
	DefaultBaseDelay  = time.Second
	DefaultMaxDelay   = 8 * time.Second
	DefaultMaxEntries = 1 << 16
)

// NewFailureLimiter returns a limiter that locks a client out for lockout
// (DefaultLockout when <= 0) after maxFailures failures (<= 0: never).
func NewFailureLimiter(maxFailures int, lockout time.Duration) *FailureLimiter {
	if lockout <= 0 {
		lockout = DefaultLockout
	}
	return &FailureLimiter{
		MaxFailures: maxFailures,
		Lockout:     lockout,
		BaseDelay:   DefaultBaseDelay,
		MaxDelay:    DefaultMaxDelay,
		MaxEntries:  DefaultMaxEntries,
		clients:     map[netip.Addr]*failState{},
	}
}

// limiterKey is the unit a client is tracked by.
func limiterKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// Check returns ErrTooManyFailures while ip is locked out, else nil.
func (l *FailureLimiter) Check(ip netip.Addr) error {
	t := now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.state(ip, t); s != nil && t.Before(s.lockedUntil) {
		return ErrTooManyFailures
	}
	return nil
}

// Locked reports whether ip is locked out now.
func (l *FailureLimiter) Locked(ip netip.Addr) bool { return l.Check(ip) != nil }

// Failure records a failed AUTH from ip. It reports whether this failure
// started a lockout.
func (l *FailureLimiter) Failure(ip netip.Addr) (lockedOut bool) {
	t := now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(t)
	k := limiterKey(ip)
	s := l.state(ip, t)
	if s == nil {
		if l.MaxEntries > 0 && len(l.clients) >= l.MaxEntries {
			l.evict()
		}
		s = &failState{}
		l.clients[k] = s
	}
	s.failures++
	s.last = t
	if l.MaxFailures > 0 && s.failures >= l.MaxFailures && !t.Before(s.lockedUntil) {
		s.lockedUntil = t.Add(l.Lockout)
		return true
	}
	return false
}

// Success forgets ip's failures.
func (l *FailureLimiter) Success(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.clients, limiterKey(ip))
}

// Delay is how long to wait before answering ip's latest failed attempt: 0
// without recent failures, then BaseDelay, doubling up to MaxDelay.
func (l *FailureLimiter) Delay(ip netip.Addr) time.Duration {
	t := now()
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.state(ip, t)
	if s == nil || s.failures == 0 || l.BaseDelay <= 0 {
		return 0
	}
	d := l.BaseDelay
	for i := 1; i < s.failures && d < l.MaxDelay; i++ {
		d *= 2
	}
	if l.MaxDelay > 0 && d > l.MaxDelay {
		d = l.MaxDelay
	}
	return d
}

// Len returns the number of clients tracked (for metrics and tests).
func (l *FailureLimiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.clients)
}

// state returns ip's live state, dropping it once it has expired.
func (l *FailureLimiter) state(ip netip.Addr, t time.Time) *failState {
	k := limiterKey(ip)
	s := l.clients[k]
	if s != nil && l.expired(s, t) {
		delete(l.clients, k)
		return nil
	}
	return s
}

// expired: not locked, and the last failure is older than Lockout, so it
// would not count towards a lockout any more.
func (l *FailureLimiter) expired(s *failState, t time.Time) bool {
	return !t.Before(s.lockedUntil) && t.Sub(s.last) >= l.Lockout
}

func (l *FailureLimiter) sweep(t time.Time) {
	if t.Sub(l.lastSweep) < min(l.Lockout, time.Minute) {
		return
	}
	l.lastSweep = t
	for k, s := range l.clients {
		if l.expired(s, t) {
			delete(l.clients, k)
		}
	}
}

// evict makes room, preferring an entry that is not locked out so a flood of
// new addresses cannot unlock an attacker cheaply.
func (l *FailureLimiter) evict() {
	t := now()
	tries := 0
	for k, s := range l.clients {
		if !t.Before(s.lockedUntil) || tries >= 16 {
			delete(l.clients, k)
			return
		}
		tries++
	}
}
