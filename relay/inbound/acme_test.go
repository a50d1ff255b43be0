package inbound_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/relay/inbound"
)

// syncBuffer is a log sink safe for the goroutine that writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func acmeConfig(t *testing.T) *config.Config {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0") // a port nothing answers on
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	cfg := config.Default()
	cfg.Hostname = "relay.inkan.test"
	cfg.DataDir = t.TempDir()
	cfg.TLS.ACME = &config.ACME{Domains: []string{"mail.inkan.test"}, ChallengeListen: "127.0.0.1:0",
		DirectoryURL: "https://" + dead + "/dir"}
	return cfg
}

// handshake connects to a TLS server using setup and returns the leaf it
// presented.
func handshake(t *testing.T, setup *inbound.TLSSetup, sni string) *x509.Certificate {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", setup.Config)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, ServerName: sni})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}

// With the CA unreachable, clients still get TLS (the self-signed
// certificate), and the log says why and when the next try is.
func TestACMEFallbackWhenCAUnreachable(t *testing.T) {
	cfg := acmeConfig(t)
	var logs syncBuffer
	setup, err := inbound.ServerTLS(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	for _, sni := range []string{"", "mail.inkan.test", "other.example"} {
		leaf := handshake(t, setup, sni)
		if leaf.Subject.CommonName != "relay.inkan.test" || leaf.Issuer.CommonName != "relay.inkan.test" {
			t.Errorf("SNI %q: served %q issued by %q, want the self-signed certificate", sni, leaf.Subject.CommonName, leaf.Issuer.CommonName)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { setup.RunACME(ctx); close(done) }()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "ACME: no certificate") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	out := logs.String()
	for _, want := range []string{"ACME: no certificate; serving the self-signed one meanwhile", "domain=mail.inkan.test",
		cfg.TLS.ACME.DirectoryURL, "next_try=1m0s", "tls.acme.challenge_listen"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

// A certificate in the ACME cache is served from the first handshake after a
// restart, without the CA.
func TestACMECachedCertificateServed(t *testing.T) {
	cfg := acmeConfig(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(4242), Subject: pkix.Name{CommonName: "mail.inkan.test"},
		DNSNames: []string{"mail.inkan.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	keyDER, _ := x509.MarshalECPrivateKey(key)
	var entry bytes.Buffer
	pem.Encode(&entry, &pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	pem.Encode(&entry, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	cache := filepath.Join(cfg.DataDir, "acme")
	if err := os.MkdirAll(cache, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cache, "mail.inkan.test"), entry.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	setup, err := inbound.ServerTLS(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for _, sni := range []string{"", "mail.inkan.test"} {
		if leaf := handshake(t, setup, sni); leaf.SerialNumber.Int64() != 4242 {
			t.Errorf("SNI %q: served serial %v, want the cached certificate", sni, leaf.SerialNumber)
		}
	}
}
