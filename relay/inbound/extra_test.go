package inbound_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/relay/inbound"
)

func TestEHLOExtensions(t *testing.T) {
	e := start(t, nil)
	c := e.dial(inbound.KindRelay, "127.0.0.2")
	for _, ext := range []string{"SIZE", "8BITMIME", "SMTPUTF8", "PIPELINING", "ENHANCEDSTATUSCODES", "STARTTLS"} {
		if ok, _ := c.Extension(ext); !ok {
			t.Errorf("EHLO lacks %s", ext)
		}
	}
	if _, v := c.Extension("SIZE"); v != "26214400" && v != "25000000" {
		t.Errorf("SIZE %q, want the configured limit", v)
	}
	if ok, _ := c.Extension("AUTH"); ok {
		t.Errorf("AUTH offered in clear text to a network that does not allow it")
	}
}

func TestPlainAuthOnlyForAllowedNetwork(t *testing.T) {
	e := start(t, func(c *config.Config) {
		c.Auth.Networks = []config.Network{{Name: "old-nas", CIDRs: []string{"127.0.0.4/32"}, AllowPlainAuth: true, Senders: []string{"@example.com"}}}
	})
	c := e.dial(inbound.KindRelay, "127.0.0.4")
	if ok, mechs := c.Extension("AUTH"); !ok || !strings.Contains(mechs, "LOGIN") {
		t.Fatalf("AUTH not offered to the network that allows plain text: %q", mechs)
	}
	if err := c.Auth(sasl.NewLoginClient("alice", testPassword)); err != nil {
		t.Fatalf("AUTH LOGIN in clear text for allowed network: %v", err)
	}
	// The network's sender list applies when not authenticated, the user's
	// policy when authenticated.
	if _, err := send(c, "alice@example.com", []string{"x@example.net"}, msg("alice@example.com", "x@example.net", "nas")); err != nil {
		t.Fatal(err)
	}
	c2 := e.dial(inbound.KindRelay, "127.0.0.4")
	if err := c2.Mail("nas@other.example", nil); code(err) != 553 && code(err) != 550 {
		t.Fatalf("network sender policy: %v, want 5xx 5.7.1", err)
	}
	c3 := e.dial(inbound.KindRelay, "127.0.0.1") // untrusted: no clear-text AUTH
	if ok, _ := c3.Extension("AUTH"); ok {
		t.Fatal("AUTH offered in clear text to an untrusted client")
	}
}

func TestIdleTimeout(t *testing.T) {
	e := start(t, func(c *config.Config) { c.Limits.CommandTimeout = config.Duration(300 * time.Millisecond) })
	conn, err := net.Dial("tcp", e.addr(inbound.KindRelay))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	out, _ := io.ReadAll(conn) // greeting, then the server gives up on us
	if !strings.Contains(string(out), "421 4.4.2") {
		t.Fatalf("idle client got %q, want a 421 4.4.2 and a closed connection", out)
	}
}

func writeCert(t *testing.T, dir, cn string) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{cn}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	kd, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile+".new", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile+".new", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600)
	os.Rename(keyFile+".new", keyFile)
	os.Rename(certFile+".new", certFile)
	return
}

func TestCertificateFilesReloaded(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeCert(t, dir, "one.example")
	cfg := config.Default()
	cfg.TLS.CertFile, cfg.TLS.KeyFile = certFile, keyFile
	setup, err := inbound.ServerTLS(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", setup.Config)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	name := func() string {
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if n := name(); n != "one.example" {
		t.Fatalf("first certificate %q", n)
	}
	time.Sleep(1100 * time.Millisecond) // the reloader looks at most once a second
	writeCert(t, dir, "two.example")
	deadline := time.Now().Add(5 * time.Second)
	for name() != "two.example" {
		if time.Now().After(deadline) {
			t.Fatal("renewed certificate never served")
		}
		time.Sleep(200 * time.Millisecond)
	}
}
