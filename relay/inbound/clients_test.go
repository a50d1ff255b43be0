package inbound_test

import (
	"bytes"
	"crypto/rsa"
	"crypto/tls"
	"io"
	"net"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/relay/inbound"
)

// logBuffer collects the server's log for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// waitLog waits until the log has a line containing every one of parts.
func (e *env) waitLog(parts ...string) string {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, line := range strings.Split(e.logs.String(), "\n") {
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(line, p)
			}
			if ok {
				return line
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("no log line with %q in:\n%s", parts, e.logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// raw opens a plain connection from a loopback address and reads the
// greeting.
func (e *env) raw(kind inbound.Kind, from string) (*textproto.Conn, net.Conn) {
	e.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", e.addr(kind))
	if err != nil {
		e.t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	c := textproto.NewConn(conn)
	e.t.Cleanup(func() { c.Close() })
	if kind != inbound.KindSMTPS {
		if _, _, err := c.ReadResponse(220); err != nil {
			e.t.Fatal(err)
		}
	}
	return c, conn
}

// expect sends cmd (unless empty) and reads a reply that starts with want.
func expect(t *testing.T, c *textproto.Conn, cmd, want string) string {
	t.Helper()
	if cmd != "" {
		if err := c.PrintfLine("%s", cmd); err != nil {
			t.Fatal(err)
		}
	}
	var all []string
	for {
		line, err := c.ReadLine()
		if err != nil {
			t.Fatalf("%s: reading reply: %v (so far %q)", cmd, err, all)
		}
		all = append(all, line)
		if len(line) < 4 || line[3] != '-' {
			break
		}
	}
	got := strings.Join(all, "\n")
	if !strings.HasPrefix(got, want) {
		t.Fatalf("%s: got %q, want %q...", cmd, got, want)
	}
	return got
}

// sendRaw runs MAIL/RCPT/DATA on c and returns the queue ID.
func sendRaw(t *testing.T, c *textproto.Conn, from, to, subject string) string {
	t.Helper()
	expect(t, c, "MAIL FROM:<"+from+">", "250")
	expect(t, c, "RCPT TO:<"+to+">", "250")
	expect(t, c, "DATA", "354")
	reply := expect(t, c, "From: "+from+"\r\nTo: "+to+"\r\nSubject: "+subject+"\r\n\r\nHello.\r\n.", "250")
	return queuedID(t, reply)
}

// An old printer says a bare HELO and ignores the 501: the session goes
// on (as with Postfix), and the Received field says it gave no name.
func TestBareHeloGoesOn(t *testing.T) {
	e := start(t, nil)
	c, _ := e.raw(inbound.KindRelay, "127.0.0.2")
	expect(t, c, "HELO", "501 5.5.2")
	id := sendRaw(t, c, "printer@example.com", "boss@example.net", "scan")
	b := string(e.body(id))
	if !strings.Contains(b, "Received: from unknown ([127.0.0.2])") {
		t.Errorf("Received of a nameless client:\n%s", b)
	}
	e.waitLog("bare HELO", "127.0.0.2")

	// Pipelined behind the bare EHLO, in one packet.
	c, conn := e.raw(inbound.KindRelay, "127.0.0.2")
	io.WriteString(conn, "EHLO\r\nMAIL FROM:<printer@example.com>\r\n")
	expect(t, c, "", "501 5.5.2")
	expect(t, c, "", "250")
	expect(t, c, "QUIT", "221")

	// A stranger gains nothing: still 530/554 at MAIL.
	c, _ = e.raw(inbound.KindRelay, "127.0.0.1")
	expect(t, c, "HELO", "501")
	expect(t, c, "MAIL FROM:<x@example.com>", "554 5.7.1")
}

// STARTTLS is left out of EHLO for a listener or a network that turns it
// off; a client that tries it anyway gets 502.
func TestStartTLSPerListenerAndNetwork(t *testing.T) {
	no := false
	e := start(t, func(c *config.Config) {
		c.Auth.Networks = []config.Network{{Name: "scanners", CIDRs: []string{"127.0.0.5/32"}, StartTLS: &no}}
	})
	c := e.dial(inbound.KindRelay, "127.0.0.5")
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("STARTTLS offered to a network with starttls: false")
	}
	if ok, _ := c.Extension("DSN"); !ok {
		t.Error("DSN not advertised")
	}
	raw, _ := e.raw(inbound.KindRelay, "127.0.0.5")
	expect(t, raw, "EHLO scanner.test", "250")
	expect(t, raw, "STARTTLS", "502")
	c = e.dial(inbound.KindRelay, "127.0.0.2")
	if ok, _ := c.Extension("STARTTLS"); !ok {
		t.Error("STARTTLS not offered to another trusted network")
	}

	e = start(t, func(c *config.Config) { c.Listeners.Relay.StartTLS = &no })
	if ok, _ := e.dial(inbound.KindRelay, "127.0.0.2").Extension("STARTTLS"); ok {
		t.Error("STARTTLS offered on a listener with starttls: false")
	}
	if ok, _ := e.dial(inbound.KindSubmission, "127.0.0.2").Extension("STARTTLS"); !ok {
		t.Error("STARTTLS missing on the submission listener")
	}
}

// oldDevice is what a 2012 printer's TLS stack offers: TLS 1.0 only, and
// RSA key exchange with AES-CBC.
var oldDevice = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10,
	CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA}}

// The legacy profile lets such a device in, with an RSA certificate, AUTH
// and a signed message; the modern profile refuses it and logs why, with
// what it offered and how to let it in. No GODEBUG setting is involved:
// the test binary has Go 1.26's defaults (tls10server=0, tlsrsakex=0).
func TestLegacyProfileWithoutGODEBUG(t *testing.T) {
	if v := os.Getenv("GODEBUG"); strings.Contains(v, "tls10server") || strings.Contains(v, "tlsrsakex") {
		t.Skip("GODEBUG changes the TLS defaults")
	}
	e := start(t, func(c *config.Config) { c.Listeners.SMTPS.TLSProfile = config.TLSLegacy })
	conn, err := tls.Dial("tcp", e.addr(inbound.KindSMTPS), oldDevice)
	if err != nil {
		t.Fatalf("TLS 1.0 + RSA key exchange on a legacy listener: %v", err)
	}
	cs := conn.ConnectionState()
	if cs.Version != tls.VersionTLS10 || cs.CipherSuite != tls.TLS_RSA_WITH_AES_128_CBC_SHA {
		t.Errorf("negotiated %s %s", tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite))
	}
	if _, ok := cs.PeerCertificates[0].PublicKey.(*rsa.PublicKey); !ok {
		t.Errorf("certificate key %T, want RSA for an old device", cs.PeerCertificates[0].PublicKey)
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("printer.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(saslPlain("alice", testPassword)); err != nil {
		t.Fatalf("AUTH over TLS 1.0: %v", err)
	}
	reply, err := send(c, "alice@example.com", []string{"rcpt@example.net"}, msg("alice@example.com", "rcpt@example.net", "from an old printer"))
	if err != nil {
		t.Fatal(err)
	}
	b := e.body(queuedID(t, reply))
	if vs := e.verifyDKIM(b); len(vs) == 0 || vs[0].Err != nil {
		t.Errorf("not signed: %v", vs)
	}
	if !strings.Contains(string(b), "(using TLS 1.0 with cipher TLS_RSA_WITH_AES_128_CBC_SHA)") {
		t.Errorf("Received does not name the old TLS:\n%s", b)
	}
	// Modern clients still get ECDSA and TLS 1.3 there.
	mc, err := tls.Dial("tcp", e.addr(inbound.KindSMTPS), clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	if mc.ConnectionState().Version != tls.VersionTLS13 {
		t.Errorf("modern client got %s", tls.VersionName(mc.ConnectionState().Version))
	}
	mc.Close()

	// The modern default refuses the device on 465 and on 587, and says why.
	e = start(t, nil)
	if c, err := tls.Dial("tcp", e.addr(inbound.KindSMTPS), oldDevice); err == nil {
		c.Close()
		t.Fatal("TLS 1.0 accepted by the modern profile")
	}
	line := e.waitLog("TLS handshake failed", "listener=smtps")
	for _, want := range []string{"offered_versions=\"TLS 1.0\"", "TLS_RSA_WITH_AES_128_CBC_SHA", "listeners.smtps.tls_profile: legacy", "client=127.0.0.1"} {
		if !strings.Contains(line, want) {
			t.Errorf("log line lacks %q: %s", want, line)
		}
	}
	raw, conn2 := e.raw(inbound.KindSubmission, "127.0.0.1")
	expect(t, raw, "EHLO printer.test", "250")
	expect(t, raw, "STARTTLS", "220")
	if err := tls.Client(conn2, oldDevice).Handshake(); err == nil {
		t.Fatal("TLS 1.0 accepted after STARTTLS by the modern profile")
	}
	line = e.waitLog("TLS handshake failed", "listener=submission")
	if !strings.Contains(line, "protocol_version") || !strings.Contains(line, "listeners.submission.tls_profile: legacy") {
		t.Errorf("STARTTLS failure log: %s", line)
	}
}

func saslPlain(user, pass string) sasl.Client { return sasl.NewPlainClient("", user, pass) }
