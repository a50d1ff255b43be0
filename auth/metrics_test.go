package auth_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/inkan-relay/inkan/auth"
)

// authCount reads inkan_auth_total{result=result} from the default registry.
func authCount(t *testing.T, result string) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "inkan_auth_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("inkan_auth_total{result=%q} not registered", result)
	return 0
}

func TestObserveAuth(t *testing.T) {
	for _, r := range []string{auth.ResultSuccess, auth.ResultFailure, auth.ResultLocked, auth.ResultBusy} {
		before := authCount(t, r)
		auth.ObserveAuth(r)
		if got := authCount(t, r); got != before+1 {
			t.Errorf("%s: %v -> %v", r, before, got)
		}
	}
}
