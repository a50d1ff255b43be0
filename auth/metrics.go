package auth

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Results counted by inkan_auth_total.
const (
	ResultSuccess = "success"
	ResultFailure = "failure"
	ResultLocked  = "locked" // attempt refused because the client is locked out
	ResultBusy    = "busy"   // attempt deferred: no password-checking slot came free in time
)

var authTotal = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "inkan_auth_total",
	Help: "SMTP AUTH attempts by result: success, failure, locked (refused during a lockout), or busy (deferred: too many password checks at once).",
}, []string{"result"})

var lockoutsTotal = promauto.NewCounter(prometheus.CounterOpts{
	Name: "inkan_auth_lockouts_total",
	Help: "Clients locked out after too many AUTH failures.",
})

func init() {
	for _, r := range []string{ResultSuccess, ResultFailure, ResultLocked, ResultBusy} {
		authTotal.WithLabelValues(r)
	}
}

// ObserveAuth counts one AUTH attempt in inkan_auth_total. result should be
// ResultSuccess, ResultFailure, ResultLocked or ResultBusy.
func ObserveAuth(result string) { authTotal.WithLabelValues(result).Inc() }

// ObserveLockout counts one lockout in inkan_auth_lockouts_total.
func ObserveLockout() { lockoutsTotal.Inc() }

var quotaExceeded = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "inkan_quota_exceeded_total",
	Help: "MAIL or RCPT refused because a sending quota was reached, by scope (user, network) and quota (messages_per_hour...).",
}, []string{"scope", "quota"})
