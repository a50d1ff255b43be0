package deliver

import (
	"context"
	"encoding/json"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// TLSPolicyCount reads inkan_delivery_tls_policy_total{policy,result}.
func TLSPolicyCount(policy, result string) float64 {
	var m dto.Metric
	tlsPolicyTotal.WithLabelValues(policy, result).Write(&m)
	return m.GetCounter().GetValue()
}

// SetSTSPort makes MTA-STS policy fetches dial port instead of 443 (tests
// only; not safe with parallel tests).
func SetSTSPort(port string) (restore func()) {
	old := stsHTTPSPort
	stsHTTPSPort = port
	return func() { stsHTTPSPort = old }
}

// SetNow replaces the package clock (tests only; not with parallel tests).
func SetNow(f func() time.Time) (restore func()) {
	old := now
	now = f
	return func() { now = old }
}

// ReportJSON is the report TLSReports would send today for domain, or nil.
func (r *TLSReports) ReportJSON(domain string) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur.Domains[domain] == nil {
		return nil
	}
	start, _ := time.Parse(time.DateOnly, r.cur.Day)
	rep, _ := r.build(r.cur, domain, start, start.Add(24*time.Hour))
	b, _ := json.Marshal(rep)
	return b
}

// RefreshPolicies runs one MTA-STS cache refresh (tests only).
func (t *Transport) RefreshPolicies(ctx context.Context) {
	if t.pol.sts != nil {
		t.pol.sts.refresh(ctx)
	}
}
