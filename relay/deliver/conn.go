package deliver

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/inkan-relay/inkan/queue"
)

const quitTimeout = 2 * time.Second

// conn is one outbound SMTP connection, ready for MAIL.
type conn struct {
	smtp   *smtp.Client
	raw    net.Conn // TCP
	wire   net.Conn // what the client talks over: raw, or TLS on top of it
	key    poolKey
	remote string // "mx.example.com[192.0.2.1]:25"
	tls    string // "TLSv1.3 TLS_AES_128_GCM_SHA256"; "" = plain
	born   time.Time
	idle   time.Time // when it was put in the pool
	reused bool      // it has carried a transaction before
	// verified: the server's certificate was checked (tls verify or
	// implicit, against the CAs or the relay's pin). Only then is a
	// password sent.
	verified bool
	stop     func() bool
}

// attach closes the connection if ctx ends, which makes any command
// waiting on it fail at once.
func (s *conn) attach(ctx context.Context) {
	s.stop = context.AfterFunc(ctx, func() { s.raw.Close() })
}

// detach undoes attach; false means ctx ended and the connection is closed.
func (s *conn) detach() bool {
	if s.stop == nil {
		return true
	}
	ok := s.stop()
	s.stop = nil
	return ok
}

func (s *conn) close() { s.raw.Close() }

// quit says goodbye politely, but briefly.
func (s *conn) quit() {
	if s.smtp != nil {
		s.smtp.CommandTimeout = quitTimeout
		s.smtp.Quit()
	}
	s.raw.Close()
}

// rset ends a transaction the server may still hold open. It is sent here rather
// than with go-smtp's Client.Reset, which would make the next command send
// EHLO again: a round trip per message for nothing. The client's buffers
// are empty between commands, so reading the reply here is safe.
func (s *conn) rset(timeout time.Duration) error {
	s.wire.SetDeadline(now().Add(timeout))
	defer s.wire.SetDeadline(time.Time{})
	if _, err := io.WriteString(s.wire, "RSET\r\n"); err != nil {
		return err
	}
	// Any failure, even a reply, means: drop the connection.
	_, _, err := textproto.NewReader(bufio.NewReaderSize(s.wire, 64)).ReadResponse(250)
	return err
}

func quitAll(list []*conn) {
	done := make(chan struct{})
	for _, s := range list {
		go func() {
			s.quit()
			done <- struct{}{}
		}()
	}
	for range list {
		<-done
	}
}

// connect dials addr and prepares a connection; under tls may, a failed TLS
// handshake is retried once in plain text.
func (t *Transport) connect(ctx context.Context, id string, route Route, rel *relay, host string, addr netip.AddrPort, key poolKey) (*conn, *verdict) {
	s, v, tlsFailed := t.dial(ctx, route, rel, host, addr, key, false)
	if tlsFailed && route.TLS == "may" && ctx.Err() == nil {
		t.log.Warn("TLS handshake failed; retrying without TLS", "queue_id", id, "relay", v.remote, "err", v.msg)
		s, v, _ = t.dial(ctx, route, rel, host, addr, key, true)
	}
	if v != nil {
		connectionsTotal.WithLabelValues("failed").Inc()
		return nil, v
	}
	connectionsTotal.WithLabelValues("new").Inc()
	return s, nil
}

// dial connects, reads the greeting, says EHLO, does TLS as route.TLS asks
// (unless plainOnly) and logs in. tlsFailed reports a failed handshake.
func (t *Transport) dial(ctx context.Context, route Route, rel *relay, host string, addr netip.AddrPort, key poolKey, plainOnly bool) (s *conn, v *verdict, tlsFailed bool) {
	remote := fmt.Sprintf("%s[%s]:%d", host, addr.Addr(), addr.Port())
	raw, err := t.dialer.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return nil, temporary("4.4.1", "connect to %s: %s", remote, dialReason(err)).at(remote, ""), false
	}
	s = &conn{raw: raw, key: key, remote: remote, born: now()}
	s.attach(ctx)
	defer func() {
		if !s.detach() && v == nil {
			v = temporary("4.4.2", "connection to %s interrupted: %v", remote, context.Cause(ctx))
		}
		if v != nil {
			raw.Close()
			v.at(remote, s.tls)
			s = nil
		}
	}()
	var conn net.Conn = raw
	if route.TLS == "implicit" {
		tc := tls.Client(raw, t.tlsConfigFor(ctx, route.TLS, rel, host))
		if err := t.handshake(ctx, tc); err != nil {
			return s, tlsFailure(remote, err, route, rel), true
		}
		conn, s.tls, s.verified = tc, describeTLS(tc), true
	}
	s.wire = conn
	if s.smtp, v = t.hello(conn, remote); v != nil {
		return s, v, false
	}
	if ok, _ := s.smtp.Extension("STARTTLS"); s.tls == "" && !plainOnly && route.TLS != "none" && route.TLS != "implicit" {
		t.sawEHLO(ctx, ok) // for TLS-RPT (tlspolicy.go)
		if !ok && route.TLS != "may" {
			return s, temporary("4.7.5", "%s does not offer STARTTLS, which tls %s requires", remote, route.TLS), false
		}
		if ok {
			tc, v := t.startTLS(ctx, s, route, rel, host)
			switch {
			case v != nil && tc != nil:
				return s, v, true
			case v != nil && route.TLS != "may":
				return s, v, false
			case v == nil:
				// RFC 3207: forget what was said before TLS and greet again.
				s.wire = &greeted{Conn: tc, pre: []byte("220 TLS ready\r\n")}
				if s.smtp, v = t.hello(s.wire, remote); v != nil {
					return s, v, false
				}
				s.tls, s.verified = describeTLS(tc), verifies(route.TLS)
			}
		}
	}
	if route.User != "" && rel != nil {
		if v := t.login(ctx, s, route, rel); v != nil {
			return s, v, false
		}
	}
	return s, nil, false
}

// hello reads the greeting and says EHLO (HELO if EHLO is refused).
func (t *Transport) hello(conn net.Conn, remote string) (*smtp.Client, *verdict) {
	c := smtp.NewClient(conn)
	c.CommandTimeout = t.commandTimeout
	c.SubmissionTimeout = t.dataTimeout
	if err := c.Hello(t.opts.Hostname); err != nil {
		v, _ := fromError(err, remote, "while reading the greeting or EHLO reply")
		return nil, v
	}
	return c, nil
}

// startTLS sends STARTTLS itself (go-smtp's client would send its own EHLO
// name) and does the handshake. A refused command returns (nil, verdict);
// a failed handshake returns the TLS connection too.
func (t *Transport) startTLS(ctx context.Context, s *conn, route Route, rel *relay, host string) (*tls.Conn, *verdict) {
	s.raw.SetDeadline(now().Add(t.commandTimeout))
	defer s.raw.SetDeadline(time.Time{})
	if _, err := io.WriteString(s.raw, "STARTTLS\r\n"); err != nil {
		return nil, temporary("4.4.2", "lost connection with %s while sending STARTTLS: %v", s.remote, err)
	}
	// The server says nothing after 220 until our ClientHello, so this
	// reader cannot swallow TLS bytes.
	_, _, err := textproto.NewReader(bufio.NewReaderSize(s.raw, 512)).ReadResponse(220)
	if err != nil {
		var pe *textproto.Error
		if errors.As(err, &pe) {
			enh, text := splitEnhanced(strings.ReplaceAll(pe.Msg, "\n", " "))
			return nil, &verdict{status: queue.Deferred, code: pe.Code, enhanced: enh, msg: "STARTTLS refused: " + text}
		}
		return nil, temporary("4.4.2", "lost connection with %s after STARTTLS: %v", s.remote, err)
	}
	tc := tls.Client(s.raw, t.tlsConfigFor(ctx, route.TLS, rel, host))
	if err := t.handshake(ctx, tc); err != nil {
		return tc, tlsFailure(s.remote, err, route, rel)
	}
	return tc, nil
}

// tlsFailure is the verdict for a failed handshake. For a relay that logs
// in it says that the password was kept back, and how to trust the relay.
func tlsFailure(remote string, err error, route Route, rel *relay) *verdict {
	v := temporary("4.7.5", "TLS handshake with %s failed: %v", remote, err)
	if route.User == "" || rel == nil {
		return v
	}
	v.msg += fmt.Sprintf("; the %s of %s was not sent", rel.secretName(), route.User)
	var cv *tls.CertificateVerificationError
	if errors.As(err, &cv) || errors.Is(err, errPinMismatch) {
		v.msg += fmt.Sprintf(" (trust the relay's CA with %[1]s.ca_file, or pin its certificate with %[1]s.tls_fingerprint)", rel.key)
	}
	return v
}

func (t *Transport) handshake(ctx context.Context, tc *tls.Conn) error {
	ctx, cancel := context.WithTimeout(ctx, t.commandTimeout)
	defer cancel()
	return tc.HandshakeContext(ctx)
}

// verifies reports whether a route's tls mode checks the certificate.
func verifies(mode string) bool { return mode == "verify" || mode == "implicit" }

var errPinMismatch = errors.New("the certificate does not match tls_fingerprint")

// tlsConfig: verify and implicit check the certificate for host (the MX
// name, or the relay's name) against Options.RootCAs, or for a relay against
// its ca_file or its tls_fingerprint pin; the other modes encrypt without
// checking, since an unchecked certificate still beats plain text (RFC 7435)
// where no password is at stake.
func (t *Transport) tlsConfig(mode string, rel *relay, host string) *tls.Config {
	cfg := &tls.Config{ServerName: host, RootCAs: t.opts.RootCAs, ClientSessionCache: t.tlsCache}
	if rel != nil && rel.cert != nil {
		cfg.GetClientCertificate = rel.cert.present
		// A resumed session carries the certificate it was made with: keep
		// this relay's sessions apart from those of relays on the same host.
		cfg.ClientSessionCache = rel.sessions
	}
	switch {
	case !verifies(mode):
		cfg.InsecureSkipVerify = true
		cfg.MinVersion = tls.VersionTLS10
	case rel != nil && len(rel.pins) > 0:
		// The pin replaces the CA and the name. VerifyConnection also runs
		// on resumed sessions, so a session cannot bypass it.
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errPinMismatch
			}
			sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if !slices.Contains(rel.pins, sum) {
				return fmt.Errorf("%w: its SHA-256 fingerprint is %s", errPinMismatch, fingerprint(sum))
			}
			return nil
		}
	case rel != nil && rel.roots != nil:
		cfg.RootCAs = rel.roots
	}
	return cfg
}

// fingerprint writes a SHA-256 digest as openssl does: "AB:CD:...".
func fingerprint(sum [sha256.Size]byte) string {
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

// login authenticates with PLAIN, or LOGIN when only that is offered. The
// password goes only over TLS whose certificate was checked: New refuses a
// relay with a username and another tls mode, and this is the last guard.
func (t *Transport) login(ctx context.Context, s *conn, route Route, rel *relay) *verdict {
	switch {
	case s.tls == "":
		return temporary("4.7.0", "%s did not negotiate TLS; not sending the %s for %s in plain text", s.remote, rel.secretName(), route.User)
	case !s.verified:
		return temporary("4.7.0", "the certificate of %s was not checked (tls %s); not sending the %s for %s (use tls verify or implicit in %s)",
			s.remote, route.TLS, rel.secretName(), route.User, rel.key)
	case rel.oauth != nil:
		return t.loginOAuth(ctx, s, route, rel)
	}
	pw := rel.password
	if rel.settings.PasswordFile != "" {
		if p, err := rel.settings.ReadPassword(); err != nil || p == "" {
			t.log.Warn("cannot re-read the smarthost password; using the one read at start", "file", rel.settings.PasswordFile, "err", err)
		} else {
			pw = p
		}
	}
	var mech sasl.Client
	switch {
	case s.smtp.SupportsAuth("PLAIN"):
		mech = sasl.NewPlainClient("", route.User, pw)
	case s.smtp.SupportsAuth("LOGIN"):
		mech = sasl.NewLoginClient(route.User, pw)
	default:
		if ok, list := s.smtp.Extension("AUTH"); ok {
			return temporary("4.7.0", "%s offers no AUTH mechanism inkan supports (PLAIN, LOGIN): %s", s.remote, list)
		}
		return temporary("4.7.0", "%s does not offer AUTH", s.remote)
	}
	if err := s.smtp.Auth(mech); err != nil {
		v, ends := fromError(err, s.remote, "during AUTH")
		if ends {
			return v
		}
		// A refused login is a configuration problem here: keep the mail.
		return temporary("4.7.0", "%s refused AUTH as %s: %s", s.remote, route.User, v.String())
	}
	return nil
}

// describeTLS names the protocol and cipher: "TLSv1.3 TLS_AES_128_GCM_SHA256".
func describeTLS(tc *tls.Conn) string {
	cs := tc.ConnectionState()
	v := map[uint16]string{tls.VersionTLS10: "TLSv1", tls.VersionTLS11: "TLSv1.1",
		tls.VersionTLS12: "TLSv1.2", tls.VersionTLS13: "TLSv1.3"}[cs.Version]
	if v == "" {
		v = tls.VersionName(cs.Version)
	}
	return v + " " + tls.CipherSuiteName(cs.CipherSuite)
}

// dialReason is the short cause of a failed dial: "connection refused".
func dialReason(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "connection timed out"
	}
	return err.Error()
}

// greeted hands go-smtp's client a connection that starts with a greeting:
// after STARTTLS the server sends none, but the client waits for one.
type greeted struct {
	net.Conn
	pre []byte
}

func (g *greeted) Read(p []byte) (int, error) {
	if len(g.pre) > 0 {
		n := copy(p, g.pre)
		g.pre = g.pre[n:]
		return n, nil
	}
	return g.Conn.Read(p)
}
