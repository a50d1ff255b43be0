package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/inkan-relay/inkan/test/freeport"
)

// sinkBehavior is how a sink treats the inkan delivering to it. It can be
// changed while the sink runs; new connections and commands see the change.
type sinkBehavior struct {
	blackhole bool            // accept the TCP connection, never greet
	greet421  bool            // greet with 421 and hang up
	dropData  bool            // hang up in the middle of DATA
	stallData bool            // read the whole message, never answer
	tempFail  int             // answer 451 to this many RCPTs, then accept
	reject    map[string]bool // recipients answered 550 5.1.1
	dataDelay time.Duration   // pause before answering the final dot
	brokenTLS bool            // offer STARTTLS, then fail the handshake
}

// sunk is one message a sink accepted.
type sunk struct {
	from string
	to   []string
	data []byte
	tls  bool
	user string
	tag  int64 // the sink's tag when the DATA transfer began
}

// sink is an in-process SMTP server (go-smtp) standing for the next hop. It
// can be taken down (connection refused) and brought up again on the same
// port, and can misbehave as its sinkBehavior says.
type sink struct {
	h    *harness
	name string
	addr string
	cert *tls.Certificate  // non-nil: STARTTLS is offered
	auth map[string]string // non-nil: AUTH PLAIN/LOGIN is offered

	mu       sync.Mutex
	beh      sinkBehavior
	srv      *smtp.Server
	ln       net.Listener
	held     []net.Conn
	msgs     []sunk
	onMsg    []func(sunk)
	conns    int
	rcpts    int // RCPT commands seen
	authFail int
	wg       sync.WaitGroup
	inData   chan struct{} // gets a token when a DATA transfer starts
	tag      atomic.Int64  // copied into each sunk at the start of DATA
}

// newSink creates a sink and brings it up on a fresh loopback port.
func (h *harness) newSink(name string, cert *tls.Certificate, auth map[string]string) (*sink, error) {
	s := &sink{h: h, name: name, cert: cert, auth: auth, inData: make(chan struct{}, 1)}
	if err := s.up(); err != nil {
		return nil, err
	}
	h.trackSink(s)
	return s, nil
}

// setBehavior replaces the behavior; held (blackholed) connections are
// released.
func (s *sink) setBehavior(b sinkBehavior) {
	s.mu.Lock()
	s.beh = b
	held := s.held
	s.held = nil
	s.mu.Unlock()
	for _, c := range held {
		c.Close()
	}
}

func (s *sink) behavior() sinkBehavior {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.beh
}

// subscribe calls fn for every message accepted from now on.
func (s *sink) subscribe(fn func(sunk)) {
	s.mu.Lock()
	s.onMsg = append(s.onMsg, fn)
	s.mu.Unlock()
}

// up listens (on the same port as before, if it was up before) and serves.
func (s *sink) up() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return nil
	}
	addr := s.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener
	var err error
	for range 50 {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("sink %s: listen: %w", s.name, err)
	}
	if s.addr == "" {
		s.addr = ln.Addr().String()
		freeport.Keep(ln.Addr().(*net.TCPAddr).Port)
	}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &sinkSession{s: s, c: c}, nil
	}))
	srv.Domain = "sink-" + sanitize(s.name) + ".test"
	srv.AllowInsecureAuth = true
	srv.MaxMessageBytes = 64 << 20
	srv.MaxLineLength = 16 << 10
	srv.ReadTimeout = 60 * time.Second
	srv.WriteTimeout = 60 * time.Second
	srv.ErrorLog = nopLogger{}
	if s.cert != nil {
		base := &tls.Config{Certificates: []tls.Certificate{*s.cert}}
		srv.TLSConfig = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			if s.behavior().brokenTLS {
				return nil, errors.New("handshake broken on purpose")
			}
			return base, nil
		}}
	}
	s.srv, s.ln = srv, ln
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		srv.Serve(&gateListener{Listener: ln, s: s})
	}()
	return nil
}

// down closes the listener and every connection: new ones are refused.
func (s *sink) down() {
	s.mu.Lock()
	srv, ln := s.srv, s.ln
	s.srv, s.ln = nil, nil
	held := s.held
	s.held = nil
	s.mu.Unlock()
	for _, c := range held {
		c.Close()
	}
	if srv != nil {
		srv.Close()
		// Serve may not have registered the listener with srv yet.
		ln.Close()
	}
	s.wg.Wait()
}

func (s *sink) close() { s.down() }

// messages returns a copy of what the sink accepted.
func (s *sink) messages() []sunk {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sunk(nil), s.msgs...)
}

func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs)
}

func (s *sink) connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

func (s *sink) authFailures() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.authFail
}

func (s *sink) rcptCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rcpts
}

// gateListener applies the connection-level misbehaviors before go-smtp
// sees the connection.
type gateListener struct {
	net.Listener
	s *sink
}

func (g *gateListener) Accept() (net.Conn, error) {
	for {
		c, err := g.Listener.Accept()
		if err != nil {
			return nil, err
		}
		s := g.s
		s.mu.Lock()
		s.conns++
		b := s.beh
		if b.blackhole {
			s.held = append(s.held, c)
			s.mu.Unlock()
			continue
		}
		s.mu.Unlock()
		if b.greet421 {
			c.SetWriteDeadline(time.Now().Add(time.Second))
			io.WriteString(c, "421 4.3.2 sink busy on purpose, try again later\r\n")
			c.Close()
			continue
		}
		return c, nil
	}
}

type sinkSession struct {
	s    *sink
	c    *smtp.Conn
	cur  sunk
	user string
}

func (ss *sinkSession) Reset()        { ss.cur = sunk{} }
func (ss *sinkSession) Logout() error { return nil }

func (ss *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	ss.cur = sunk{from: from}
	return nil
}

func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s := ss.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rcpts++
	if s.beh.reject[strings.ToLower(to)] {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user here (on purpose)"}
	}
	if s.beh.tempFail > 0 {
		s.beh.tempFail--
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "temporary failure on purpose"}
	}
	ss.cur.to = append(ss.cur.to, to)
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	s := ss.s
	tag := s.tag.Load()
	select {
	case s.inData <- struct{}{}:
	default:
	}
	b := s.behavior()
	switch {
	case b.dropData:
		io.CopyN(io.Discard, r, 1024)
		ss.c.Conn().Close()
		return errors.New("dropped on purpose")
	case b.stallData:
		io.Copy(io.Discard, r)
		// Say nothing until the client gives up and closes.
		conn := ss.c.Conn()
		conn.SetReadDeadline(time.Now().Add(60 * time.Second))
		conn.Read(make([]byte, 1))
		return errors.New("stalled on purpose")
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if b.dataDelay > 0 {
		time.Sleep(b.dataDelay)
	}
	m := ss.cur
	m.data, m.tag = data, tag
	_, m.tls = ss.c.TLSConnectionState()
	m.user = ss.user
	s.mu.Lock()
	s.msgs = append(s.msgs, m)
	subs := append([]func(sunk){}, s.onMsg...)
	s.mu.Unlock()
	for _, fn := range subs {
		fn(m)
	}
	return nil
}

func (ss *sinkSession) AuthMechanisms() []string {
	if ss.s.auth == nil {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

func (ss *sinkSession) Auth(mech string) (sasl.Server, error) {
	check := func(user, pass string) error {
		if want, ok := ss.s.auth[user]; ok && want == pass {
			ss.user = user
			return nil
		}
		ss.s.mu.Lock()
		ss.s.authFail++
		ss.s.mu.Unlock()
		return smtp.ErrAuthFailed
	}
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, pass string) error { return check(user, pass) }), nil
	case sasl.Login:
		return newLoginServer(check), nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// loginServer is the server side of AUTH LOGIN (go-sasl has only a client).
type loginServer struct {
	check func(user, pass string) error
	user  string
	step  int
}

func newLoginServer(check func(user, pass string) error) *loginServer {
	return &loginServer{check: check}
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		l.step++
		if resp != nil {
			l.user = string(resp)
			l.step++
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 1:
		l.user = string(resp)
		l.step++
		return []byte("Password:"), false, nil
	default:
		return nil, true, l.check(l.user, string(resp))
	}
}

// nopLogger swallows go-smtp's internal log lines.
type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}
func (nopLogger) Println(...any)        {}
