package inbound_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"

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
	legacy10 := map[string]string{"listener": "smtps", "profile": "legacy", "version": "TLS 1.0"}
	before := counterValue(t, "inkan_tls_handshakes_total", legacy10)
	conn, err := tls.Dial("tcp", e.addr(inbound.KindSMTPS), oldDevice)
	if err != nil {
		t.Fatalf("TLS 1.0 + RSA key exchange on a legacy listener: %v", err)
	}
	cs := conn.ConnectionState()
	if n := counterValue(t, "inkan_tls_handshakes_total", legacy10); n < before+1 {
		t.Errorf("inkan_tls_handshakes_total%v = %v after the handshake, was %v", legacy10, n, before)
	}
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
	refused := map[string]string{"listener": "smtps", "reason": "protocol_version"}
	before = counterValue(t, "inkan_tls_handshake_failures_total", refused)
	if c, err := tls.Dial("tcp", e.addr(inbound.KindSMTPS), oldDevice); err == nil {
		c.Close()
		t.Fatal("TLS 1.0 accepted by the modern profile")
	}
	line := e.waitLog("TLS handshake failed", "listener=smtps")
	if n := counterValue(t, "inkan_tls_handshake_failures_total", refused); n < before+1 {
		t.Errorf("inkan_tls_handshake_failures_total%v = %v after the refusal, was %v", refused, n, before)
	}
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

// dialFrom opens a TCP connection from a loopback address.
func (e *env) dialFrom(kind inbound.Kind, from string) net.Conn {
	e.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", e.addr(kind))
	if err != nil {
		e.t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	e.t.Cleanup(func() { conn.Close() })
	return conn
}

// proxyV2 is a PROXY protocol v2 header for a TCP/IPv4 client.
func proxyV2(src string, sport uint16) []byte {
	b := append([]byte("\r\n\r\n\x00\r\nQUIT\n"), 0x21, 0x11, 0, 12)
	s := netip.MustParseAddr(src).As4()
	b = append(b, s[:]...)
	b = append(b, 127, 0, 0, 1)
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(b, sport), 25)
}

// Behind a proxy, the address in the PROXY header decides trust, limits,
// logs and Received; the proxy's own address (trusted here, as operators
// are tempted to do) gives nothing. A PROXY header from an address that is
// not a listed proxy is refused.
func TestProxyProtocol(t *testing.T) {
	e := start(t, func(c *config.Config) {
		c.Auth.TrustedNetworks = []string{"127.0.0.2/32", "127.0.0.9/32"}
		c.Listeners.Relay.ProxyProtocolFrom = []string{"127.0.0.9/32"}
		c.Listeners.SMTPS.ProxyProtocolFrom = []string{"127.0.0.9"}
		c.Limits.MaxConnectionsPerIP = 2
	})
	// v1, a trusted client behind the proxy: relayed, Received names it.
	conn := e.dialFrom(inbound.KindRelay, "127.0.0.9")
	io.WriteString(conn, "PROXY TCP4 127.0.0.2 127.0.0.1 40000 25\r\n")
	c := textproto.NewConn(conn)
	expect(t, c, "", "220")
	expect(t, c, "EHLO printer.test", "250")
	id := sendRaw(t, c, "printer@example.com", "boss@example.net", "via proxy")
	if b := string(e.body(id)); !strings.Contains(b, "Received: from printer.test ([127.0.0.2])") {
		t.Errorf("Received behind the proxy:\n%s", b)
	}
	e.waitLog("accepted", "client=127.0.0.2", "proxy=127.0.0.9")

	// v2, a stranger behind the (trusted) proxy: not trusted.
	conn = e.dialFrom(inbound.KindRelay, "127.0.0.9")
	conn.Write(proxyV2("127.0.0.7", 40001))
	c = textproto.NewConn(conn)
	expect(t, c, "", "220")
	expect(t, c, "EHLO stranger.test", "250")
	expect(t, c, "MAIL FROM:<x@example.com>", "554 5.7.1")

	// Limits count the stranger's address, not the proxy's.
	var open []net.Conn
	for i := range 3 {
		conn := e.dialFrom(inbound.KindRelay, "127.0.0.9")
		conn.Write(proxyV2("127.0.0.8", uint16(41000+i)))
		open = append(open, conn)
	}
	refusedN := 0 // the headers are read concurrently: any one of the three
	for _, conn := range open {
		line, _ := textproto.NewConn(conn).ReadLine()
		switch {
		case strings.HasPrefix(line, "421 4.7.0 Too many connections from 127.0.0.8"):
			refusedN++
		case !strings.HasPrefix(line, "220"):
			t.Errorf("connection through the proxy for 127.0.0.8: %q", line)
		}
	}
	if refusedN != 1 {
		t.Errorf("%d of 3 connections for 127.0.0.8 refused, want 1 (max_connections_per_ip 2)", refusedN)
	}
	for i := range 3 { // other clients of the same proxy are not limited by them
		conn := e.dialFrom(inbound.KindRelay, "127.0.0.9")
		conn.Write(proxyV2(fmt.Sprintf("127.0.0.%d", 20+i), 42000))
		if line, _ := textproto.NewConn(conn).ReadLine(); !strings.HasPrefix(line, "220") {
			t.Errorf("another client through the proxy: %q", line)
		}
	}

	// Implicit TLS after a v2 header.
	conn = e.dialFrom(inbound.KindSMTPS, "127.0.0.9")
	conn.Write(proxyV2("127.0.0.2", 43000))
	tc := tls.Client(conn, clientTLS)
	sc := smtp.NewClient(tc)
	if err := sc.Hello("nas.test"); err != nil {
		t.Fatal(err)
	}
	if err := sc.Mail("nas@example.com", nil); err != nil {
		t.Errorf("trusted client through the proxy on 465: %v", err)
	}
	sc.Close()

	// A PROXY header from a client that is not a listed proxy: refused.
	conn = e.dialFrom(inbound.KindRelay, "127.0.0.2")
	c = textproto.NewConn(conn)
	expect(t, c, "", "220")
	expect(t, c, "PROXY TCP4 127.0.0.9 127.0.0.1 1 25", "554 5.7.0")
	if _, err := c.ReadLine(); err == nil {
		t.Error("connection still open after a refused PROXY header")
	}
	e.waitLog("PROXY header refused", "client=127.0.0.2", "proxy_protocol_from")
	conn = e.dialFrom(inbound.KindSMTPS, "127.0.0.3")
	conn.Write(proxyV2("127.0.0.2", 1))
	if err := tls.Client(conn, clientTLS).Handshake(); err == nil {
		t.Error("TLS after a refused PROXY header")
	}
	e.waitLog("PROXY header refused", "client=127.0.0.3", "listener=smtps")

	// A listed proxy that sends no header: closed, and logged.
	conn = e.dialFrom(inbound.KindRelay, "127.0.0.9")
	io.WriteString(conn, "EHLO forgot-send-proxy.test\r\n")
	if b, _ := io.ReadAll(conn); len(b) != 0 {
		t.Errorf("a listed proxy without a header got %q", b)
	}
	e.waitLog("no valid PROXY header", "proxy=127.0.0.9", "send-proxy")
}

// headers.received_privacy: authenticated: a user's address and HELO stay
// out of the Received field; trusted networks keep them.
func TestReceivedPrivacy(t *testing.T) {
	e := start(t, func(c *config.Config) { c.Headers.ReceivedPrivacy = config.PrivacyAuthenticated })
	c := e.dial(inbound.KindSMTPS, "127.0.0.1")
	if err := c.Auth(saslPlain("alice", testPassword)); err != nil {
		t.Fatal(err)
	}
	reply, err := send(c, "alice@example.com", []string{"rcpt@example.net"}, msg("alice@example.com", "rcpt@example.net", "private"))
	if err != nil {
		t.Fatal(err)
	}
	b := string(e.body(queuedID(t, reply)))
	if strings.Contains(b, "127.0.0.1") || strings.Contains(b, "client.test") || !strings.Contains(b, "Received: by mx.test.example (inkan) with ESMTPSA id ") {
		t.Errorf("authenticated Received:\n%s", b)
	}
	reply, err = send(e.dial(inbound.KindRelay, "127.0.0.2"), "p@example.com", []string{"rcpt@example.net"}, msg("p@example.com", "rcpt@example.net", "lan"))
	if err != nil {
		t.Fatal(err)
	}
	if b := string(e.body(queuedID(t, reply))); !strings.Contains(b, "Received: from client.test ([127.0.0.2])") {
		t.Errorf("trusted-network Received:\n%s", b)
	}
}

// DSN is advertised; RET, ENVID, NOTIFY and ORCPT are stored with the
// message; a bad NOTIFY set is refused with 501 5.5.4.
func TestDSNParametersStored(t *testing.T) {
	e := start(t, nil)
	c := e.dial(inbound.KindRelay, "127.0.0.2")
	if ok, _ := c.Extension("DSN"); !ok {
		t.Fatal("DSN not advertised")
	}
	if err := c.Mail("tickets@example.com", &smtp.MailOptions{Return: smtp.DSNReturnHeaders, EnvelopeID: "ticket+42"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("a@example.net", &smtp.RcptOptions{Notify: []smtp.DSNNotify{smtp.DSNNotifySuccess, smtp.DSNNotifyFailure},
		OriginalRecipientType: smtp.DSNAddressTypeRFC822, OriginalRecipient: "old-a@example.net"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("b@example.net", &smtp.RcptOptions{Notify: []smtp.DSNNotify{smtp.DSNNotifyNever}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("c@example.net", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, msg("tickets@example.com", "a@example.net", "dsn"))
	resp, err := w.CloseWithResponse()
	if err != nil {
		t.Fatal(err)
	}
	info, err := e.q.Get(queuedID(t, resp.StatusText))
	if err != nil {
		t.Fatal(err)
	}
	if info.DSNRet != "HDRS" || info.DSNEnvID != "ticket+42" {
		t.Errorf("RET/ENVID = %q %q", info.DSNRet, info.DSNEnvID)
	}
	a, b := info.Rcpts[0].DSN, info.Rcpts[1].DSN
	if a == nil || strings.Join(a.Notify, ",") != "SUCCESS,FAILURE" || a.ORcpt != "old-a@example.net" || a.ORcptType != "RFC822" ||
		b == nil || strings.Join(b.Notify, ",") != "NEVER" || info.Rcpts[2].DSN != nil {
		t.Errorf("per-recipient DSN = %+v %+v %+v", a, b, info.Rcpts[2].DSN)
	}
	raw, _ := e.raw(inbound.KindRelay, "127.0.0.2")
	expect(t, raw, "EHLO x.test", "250")
	expect(t, raw, "MAIL FROM:<tickets@example.com> RET=HDRS", "250")
	expect(t, raw, "RCPT TO:<a@example.net> NOTIFY=NEVER,SUCCESS", "501 5.5.4")
}

// writeRSACert writes a self-signed RSA pair for cn into dir.
func writeRSACert(t *testing.T, dir, cn string) (certFile, keyFile string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{cn},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	kd, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "rsa.pem"), filepath.Join(dir, "rsa.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600)
	return
}

// Certificate files: an ECDSA cert_file for modern clients and an RSA
// rsa_cert_file for the old device on a network with the legacy profile.
func TestRSACertificateFileForOldDevices(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeCert(t, dir, "mx.test.example")
	rsaCert, rsaKey := writeRSACert(t, dir, "mx.test.example")
	e := start(t, func(c *config.Config) {
		c.TLS.CertFile, c.TLS.KeyFile = certFile, keyFile
		c.TLS.RSACertFile, c.TLS.RSAKeyFile = rsaCert, rsaKey
		c.Auth.Networks = []config.Network{{Name: "printers", CIDRs: []string{"127.0.0.6/32"}, TLSProfile: config.TLSLegacy}}
	})
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.6")}, Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", e.addr(inbound.KindSMTPS), oldDevice)
	if err != nil {
		t.Fatalf("old device on its legacy network: %v", err)
	}
	if _, ok := conn.ConnectionState().PeerCertificates[0].PublicKey.(*rsa.PublicKey); !ok {
		t.Error("old device did not get the RSA certificate")
	}
	conn.Close()
	mc, err := tls.Dial("tcp", e.addr(inbound.KindSMTPS), clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := mc.ConnectionState().PeerCertificates[0].PublicKey.(*ecdsa.PublicKey); !ok {
		t.Error("modern client did not get the ECDSA certificate")
	}
	mc.Close()
	// The same device elsewhere (not in the legacy network) is refused.
	if c, err := tls.Dial("tcp", e.addr(inbound.KindSMTPS), oldDevice); err == nil {
		c.Close()
		t.Error("TLS 1.0 accepted outside the legacy network")
	}
}

// counterValue reads a counter of the process's default registry (where
// inkan's metrics live) by its labels; 0 when that series does not exist.
func counterValue(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}
