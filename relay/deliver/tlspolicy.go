package deliver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/queue"
	"github.com/inkan-relay/inkan/relay/deliver/tlsrecords"
	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// Transport security policies: which TLS a next hop gets, and why.
//
// For routes to the recipient domain's MX hosts (and delivery.transport
// routes, for DANE), in this order, per MX host:
//
//  1. delivery.tls / tls_policy "none": plain text, no policy looked up.
//  2. DANE (RFC 7672) when the MX answer (or a transport's host name, from
//     the configuration), the host's addresses and its TLSA records are all
//     DNSSEC-validated: TLS whose certificate a DANE-EE or DANE-TA record
//     matches, else the host is skipped (4.7.5). Published records none of
//     which is usable mean TLS without authentication. A failed TLSA lookup
//     skips the host (RFC 7672 section 2.2). DANE wins over MTA-STS (RFC
//     8461 section 2).
//  3. MTA-STS (RFC 8461) for MX routes, unless the domain is in
//     delivery.mta_sts.skip: in enforce mode only MX hosts the policy lists
//     are tried, with STARTTLS and a certificate valid for the MX name
//     (Options.RootCAs or the system roots), never in plain text; in testing
//     mode delivery goes on as configured and failures are only recorded.
//  4. Otherwise delivery.tls / tls_policy as before (may, encrypt, verify).
//
// tls_policy "dane" or "mta-sts" requires that policy: a host without
// usable DANE records, or a domain without an MTA-STS policy, is deferred
// with a reply saying so. A required MTA-STS policy in testing mode is
// enforced.
//
// Every result carries the policy that applied (queue.Result.TLSPolicy),
// every policy deferral names the policy in its reply, and
// inkan_delivery_tls_policy_total counts recipients by policy and result.

// policies is the transport-security state of a Transport.
type policies struct {
	sts     *stsCache // nil: MTA-STS off
	stsSkip []string  // domain keys
	dane    bool
	rpt     *TLSReports // nil: nothing recorded
}

func newPolicies(opts Options, res *resolver) *policies {
	c := opts.Config
	p := &policies{dane: c.DANE.On(), rpt: opts.Reports}
	if c.MTASTS.On() {
		dir := ""
		if opts.DataDir != "" {
			dir = filepath.Join(opts.DataDir, "mta-sts")
		}
		p.sts = newSTSCache(dir, res, opts.RootCAs, opts.Logger)
		for _, d := range c.MTASTS.Skip {
			p.stsSkip = append(p.stsSkip, mailsyntax.NormDomain(d))
		}
	}
	return p
}

// domainTLS is the policy decision for one delivery.
type domainTLS struct {
	t       *Transport
	d       *queue.Delivery
	route   Route
	domain  string
	require string     // "", config.TLSModeDANE or config.TLSModeMTASTS
	sts     *stsPolicy // in force (mode enforce or testing), or nil
	enforce bool       // sts is enforced
	record  bool       // count sessions for TLS-RPT
	refused *verdict   // the whole domain waits
	hosts   map[string]*hostTLS
	skipped map[string]*hostTLS // by reply text: hosts a policy kept us from trying
}

// hostTLS is the policy for one MX host.
type hostTLS struct {
	dom   *domainTLS
	host  string
	mode  string // the route TLS mode to dial with
	label string // dane, mta-sts, mta-sts-testing, or the tls mode
	desc  string // for queue.Result.TLSPolicy and logs
	dane  *daneInfo
	sts   *stsPolicy
}

// session is one connection attempt under a host policy.
type session struct {
	h    *hostTLS
	addr netip.AddrPort
}

type sessionKey struct{}

// policyCtxKey carries a delivery's *domainTLS from Deliver to deliver.
type policyCtxKey struct{}

func domainFrom(ctx context.Context) *domainTLS {
	dt, _ := ctx.Value(policyCtxKey{}).(*domainTLS)
	return dt
}

func sessionFrom(ctx context.Context) *session {
	s, _ := ctx.Value(sessionKey{}).(*session)
	return s
}

// tlsPolicy decides the domain-level policy of a delivery: the MTA-STS
// policy in force and whether a required policy is missing.
func (t *Transport) tlsPolicy(ctx context.Context, d *queue.Delivery, route Route) *domainTLS {
	dt := &domainTLS{t: t, d: d, route: route, domain: mailsyntax.NormDomain(d.Domain),
		hosts: map[string]*hostTLS{}, skipped: map[string]*hostTLS{}}
	if route.Via != ViaMX && route.Via != ViaTransport {
		return dt
	}
	switch route.TLS {
	case "none":
		return dt
	case config.TLSModeDANE, config.TLSModeMTASTS:
		dt.require = route.TLS
	}
	p := t.pol
	dt.record = p.rpt != nil && route.Via == ViaMX && !p.rpt.isReport(d)
	if route.Via == ViaMX && p.sts != nil && !matchDomain(p.stsSkip, dt.domain) {
		sts, fail := p.sts.policy(ctx, dt.domain)
		if fail != nil && dt.record {
			p.rpt.failure(dt.domain, rptPolicy{Type: "no-policy-found"}, rptFailure{ResultType: fail.kind, Reason: fail.err.Error()})
		}
		if sts != nil && sts.p.Mode != tlsrecords.None {
			dt.sts = sts
			dt.enforce = sts.p.Mode == tlsrecords.Enforce || dt.require == config.TLSModeMTASTS
		}
	}
	if dt.require == config.TLSModeMTASTS && dt.sts == nil {
		why := "publishes no MTA-STS policy"
		switch {
		case route.Via != ViaMX:
			why = "is routed by delivery.transport, where MTA-STS does not apply"
		case p.sts == nil:
			why = "has MTA-STS turned off (delivery.mta_sts)"
		case matchDomain(p.stsSkip, dt.domain):
			why = "is in delivery.mta_sts.skip"
		}
		dt.refused = temporary("4.7.5", "%s requires MTA-STS for %s, which %s; the mail waits until it does (or change the setting)",
			policyKey(t.routes, dt.domain), dt.domain, why)
	}
	return dt
}

// policyKey names the setting that chose a domain's TLS mode.
func policyKey(rt *routes, domain string) string {
	for _, k := range domainKeys(domain) {
		if _, ok := rt.policy[k]; ok {
			return "delivery.tls_policy." + k
		}
	}
	return "delivery.tls"
}

// host decides the policy for one MX host; a verdict means it is not tried.
func (dt *domainTLS) host(ctx context.Context, name string) (*hostTLS, *verdict) {
	if dt == nil || dt.refused != nil || dt.route.Via != ViaMX && dt.route.Via != ViaTransport {
		return nil, nil
	}
	h, v := dt.decide(ctx, name)
	if v != nil {
		dt.skipped[v.msg] = h
	}
	return h, v
}

func (dt *domainTLS) decide(ctx context.Context, name string) (*hostTLS, *verdict) {
	t := dt.t
	h := &hostTLS{dom: dt, host: name, mode: dt.route.TLS, label: dt.route.TLS}
	h.desc = policyKey(t.routes, dt.domain) + " " + dt.route.TLS
	dt.hosts[name] = h
	if dt.route.TLS == "none" {
		return h, nil
	}
	if t.pol.dane && dt.signedMX(ctx) {
		info, err := t.res.tlsa(ctx, name, dt.route.Port)
		if err != nil {
			h.label, h.desc = "dane", "DANE"
			dt.fail(h, netip.AddrPort{}, "dnssec-invalid", err.Error())
			return h, temporary("4.7.5", "DANE: %v; not delivering to %s until its TLSA records can be read (RFC 7672 section 2.2)", err, name)
		}
		if info != nil {
			h.dane, h.label = info, "dane"
			if len(info.usable) > 0 {
				h.mode, h.desc = config.TLSModeDANE, "DANE ("+info.describe()+")"
			} else {
				h.mode, h.desc = "encrypt", "DANE ("+info.describe()+": TLS without authentication)"
			}
			return h, nil
		}
	}
	if dt.require == config.TLSModeDANE {
		return h, temporary("4.7.5", "%s requires DANE for %s, but MX host %s has no DNSSEC-signed TLSA records at _%d._tcp.%s (or the resolver does not validate: see delivery.dane)",
			policyKey(t.routes, dt.domain), dt.domain, name, dt.route.Port, name)
	}
	if s := dt.sts; s != nil {
		h.sts = s
		if dt.enforce {
			h.label, h.desc, h.mode = "mta-sts", s.describe(), "verify"
		} else {
			h.label, h.desc = "mta-sts-testing", s.describe()+" over "+h.desc
		}
		if !s.p.Matches(name) {
			dt.fail(h, netip.AddrPort{}, "validation-failure", "MX host "+name+" is not in the policy")
			if dt.enforce {
				return h, temporary("4.7.5", "%s does not list MX host %s (it allows %s); not delivering there",
					s.describe(), name, strings.Join(s.p.MX, ", "))
			}
		}
	}
	return h, nil
}

// signedMX reports whether DANE may apply to the route's hosts: the MX
// answer is DNSSEC-validated, or the host comes from the configuration.
func (dt *domainTLS) signedMX(ctx context.Context) bool {
	if !dt.route.MX {
		return true
	}
	q, f := queryName(dt.route.Host)
	if f != nil {
		return false
	}
	_, secure, err := dt.t.res.lookupAD(ctx, q, dns.TypeMX)
	return err == nil && secure
}

// session returns ctx carrying the policy for a connection to addr.
func (h *hostTLS) session(ctx context.Context, addr netip.AddrPort) context.Context {
	if h == nil {
		return ctx
	}
	return context.WithValue(ctx, sessionKey{}, &session{h: h, addr: addr})
}

// apply returns route with the TLS mode the host policy dials with.
func (h *hostTLS) apply(r Route) Route {
	if h != nil {
		r.TLS = h.mode
	}
	return r
}

// tlsConfigFor is tlsConfig for a connection whose context may carry a host
// policy: DANE and MTA-STS check the certificate themselves, so that a
// failure names the policy (and testing mode only records it).
func (t *Transport) tlsConfigFor(ctx context.Context, mode string, rel *relay, host string) *tls.Config {
	cfg := t.tlsConfig(mode, rel, host)
	s := sessionFrom(ctx)
	if s == nil || rel != nil {
		return cfg
	}
	h := s.h
	switch {
	case h.dane != nil && len(h.dane.usable) > 0:
		cfg.InsecureSkipVerify, cfg.MinVersion = true, tls.VersionTLS12
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			err := h.dane.verify(cs)
			if err != nil {
				s.fail(resultType(err), err.Error())
			} else {
				s.success()
			}
			return err
		}
	case h.sts != nil:
		enforce := h.dom.enforce
		if enforce {
			cfg.InsecureSkipVerify, cfg.MinVersion = true, tls.VersionTLS12
		}
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			err := t.webPKI(cs, host)
			if err == nil {
				s.success()
				return nil
			}
			s.fail(resultType(err), err.Error())
			if enforce {
				return fmt.Errorf("%s: %w", h.sts.describe(), err)
			}
			return nil
		}
	default:
		// Count the session for the domain's report (no-policy-found).
		cfg.VerifyConnection = func(tls.ConnectionState) error { s.success(); return nil }
	}
	return cfg
}

// sawEHLO is called once the server's EHLO reply is in: a host that does
// not offer STARTTLS is a failure for the policy's report.
func (t *Transport) sawEHLO(ctx context.Context, starttls bool) {
	if s := sessionFrom(ctx); s != nil && !starttls && s.h.mode != "none" {
		s.fail("starttls-not-supported", "the server does not offer STARTTLS")
	}
}

// webPKI checks a chain for host as MTA-STS asks (RFC 8461 section 4.2).
func (t *Transport) webPKI(cs tls.ConnectionState, host string) error {
	certs := cs.PeerCertificates
	if len(certs) == 0 {
		return errors.New("the server sent no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{DNSName: host, Roots: t.opts.RootCAs, Intermediates: inter, CurrentTime: now()})
	if err != nil {
		return fmt.Errorf("the certificate of %s is not valid for it: %w", host, err)
	}
	return nil
}

// resultType is the TLS-RPT result type of a certificate check failure.
func resultType(err error) string {
	var inv x509.CertificateInvalidError
	var host x509.HostnameError
	var ua x509.UnknownAuthorityError
	switch {
	case errors.Is(err, errDANEMismatch):
		return "validation-failure"
	case errors.As(err, &inv) && inv.Reason == x509.Expired:
		return "certificate-expired"
	case errors.As(err, &host):
		return "certificate-host-mismatch"
	case errors.As(err, &ua):
		return "certificate-not-trusted"
	}
	return "validation-failure"
}

func (s *session) success() {
	if dt := s.h.dom; dt.record {
		dt.t.pol.rpt.success(dt.domain, s.h.rptPolicy())
	}
}

func (s *session) fail(kind, reason string) { s.h.dom.fail(s.h, s.addr, kind, reason) }

// fail records a failed session for the domain's TLS report.
func (dt *domainTLS) fail(h *hostTLS, addr netip.AddrPort, kind, reason string) {
	if !dt.record {
		return
	}
	f := rptFailure{ResultType: kind, MXHost: h.host, Reason: reason}
	if addr.IsValid() {
		f.ReceivingIP = addr.Addr().String()
	}
	dt.t.pol.rpt.failure(dt.domain, h.rptPolicy(), f)
}

// rptPolicy is the report's description of the host's policy.
func (h *hostTLS) rptPolicy() rptPolicy {
	switch {
	case h.dane != nil:
		recs := make([]string, len(h.dane.usable))
		for i, r := range h.dane.usable {
			recs[i] = fmt.Sprintf("%d %d %d %s", r.Usage, r.Selector, r.MatchingType, r.Certificate)
		}
		return rptPolicy{Type: "tlsa", Strings: strings.Join(recs, "\n"), MXHosts: h.host}
	case h.sts != nil:
		return rptPolicy{Type: "sts", Strings: strings.Join(h.sts.p.Lines(), "\n"), MXHosts: strings.Join(h.sts.p.MX, "\n")}
	}
	return rptPolicy{Type: "no-policy-found"}
}

// finish notes the policy of each result, counts them, and returns them.
func (dt *domainTLS) finish(res []queue.Result) []queue.Result {
	for i := range res {
		r := &res[i]
		label, desc := dt.route.TLS, ""
		if dt.route.Via == ViaMX || dt.route.Via == ViaTransport {
			desc = policyKey(dt.t.routes, dt.domain) + " " + dt.route.TLS
		} else {
			desc = string(dt.route.Via) + " tls " + dt.route.TLS
		}
		h := dt.hosts[remoteHost(r.Remote)]
		if r.Remote == "" {
			h = dt.skipped[r.Message]
		}
		if h != nil {
			label, desc = h.label, h.desc
		} else if dt.sts != nil {
			label, desc = "mta-sts", dt.sts.describe()
		} else if dt.require != "" {
			label = dt.require
		}
		r.TLSPolicy = desc
		if h != nil && r.Status != queue.Sent && (h.label == "dane" || h.label == "mta-sts") &&
			!strings.Contains(r.Message, "DANE") && !strings.Contains(r.Message, "MTA-STS") {
			r.Message += "; TLS policy: " + h.desc // why TLS was required
		}
		tlsPolicyTotal.WithLabelValues(label, resultLabel(r.Status)).Inc()
	}
	return res
}

// remoteHost is the host name of "mx.example.com[192.0.2.1]:25".
func remoteHost(remote string) string {
	h, _, _ := strings.Cut(remote, "[")
	return h
}

func resultLabel(s queue.Status) string {
	switch s {
	case queue.Sent:
		return "sent"
	case queue.Failed:
		return "failed"
	}
	return "deferred"
}

var tlsPolicyTotal = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "inkan_delivery_tls_policy_total",
	Help: "Recipient results of outbound delivery by the TLS policy that applied (dane, mta-sts, mta-sts-testing, or the delivery.tls mode: none, may, encrypt, verify, implicit) and result (sent, deferred, failed).",
}, []string{"policy", "result"})
