package dnscheck

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/inkan-relay/inkan/relay/deliver/tlsrecords"
)

// The operator's own transport-security records: MTA-STS (RFC 8461) and
// TLS-RPT (RFC 8460). They are parsed with relay/deliver/tlsrecords, the
// parsers delivery uses, so what passes here is what senders read.

// Where the MTA-STS policy is fetched: port 443 with the system roots;
// tests serve it elsewhere.
var (
	stsPort  = "443"
	stsRoots *x509.CertPool
)

const stsTimeout = 20 * time.Second

// CheckMTASTS checks domain's MTA-STS record and policy; ok is false when
// the domain publishes no _mta-sts record (nothing to check). The policy
// is fetched as senders fetch it (HTTPS, certificate for mta-sts.DOMAIN, no
// redirect, text/plain, 64 KiB) and compared with the domain's MX hosts.
func (c *Checker) CheckMTASTS(ctx context.Context, domain string) (f Finding, ok bool) {
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	f = Finding{Check: "mta-sts _mta-sts." + domain}
	txts, err := c.txt(ctx, "_mta-sts."+domain)
	switch {
	case isTemp(err):
		f.Status, f.Detail = Warn, "could not check: "+err.Error()
		return f, true
	case errors.Is(err, errNXDomain):
		return f, false
	}
	rec, err := tlsrecords.FindSTSRecord(txts)
	switch {
	case errors.Is(err, tlsrecords.ErrNoRecord):
		return f, false
	case err != nil:
		f.Status, f.Detail = Fail, err.Error()+": senders ignore the policy; publish one record like \"v=STSv1; id=20240101T000000;\""
		f.Publish = fmt.Sprintf(`_mta-sts.%s. TXT "v=STSv1; id=%s;"`, domain, time.Now().UTC().Format("20060102T150405"))
		return f, true
	}
	url := "https://mta-sts." + domain + "/.well-known/mta-sts.txt"
	body, err := c.fetchPolicy(ctx, domain, url)
	if err != nil {
		f.Status, f.Detail = Fail, fmt.Sprintf("record id=%s, but senders cannot fetch %s: %v", rec.ID, url, err)
		return f, true
	}
	p, err := tlsrecords.ParseSTSPolicy(body)
	if err != nil {
		f.Status, f.Detail = Fail, fmt.Sprintf("%s: %v; senders ignore the policy", url, err)
		return f, true
	}
	var notes []string
	if p.Mode != tlsrecords.None {
		hosts, err := c.mx(ctx, domain)
		if err == nil && len(hosts) == 0 {
			hosts = []string{domain}
		}
		var missing []string
		for _, h := range hosts {
			if h != "" && !p.Matches(h) {
				missing = append(missing, h)
			}
		}
		if len(missing) > 0 {
			what := fmt.Sprintf("MX host %s is not in the policy (mx: %s)", strings.Join(missing, ", "), strings.Join(p.MX, ", "))
			if p.Mode == tlsrecords.Enforce {
				f.Status, f.Detail = Fail, what+": senders that honour MTA-STS will not deliver there; add an mx: line for it"
				return f, true
			}
			notes = append(notes, what+" (enforce mode would keep mail from it)")
		}
	}
	switch {
	case p.Mode == tlsrecords.None:
		f.Status = Warn
		notes = append(notes, "mode none: the policy is withdrawn")
	case p.Mode == tlsrecords.Testing:
		if f.Status == Pass {
			f.Status = Warn
		}
		notes = append(notes, "mode testing: senders report failures but still deliver; switch to enforce once TLS reports are clean")
	}
	if p.MaxAge < 24*time.Hour && p.Mode != tlsrecords.None {
		f.Status = Warn
		notes = append(notes, fmt.Sprintf("max_age %d is short: senders forget the policy within a day; RFC 8461 suggests weeks (e.g. 604800)", int64(p.MaxAge/time.Second)))
	}
	f.Detail = fmt.Sprintf("id=%s, mode %s, max_age %d, mx %s", rec.ID, p.Mode, int64(p.MaxAge/time.Second), strings.Join(p.MX, ", "))
	if len(notes) > 0 {
		f.Detail += "; " + strings.Join(notes, "; ")
	}
	return f, true
}

// fetchPolicy downloads a policy the way senders do.
func (c *Checker) fetchPolicy(ctx context.Context, domain, url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, stsTimeout)
	defer cancel()
	dialer := &net.Dialer{Timeout: stsTimeout}
	client := &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				host, _, _ := net.SplitHostPort(addr)
				ips, err := c.addrs(ctx, host, true)
				if v6, err6 := c.addrs(ctx, host, false); err6 == nil {
					ips, err = append(v6, ips...), nil
				}
				if len(ips) == 0 {
					if err == nil {
						err = fmt.Errorf("%s has no address", host)
					}
					return nil, err
				}
				var last error
				for _, ip := range ips {
					conn, err := dialer.DialContext(ctx, "tcp", net.JoinHostPort(ip.String(), stsPort))
					if err == nil {
						return conn, nil
					}
					last = err
				}
				return nil, last
			},
			TLSClientConfig: &tls.Config{RootCAs: stsRoots, MinVersion: tls.VersionTLS12},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return errors.New("it answers with a redirect, which senders must not follow; serve the file itself")
		},
	}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		var cv *tls.CertificateVerificationError
		if errors.As(err, &cv) {
			return nil, fmt.Errorf("its certificate is not valid for mta-sts.%s (%v): use one from a public CA", domain, cv.Err)
		}
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP status %s", resp.Status)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "text/plain" {
		return nil, fmt.Errorf("Content-Type %q: serve it as text/plain", resp.Header.Get("Content-Type"))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, tlsrecords.MaxPolicySize+1))
	if err != nil {
		return nil, err
	}
	if len(body) > tlsrecords.MaxPolicySize {
		return nil, fmt.Errorf("larger than %d bytes", tlsrecords.MaxPolicySize)
	}
	return body, nil
}

// CheckTLSRPT checks domain's TLS-RPT record; ok is false when none is
// published.
func (c *Checker) CheckTLSRPT(ctx context.Context, domain string) (f Finding, ok bool) {
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	f = Finding{Check: "tls-rpt _smtp._tls." + domain}
	txts, err := c.txt(ctx, "_smtp._tls."+domain)
	switch {
	case isTemp(err):
		f.Status, f.Detail = Warn, "could not check: "+err.Error()
		return f, true
	case errors.Is(err, errNXDomain):
		return f, false
	}
	rec, err := tlsrecords.FindTLSRPTRecord(txts)
	switch {
	case errors.Is(err, tlsrecords.ErrNoRecord):
		return f, false
	case err != nil:
		f.Status, f.Detail = Fail, err.Error()+": senders send no TLS reports"
		f.Publish = fmt.Sprintf(`_smtp._tls.%s. TXT "v=TLSRPTv1; rua=mailto:tls-reports@%s"`, domain, domain)
		return f, true
	}
	var ruas []string
	for _, u := range rec.RUA {
		ruas = append(ruas, u.String())
	}
	f.Detail = "reports go to " + strings.Join(ruas, ", ")
	return f, true
}
