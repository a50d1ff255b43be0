package deliver

import (
	"strings"
	"time"
)

// IdleConns counts the pooled connections (tests only).
func (t *Transport) IdleConns() int { return t.pool.size() }

// SetClock replaces the clock of pacing, failover back-off and OAuth2
// token expiry (tests only).
func (t *Transport) SetClock(now func() time.Time) {
	t.clock = now
	for _, r := range t.routes.relays() {
		if r.oauth != nil {
			r.oauth.SetClock(now)
		}
	}
}

// ForgetPacer drops the process-wide state of the pacing setting name, so a
// test run again in the same process (go test -count) starts afresh.
func ForgetPacer(name string) {
	pacers.mu.Lock()
	defer pacers.mu.Unlock()
	for k := range pacers.m {
		if strings.HasPrefix(k, name+"|") {
			delete(pacers.m, k)
		}
	}
}
