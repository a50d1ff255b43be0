package auth_test

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/inkan-relay/inkan/auth"
)

// fail runs one failed attempt for user at ip; it reports whether the
// attempt was let through (false: refused, locked out).
func fail(l *auth.FailureLimiter, ip netip.Addr, user string) bool {
	r, err := l.Reserve(ip, user)
	if err != nil {
		return false
	}
	r.Failure()
	return true
}

func succeed(t *testing.T, l *auth.FailureLimiter, ip netip.Addr, user string) {
	t.Helper()
	r, err := l.Reserve(ip, user)
	if err != nil {
		t.Fatalf("%s at %s refused: %v", user, ip, err)
	}
	r.Success()
}

func TestLimiterLockout(t *testing.T) {
	clock := auth.UseFakeClock(t)
	l := auth.NewFailureLimiter(3, 10*time.Minute)
	bad, other := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	for i := range 3 {
		r, err := l.Reserve(bad, "alice")
		if err != nil {
			t.Fatalf("locked after %d failures", i)
		}
		if locked := r.Failure(); locked != (i == 2) {
			t.Fatalf("Failure #%d reported lockout=%v", i+1, locked)
		}
	}
	_, err := l.Reserve(bad, "alice")
	wantSMTP(t, err, 454, smtp.EnhancedCode{4, 7, 0})
	_, err = l.Reserve(netip.MustParseAddr("::ffff:192.0.2.1"), "alice")
	wantSMTP(t, err, 454, smtp.EnhancedCode{4, 7, 0})
	if !l.Locked(bad, "alice") || l.Locked(bad, "bob") || l.Locked(other, "alice") {
		t.Fatal("lockout is not per client and user")
	}
	if !fail(l, other, "alice") || !fail(l, bad, "bob") {
		t.Fatal("another client, or another user at the client, refused")
	}
	clock.Advance(9 * time.Minute)
	if !l.Locked(bad, "alice") {
		t.Fatal("lockout ended early")
	}
	clock.Advance(time.Minute)
	if l.Locked(bad, "alice") {
		t.Fatal("still locked after the lockout")
	}
	// The failures leaked away during the lockout: one more does not relock.
	fail(l, bad, "alice")
	if l.Locked(bad, "alice") {
		t.Fatal("relocked by one failure")
	}
}

// An attacker's own successful logins do not wipe its failures for others.
func TestLimiterSuccessForgetsOnlyThatUser(t *testing.T) {
	auth.UseFakeClock(t)
	l := auth.NewFailureLimiter(3, 10*time.Minute)
	ip := netip.MustParseAddr("192.0.2.1")
	let := 0
	for range 12 {
		if fail(l, ip, "alice") {
			let++
		}
		succeed(t, l, ip, "mallory")
	}
	if let != 3 {
		t.Fatalf("%d guesses for alice let through, want 3", let)
	}
	// alice's own success does forget hers (after the lockout).
	l2 := auth.NewFailureLimiter(3, 10*time.Minute)
	fail(l2, ip, "alice")
	fail(l2, ip, "alice")
	succeed(t, l2, ip, "alice")
	fail(l2, ip, "alice")
	fail(l2, ip, "alice")
	if l2.Locked(ip, "alice") {
		t.Fatal("alice's success did not reset her count")
	}
}

// Guessing many names from one client is bounded by MaxFailuresPerIP,
// which no success resets.
func TestLimiterPerClient(t *testing.T) {
	auth.UseFakeClock(t)
	l := auth.NewFailureLimiter(3, 10*time.Minute)
	l.MaxFailuresPerIP = 5
	ip := netip.MustParseAddr("2001:db8::1")
	let := 0
	for i := range 20 {
		if fail(l, ip, "user"+string(rune('a'+i))) {
			let++
		}
		// mallory, in the same /64, logs in while the /64 is not locked.
		if r, err := l.Reserve(netip.MustParseAddr("2001:db8::2"), "mallory"); err == nil {
			r.Success()
		}
	}
	if let > 5 {
		t.Fatalf("%d guesses over many names let through, want 5", let)
	}
	if !l.Locked(netip.MustParseAddr("2001:db8::ffff"), "anyone") {
		t.Fatal("the /64 is not locked out")
	}
	if l.Locked(netip.MustParseAddr("2001:db8:0:1::1"), "anyone") {
		t.Fatal("another /64 is locked out")
	}
	l.Unlock(ip)
	if l.Locked(ip, "anyone") {
		t.Fatal("Unlock did not lift the lockout")
	}
}

// A shared address where users mistype now and then never adds up to a
// lockout: failures leak away at MaxFailuresPerIP per Lockout.
func TestLimiterLeaks(t *testing.T) {
	clock := auth.UseFakeClock(t)
	l := auth.NewFailureLimiter(5, 15*time.Minute)
	l.MaxFailuresPerIP = 20
	ip := netip.MustParseAddr("192.0.2.1")
	for i := range 500 {
		if !fail(l, ip, "user"+string(rune('a'+i%26))) {
			t.Fatalf("office NAT locked out after %d typos, one a minute", i)
		}
		clock.Advance(time.Minute)
	}
}

// Parallel attempts reserve their failure first: no more than the limit
// are ever let through, whatever the interleaving.
func TestLimiterReservesBeforeChecking(t *testing.T) {
	auth.UseFakeClock(t)
	l := auth.NewFailureLimiter(3, time.Hour)
	ip := netip.MustParseAddr("192.0.2.1")
	var rs []*auth.Reservation
	for i := range 20 {
		r, err := l.Reserve(ip, "alice")
		if err != nil {
			if i < 3 {
				t.Fatalf("attempt %d refused", i)
			}
			continue
		}
		rs = append(rs, r)
	}
	if len(rs) != 3 {
		t.Fatalf("%d attempts in flight, want 3", len(rs))
	}
	// One of them had the right password: the others' failures still lock.
	rs[0].Success()
	rs[1].Failure()
	rs[2].Failure()
	if l.Locked(ip, "alice") {
		t.Fatal("locked after 2 failures")
	}
	// A cancelled attempt (server busy) counts nothing.
	r, err := l.Reserve(ip, "alice")
	if err != nil {
		t.Fatal(err)
	}
	r.Cancel()
	r.Failure() // settled already: no effect
	if l.Locked(ip, "alice") {
		t.Fatal("a cancelled attempt counted")
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	let := 0
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if fail(l, ip, "bob") {
				mu.Lock()
				let++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if let != 3 {
		t.Fatalf("%d parallel guesses for bob let through, want 3", let)
	}
}

func TestLimiterDelay(t *testing.T) {
	auth.UseFakeClock(t)
	l := auth.NewFailureLimiter(0, time.Hour) // no lockout: delays only
	l.MaxFailuresPerIP = 0
	ip := netip.MustParseAddr("2001:db8::1")
	want := []time.Duration{0, 1, 2, 4, 8, 8, 8}
	for i, w := range want {
		if i > 0 {
			fail(l, ip, "alice")
		}
		if got := l.Delay(ip, "alice"); got != w*time.Second {
			t.Errorf("delay after %d failures = %v, want %v", i, got, w*time.Second)
		}
	}
	if l.Locked(ip, "alice") {
		t.Error("maxFailures 0 locked a client")
	}
	// Same /64: same client. Another /64: a fresh one.
	if l.Delay(netip.MustParseAddr("2001:db8::ffff"), "alice") != 8*time.Second {
		t.Error("address in the same /64 not tracked together")
	}
	if l.Delay(netip.MustParseAddr("2001:db8:0:1::1"), "alice") != 0 {
		t.Error("other /64 affected")
	}
	l.BaseDelay, l.MaxDelay = time.Millisecond, 3*time.Millisecond
	if got := l.Delay(ip, "alice"); got != 3*time.Millisecond {
		t.Errorf("small delays: %v", got)
	}
}

// The client's counter slows a sprayer down too, scaled to MaxFailures.
func TestLimiterDelayPerClient(t *testing.T) {
	auth.UseFakeClock(t)
	l := auth.NewFailureLimiter(5, time.Hour)
	l.MaxFailuresPerIP = 20
	ip := netip.MustParseAddr("192.0.2.1")
	for i := range 12 {
		fail(l, ip, "user"+string(rune('a'+i)))
	}
	// 12 of 20 for the client is 3 of 5: the fourth failure's delay.
	if got := l.Delay(ip, "newname"); got != 4*time.Second {
		t.Errorf("delay for a new name after 12 failures = %v, want 4s", got)
	}
}

func TestLimiterBoundedMemory(t *testing.T) {
	clock := auth.UseFakeClock(t)
	l := auth.NewFailureLimiter(1, time.Hour)
	l.MaxEntries = 100
	locked := netip.MustParseAddr("198.51.100.1")
	fail(l, locked, "alice")
	for i := range 1000 {
		fail(l, netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), "alice")
	}
	if n := l.Len(); n > 100 {
		t.Errorf("%d entries, want at most 100", n)
	}
	clock.Advance(2 * time.Hour)
	fail(l, netip.MustParseAddr("192.0.2.9"), "alice") // triggers a sweep
	if n := l.Len(); n != 2 {
		t.Errorf("%d entries after expiry, want 2 (the new client and its user)", n)
	}
}

// An attempt refused only because others are in flight waits for them:
// a success lets it through, failures that fill the budget refuse it, and
// its context bounds the wait.
func TestLimiterReserveWait(t *testing.T) {
	auth.UseFakeClock(t)
	l := auth.NewFailureLimiter(2, time.Hour)
	ip := netip.MustParseAddr("192.0.2.1")
	r1, _ := l.Reserve(ip, "alice")
	r2, _ := l.Reserve(ip, "alice")
	got := make(chan error, 1)
	go func() {
		r, err := l.ReserveWait(context.Background(), ip, "alice")
		if r != nil {
			r.Success()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("third attempt did not wait: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	r1.Success()
	if err := <-got; err != nil {
		t.Fatalf("after a success: %v, want a reservation", err)
	}
	r3, err := l.Reserve(ip, "alice") // the budget: r2 and r3 in flight
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		_, err := l.ReserveWait(context.Background(), ip, "alice")
		got <- err
	}()
	time.Sleep(20 * time.Millisecond) // let it start waiting (either way the outcome is the same)
	r2.Failure()
	r3.Failure()
	if err := <-got; !errors.Is(err, auth.ErrTooManyFailures) {
		t.Fatalf("after the budget failed: %v, want ErrTooManyFailures", err)
	}
	l2 := auth.NewFailureLimiter(1, time.Hour)
	r4, _ := l2.Reserve(ip, "bob")
	defer r4.Cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := l2.ReserveWait(ctx, ip, "bob"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait past the context: %v", err)
	}
}
