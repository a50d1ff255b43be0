package main_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

// TestDefaultTrustedSendersAreTheSigningDomains is issue 11's "default
// trust" attack: with a DKIM key for example.com and auth.trusted_senders
// unset, a local user on the trusted loopback network sends as an address of
// a domain inkan does not sign for. Round 1 accepted it (and would have
// signed any configured domain for anyone); now only the signing domains,
// their subdomains where a key covers them, the host's own names and the
// null sender pass, and trusted_senders: ["*"] restores "anyone".
func TestDefaultTrustedSendersAreTheSigningDomains(t *testing.T) {
	dir := t.TempDir()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	key := filepath.Join(dir, "ed1.key")
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	dkim := "dkim:\n  keys:\n    - {domain: example.com, selector: ed1, key_file: " + key + ", subdomains: true}\n"
	s := startSink(t)
	in := startInkan(t, s.addr, dkim)
	body := func(from string) string { return "From: " + from + "\r\nSubject: t\r\n\r\nhi\r\n" }

	for _, from := range []string{"ceo@gmail.example", "x@example.com.evil.example"} {
		err := trySend(t, in.relay, from, body(from))
		var se *smtp.SMTPError
		if !asSMTP(err, &se) || se.Code != 553 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) {
			t.Errorf("trusted client as %s: %v, want 553 5.7.1", from, err)
		}
	}
	// The header From is held to the same rule as MAIL FROM.
	var se *smtp.SMTPError
	if err := trySend(t, in.relay, "app@example.com", body("ceo@gmail.example")); !asSMTP(err, &se) || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) {
		t.Errorf("header From of another domain: %v, want 550 5.7.1", err)
	}
	for _, from := range []string{"app@example.com", "cron@mail.example.com", "root@relay.test.example", "root@localhost"} {
		if err := trySend(t, in.relay, from, body(from)); err != nil {
			t.Errorf("trusted client as %s: %v, want it accepted", from, err)
		}
	}
	if !strings.Contains(in.logs.String(), "auth.trusted_senders not set") {
		t.Errorf("no log line says what the default allows:\n%s", in.logs.String())
	}

	t.Setenv("INKAN_AUTH_TRUSTED_SENDERS", "*") // the opt-out, as a sidecar would set it
	open := startInkan(t, s.addr, dkim)
	if err := trySend(t, open.relay, "ceo@gmail.example", body("ceo@gmail.example")); err != nil {
		t.Errorf("trusted_senders [*]: %v, want any sender accepted", err)
	}
}

func trySend(t *testing.T, addr, from, body string) error {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("e2e.test"); err != nil {
		return err
	}
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	if err := c.Rcpt("admin@example.net", nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	w.Write([]byte(body))
	return w.Close()
}

func asSMTP(err error, se **smtp.SMTPError) bool {
	e, ok := err.(*smtp.SMTPError)
	*se = e
	return ok
}
