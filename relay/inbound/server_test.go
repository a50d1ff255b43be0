package inbound_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/inkan-relay/inkan/auth"
	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/queue"
	"github.com/inkan-relay/inkan/relay/inbound"
	"github.com/inkan-relay/inkan/relay/signing"
)

// nullTransport defers everything: these tests look at the spool only.
type nullTransport struct{}

func (nullTransport) Deliver(_ ctxT, d *queue.Delivery) []queue.Result {
	var rs []queue.Result
	for _, r := range d.Rcpts {
		rs = append(rs, queue.Result{Rcpt: r, Status: queue.Deferred, Message: "test: not delivering"})
	}
	return rs
}

type env struct {
	t       testing.TB
	srv     *inbound.Server
	q       *queue.Queue
	cfg     *config.Config
	dkimPub string     // TXT record for the test key
	logs    *logBuffer // the server's log (clients_test.go)
}

const testPassword = "correct horse battery staple"

// start runs a server on 127.0.0.1:0 listeners with a real queue, a users
// file holding alice and bob, and an Ed25519 DKIM key for example.com.
// testHashCost is the bcrypt cost of the test users' passwords: cheap,
// unless a test needs checks that take a while (set before start).
var testHashCost = 4

func start(t testing.TB, mutate func(*config.Config)) *env {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Hostname = "mx.test.example"
	cfg.DataDir = dir
	cfg.Listen = config.Listen{SMTPS: "127.0.0.1:0", Submission: "127.0.0.1:0", Relay: "127.0.0.1:0"}
	cfg.Auth.UsersFile = filepath.Join(dir, "users")
	cfg.Auth.TrustedNetworks = []string{"127.0.0.2/32"}
	cfg.Auth.Senders = map[string][]string{"alice": {"alice@example.com", "@example.org"}}
	cfg.Auth.MaxFailures = 3
	cfg.Auth.Lockout = config.Duration(time.Minute)

	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	keyFile := filepath.Join(dir, "example.com.ed1.key")
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	cfg.DKIM.Keys = []config.DKIMKey{{Domain: "example.com", Selector: "ed1", KeyFile: keyFile}}
	if mutate != nil {
		mutate(cfg)
	}

	for _, u := range []string{"alice", "bob@example.net"} {
		h, err := auth.HashPasswordCost(testPassword, testHashCost)
		if err != nil {
			t.Fatal(err)
		}
		if err := auth.SetUser(cfg.Auth.UsersFile, u, h); err != nil {
			t.Fatal(err)
		}
	}
	logs := &logBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(io.MultiWriter(logs, os.Stderr), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	st := &inbound.State{Config: cfg}
	var err error
	if st.Users, err = auth.LoadUsers(cfg.Auth.UsersFile); err != nil {
		t.Fatal(err)
	}
	if st.Networks, err = auth.NewNetworks(cfg.Auth, nil); err != nil {
		t.Fatal(err)
	}
	if st.Policy, err = auth.NewPolicy(cfg.Auth.Senders); err != nil {
		t.Fatal(err)
	}
	if st.Signer, err = signing.New(cfg.DKIM, logger); err != nil {
		t.Fatal(err)
	}
	setup, err := inbound.ServerTLS(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	st.TLS = setup.Config
	q, err := queue.Open(queue.Options{Dir: filepath.Join(dir, "queue"), Transport: nullTransport{}, Logger: logger, Hostname: cfg.Hostname,
		MaxLifetime: time.Hour, RetryMin: time.Minute, RetryMax: time.Hour, MaxConcurrent: 2, MaxPerDomain: 1})
	if err != nil {
		t.Fatal(err)
	}
	srv := inbound.New(st, inbound.Options{Spool: q, Logger: logger})
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { srv.Serve(); close(done) }()
	t.Cleanup(func() {
		ctx, cancel := contextWithTimeout(5 * time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
		q.Close()
	})
	return &env{t: t, srv: srv, q: q, cfg: cfg, logs: logs,
		dkimPub: "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)}
}

func (e *env) addr(kind inbound.Kind) string {
	e.t.Helper()
	a := e.srv.Addrs(kind)
	if len(a) == 0 {
		e.t.Fatalf("no %s listener", kind)
	}
	return a[0].String()
}

var clientTLS = &tls.Config{InsecureSkipVerify: true}

// dial connects from a chosen loopback source address (127.0.0.1 is
// untrusted in these tests; 127.0.0.2 is trusted).
func (e *env) dial(kind inbound.Kind, from string) *smtp.Client {
	e.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", e.addr(kind))
	if err != nil {
		e.t.Fatal(err)
	}
	if kind == inbound.KindSMTPS {
		conn = tls.Client(conn, clientTLS)
	}
	c := smtp.NewClient(conn)
	e.t.Cleanup(func() { c.Close() })
	if err := c.Hello("client.test"); err != nil {
		e.t.Fatal(err)
	}
	return c
}

// dialStartTLS connects to the submission port and upgrades with STARTTLS.
func (e *env) dialStartTLS(from string) *smtp.Client {
	e.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", e.addr(inbound.KindSubmission))
	if err != nil {
		e.t.Fatal(err)
	}
	c, err := smtp.NewClientStartTLS(conn, clientTLS)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

func code(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

func enhanced(err error) string {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	}
	return ""
}

func msg(from, to, subject string) string {
	return "From: " + from + "\r\nTo: " + to + "\r\nSubject: " + subject + "\r\n\r\nHello.\r\n.leading dot\r\n"
}

// send runs one transaction and returns the DATA reply or the first error.
func send(c *smtp.Client, from string, to []string, body string) (string, error) {
	if err := c.Mail(from, nil); err != nil {
		return "", err
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return "", err
		}
	}
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	io.WriteString(w, body)
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", err
	}
	return resp.StatusText, nil
}

func queuedID(t testing.TB, reply string) string {
	t.Helper()
	i := strings.Index(reply, "queued as ")
	if i < 0 {
		t.Fatalf("reply %q has no queue ID", reply)
	}
	return strings.TrimSpace(reply[i+len("queued as "):])
}

func (e *env) body(id string) []byte {
	e.t.Helper()
	r, err := e.q.Body(id)
	if err != nil {
		e.t.Fatal(err)
	}
	defer r.Close()
	b, _ := io.ReadAll(r)
	return b
}

func (e *env) verifyDKIM(b []byte) []*dkim.Verification {
	e.t.Helper()
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(b), &dkim.VerifyOptions{
		LookupTXT: func(domain string) ([]string, error) {
			if domain == "ed1._domainkey.example.com" {
				return []string{e.dkimPub}, nil
			}
			return nil, fmt.Errorf("no record for %s", domain)
		},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return vs
}

func TestSubmissionAuthAndSigning(t *testing.T) {
	e := start(t, nil)
	for _, tc := range []struct {
		name string
		kind inbound.Kind
		mech func(u, p string) sasl.Client
	}{
		{"smtps plain", inbound.KindSMTPS, func(u, p string) sasl.Client { return sasl.NewPlainClient("", u, p) }},
		{"smtps login", inbound.KindSMTPS, sasl.NewLoginClient},
		{"submission plain", inbound.KindSubmission, func(u, p string) sasl.Client { return sasl.NewPlainClient("", u, p) }},
		{"submission login", inbound.KindSubmission, sasl.NewLoginClient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.dial(tc.kind, "127.0.0.1")
			if tc.kind == inbound.KindSubmission {
				if ok, _ := c.Extension("AUTH"); ok {
					t.Fatal("AUTH advertised before STARTTLS")
				}
				c = e.dialStartTLS("127.0.0.1")
				if ok, _ := c.Extension("AUTH"); !ok {
					t.Fatal("AUTH not advertised after STARTTLS")
				}
			}
			if err := c.Auth(tc.mech("alice", testPassword)); err != nil {
				t.Fatalf("auth: %v", err)
			}
			reply, err := send(c, "alice@example.com", []string{"rcpt@example.net"}, msg("Alice <alice@example.com>", "rcpt@example.net", tc.name))
			if err != nil {
				t.Fatal(err)
			}
			b := e.body(queuedID(t, reply))
			for _, want := range []string{"([127.0.0.1])\r\n\tby mx.test.example (inkan)", "with ESMTPSA", "Message-ID: <", "Date: ", "\r\n..leading dot\r\n"} {
				if want == "\r\n..leading dot\r\n" {
					want = "\r\n.leading dot\r\n"
				}
				if !bytes.Contains(b, []byte(want)) {
					t.Errorf("queued message lacks %q:\n%s", want, b)
				}
			}
			vs := e.verifyDKIM(b)
			if len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "example.com" {
				t.Fatalf("dkim verifications = %+v", vs)
			}
		})
	}
}

func TestAuthBeforeStartTLSRefused(t *testing.T) {
	e := start(t, nil)
	c := e.dial(inbound.KindSubmission, "127.0.0.1")
	err := c.Auth(sasl.NewPlainClient("", "alice", testPassword))
	if code(err) != 530 && code(err) != 538 {
		t.Fatalf("AUTH before STARTTLS: %v, want 530", err)
	}
}

func TestWrongPasswordAndLockout(t *testing.T) {
	e := start(t, nil)
	lim := e.srv.Limiter()
	lim.BaseDelay, lim.MaxDelay = 0, 0 // tests must not sleep
	for i := 0; i < 3; i++ {
		c := e.dial(inbound.KindSMTPS, "127.0.0.1")
		err := c.Auth(sasl.NewPlainClient("", "alice", "wrong"))
		if code(err) != 535 || enhanced(err) != "5.7.8" {
			t.Fatalf("attempt %d: %v, want 535 5.7.8", i, err)
		}
	}
	c := e.dial(inbound.KindSMTPS, "127.0.0.1")
	err := c.Auth(sasl.NewPlainClient("", "alice", testPassword))
	if code(err) != 454 {
		t.Fatalf("after lockout: %v, want 454 4.7.0", err)
	}
	// Another address is not locked out.
	c = e.dial(inbound.KindSMTPS, "127.0.0.3")
	if err := c.Auth(sasl.NewPlainClient("", "alice", testPassword)); err != nil {
		t.Fatalf("other IP: %v", err)
	}
}

func TestTrustedRelayWithoutAuth(t *testing.T) {
	e := start(t, nil)
	c := e.dial(inbound.KindRelay, "127.0.0.2")
	reply, err := send(c, "printer@example.com", []string{"admin@example.net"}, "Subject: scan\n\nbare LF body\n")
	if err != nil {
		t.Fatal(err)
	}
	b := e.body(queuedID(t, reply))
	if bytes.Contains(bytes.ReplaceAll(b, []byte("\r\n"), nil), []byte("\n")) {
		t.Errorf("bare LF survived: %q", b)
	}
}

func TestOpenRelayRefused(t *testing.T) {
	e := start(t, nil)
	tricks := []string{
		"victim@example.net", "user%other.example@mx.test.example", "@relay.example:user@example.net",
		"\"user@other\"@mx.test.example", "other!user@mx.test.example", "user@[192.0.2.1]",
	}
	for _, kind := range []inbound.Kind{inbound.KindRelay, inbound.KindSubmission, inbound.KindSMTPS} {
		for _, rcpt := range tricks {
			c := e.dial(kind, "127.0.0.1")
			_, err := send(c, "someone@example.com", []string{rcpt}, msg("someone@example.com", rcpt, "relay test"))
			if err == nil || code(err)/100 != 5 {
				t.Errorf("%s: untrusted relay to %q: %v, want a 5xx refusal", kind, rcpt, err)
			}
		}
	}
	var n int
	e.q.List(func(queue.Info) error { n++; return nil })
	if n != 0 {
		t.Fatalf("%d messages queued by an untrusted client", n)
	}
}

func TestSenderPolicy(t *testing.T) {
	e := start(t, nil)
	c := e.dial(inbound.KindSMTPS, "127.0.0.1")
	if err := c.Auth(sasl.NewPlainClient("", "alice", testPassword)); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("ceo@example.com", nil); code(err) != 553 || enhanced(err) != "5.7.1" {
		t.Fatalf("MAIL FROM forged: %v, want 553 5.7.1", err)
	}
	c.Reset()
	_, err := send(c, "alice@example.com", []string{"x@example.net"}, msg("CEO <ceo@example.com>", "x@example.net", "forged"))
	if code(err) != 550 || enhanced(err) != "5.7.1" {
		t.Fatalf("header From forged: %v, want 550 5.7.1", err)
	}
	c.Reset()
	if _, err := send(c, "anything@example.org", []string{"x@example.net"}, msg("anything@example.org", "x@example.net", "domain ok")); err != nil {
		t.Fatalf("@example.org allowed: %v", err)
	}
}

func TestLimits(t *testing.T) {
	e := start(t, func(c *config.Config) {
		c.Limits.MaxRecipients = 2
		c.Limits.MaxMessageSize = 2000
		// 127.0.0.2 is a trusted network: its own per-address limit.
		c.Limits.MaxConnectionsPerTrustedIP = 2
	})
	c := e.dial(inbound.KindRelay, "127.0.0.2")
	c.Mail("p@example.com", nil)
	c.Rcpt("a@example.net", nil)
	c.Rcpt("b@example.net", nil)
	if err := c.Rcpt("c@example.net", nil); code(err) != 452 || enhanced(err) != "4.5.3" {
		t.Fatalf("3rd rcpt: %v, want 452 4.5.3", err)
	}
	c.Reset()
	_, err := send(c, "p@example.com", []string{"a@example.net"}, "Subject: big\r\n\r\n"+strings.Repeat(strings.Repeat("x", 70)+"\r\n", 40))
	if code(err) != 552 || enhanced(err) != "5.3.4" {
		t.Fatalf("big message: %v, want 552 5.3.4", err)
	}
	// Two connections from 127.0.0.2 are open (c, and this one); a third is refused.
	e.dial(inbound.KindRelay, "127.0.0.2")
	conn, err := net.DialTCP("tcp", &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, mustTCP(e.addr(inbound.KindRelay)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, _ := io.ReadAll(conn)
	if !strings.HasPrefix(string(line), "421 4.7.0") {
		t.Fatalf("3rd connection got %q, want 421 4.7.0", line)
	}
}

func mustTCP(a string) *net.TCPAddr {
	ap, _ := net.ResolveTCPAddr("tcp", a)
	return ap
}

func TestReloadKeepsConnections(t *testing.T) {
	e := start(t, nil)
	c := e.dial(inbound.KindSMTPS, "127.0.0.1")
	if err := c.Auth(sasl.NewPlainClient("", "alice", testPassword)); err != nil {
		t.Fatal(err)
	}
	// A new user appears on disk; swapping in a new State picks it up while
	// the open session keeps working.
	h, _ := auth.HashPasswordCost("newpass", 4)
	auth.SetUser(e.cfg.Auth.UsersFile, "carol@example.com", h)
	st := *e.srv.Current()
	users, err := auth.LoadUsers(e.cfg.Auth.UsersFile)
	if err != nil {
		t.Fatal(err)
	}
	st.Users = users
	e.srv.Swap(&st)
	if _, err := send(c, "alice@example.com", []string{"x@example.net"}, msg("alice@example.com", "x@example.net", "after reload")); err != nil {
		t.Fatalf("open session after reload: %v", err)
	}
	c2 := e.dial(inbound.KindSMTPS, "127.0.0.1")
	if err := c2.Auth(sasl.NewPlainClient("", "carol@example.com", "newpass")); err != nil {
		t.Fatalf("new user after reload: %v", err)
	}
}

func TestSmugglingDoesNotEndData(t *testing.T) {
	e := start(t, nil)
	conn, err := net.DialTCP("tcp", &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, mustTCP(e.addr(inbound.KindRelay)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	script := "EHLO x\r\nMAIL FROM:<p@example.com>\r\nRCPT TO:<a@example.net>\r\nDATA\r\n" +
		"Subject: smuggle\r\n\r\nline\n.\nMAIL FROM:<evil@example.com>\r\nline2\r.\rend\r\n.\r\nQUIT\r\n"
	io.WriteString(conn, script)
	out, _ := io.ReadAll(conn)
	if n := strings.Count(string(out), "queued as"); n != 1 {
		t.Fatalf("want exactly one message queued, got %d:\n%s", n, out)
	}
	id := queuedID(t, strings.SplitN(string(out[strings.Index(string(out), "queued as"):]), "\r\n", 2)[0])
	b := e.body(id)
	if !bytes.Contains(b, []byte("\r\n.\r\nMAIL FROM:<evil@example.com>")) {
		t.Fatalf("smuggled text should stay inside the message body (normalised): %q", b)
	}
}
