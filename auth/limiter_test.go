package auth_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/inkan-relay/inkan/auth"
)

func TestLimiterLockout(t *testing.T) {
	clock := auth.UseFakeClock(t)
	l := auth.NewFailureLimiter(3, 10*time.Minute)
	bad, other := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	for i := range 3 {
		if err := l.Check(bad); err != nil {
			t.Fatalf("locked after %d failures", i)
		}
		locked := l.Failure(bad)
		if locked != (i == 2) {
			t.Fatalf("Failure #%d reported lockout=%v", i+1, locked)
		}
	}
	wantSMTP(t, l.Check(bad), 454, smtp.EnhancedCode{4, 7, 0})
	wantSMTP(t, l.Check(netip.MustParseAddr("::ffff:192.0.2.1")), 454, smtp.EnhancedCode{4, 7, 0})
	if err := l.Check(other); err != nil {
		t.Fatalf("other IP locked: %v", err)
	}
	l.Failure(other)
	if err := l.Check(other); err != nil {
		t.Fatalf("other IP locked after one failure: %v", err)
	}
	clock.Advance(9 * time.Minute)
	if l.Check(bad) == nil {
		t.Fatal("lockout ended early")
	}
	clock.Advance(time.Minute)
	if err := l.Check(bad); err != nil {
		t.Fatalf("still locked after the lockout: %v", err)
	}
	// The count starts again after a lockout.
	l.Failure(bad)
	if err := l.Check(bad); err != nil {
		t.Fatalf("relocked by one failure: %v", err)
	}
}

func TestLimiterForgetsOldFailuresAndSuccess(t *testing.T) {
	clock := auth.UseFakeClock(t)
	l := auth.NewFailureLimiter(3, 10*time.Minute)
	ip := netip.MustParseAddr("192.0.2.1")
	l.Failure(ip)
	l.Failure(ip)
	clock.Advance(11 * time.Minute)
	l.Failure(ip)
	if l.Locked(ip) {
		t.Fatal("old failures counted")
	}
	l.Failure(ip)
	l.Success(ip)
	l.Failure(ip)
	if l.Locked(ip) {
		t.Fatal("Success did not reset the count")
	}
	if l.Delay(ip) != time.Second {
		t.Fatalf("delay after one failure = %v", l.Delay(ip))
	}
}

func TestLimiterDelay(t *testing.T) {
	auth.UseFakeClock(t)
	l := auth.NewFailureLimiter(0, time.Hour) // no lockout: delays only
	ip := netip.MustParseAddr("2001:db8::1")
	want := []time.Duration{0, 1, 2, 4, 8, 8, 8}
	for i, w := range want {
		if i > 0 {
			l.Failure(ip)
		}
		if got := l.Delay(ip); got != w*time.Second {
			t.Errorf("delay after %d failures = %v, want %v", i, got, w*time.Second)
		}
	}
	if l.Locked(ip) {
		t.Error("maxFailures 0 locked a client")
	}
	// Same /64: same client. Another /64: a fresh one.
	if l.Delay(netip.MustParseAddr("2001:db8::ffff")) != 8*time.Second {
		t.Error("address in the same /64 not tracked together")
	}
	if l.Delay(netip.MustParseAddr("2001:db8:0:1::1")) != 0 {
		t.Error("other /64 affected")
	}
	l.BaseDelay, l.MaxDelay = time.Millisecond, 3*time.Millisecond
	if got := l.Delay(ip); got != 3*time.Millisecond {
		t.Errorf("small delays: %v", got)
	}
}

func TestLimiterBoundedMemory(t *testing.T) {
	clock := auth.UseFakeClock(t)
	l := auth.NewFailureLimiter(1, time.Hour)
	l.MaxEntries = 100
	locked := netip.MustParseAddr("198.51.100.1")
	l.Failure(locked)
	for i := range 1000 {
		l.Failure(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}))
	}
	if n := l.Len(); n > 100 {
		t.Errorf("%d entries, want at most 100", n)
	}
	clock.Advance(2 * time.Hour)
	l.Failure(netip.MustParseAddr("192.0.2.9")) // triggers a sweep
	if n := l.Len(); n != 1 {
		t.Errorf("%d entries after expiry, want 1", n)
	}
}
