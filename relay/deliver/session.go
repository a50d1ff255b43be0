package deliver

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"strings"
	"syscall"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/inkan-relay/inkan/queue"
)

const quitTimeout = 2 * time.Second

// session is one SMTP connection, ready for MAIL.
type session struct {
	c      *smtp.Client
	raw    net.Conn // TCP
	conn   net.Conn // what the client talks over: raw, or TLS on top of it
	key    poolKey
	remote string // "mx.example.com[192.0.2.1]:25"
	tls    string // "TLSv1.3 TLS_AES_128_GCM_SHA256"; "" = plain
	born   time.Time
	idle   time.Time // when it was put in the pool
	reused bool      // it has carried a transaction before
	stop   func() bool
}

// attach closes the connection if ctx ends, which makes any command
// waiting on it fail at once.
func (s *session) attach(ctx context.Context) {
	s.stop = context.AfterFunc(ctx, func() { s.raw.Close() })
}

// detach undoes attach; false means ctx ended and the connection is closed.
func (s *session) detach() bool {
	if s.stop == nil {
		return true
	}
	ok := s.stop()
	s.stop = nil
	return ok
}

func (s *session) close() { s.raw.Close() }

// quit says goodbye politely, but briefly.
func (s *session) quit() {
	if s.c != nil {
		s.c.CommandTimeout = quitTimeout
		s.c.Quit()
	}
	s.raw.Close()
}

// rset checks that an idle connection still works. It is sent here rather
// than with go-smtp's Client.Reset, which would make the next command send
// EHLO again: a round trip per message for nothing. The client's buffers
// are empty between commands, so reading the reply here is safe.
func (s *session) rset(timeout time.Duration) error {
	s.conn.SetDeadline(now().Add(timeout))
	defer s.conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(s.conn, "RSET\r\n"); err != nil {
		return err
	}
	// Any failure, even a reply, means: drop it and dial a new one.
	_, _, err := textproto.NewReader(bufio.NewReaderSize(s.conn, 64)).ReadResponse(250)
	return err
}

func quitAll(list []*session) {
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

// connect dials addr and prepares a session; under tls may, a failed TLS
// handshake is retried once in plain text.
func (t *Transport) connect(ctx context.Context, id string, route Route, rel *relay, host string, addr netip.AddrPort, key poolKey) (*session, *verdict) {
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
func (t *Transport) dial(ctx context.Context, route Route, rel *relay, host string, addr netip.AddrPort, key poolKey, plainOnly bool) (s *session, v *verdict, tlsFailed bool) {
	remote := fmt.Sprintf("%s[%s]:%d", host, addr.Addr(), addr.Port())
	raw, err := t.dialer.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return nil, temporary("4.4.1", "connect to %s: %s", remote, dialReason(err)).at(remote, ""), false
	}
	s = &session{raw: raw, key: key, remote: remote, born: now()}
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
		tc := tls.Client(raw, t.tlsConfig(route.TLS, host))
		if err := t.handshake(ctx, tc); err != nil {
			return s, temporary("4.7.5", "TLS handshake with %s failed: %v", remote, err), true
		}
		conn, s.tls = tc, describeTLS(tc)
	}
	s.conn = conn
	if s.c, v = t.hello(conn, remote); v != nil {
		return s, v, false
	}
	if ok, _ := s.c.Extension("STARTTLS"); s.tls == "" && !plainOnly && route.TLS != "none" && route.TLS != "implicit" {
		if !ok && route.TLS != "may" {
			return s, temporary("4.7.5", "%s does not offer STARTTLS, which tls %s requires", remote, route.TLS), false
		}
		if ok {
			tc, v := t.startTLS(ctx, s, route.TLS, host)
			switch {
			case v != nil && tc != nil:
				return s, v, true
			case v != nil && route.TLS != "may":
				return s, v, false
			case v == nil:
				// RFC 3207: forget what was said before TLS and greet again.
				s.conn = &greeted{Conn: tc, pre: []byte("220 TLS ready\r\n")}
				if s.c, v = t.hello(s.conn, remote); v != nil {
					return s, v, false
				}
				s.tls = describeTLS(tc)
			}
		}
	}
	if route.User != "" && rel != nil {
		if v := t.login(s, route, rel); v != nil {
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
func (t *Transport) startTLS(ctx context.Context, s *session, mode, host string) (*tls.Conn, *verdict) {
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
	tc := tls.Client(s.raw, t.tlsConfig(mode, host))
	if err := t.handshake(ctx, tc); err != nil {
		return tc, temporary("4.7.5", "TLS handshake with %s failed: %v", s.remote, err)
	}
	return tc, nil
}

func (t *Transport) handshake(ctx context.Context, tc *tls.Conn) error {
	ctx, cancel := context.WithTimeout(ctx, t.commandTimeout)
	defer cancel()
	return tc.HandshakeContext(ctx)
}

// tlsConfig: verify checks the certificate against RootCAs for host (the MX
// name, or the relay's name); every other mode encrypts without checking,
// since an unchecked certificate still beats plain text (RFC 7435).
func (t *Transport) tlsConfig(mode, host string) *tls.Config {
	cfg := &tls.Config{ServerName: host, RootCAs: t.opts.RootCAs, ClientSessionCache: t.tlsCache}
	if mode != "verify" {
		cfg.InsecureSkipVerify = true
		cfg.MinVersion = tls.VersionTLS10
	}
	return cfg
}

// login authenticates with PLAIN, or LOGIN when only that is offered. The
// password never goes out in plain text unless the relay's tls is none.
func (t *Transport) login(s *session, route Route, rel *relay) *verdict {
	if s.tls == "" && route.TLS != "none" {
		return temporary("4.7.0", "%s did not negotiate TLS; not sending the password for %s in plain text", s.remote, route.User)
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
	case s.c.SupportsAuth("PLAIN"):
		mech = sasl.NewPlainClient("", route.User, pw)
	case s.c.SupportsAuth("LOGIN"):
		mech = sasl.NewLoginClient(route.User, pw)
	default:
		if ok, list := s.c.Extension("AUTH"); ok {
			return temporary("4.7.0", "%s offers no AUTH mechanism inkan supports (PLAIN, LOGIN): %s", s.remote, list)
		}
		return temporary("4.7.0", "%s does not offer AUTH", s.remote)
	}
	if err := s.c.Auth(mech); err != nil {
		v, session := fromError(err, s.remote, "during AUTH")
		if session {
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
