package deliver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// DANE for SMTP (RFC 7672, RFC 7671).
//
// The AD bit of an answer is believed only from delivery.resolver (the
// operator chose it) or from a loopback server listed in /etc/resolv.conf
// (a validating resolver on this host, the path Postfix recommends); from
// any other server it is cleared when the answer arrives (dns.go), so every
// zone looks unsigned and DANE never applies. A validating resolver answers
// SERVFAIL for bogus data, which is a temporary failure like any other.

// trustsAD reports whether the AD bit of answers from srv may be believed.
func (r *resolver) trustsAD(srv string) bool {
	if r.fixed != "" {
		return true
	}
	ap, err := netip.ParseAddrPort(srv)
	return err == nil && ap.Addr().Unmap().IsLoopback()
}

// daneInfo is what DNS says about one host for DANE.
type daneInfo struct {
	base   string      // TLSA base domain: the host name
	name   string      // "_25._tcp.mx.example.com"
	usable []*dns.TLSA // DANE-TA(2) and DANE-EE(3) records with known selector and matching type
	all    int         // TLSA records published
}

// errTLSALookup wraps a failed TLSA lookup of a host whose addresses are
// signed: RFC 7672 section 2.2 forbids delivering there, with or without TLS.
var errTLSALookup = errors.New("TLSA lookup failed")

// tlsa looks up the TLSA records of host:port when the host's address
// records are DNSSEC-validated (the caller has checked its MX records). It
// returns nil when DANE does not apply to the host (unsigned addresses, or
// no signed TLSA records), and errTLSALookup when it may apply but cannot
// be known.
func (r *resolver) tlsa(ctx context.Context, host string, port int) (*daneInfo, error) {
	if _, err := netip.ParseAddr(host); err == nil {
		return nil, nil // an address from the configuration: no name to look up
	}
	q, f := queryName(host)
	if f != nil {
		return nil, nil
	}
	answered := false
	for _, qt := range []uint16{dns.TypeAAAA, dns.TypeA} {
		_, secure, err := r.lookupAD(ctx, q, qt)
		if err != nil && !errors.Is(err, errNXDomain) {
			continue // the addresses tried come from the other answer
		}
		if !secure {
			return nil, nil // an unsigned answer: DANE does not apply
		}
		answered = true
	}
	if !answered {
		return nil, nil // unresolvable: addrs reports it
	}
	name := "_" + strconv.Itoa(port) + "._tcp." + dns.Fqdn(q)
	rrs, secure, err := r.lookupAD(ctx, name, dns.TypeTLSA)
	switch {
	case errors.Is(err, errNXDomain):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("%w: %s: %v", errTLSALookup, strings.TrimSuffix(name, "."), err)
	case !secure || len(rrs) == 0:
		return nil, nil
	}
	d := &daneInfo{base: strings.TrimSuffix(strings.ToLower(q), "."), name: strings.TrimSuffix(name, "."), all: len(rrs)}
	for _, rr := range rrs {
		t, ok := rr.(*dns.TLSA)
		if !ok {
			continue
		}
		if (t.Usage == 2 || t.Usage == 3) && t.Selector <= 1 && t.MatchingType <= 2 {
			d.usable = append(d.usable, t)
		}
	}
	return d, nil
}

// describe is the TLSA set in one phrase for logs and replies.
func (d *daneInfo) describe() string {
	return fmt.Sprintf("%d usable of %d TLSA records at %s", len(d.usable), d.all, d.name)
}

// errDANEMismatch marks a certificate that no TLSA record matches.
var errDANEMismatch = errors.New("DANE: no TLSA record matches the certificate")

// verify checks a server's chain against the usable TLSA records (RFC 7672
// section 3.1): a DANE-EE(3) record matches the server's own certificate,
// and names and dates are not checked; a DANE-TA(2) record matches a
// certificate of the chain the server sent, which must then sign the
// server's certificate for the host name, within its dates.
func (d *daneInfo) verify(cs tls.ConnectionState) error {
	certs := cs.PeerCertificates
	if len(certs) == 0 {
		return fmt.Errorf("%w: the server sent none", errDANEMismatch)
	}
	var taErr error
	for _, rec := range d.usable {
		switch rec.Usage {
		case 3:
			if rec.Verify(certs[0]) == nil {
				return nil
			}
		case 2:
			for i := 1; i < len(certs); i++ {
				if rec.Verify(certs[i]) != nil {
					continue
				}
				if taErr = d.chainTo(certs, i); taErr == nil {
					return nil
				}
			}
		}
	}
	if taErr != nil {
		return fmt.Errorf("%w: the chain to the DANE-TA trust anchor does not hold: %v", errDANEMismatch, taErr)
	}
	return fmt.Errorf("%w of %s (%s; the server's certificate is for %s)", errDANEMismatch, d.base, d.describe(), certNames(certs[0]))
}

// chainTo verifies certs[0] up to the trust anchor certs[ta] for the TLSA
// base domain.
func (d *daneInfo) chainTo(certs []*x509.Certificate, ta int) error {
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(certs[ta])
	for _, c := range certs[1:ta] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{DNSName: d.base, Roots: roots, Intermediates: inter,
		CurrentTime: now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err
}

// certNames lists the names a certificate is for, briefly.
func certNames(c *x509.Certificate) string {
	names := c.DNSNames
	if len(names) == 0 && c.Subject.CommonName != "" {
		names = []string{c.Subject.CommonName}
	}
	if len(names) == 0 {
		return "no name"
	}
	if len(names) > 4 {
		names = append(names[:4:4], "...")
	}
	return strings.Join(names, ", ")
}
