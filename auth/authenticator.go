package auth

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"time"
)

// Authenticator is the one AUTH check inkan has: the SMTP session calls it
// as the verify callback of NewPlainServer and NewLoginServer, and the
// tests test it. It ties the users, the failure limiter, the hashing bound,
// the logs and the metrics together.
type Authenticator struct {
	Users   *Users
	Limiter *FailureLimiter // nil: no lockout and no delays
	Hashes  *HashGate       // nil: no bound on concurrent hashes
	// Log gets one line per attempt (nil: none). User names that are not
	// users are logged in a safe form (Users.LogName).
	Log *slog.Logger
	// Sleep waits d or until ctx is done; nil uses a timer. Tests replace it.
	Sleep func(ctx context.Context, d time.Duration)
}

// Authenticate checks user's password for a client at ip. It returns nil;
// ErrTooManyFailures (454 4.7.0) while user at ip, or ip, is locked out;
// ErrAuthBusy (454 4.7.0) when too many checks run at once or ctx ends
// first; or ErrAuthFailed (535 5.7.8) after the limiter's growing delay,
// which ends early when ctx does (connection closed, server shutting down).
//
// The failure is reserved before the password is checked, so parallel
// attempts cannot all slip under the limit. Every outcome is counted in
// inkan_auth_total.
func (a *Authenticator) Authenticate(ctx context.Context, ip netip.Addr, user, pass string) error {
	var res *Reservation
	if a.Limiter != nil {
		r, err := a.Limiter.ReserveWait(ctx, ip, user)
		if err != nil && !errors.Is(err, ErrTooManyFailures) {
			ObserveAuth(ResultBusy)
			a.log(slog.LevelWarn, "auth deferred", "reason", "connection closed or server stopping", "user", a.Users.LogName(user))
			return ErrAuthBusy
		}
		if err != nil {
			ObserveAuth(ResultLocked)
			a.log(slog.LevelWarn, "auth refused", "reason", "locked out after too many failures", "user", a.Users.LogName(user))
			return err
		}
		res = r
	}
	ok, err := a.Users.Check(ctx, user, pass, a.Hashes)
	switch {
	case err != nil:
		res.Cancel()
		ObserveAuth(ResultBusy)
		reason := "too many password checks at once (auth.max_concurrent_hashes)"
		if !errors.Is(err, errHashBusy) {
			reason = "connection closed or server stopping"
		}
		a.log(slog.LevelWarn, "auth deferred", "reason", reason, "user", a.Users.LogName(user))
		return ErrAuthBusy
	case ok:
		res.Success()
		ObserveAuth(ResultSuccess)
		a.log(slog.LevelInfo, "auth ok", "user", user)
		return nil
	}
	lockedOut := res.Failure()
	ObserveAuth(ResultFailure)
	safe := a.Users.LogName(user)
	a.log(slog.LevelWarn, "auth failed", "user", safe)
	if lockedOut {
		ObserveLockout()
		a.log(slog.LevelWarn, "auth lockout", "user", safe, "client", ClientString(ip), "for", a.Limiter.LockoutDuration().String(),
			"hint", "auth.max_failures counts failures per client and user name, auth.max_failures_per_ip per client (IPv6: per /64); 0 turns either off")
	}
	if a.Limiter != nil {
		a.sleep(ctx, a.Limiter.Delay(ip, user))
	}
	return ErrAuthFailed
}

func (a *Authenticator) log(level slog.Level, msg string, args ...any) {
	if a.Log != nil {
		a.Log.Log(context.Background(), level, msg, args...)
	}
}

func (a *Authenticator) sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	if a.Sleep != nil {
		a.Sleep(ctx, d)
		return
	}
	sleepCtx(ctx, d)
}
