package signing

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/inkan-relay/inkan/config"
)

// Keys are generated once per test binary: 2048-bit RSA generation is slow.
var (
	rsaKeys   = map[int]*rsa.PrivateKey{}
	rsaKeysMu sync.Mutex
)

// testRSA returns RSA key number n (2048-bit), or a 1024-bit key for n < 0.
func testRSA(t testing.TB, n int) *rsa.PrivateKey {
	t.Helper()
	rsaKeysMu.Lock()
	defer rsaKeysMu.Unlock()
	if k, ok := rsaKeys[n]; ok {
		return k
	}
	bits := 2048
	if n < 0 {
		bits = 1024
	}
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	rsaKeys[n] = k
	return k
}

func testEd25519(t testing.TB, seedByte byte) ed25519.PrivateKey {
	t.Helper()
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seedByte}, ed25519.SeedSize))
}

// writeKey stores key as PKCS#8 PEM with the given mode and returns the path.
func writeKey(t testing.TB, dir, name string, key crypto.Signer, mode os.FileMode) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // umask may have removed bits
		t.Fatal(err)
	}
	return p
}

func writeFile(t testing.TB, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newSigner(t testing.TB, cfg config.DKIM) *Signer {
	t.Helper()
	s, err := New(cfg, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// sign runs a message through Begin/Write/Finish the way the relay does and
// returns the signed message (nil when not signed).
func sign(t testing.TB, s *Signer, msg string) ([]byte, Decision) {
	t.Helper()
	hdr := msg
	if i := strings.Index(msg, "\r\n\r\n"); i >= 0 {
		hdr = msg[:i+4]
	}
	st, d := s.Begin(msgOf(hdr))
	if st == nil {
		return nil, d
	}
	// Write in uneven pieces, as a network read loop would.
	for b := []byte(msg); len(b) > 0; {
		n := min(len(b), 7+len(b)%13)
		st.Write(b[:n])
		b = b[n:]
	}
	sigs, err := st.Finish()
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	st.Count() // as the session does once the message is queued
	return append(sigs, msg...), d
}

// txtFor builds a LookupTXT that serves the public keys of s.
func txtFor(s *Signer, extra map[string]string) func(string) ([]string, error) {
	recs := map[string]string{}
	for _, d := range s.Domains() {
		recs[d.Selector+"._domainkey."+d.Name] = d.PublicKeyTXT
	}
	for k, v := range extra {
		recs[k] = v
	}
	return func(name string) ([]string, error) {
		if v, ok := recs[name]; ok {
			return []string{v}, nil
		}
		return nil, fmt.Errorf("no TXT record for %s", name)
	}
}

// verify checks every signature of msg and returns the verifications.
func verify(t testing.TB, msg []byte, lookup func(string) ([]string, error)) []*dkim.Verification {
	t.Helper()
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), &dkim.VerifyOptions{LookupTXT: lookup})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return vs
}

const testMsg = "From: Alice <alice@example.com>\r\n" +
	"To: Bob <bob@example.net>\r\n" +
	"Subject: Hello\r\n" +
	"Date: Mon, 02 Jun 2025 10:00:00 +0000\r\n" +
	"Message-ID: <1@example.com>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"Hi Bob,\r\n\r\nlunch?\r\n"

// msgOf is MessageOf for tests: a header without a readable From gives a
// Message without an author, which the signer leaves unsigned.
func msgOf(header string) Message {
	m, _ := MessageOf([]byte(header))
	return m
}
