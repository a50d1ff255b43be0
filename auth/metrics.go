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
)

var authTotal = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "inkan_auth_total",
	Help: "SMTP AUTH attempts by result: success, failure, or locked (refused during a lockout).",
}, []string{"result"})

var lockoutsTotal = promauto.NewCounter(prometheus.CounterOpts{
	Name: "inkan_auth_lockouts_total",
	Help: "Clients locked out after too many AUTH failures.",
})

func init() {
	for _, r := range []string{ResultSuccess, ResultFailure, ResultLocked} {
		authTotal.WithLabelValues(r)
	}
}

// ObserveAuth counts one AUTH attempt in inkan_auth_total. result should be
// ResultSuccess, ResultFailure or ResultLocked.
func ObserveAuth(result string) { authTotal.WithLabelValues(result).Inc() }

// ObserveLockout counts one lockout in inkan_auth_lockouts_total.
func ObserveLockout() { lockoutsTotal.Inc() }
