package inbound_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-sasl"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/queue"
	"github.com/inkan-relay/inkan/relay/inbound"
	"github.com/inkan-relay/inkan/test/dkimpy"
)

// trustEnv is start() plus a second signing domain, other.example, that
// alice may not send as: any d=other.example on alice's mail is the bug.
func trustEnv(t *testing.T) (*env, map[string]string) {
	t.Helper()
	records := map[string]string{}
	e := start(t, func(cfg *config.Config) {
		pub, priv, _ := ed25519.GenerateKey(rand.Reader)
		der, _ := x509.MarshalPKCS8PrivateKey(priv)
		keyFile := filepath.Join(cfg.DataDir, "other.example.ed1.key")
		os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
		cfg.DKIM.Keys = append(cfg.DKIM.Keys, config.DKIMKey{Domain: "other.example", Selector: "ed1", KeyFile: keyFile})
		records["ed1._domainkey.other.example"] = "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
	})
	records["ed1._domainkey.example.com"] = e.dkimPub
	return e, records
}

// craftedHeaders are header sections by which alice (allowed:
// alice@example.com and @example.org) tries to get another domain's seal.
var craftedHeaders = []struct{ name, header string }{
	{"unknown charset hides a quoted <addr>", `From: =?x-unknown?q?a?= "<bob@other.example>" <alice@example.com>`},
	{"encoded word spelling <addr>", `From: =?utf-8?q?=3Cbob=40other.example=3E?= <alice@example.com>`},
	{"encoded word in unknown charset spelling <addr>", `From: =?x-foo?b?PGJvYkBvdGhlci5leGFtcGxlPg==?= <alice@example.com>`},
	{"comment before", `From: (<bob@other.example>) alice@example.com`},
	{"comment after", `From: alice@example.com (<bob@other.example>)`},
	{"comment inside angle", `From: Alice <(bob@other.example) alice@example.com>`},
	{"broken quote", `From: "<bob@other.example> <alice@example.com>`},
	{"unclosed angle", `From: <bob@other.example`},
	{"bare address list", `From: alice@example.com, bob@other.example`},
	{"group", `From: friends: bob@other.example, alice@example.com;`},
	{"empty group then author", `From: undisclosed:;, bob@other.example`},
	{"two From fields", "From: alice@example.com\r\nFrom: bob@other.example"},
	{"two From fields, other first", "From: bob@other.example\r\nFrom: alice@example.com"},
	{"Sender of another domain", "From: alice@example.com\r\nSender: bob@other.example"},
	{"Resent-From of another domain", "From: alice@example.com\r\nResent-From: bob@other.example"},
	{"folded display name", "From: \"x\r\n <bob@other.example>\" <alice@example.com>"},
	{"route-addr", `From: <@other.example:bob@other.example>`},
	{"obs route to allowed", `From: <@other.example:alice@example.com>`},
	{"8-bit display name", "From: J\xfcrgen <bob@other.example> <alice@example.com>"},
	{"tab-space name", "From:\t<bob@other.example>"},
	{"lower-case field name", "from: bob@other.example"},
	{"space before colon", "From : bob@other.example"},
	{"no From at all", "Sender: bob@other.example"},
	{"quoted local with at", `From: "bob@other.example"@example.com`},
	{"domain literal", `From: alice@[127.0.0.1]`},
}

// mustRefuse are the crafted headers that name bob@other.example as a
// sender in a way receivers read: they are refused outright, not merely left
// unsigned (RFC 5322 §3.6: one From, at most one Sender).
var mustRefuse = map[string]bool{
	"unclosed angle": true, "bare address list": true, "group": true, "empty group then author": true,
	"two From fields": true, "two From fields, other first": true, "Sender of another domain": true,
	"Resent-From of another domain": true, "route-addr": true, "8-bit display name": true,
	"tab-space name": true, "lower-case field name": true, "quoted local with at": true, "domain literal": true,
	"no From at all": true,
	"broken quote":   true,
}

// TestCraftedFromNeverGetsForeignSeal is the attack of issue 10: every
// crafted header is refused (5.6.x or 5.7.x) or signed only for a domain the
// policy approved for alice, verified by go-msgauth and dkimpy.
func TestCraftedFromNeverGetsForeignSeal(t *testing.T) {
	e, records := trustEnv(t)
	approved := map[string]bool{"example.com": true, "example.org": true}
	c := e.dial(inbound.KindSMTPS, "127.0.0.1")
	if err := c.Auth(sasl.NewPlainClient("", "alice", testPassword)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range craftedHeaders {
		t.Run(tc.name, func(t *testing.T) {
			c.Reset()
			reply, err := send(c, "alice@example.com", []string{"rcpt@example.net"}, tc.header+"\r\nSubject: x\r\n\r\nbody\r\n")
			if err == nil && mustRefuse[tc.name] {
				t.Fatalf("accepted (%s); a header naming another sender must be refused", reply)
			}
			if err != nil {
				if code(err)/100 != 5 || !(strings.HasPrefix(enhanced(err), "5.6.") || strings.HasPrefix(enhanced(err), "5.7.")) {
					t.Fatalf("refused with %v, want a 5xx 5.6.x/5.7.x reply", err)
				}
				return
			}
			b := e.body(queuedID(t, reply))
			for _, v := range verifyWith(t, b, records) {
				if v.Err != nil {
					t.Errorf("signature d=%s does not verify: %v", v.Domain, v.Err)
				}
				if !approved[v.Domain] {
					t.Errorf("signed with d=%s, which alice may not use\n%s", v.Domain, b)
				}
			}
			for _, d := range dkimpyDomains(t, b, records) {
				if !approved[d] {
					t.Errorf("dkimpy: verified d=%s, which alice may not use", d)
				}
			}
		})
	}
}

// TestNullSenderWithoutFromRefused: with MAIL FROM:<> there is no envelope
// sender to put in a missing From, and a Sender of another domain must not
// slip through because the From is missing (found by the torture suite).
func TestNullSenderWithoutFromRefused(t *testing.T) {
	e, _ := trustEnv(t)
	c := e.dial(inbound.KindSMTPS, "127.0.0.1")
	if err := c.Auth(sasl.NewPlainClient("", "alice", testPassword)); err != nil {
		t.Fatal(err)
	}
	for _, hdr := range []string{"Subject: x", "Sender: bob@other.example", "Resent-From: bob@other.example"} {
		c.Reset()
		_, err := send(c, "", []string{"rcpt@example.net"}, hdr+"\r\n\r\nbody\r\n")
		if code(err) != 550 {
			t.Errorf("null sender, %q: %v, want 550", hdr, err)
		}
	}
}

func verifyWith(t *testing.T, b []byte, records map[string]string) []*dkim.Verification {
	t.Helper()
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(b), &dkim.VerifyOptions{
		LookupTXT: func(domain string) ([]string, error) {
			if r, ok := records[domain]; ok {
				return []string{r}, nil
			}
			return nil, fmt.Errorf("no record for %s", domain)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// dkimpyDomains verifies every DKIM-Signature of b with dkimpy (Debian's
// python3-dkim) and returns the d= of those that pass. It skips when dkimpy
// is not installed (the interop step of CI installs it).
func dkimpyDomains(t *testing.T, b []byte, records map[string]string) []string {
	t.Helper()
	if !dkimpy.Available(t) {
		return nil
	}
	f := filepath.Join(t.TempDir(), "msg.eml")
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := dkimpy.Verify(records, []string{f})
	if err != nil {
		t.Fatal(err)
	}
	var pass []string
	for _, r := range res[0] {
		if r.Pass {
			pass = append(pass, r.Domain)
		}
	}
	return pass
}

// TestUnverifiableBytesRefused: a NUL anywhere or a bare CR in the header
// would be signed and then read differently by verifiers (issue 20), so
// such a message is refused with 554 5.6.0 on every listener and nothing is
// queued. A bare CR in the body is repaired to CRLF and the message signed.
func TestUnverifiableBytesRefused(t *testing.T) {
	e, records := trustEnv(t)
	for _, kind := range []inbound.Kind{inbound.KindRelay, inbound.KindSMTPS} {
		from := "127.0.0.1"
		if kind == inbound.KindRelay {
			from = "127.0.0.2"
		}
		c := e.dial(kind, from)
		if kind == inbound.KindSMTPS {
			if err := c.Auth(sasl.NewPlainClient("", "alice", testPassword)); err != nil {
				t.Fatal(err)
			}
		}
		for _, body := range []string{
			"From: alice@example.com\r\nSubject: abc\rdef\r\n\r\nbody\r\n",
			"From: alice@example.com\r\nSubject: x\r\r\n\r\nbody\r\n",
			"From: alice@example.com\r\nSubject: a\x00b\r\n\r\nbody\r\n",
			"From: alice@example.com\r\n\r\nbody with a \x00 in it\r\n",
			"From: alice@example.com\r\n\r\n" + strings.Repeat("long body line\r\n", 5000) + "\x00\r\n",
		} {
			c.Reset()
			_, err := send(c, "alice@example.com", []string{"rcpt@example.net"}, body)
			if code(err) != 554 || enhanced(err) != "5.6.0" {
				t.Errorf("%s %q: %v, want 554 5.6.0", kind, body[:min(len(body), 60)], err)
			}
		}
		c.Reset()
		reply, err := send(c, "alice@example.com", []string{"rcpt@example.net"}, "From: alice@example.com\r\nSubject: ok\r\n\r\nbare\rCR in the body\r\n")
		if err != nil {
			t.Fatalf("%s: bare CR in body: %v", kind, err)
		}
		b := e.body(queuedID(t, reply))
		if !bytes.Contains(b, []byte("bare\r\nCR in the body")) {
			t.Errorf("bare CR in the body not repaired: %q", b)
		}
		for _, v := range verifyWith(t, b, records) {
			if v.Err != nil {
				t.Errorf("repaired message does not verify: %v", v.Err)
			}
		}
		if ds := dkimpyDomains(t, b, records); len(ds) == 0 && os.Getenv("CI") != "" {
			t.Errorf("dkimpy does not verify the repaired message")
		}
	}
	var n int
	e.q.List(func(queue.Info) error { n++; return nil })
	if n != 2 {
		t.Fatalf("%d messages queued, want only the 2 repaired ones", n)
	}
}
