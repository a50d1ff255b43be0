package auth

import (
	"context"
	"crypto/sha256"
	"math"
	"net/netip"
	"sync"
	"time"
)

// now is the clock of the limiters and caches; tests replace it.
var now = time.Now

// FailureLimiter slows down and then locks out password guessing. Failed
// AUTH attempts are counted twice:
//
//   - per client and user name, up to MaxFailures: only that user's own
//     success at that client forgets them, so an attacker who logs in to an
//     account of its own between guesses gains nothing;
//   - per client, all user names together, up to MaxFailuresPerIP: no
//     success forgets them, so guessing many names (password spraying) is
//     bounded too.
//
// A client is an IPv4 address or an IPv6 /64, since one host usually owns a
// whole /64. Failures leak away: each counter forgets its limit's worth of
// failures per Lockout, so a shared address (an office NAT) where users
// mistype now and then never adds up to a lockout, while a burst does.
//
// A failure is reserved before the password is checked (Reserve), so
// parallel attempts cannot all pass a check that none of their failures has
// reached yet: at most the limit's number of attempts are ever in flight or
// failed. Memory is bounded by MaxEntries.
type FailureLimiter struct {
	// MaxFailures failures for one user name from one client lock that pair
	// out for Lockout. 0 disables this lockout.
	MaxFailures int
	// MaxFailuresPerIP failures from one client, whatever the user names,
	// lock the client out for Lockout. 0 disables this lockout.
	MaxFailuresPerIP int
	Lockout          time.Duration
	// Delay after the n-th failure is BaseDelay·2^(n-1), at most MaxDelay.
	BaseDelay time.Duration
	MaxDelay  time.Duration
	// MaxEntries bounds the number of counters kept.
	MaxEntries int

	mu        sync.Mutex
	entries   map[failKey]*failState
	lastSweep time.Time
	settled   chan struct{} // closed (and replaced) when a reservation settles
}

// failKey names one counter: a client, and a user name or none (the
// client's counter for all names).
type failKey struct {
	client  netip.Addr
	user    [16]byte // sha256 prefix of the name: the name itself may be long
	perUser bool
}

type failState struct {
	level       float64   // failures not yet forgotten, reservations included
	pending     int       // reservations not settled yet
	last        time.Time // when level was last drained
	lockedUntil time.Time
}

// Defaults of NewFailureLimiter.
const (
	DefaultLockout          = 15 * time.Minute
	DefaultMaxFailuresPerIP = 20
	DefaultBaseDelay        = time.Second
	DefaultMaxDelay         = 8 * time.Second
	DefaultMaxEntries       = 1 << 16
)

// NewFailureLimiter returns a limiter that locks a user name at a client out
// for lockout (DefaultLockout when <= 0) after maxFailures failures (<= 0:
// never), and a client after DefaultMaxFailuresPerIP failures.
func NewFailureLimiter(maxFailures int, lockout time.Duration) *FailureLimiter {
	if lockout <= 0 {
		lockout = DefaultLockout
	}
	return &FailureLimiter{
		MaxFailures:      maxFailures,
		MaxFailuresPerIP: DefaultMaxFailuresPerIP,
		Lockout:          lockout,
		BaseDelay:        DefaultBaseDelay,
		MaxDelay:         DefaultMaxDelay,
		MaxEntries:       DefaultMaxEntries,
		entries:          map[failKey]*failState{},
	}
}

// SetLimits changes the limits (a reload); counts are kept.
func (l *FailureLimiter) SetLimits(maxFailures, maxFailuresPerIP int, lockout time.Duration) {
	if lockout <= 0 {
		lockout = DefaultLockout
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.MaxFailures, l.MaxFailuresPerIP, l.Lockout = maxFailures, maxFailuresPerIP, lockout
}

// ClientKey is the unit a client is counted by: its IPv4 address, or the
// /64 of its IPv6 address.
func ClientKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// ClientString is ClientKey for logs: "192.0.2.1" or "2001:db8::/64".
func ClientString(ip netip.Addr) string {
	k := ClientKey(ip)
	if k.Is6() {
		return netip.PrefixFrom(k, 64).String()
	}
	return k.String()
}

func keysOf(ip netip.Addr, user string) (pair, client failKey) {
	c := ClientKey(ip)
	sum := sha256.Sum256([]byte(user))
	pair = failKey{client: c, perUser: true}
	copy(pair.user[:], sum[:])
	return pair, failKey{client: c}
}

// Reservation is one AUTH attempt counted as a failure in advance. Settle it
// with exactly one of Failure, Success or Cancel; later calls do nothing.
type Reservation struct {
	l            *FailureLimiter
	pair, client failKey
	done         bool
}

// Reserve counts one failure for user at ip before the password is checked.
// It returns ErrTooManyFailures, and no reservation, while the user at ip
// or ip as a whole is locked out, or has as many attempts failed and in
// flight as its limit allows.
func (l *FailureLimiter) Reserve(ip netip.Addr, user string) (*Reservation, error) {
	r, _, err := l.tryReserve(ip, user)
	return r, err
}

// ReserveWait is Reserve, except that an attempt refused only because
// others are still in flight waits for them to settle (until ctx ends): a
// client opening many sessions at once with the right password (a Postfix
// smarthost at its default concurrency) must not be refused as if it had
// failed, and a guesser still gets no more than the limit checked, since
// each settled failure counts. It returns ctx's error when ctx ends first.
func (l *FailureLimiter) ReserveWait(ctx context.Context, ip netip.Addr, user string) (*Reservation, error) {
	for {
		r, wait, err := l.tryReserve(ip, user)
		if wait == nil {
			return r, err
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// tryReserve is Reserve; when the refusal is only due to attempts in flight
// it also returns a channel closed when one of them settles.
func (l *FailureLimiter) tryReserve(ip netip.Addr, user string) (*Reservation, <-chan struct{}, error) {
	t := now()
	pair, client := keysOf(ip, user)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(t)
	ps, cs := l.state(pair, t), l.state(client, t)
	if l.full(ps, l.MaxFailures, t) || l.full(cs, l.MaxFailuresPerIP, t) {
		var wait <-chan struct{}
		if !l.locked(ps, l.MaxFailures, t) && !l.locked(cs, l.MaxFailuresPerIP, t) {
			if l.settled == nil {
				l.settled = make(chan struct{})
			}
			wait = l.settled
		}
		return nil, wait, ErrTooManyFailures
	}
	for _, k := range []failKey{pair, client} {
		s := l.state(k, t)
		if s == nil {
			s = l.add(k, t)
		}
		s.level++
		s.pending++
	}
	return &Reservation{l: l, pair: pair, client: client}, nil, nil
}

// locked reports whether s refuses attempts on settled failures alone (a
// lockout, or failures not in flight that fill its budget).
func (l *FailureLimiter) locked(s *failState, max int, t time.Time) bool {
	return s != nil && max > 0 && (t.Before(s.lockedUntil) || over(s.level-float64(s.pending), max))
}

// wake tells attempts waiting in ReserveWait that a reservation settled.
func (l *FailureLimiter) wake() {
	if l.settled != nil {
		close(l.settled)
		l.settled = nil
	}
}

// full reports whether s may not take another attempt.
func (l *FailureLimiter) full(s *failState, max int, t time.Time) bool {
	return s != nil && max > 0 && (t.Before(s.lockedUntil) || over(s.level, max))
}

// over reports whether level leaves no room for one more whole failure under
// max. Levels leak continuously, so "max failures in a burst" is a level
// above max-1, not one of exactly max.
func over(level float64, max int) bool { return level > float64(max-1)+1e-9 }

// Failure keeps the reserved failure. It reports whether this failure
// locked the user at the client, or the client, out.
func (r *Reservation) Failure() (lockedOut bool) {
	if r == nil {
		return false
	}
	l := r.l
	t := now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if r.done {
		return false
	}
	r.done = true
	defer l.wake()
	for _, k := range []failKey{r.pair, r.client} {
		s := l.settle(k, t)
		max := l.MaxFailures
		if !k.perUser {
			max = l.MaxFailuresPerIP
		}
		// Only settled failures lock: attempts still in flight may succeed.
		if max > 0 && over(s.level-float64(s.pending), max) && !t.Before(s.lockedUntil) {
			s.lockedUntil = t.Add(l.Lockout)
			lockedOut = true
		}
	}
	return lockedOut
}

// Success returns the reservation and forgets this user's failures at this
// client. The client's failures under other names stay.
func (r *Reservation) Success() {
	r.finish(func(k failKey, s *failState) {
		if k.perUser {
			s.level = float64(s.pending) // what other attempts still hold
			s.lockedUntil = time.Time{}
		} else {
			s.level = max(0, s.level-1)
		}
	})
}

// Cancel returns the reservation without counting anything: the password
// was never checked (the server was busy, or the client went away).
func (r *Reservation) Cancel() {
	r.finish(func(_ failKey, s *failState) { s.level = max(0, s.level-1) })
}

func (r *Reservation) finish(f func(failKey, *failState)) {
	if r == nil {
		return
	}
	l := r.l
	t := now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if r.done {
		return
	}
	r.done = true
	defer l.wake()
	for _, k := range []failKey{r.pair, r.client} {
		f(k, l.settle(k, t))
	}
}

// settle ends one reservation of k, recreating the counter if it was evicted.
func (l *FailureLimiter) settle(k failKey, t time.Time) *failState {
	s := l.entries[k]
	if s == nil {
		s = l.add(k, t)
		s.level, s.pending = 1, 1
	}
	l.drain(k, s, t)
	s.pending = max(0, s.pending-1)
	return s
}

// Locked reports whether user at ip is locked out now, by either counter.
func (l *FailureLimiter) Locked(ip netip.Addr, user string) bool {
	t := now()
	pair, client := keysOf(ip, user)
	l.mu.Lock()
	defer l.mu.Unlock()
	locked := func(k failKey) bool { s := l.state(k, t); return s != nil && t.Before(s.lockedUntil) }
	return locked(pair) || locked(client)
}

// Unlock forgets every failure counted for the client of ip (an operator's
// decision, or a test's).
func (l *FailureLimiter) Unlock(ip netip.Addr) {
	c := ClientKey(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	for k := range l.entries {
		if k.client == c {
			delete(l.entries, k)
		}
	}
}

// Delay is how long to wait before answering user's latest failed attempt at
// ip: 0 without recent failures, then BaseDelay, doubling up to MaxDelay, as
// the fuller of the two counters grows (the client's counter scaled to
// MaxFailures, so a shared address is not slowed down by one user's typo).
func (l *FailureLimiter) Delay(ip netip.Addr, user string) time.Duration {
	t := now()
	pair, client := keysOf(ip, user)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.BaseDelay <= 0 {
		return 0
	}
	var n float64
	if s := l.state(pair, t); s != nil {
		n = s.level
	}
	if s := l.state(client, t); s != nil && l.MaxFailures > 0 && l.MaxFailuresPerIP > 0 {
		n = max(n, s.level*float64(l.MaxFailures)/float64(l.MaxFailuresPerIP))
	}
	failures := int(math.Ceil(n - 1e-9))
	if failures <= 0 {
		return 0
	}
	d := l.BaseDelay
	for i := 1; i < failures && d < l.MaxDelay; i++ {
		d *= 2
	}
	if l.MaxDelay > 0 && d > l.MaxDelay {
		d = l.MaxDelay
	}
	return d
}

// LockoutDuration is how long a lockout lasts now.
func (l *FailureLimiter) LockoutDuration() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.Lockout
}

// Len returns the number of counters kept (for metrics and tests).
func (l *FailureLimiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.entries)
}

func (l *FailureLimiter) add(k failKey, t time.Time) *failState {
	if l.entries == nil {
		l.entries = map[failKey]*failState{}
	}
	if l.MaxEntries > 0 && len(l.entries) >= l.MaxEntries {
		l.evict(t)
	}
	s := &failState{last: t}
	l.entries[k] = s
	return s
}

// drainRate is how many failures k's counter forgets per second: its
// limit's worth per Lockout (the default limits when lockouts are off, so
// the delays still fade).
func (l *FailureLimiter) drainRate(k failKey) float64 {
	max := l.MaxFailures
	if !k.perUser {
		max = l.MaxFailuresPerIP
	}
	if max <= 0 {
		max = 5
		if !k.perUser {
			max = DefaultMaxFailuresPerIP
		}
	}
	return float64(max) / l.Lockout.Seconds()
}

func (l *FailureLimiter) drain(k failKey, s *failState, t time.Time) {
	if el := t.Sub(s.last); el > 0 {
		s.level = max(float64(s.pending), s.level-el.Seconds()*l.drainRate(k))
		s.last = t
	}
}

// state returns k's live counter, drained to t, dropping it once it holds
// nothing a new counter would not.
func (l *FailureLimiter) state(k failKey, t time.Time) *failState {
	s := l.entries[k]
	if s == nil {
		return nil
	}
	l.drain(k, s, t)
	if l.idle(s, t) {
		delete(l.entries, k)
		return nil
	}
	return s
}

func (l *FailureLimiter) idle(s *failState, t time.Time) bool {
	return s.pending == 0 && s.level <= 0 && !t.Before(s.lockedUntil)
}

func (l *FailureLimiter) sweep(t time.Time) {
	if t.Sub(l.lastSweep) < min(l.Lockout, time.Minute) {
		return
	}
	l.lastSweep = t
	for k := range l.entries {
		l.state(k, t)
	}
}

// evict makes room, preferring a counter that is neither locked nor in use,
// so a flood of new addresses cannot unlock an attacker cheaply.
func (l *FailureLimiter) evict(t time.Time) {
	tries := 0
	for k, s := range l.entries {
		if (s.pending == 0 && !t.Before(s.lockedUntil)) || tries >= 16 {
			delete(l.entries, k)
			return
		}
		tries++
	}
}
