package auth_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"strings"
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

// A user name that is no user is often a password typed in the wrong field:
// it never reaches the log as it is.
func TestAuthenticatorLogsSafeNames(t *testing.T) {
	a, _ := testAuthenticator(t)
	var buf bytes.Buffer
	a.Log = slog.New(slog.NewTextHandler(&buf, nil))
	ip := netip.MustParseAddr("192.0.2.7")
	ctx := context.Background()
	secret := "Tr0ub4dor&3"
	for range 4 {
		a.Authenticate(ctx, ip, secret, "x")
	}
	a.Authenticate(ctx, ip, "alice", "bad")
	a.Authenticate(ctx, netip.MustParseAddr("192.0.2.8"), "alice", "secret")
	out := buf.String()
	if strings.Contains(out, secret) {
		t.Fatalf("log carries the raw name:\n%s", out)
	}
	for _, want := range []string{
		`msg="auth failed" user="unknown user (11 chars, hmac `,
		`msg="auth lockout" user="unknown user (11 chars, hmac `, `client=192.0.2.7`, `hint="auth.max_failures counts`,
		`msg="auth refused" reason="locked out after too many failures" user="unknown user (11 chars`,
		`msg="auth failed" user=alice`,
		`msg="auth ok" user=alice`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	// The same unknown name gives the same form (so repeats can be seen),
	// another name another one.
	u := a.Users
	if u.LogName(secret) != u.LogName(secret) || u.LogName(secret) == u.LogName(secret+"x") {
		t.Error("LogName is not a stable, distinct fingerprint")
	}
	if got := u.LogName("alice"); got != "alice" {
		t.Errorf("LogName(alice) = %q", got)
	}
	if got := (*auth.Users)(nil).LogName("a\r\nb"); !strings.HasPrefix(got, "unknown user (4 chars, hmac ") {
		t.Errorf("LogName without users = %q", got)
	}
}
