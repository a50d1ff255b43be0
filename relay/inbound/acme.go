package inbound

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// ACME certificates (tls.acme), with golang.org/x/crypto/acme/autocert.
//
// Promises:
//   - Certificates are obtained in the background (RunACME), not during a
//     client's handshake: until a name has one, and whenever the CA cannot
//     be reached for a first certificate, clients get the self-signed
//     certificate for the host name (data_dir/tls) and an error is logged
//     that names the CA and the next try (1 minute, doubling up to an hour).
//   - A certificate in the cache (tls.acme.cache_dir) is served from the
//     first handshake after a restart, without asking the CA.
//   - autocert renews a certificate when a third of its lifetime is left
//     (at most 30 days before it expires); the renewed one is served from
//     the next handshake on, without a restart, and RunACME logs it.
//   - A client that sends no SNI, or a name not in tls.acme.domains, gets
//     the certificate of the first domain.
//   - TLS-ALPN-01 challenges are answered on the implicit-TLS listeners and
//     on tls.acme.challenge_listen when it serves tls-alpn-01; HTTP-01 on
//     challenge_listen otherwise.

// acmeCerts serves ACME certificates with a self-signed fallback.
type acmeCerts struct {
	m        *autocert.Manager
	domains  []string // lower case, A-labels as configured
	dir      string   // the directory URL, for messages
	fallback tls.Certificate
	log      *slog.Logger
	alpn     bool // challenge_listen serves TLS-ALPN-01

	mu     sync.Mutex
	ready  map[string]bool   // names with a certificate (ECDSA)
	serial map[string]string // of the certificate last seen, to log renewals
}

// acmeSetup builds the ACME certificate source of ServerTLS.
func acmeSetup(cfg *config.Config, base *tls.Config, logger *slog.Logger) (*TLSSetup, error) {
	a := cfg.TLS.ACME
	cache := a.CacheDir
	if cache == "" {
		cache = filepath.Join(cfg.DataDir, "acme")
	}
	fallback, err := selfSigned(cfg.Hostname, filepath.Join(cfg.DataDir, "tls"), false)
	if err != nil {
		return nil, err
	}
	c := &acmeCerts{
		m: &autocert.Manager{
			Prompt:     autocert.AcceptTOS,
			HostPolicy: autocert.HostWhitelist(a.Domains...),
			Cache:      autocert.DirCache(cache),
			Email:      a.Email,
		},
		dir:      a.DirectoryURL,
		fallback: fallback,
		log:      logger,
		alpn:     ACMEChallengeTLS(a),
		ready:    map[string]bool{},
		serial:   map[string]string{},
	}
	if c.dir == "" {
		c.dir = autocert.DefaultACMEDirectory
	} else {
		c.m.Client = &acme.Client{DirectoryURL: a.DirectoryURL}
	}
	for _, d := range a.Domains {
		c.domains = append(c.domains, mailsyntax.NormDomain(d))
	}
	c.loadCached()
	base.GetCertificate = c.get
	base.NextProtos = []string{acme.ALPNProto}
	return &TLSSetup{Config: base, ACME: c.m, Source: "acme", acme: c}, nil
}

// ACMEChallengeTLS reports whether tls.acme.challenge_listen serves
// TLS-ALPN-01 (tls.acme.challenge, or else port 443) rather than HTTP-01.
func ACMEChallengeTLS(a *config.ACME) bool {
	switch a.Challenge {
	case config.ACMETLSALPN01:
		return true
	case config.ACMEHTTP01:
		return false
	}
	_, port, _ := net.SplitHostPort(a.ChallengeListen)
	return port == "443"
}

// get is the listeners' GetCertificate.
func (c *acmeCerts) get(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acme.ALPNProto {
		return c.m.GetCertificate(hello) // a TLS-ALPN-01 challenge
	}
	name := mailsyntax.NormDomain(hello.ServerName)
	if !slices.Contains(c.domains, name) {
		// SMTP clients often send no SNI, or the name they were given.
		name = c.domains[0]
	}
	hello.ServerName = name
	c.mu.Lock()
	ready := c.ready[name]
	c.mu.Unlock()
	if !ready && supportsECDSA(hello) {
		return &c.fallback, nil
	}
	return c.m.GetCertificate(hello)
}

// ecdsaHello asks autocert for the ECDSA certificate of name.
func ecdsaHello(name string) *tls.ClientHelloInfo {
	return &tls.ClientHelloInfo{ServerName: name,
		SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
		SupportedCurves:  []tls.CurveID{tls.CurveP256},
		CipherSuites:     []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}
}

// supportsECDSA is autocert's test, short: does the client take an ECDSA
// certificate? (Old devices that do not get autocert's RSA one, fetched
// during their handshake.)
func supportsECDSA(hello *tls.ClientHelloInfo) bool {
	if hello.SignatureSchemes != nil && !slices.ContainsFunc(hello.SignatureSchemes, func(s tls.SignatureScheme) bool {
		return s == tls.ECDSAWithP256AndSHA256 || s == tls.ECDSAWithP384AndSHA384 || s == tls.ECDSAWithP521AndSHA512 || s == 0x0203
	}) {
		return false
	}
	return hello.SupportedCurves == nil || slices.Contains(hello.SupportedCurves, tls.CurveP256)
}

// loadCached marks the names whose certificate is in the cache and valid.
func (c *acmeCerts) loadCached() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, d := range c.domains {
		data, err := c.m.Cache.Get(ctx, d)
		if err != nil {
			continue
		}
		if leaf := leafOf(data); leaf != nil && time.Now().Before(leaf.NotAfter) {
			c.ready[d] = true
			c.serial[d] = leaf.SerialNumber.String()
		}
	}
}

// leafOf finds the first certificate in autocert's cache entry (key PEM,
// then the chain).
func leafOf(data []byte) *x509.Certificate {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil
		}
		if b.Type == "CERTIFICATE" {
			leaf, _ := x509.ParseCertificate(b.Bytes)
			return leaf
		}
	}
}

// ACMEHTTPHandler answers HTTP-01 challenges. The CA's Host header names the
// port when it is not 80 (a forwarded port, or a test CA); autocert checks
// the name alone, so the port is dropped first.
func (s *TLSSetup) ACMEHTTPHandler() http.Handler {
	h := s.ACME.HTTPHandler(nil)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if host, _, err := net.SplitHostPort(r.Host); err == nil {
			r.Host = host
		}
		h.ServeHTTP(w, r)
	})
}

// RunACME obtains the certificates that are missing, retrying with back-off
// while the CA cannot be reached, then watches for renewals, until ctx
// ends. It does nothing when the certificates do not come from ACME.
func (s *TLSSetup) RunACME(ctx context.Context) {
	if s == nil || s.acme == nil {
		return
	}
	s.acme.run(ctx)
}

var (
	acmeRetryMin = time.Minute
	acmeRetryMax = time.Hour
	acmeWatch    = time.Minute // how often a renewal is looked for
)

func (c *acmeCerts) run(ctx context.Context) {
	wait := map[string]time.Duration{}
	next := map[string]time.Time{}
	for {
		now := time.Now()
		sleep := acmeWatch
		for _, d := range c.domains {
			if t, ok := next[d]; ok && now.Before(t) {
				sleep = min(sleep, t.Sub(now))
				continue
			}
			if err := c.obtain(d); err != nil {
				wait[d] = min(max(2*wait[d], acmeRetryMin), acmeRetryMax)
				next[d] = now.Add(wait[d])
				sleep = min(sleep, wait[d])
				c.log.Error("ACME: no certificate; serving the self-signed one meanwhile", "domain", d, "ca", c.dir,
					"err", err, "next_try", wait[d].String(),
					"fix", "check that the CA is reachable and the challenge listener (tls.acme.challenge_listen) is reachable from it")
				continue
			}
			delete(wait, d)
			next[d] = now.Add(acmeWatch)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(sleep):
		}
	}
}

// obtain gets (or, once it has one, looks at) the certificate of d, logging
// the first one and each renewal.
func (c *acmeCerts) obtain(d string) error {
	cert, err := c.m.GetCertificate(ecdsaHello(d))
	if err != nil {
		return err
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fmt.Errorf("certificate from the CA does not parse: %w", err)
		}
	}
	serial := leaf.SerialNumber.String()
	c.mu.Lock()
	was, old := c.ready[d], c.serial[d]
	c.ready[d], c.serial[d] = true, serial
	c.mu.Unlock()
	switch {
	case !was:
		c.log.Info("ACME certificate ready", "domain", d, "issuer", leaf.Issuer.CommonName, "serial", serial,
			"not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	case old != serial:
		c.log.Info("ACME certificate renewed; served from now on", "domain", d, "issuer", leaf.Issuer.CommonName,
			"serial", serial, "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}
