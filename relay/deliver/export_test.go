package deliver

import "time"

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
