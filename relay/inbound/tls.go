package inbound

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"golang.org/x/crypto/acme/autocert"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/queue/safefile"
)

// TLS 1.2 suites of the modern profile: forward secret AEAD only. TLS 1.3
// suites are not configurable in Go and are all modern.
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,
}

// legacySuites are the modern ones, then what devices of 2010-2018 speak:
// ECDHE with AES-CBC, and RSA key exchange (no forward secrecy) with AES-GCM
// and AES-CBC. No 3DES or RC4. Listing them explicitly, with MinVersion
// TLS 1.0, is what Go needs to offer them: its tls10server and tlsrsakex
// GODEBUG settings only change the defaults, so no //go:debug line is
// needed (TestLegacyProfileWithoutGODEBUG).
var legacySuites = append(slices.Clone(cipherSuites),
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
	tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
	tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
	tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_RSA_WITH_AES_128_CBC_SHA,
	tls.TLS_RSA_WITH_AES_256_CBC_SHA,
)

// legacyConfig is base with the legacy profile: TLS 1.0 and up, the legacy
// suites. The certificates are base's (ServerTLS adds an RSA one when a
// legacy profile is configured).
func legacyConfig(base *tls.Config) *tls.Config {
	c := base.Clone()
	c.MinVersion = tls.VersionTLS10
	c.CipherSuites = legacySuites
	return c
}

// TLSSetup is the result of ServerTLS: the config for the listeners, and an
// optional ACME manager whose challenge listener the caller must run.
type TLSSetup struct {
	Config *tls.Config
	ACME   *autocert.Manager
	Source string // "files", "acme" or "self-signed"

	acme *acmeCerts // certificates and their fallback (acme.go); nil = not ACME
}

// ServerTLS builds the server certificate source from the config: files
// (reloaded when they change on disk), ACME, or a self-signed certificate for
// the host name kept in the data directory.
func ServerTLS(cfg *config.Config, logger *slog.Logger) (*TLSSetup, error) {
	base := &tls.Config{MinVersion: tls.VersionTLS12, CipherSuites: cipherSuites}
	switch {
	case cfg.TLS.ACME != nil && len(cfg.TLS.ACME.Domains) > 0:
		return acmeSetup(cfg, base, logger) // acme.go
	case cfg.TLS.CertFile != "":
		r, err := newCertReloader(cfg.TLS.CertFile, cfg.TLS.KeyFile, logger)
		if err != nil {
			return nil, err
		}
		pairs := []func() *tls.Certificate{r.current}
		if cfg.TLS.RSACertFile != "" {
			rr, err := newCertReloader(cfg.TLS.RSACertFile, cfg.TLS.RSAKeyFile, logger)
			if err != nil {
				return nil, err
			}
			if _, ok := rr.cert.PrivateKey.(*rsa.PrivateKey); !ok {
				return nil, fmt.Errorf("tls.rsa_key_file %s: not an RSA key (%T); give it an RSA certificate and key, or leave rsa_cert_file and rsa_key_file empty", cfg.TLS.RSAKeyFile, rr.cert.PrivateKey)
			}
			pairs = append(pairs, rr.current)
		}
		base.GetCertificate = chooseCertificate(pairs)
		return &TLSSetup{Config: base, Source: "files"}, nil
	default:
		dir := filepath.Join(cfg.DataDir, "tls")
		cert, err := selfSigned(cfg.Hostname, dir, false)
		if err != nil {
			return nil, err
		}
		base.Certificates = []tls.Certificate{cert}
		if len(cfg.UsesLegacyTLS()) > 0 {
			// Old devices often know only RSA: Go serves the first
			// certificate the client supports, ECDSA first.
			rsaCert, err := selfSigned(cfg.Hostname, dir, true)
			if err != nil {
				return nil, err
			}
			base.Certificates = append(base.Certificates, rsaCert)
		}
		return &TLSSetup{Config: base, Source: "self-signed"}, nil
	}
}

// chooseCertificate serves the first certificate the client can use (an
// ECDSA one to modern clients, the RSA one to old devices), or the first.
func chooseCertificate(pairs []func() *tls.Certificate) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		first := pairs[0]()
		for _, p := range pairs {
			if c := p(); hello.SupportsCertificate(c) == nil {
				return c, nil
			}
		}
		return first, nil
	}
}

// certReloader re-reads a certificate pair when either file changes, checked
// at most once a second, so a renewed certificate is used without a restart.
// A broken new pair is logged and the old one kept.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string
	checked time.Time
}

func newCertReloader(certFile, keyFile string, logger *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: logger}
	if err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *certReloader) fileStamp() string {
	var s string
	for _, f := range []string{r.certFile, r.keyFile} {
		if fi, err := os.Stat(f); err == nil {
			s += fmt.Sprintf("%d/%d;", fi.ModTime().UnixNano(), fi.Size())
		}
	}
	return s
}

func (r *certReloader) load() error {
	stamp := r.fileStamp()
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("load certificate %s and key %s: %w", r.certFile, r.keyFile, err)
	}
	r.cert, r.stamp = &c, stamp
	return nil
}

func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.current(), nil
}

// current is the pair in force, re-read when the files changed.
func (r *certReloader) current() *tls.Certificate {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t := time.Now(); t.Sub(r.checked) > time.Second {
		r.checked = t
		if st := r.fileStamp(); st != r.stamp {
			if err := r.load(); err != nil {
				r.stamp = st // do not retry a broken pair on every handshake
				r.log.Error("certificate reload failed; keeping the old one", "err", err)
			} else {
				r.log.Info("certificate reloaded", "cert_file", r.certFile)
			}
		}
	}
	return r.cert
}

// selfSigned loads or creates a self-signed certificate for host in dir:
// ECDSA P-256, or RSA 2048 (selfsigned-rsa.*) for old devices.
func selfSigned(host, dir string, useRSA bool) (tls.Certificate, error) {
	name := "selfsigned"
	if useRSA {
		name = "selfsigned-rsa"
	}
	certPath, keyPath := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if c, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		if leaf, err := x509.ParseCertificate(c.Certificate[0]); err == nil &&
			time.Now().Add(30*24*time.Hour).Before(leaf.NotAfter) && leaf.VerifyHostname(host) == nil {
			return c, nil
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tls.Certificate{}, fmt.Errorf("create %s: %w", dir, err)
	}
	var key crypto.Signer
	var err error
	keyUsage := x509.KeyUsageDigitalSignature
	if useRSA {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
		keyUsage |= x509.KeyUsageKeyEncipherment // RSA key exchange
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: host, Organization: []string{"inkan self-signed"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(2 * 365 * 24 * time.Hour),
		KeyUsage:     keyUsage,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{host, "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tls.Certificate{}, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	if err := safefile.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := safefile.WriteFile(certPath, certPEM, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}
