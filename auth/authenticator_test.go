package auth_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/inkan-relay/inkan/auth"
)

func TestAuthenticator(t *testing.T) {
	a, slept := testAuthenticator(t)
	ip := netip.MustParseAddr("192.0.2.1")
	ctx := context.Background()
	if err := a.Authenticate(ctx, ip, "alice", "secret"); err != nil {
		t.Fatal(err)
	}
	if err := a.Authenticate(ctx, ip, "nobody", "secret"); err != auth.ErrAuthFailed {
		t.Fatalf("unknown user: %v", err)
	}
	if len(*slept) != 1 {
		t.Fatalf("no delay after a failure: %v", *slept)
	}
	// Without a limiter there is neither delay nor lockout.
	a.Limiter = nil
	for range 10 {
		if err := a.Authenticate(ctx, ip, "alice", "bad"); err != auth.ErrAuthFailed {
			t.Fatal(err)
		}
	}
	if err := a.Authenticate(ctx, ip, "alice", "secret"); err != nil {
		t.Fatal(err)
	}
}

func TestAuthenticatorSleepStopsOnCancel(t *testing.T) {
	a, _ := testAuthenticator(t)
	a.Sleep = nil
	a.Limiter.BaseDelay, a.Limiter.MaxDelay = time.Hour, time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// Returns although the delay is an hour, because ctx is done.
	if err := a.Authenticate(ctx, netip.MustParseAddr("192.0.2.1"), "alice", "bad"); err != auth.ErrAuthFailed {
		t.Fatal(err)
	}
}
