package auth

import (
	"context"
	"net/netip"
	"time"
)

// Authenticator ties users, the failure limiter and the metrics together:
// one call per AUTH exchange, suitable as the verify callback of
// NewPlainServer and NewLoginServer.
type Authenticator struct {
	Users   *Users
	Limiter *FailureLimiter // nil: no brute-force protection
	// Sleep waits d or until ctx is done; nil uses a timer. Tests replace it.
	Sleep func(ctx context.Context, d time.Duration)
}

// Authenticate checks user's password for a client at ip. It returns nil,
// ErrTooManyFailures while ip is locked out, or ErrAuthFailed after waiting
// the limiter's growing delay. Every outcome is counted in inkan_auth_total.
func (a *Authenticator) Authenticate(ctx context.Context, ip netip.Addr, user, pass string) error {
	if a.Limiter != nil {
		if err := a.Limiter.Check(ip); err != nil {
			ObserveAuth(ResultLocked)
			return err
		}
	}
	if a.Users.Verify(user, pass) {
		if a.Limiter != nil {
			a.Limiter.Success(ip)
		}
		ObserveAuth(ResultSuccess)
		return nil
	}
	ObserveAuth(ResultFailure)
	if a.Limiter != nil {
		if a.Limiter.Failure(ip) {
			ObserveLockout()
		}
		a.sleep(ctx, a.Limiter.Delay(ip))
	}
	return ErrAuthFailed
}

func (a *Authenticator) sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	if a.Sleep != nil {
		a.Sleep(ctx, d)
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
