package deliver_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/queue"
	"github.com/inkan-relay/inkan/relay/deliver"
)

// A relay with credentials must not get them over TLS whose certificate
// nobody checked: anyone on the path could present their own. The sink's
// certificate is self-signed and not trusted here.
func TestAttackSmarthostPasswordOverUnverifiedTLS(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		tls      string
		implicit bool
		sender   bool // as a sender_relay entry
	}{
		{"default", "", false, false},
		{"encrypt", "encrypt", false, false},
		{"implicit", "implicit", true, false},
		{"sender relay default", "", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			s := e.net.start(t, "127.0.0.4", sinkOpts{tls: serverTLS(t), implicit: tc.implicit, user: "u", pass: "s3cret"})
			c := e.config()
			relay := config.Smarthost{Address: "[127.0.0.4]:" + strconv.Itoa(e.net.port), Username: "u", Password: "s3cret", TLS: tc.tls}
			key := "delivery.smarthost"
			if tc.sender {
				c.SenderRelay = map[string]config.Smarthost{"@sender.test": relay}
				key = "delivery.sender_relay.@sender.test"
			} else {
				c.Smarthost = &relay
			}
			tr, err := deliver.New(deliver.Options{Config: c, Hostname: "relay.inkan.test"})
			if err != nil {
				if !strings.Contains(err.Error(), key+".tls") {
					t.Fatalf("New refused the relay without naming %s.tls: %v", key, err)
				}
				return
			}
			defer tr.Close()
			res := deliverOne(t, tr, delivery("a@sender.test", "x.test", testMessage, "bob@x.test"))
			if n := s.auths.Load(); n > 0 {
				t.Fatalf("the password was sent to a server whose certificate was not checked (%d AUTH, result %v %s)", n, res[0].Status, res[0].Message)
			}
			wantStatus(t, res[0], queue.Deferred)
			if !strings.Contains(res[0].Message, "password") {
				t.Errorf("the reason does not say the password was kept back: %s", res[0].Message)
			}
		})
	}
}

// An MX host whose address is 0.0.0.0 reaches this machine: mail would loop
// back to it (or reach whatever else listens there).
func TestAttackMXUnspecifiedAddress(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.zone.add(t, "zero.test. 300 IN MX 10 mx.zero.test.", "mx.zero.test. 300 IN A 0.0.0.0")
	s := e.net.start(t, "127.0.0.1", sinkOpts{})
	tr := newTransport(t, deliver.Options{Config: e.config()})
	res := deliverOne(t, tr, delivery("a@sender.test", "zero.test", testMessage, "bob@zero.test"))
	if n := s.conns.Load(); n > 0 {
		t.Fatalf("dialled 0.0.0.0 (%d connections; result %v %s)", n, res[0].Status, res[0].Message)
	}
	wantStatus(t, res[0], queue.Failed)
	if res[0].Enhanced != "5.4.6" || !strings.Contains(res[0].Message, "loops back to myself") {
		t.Errorf("result %s %s, want 5.4.6 \"loops back to myself\"", res[0].Enhanced, res[0].Message)
	}
}

// The ways to trust a relay with a private or self-signed certificate:
// its CA in ca_file, or its certificate pinned by fingerprint.
func TestSmarthostCAFileAndPin(t *testing.T) {
	t.Parallel()
	cert, _ := selfSigned(t)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o644)
	sum := sha256.Sum256(cert.Certificate[0])
	pin := strings.ToUpper(hex.EncodeToString(sum[:]))
	for _, tc := range []struct {
		name     string
		relay    config.Smarthost
		implicit bool
		sent     bool
		reason   string
	}{
		{"ca_file", config.Smarthost{CAFile: caFile}, false, true, ""},
		{"pin", config.Smarthost{TLSFingerprint: pin}, false, true, ""},
		{"pin, implicit", config.Smarthost{TLSFingerprint: strings.Repeat("00", 32) + ", " + strings.ToLower(pin), TLS: "implicit"}, true, true, ""},
		{"wrong pin", config.Smarthost{TLSFingerprint: strings.Repeat("AB", 32)}, false, false, "does not match tls_fingerprint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			s := e.net.start(t, "127.0.0.4", sinkOpts{tls: serverTLS(t), implicit: tc.implicit, user: "u", pass: "p"})
			r := tc.relay
			r.Address, r.Username, r.Password = "[127.0.0.4]:"+strconv.Itoa(e.net.port), "u", "p"
			c := e.config()
			c.Smarthost = &r
			tr := newTransport(t, deliver.Options{Config: c}) // system roots: the sink is not trusted by them
			res := deliverOne(t, tr, delivery("a@sender.test", "x.test", testMessage, "bob@x.test"))
			if tc.sent {
				wantStatus(t, res[0], queue.Sent)
				return
			}
			wantStatus(t, res[0], queue.Deferred)
			if !strings.Contains(res[0].Message, tc.reason) || !strings.Contains(res[0].Message, "password of u was not sent") || s.auths.Load() != 0 {
				t.Errorf("result %s, %d AUTH", res[0].Message, s.auths.Load())
			}
		})
	}
}

// An MX host at inkan's own listening address (address and port) is this
// server: the mail bounces at once instead of going round. A host that only
// shares the address, on another port, is someone else.
func TestMXIsMyself(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.zone.add(t,
		"self.test. 300 IN MX 10 mx.self.test.", "mx.self.test. 300 IN A 127.0.0.3",
		"wild.test. 300 IN MX 10 mx.wild.test.", "mx.wild.test. 300 IN A 127.0.0.5",
		"backup.test. 300 IN MX 5 primary.backup.test.", "backup.test. 300 IN MX 10 mx.self.test.",
		"backup.test. 300 IN MX 20 mx.other.test.",
		"primary.backup.test. 300 IN A 127.0.0.2", // nothing listens there
		"mx.other.test. 300 IN A 127.0.0.4",
		"v6.test. 300 IN AAAA ::",
	)
	me := e.net.start(t, "127.0.0.3", sinkOpts{})
	other := e.net.start(t, "127.0.0.4", sinkOpts{})
	port := strconv.Itoa(e.net.port)
	for _, tc := range []struct {
		name, domain string
		listen       []string
		status       queue.Status
		reason       string
	}{
		{"exact", "self.test", []string{"127.0.0.3:" + port}, queue.Failed, "mail for self.test loops back to myself: MX host mx.self.test[127.0.0.3]:" + port},
		{"wildcard listener", "wild.test", []string{":" + port}, queue.Failed, "loops back to myself"},
		{"other port", "self.test", []string{"127.0.0.3:1"}, queue.Sent, ""},
		// As Postfix: MX hosts from inkan's preference on are dropped; the
		// better one failed, so the mail waits rather than bounces.
		{"better MX tried first", "backup.test", []string{"127.0.0.3:" + port}, queue.Deferred, "127.0.0.2"},
		{"unspecified IPv6", "v6.test", nil, queue.Failed, "the unspecified address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTransport(t, deliver.Options{Config: e.config(), Listen: tc.listen})
			before := me.conns.Load() + other.conns.Load()
			res := deliverOne(t, tr, delivery("a@sender.test", tc.domain, testMessage, "bob@"+tc.domain))
			wantStatus(t, res[0], tc.status)
			if tc.status == queue.Sent {
				return
			}
			if !strings.Contains(res[0].Message, tc.reason) {
				t.Errorf("reason %q does not contain %q", res[0].Message, tc.reason)
			}
			if tc.status == queue.Failed && res[0].Enhanced != "5.4.6" {
				t.Errorf("enhanced code %s, want 5.4.6", res[0].Enhanced)
			}
			if n := me.conns.Load() + other.conns.Load() - before; n != 0 {
				t.Errorf("%d connections to hosts at or after myself", n)
			}
		})
	}
}

// delivery.refuse_private_mx: MX hosts on private or loopback addresses
// are refused; explicit routes (transport) are not.
func TestRefusePrivateMX(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.zone.add(t, "lan.test. 300 IN MX 10 mx.lan.test.", "mx.lan.test. 300 IN A 127.0.0.2")
	s := e.net.start(t, "127.0.0.2", sinkOpts{})
	c := e.config()
	c.RefusePrivateMX = true
	c.Transport = map[string]string{"mapped.test": "[127.0.0.2]:" + strconv.Itoa(e.net.port)}
	tr := newTransport(t, deliver.Options{Config: c})
	res := deliverOne(t, tr, delivery("a@sender.test", "lan.test", testMessage, "bob@lan.test"))
	wantStatus(t, res[0], queue.Failed)
	if !strings.Contains(res[0].Message, "delivery.refuse_private_mx") || s.conns.Load() != 0 {
		t.Errorf("result %s, %d connections", res[0].Message, s.conns.Load())
	}
	res = deliverOne(t, tr, delivery("a@sender.test", "mapped.test", testMessage, "bob@mapped.test"))
	wantStatus(t, res[0], queue.Sent)
}
