package inbound

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/inkan-relay/inkan/auth"
	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/queue/maildrop"
	"github.com/inkan-relay/inkan/queue/safefile"
	"github.com/inkan-relay/inkan/relay/mailsyntax"
	"github.com/inkan-relay/inkan/relay/rewrite"
)

// Local submission: users of this host reach the server through the Unix
// socket listen.local (`inkan sendmail`), and the maildrop pickup through
// DialLocal. Either way the server knows the submitting uid for certain
// (SO_PEERCRED on the socket, the file's owner in the maildrop), and:
//
//   - the uid goes into the Received field ("from userid N", as Postfix
//     writes it) and on every log line of the session;
//   - the sender policy is the uid's: root and the user inkan runs as may
//     use any address; a user named in auth.local_senders the addresses
//     listed there; any other user only its own name (LocalDomains: at the
//     origin domain, as Postfix's myorigin, or this host's names). It
//     applies to MAIL FROM, once the session completed it, and to every
//     author field of the header, as for a trusted network;
//   - no AUTH and no STARTTLS are offered: the socket is the credential.
//
// Everything else (header fix-ups, signing, the spool, quotas counted per
// local user as the network "local:NAME") is the SMTP path itself: a local
// session is a session with a network made for its uid.

// localPeer is who is on the other end of a local connection.
type localPeer struct {
	uid  int
	name string // user name; "" when the uid has none
	via  string // "socket" or "maildrop"
}

func (p *localPeer) String() string {
	if p.name == "" {
		return "uid " + strconv.Itoa(p.uid)
	}
	return fmt.Sprintf("%s (uid %d)", p.name, p.uid)
}

// peerConn is a local connection with its peer.
type peerConn struct {
	net.Conn
	peer *localPeer
}

// peerOf finds the local peer of c, nil for a TCP client.
func peerOf(c net.Conn) *localPeer {
	for c != nil {
		switch x := c.(type) {
		case *peerConn:
			return x.peer
		case interface{ NetConn() net.Conn }:
			c = x.NetConn()
		default:
			return nil
		}
	}
	return nil
}

func newPeer(uid int, via string) *localPeer {
	p := &localPeer{uid: uid, via: via}
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		p.name = u.Username
	}
	return p
}

// localState is the Server's local listeners.
type localState struct {
	sock   net.Listener // listen.local; nil when off
	path   string
	inject *pipeListener // DialLocal's connections
}

// listenLocal binds the Unix socket path ("" = none). The socket's folder
// must be the server's and closed to writers (nobody may swap the socket);
// it is made passable (o+x) so every user reaches the socket, which gets
// mode 0666: who connects is told by the kernel, not trusted from them.
func (s *Server) listenLocal(path string) error {
	s.local.inject = newPipeListener()
	if path == "" {
		return nil
	}
	if len(path) > config.MaxSocketPath {
		s.log.Warn("no local socket: listen.local is longer than a Unix socket path may be; sendmail uses a TCP listener", "path", path)
		return nil
	}
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("listen local on %s: %w", path, err)
	}
	if err := safefile.Check("folder of listen.local", dir, fi); err != nil {
		return err
	}
	if note, err := maildrop.Traversable(dir); err != nil {
		s.log.Warn("local users may not reach listen.local", "err", err)
	} else if note != "" {
		s.log.Info(note)
	}
	if err := removeStaleSocket(path); err != nil {
		return err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("listen local on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		ln.Close()
		return fmt.Errorf("listen local on %s: %w", path, err)
	}
	s.local.sock, s.local.path = &credListener{Listener: ln, srv: s, open: map[int]int{}}, path
	return nil
}

// removeStaleSocket removes a socket left by a server that is gone; a live
// one, or anything that is not a socket, is an error.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("listen local on %s: a %s is in the way; remove it, or set listen.local to another path", path, fi.Mode().Type())
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("listen local on %s: another inkan is listening there", path)
	}
	return os.Remove(path)
}

// serveLocal serves the local socket and DialLocal's connections with the
// SMTP server of listener kind "local".
func (s *Server) serveLocal(cfg *config.Config) {
	if s.local.inject == nil {
		return
	}
	srv := s.newSMTPServer(KindLocal, cfg)
	srv.TLSConfig = nil // the socket is local; nothing to encrypt
	srv.Backend = smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		p := peerOf(c.Conn())
		if p == nil {
			return nil, errors.New("local connection without peer credentials")
		}
		return s.newLocalSession(c, p), nil
	})
	s.mu.Lock()
	s.servers = append(s.servers, srv)
	s.mu.Unlock()
	lns := []net.Listener{s.local.inject}
	if s.local.sock != nil {
		lns = append(lns, s.local.sock)
		s.log.Info("listening", "listener", KindLocal.String(), "addr", s.local.path)
	}
	for _, ln := range lns {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := srv.Serve(barePathListener{ln}); err != nil && !errors.Is(err, smtp.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				s.log.Error("listener stopped", "listener", KindLocal.String(), "err", err)
			}
		}()
	}
}

// LocalAddr is the path of the local socket, "" when there is none.
func (s *Server) LocalAddr() string { return s.local.path }

// DialLocal returns a connection to the local SMTP server on which the
// server takes the client to be uid, as if uid had connected to the local
// socket. The maildrop pickup submits each file through it, as the file's
// owner, so picked-up mail passes the policy, fix-ups and signing of any
// other. It fails once Shutdown has begun.
func (s *Server) DialLocal(uid int) (net.Conn, error) {
	if s.local.inject == nil {
		return nil, errors.New("local submission is not running")
	}
	client, server := net.Pipe()
	if err := s.local.inject.push(&peerConn{Conn: pipeEnd{server}, peer: newPeer(uid, "maildrop")}, s.ctx.Done()); err != nil {
		client.Close()
		server.Close()
		return nil, err
	}
	return client, nil
}

// newLocalSession is a session whose network is made for its peer's uid.
func (s *Server) newLocalSession(c *smtp.Conn, p *localPeer) smtp.Session {
	sess := s.newSession(KindLocal, c)
	st := sess.st
	var keys []string
	if st.Signer != nil {
		for _, d := range st.Signer.Domains() {
			keys = append(keys, d.Name)
		}
	}
	patterns, any, err := LocalSenders(st.Config, keys, p.uid, p.name, os.Geteuid())
	n := &auth.Network{Name: "local:" + p.String()}
	if p.name != "" {
		n.Name = "local:" + p.name
	}
	if err == nil && !any {
		n.Senders, err = auth.NewSenderSet(patterns)
	}
	sess.network = n
	sess.log = s.log.With("listener", KindLocal.String(), "uid", p.uid, "local_user", p.name, "via", p.via)
	if err != nil {
		sess.log.Error("auth.local_senders is not valid; local users may send as nobody until it is fixed", "err", err)
		n.Senders, _ = auth.NewSenderSet(nil)
	}
	return &localSession{session: sess, peer: p, patterns: patterns}
}

// LocalSenders returns the sender patterns the local user uid (named name)
// may use, or any = true when it may use every address: root and serverUID,
// the user inkan runs as. A user listed in auth.local_senders gets its
// list; any other user its own name (LocalDomains). signingDomains are the
// d= domains of the keys, for the origin domain.
func LocalSenders(cfg *config.Config, signingDomains []string, uid int, name string, serverUID int) (patterns []string, any bool, err error) {
	if uid == 0 || uid == serverUID {
		return nil, true, nil
	}
	if pats, ok := cfg.Auth.LocalSenders[name]; ok && name != "" {
		if _, err := auth.NewSenderSet(pats); err != nil {
			return nil, false, fmt.Errorf("auth.local_senders[%q]: %w", name, err)
		}
		if len(pats) == 1 && strings.TrimSpace(pats[0]) == "*" {
			return nil, true, nil
		}
		return pats, false, nil
	}
	if name == "" {
		return nil, false, nil
	}
	for _, d := range LocalDomains(cfg, signingDomains) {
		a := name + "@" + d
		if mailsyntax.CheckPath(a, false) == nil {
			patterns = append(patterns, a)
		}
	}
	return patterns, false, nil
}

// CheckLocalSenders compiles every auth.local_senders entry, so that a
// mistake stops `inkan check`, the start and a reload instead of leaving a
// local user unable to send.
func CheckLocalSenders(cfg *config.Config) error {
	for name, pats := range cfg.Auth.LocalSenders {
		if _, err := auth.NewSenderSet(pats); err != nil {
			return fmt.Errorf("auth.local_senders[%q]: %w", name, err)
		}
	}
	return nil
}

// LocalDomains are the domains a local user's own address may have, as
// Postfix's myorigin and myhostname: the origin domain (rewrite.Origin, which
// completes root@web01 to root@example.com), the one hostname alone gives
// (what a sendmail that cannot read the signing keys computes), hostname
// itself, and the machine's name.
func LocalDomains(cfg *config.Config, signingDomains []string) []string {
	var out []string
	add := func(d string) {
		d = strings.TrimSuffix(strings.ToLower(d), ".")
		if d != "" && !slices.Contains(out, d) && mailsyntax.ValidDomain(d, mailsyntax.MailDomain) {
			out = append(out, d)
		}
	}
	origin, _ := rewrite.Origin(cfg, signingDomains)
	add(origin)
	origin, _ = rewrite.Origin(cfg, nil)
	add(origin)
	add(cfg.Hostname)
	if h, err := os.Hostname(); err == nil {
		add(h)
	}
	return out
}

// localSession is a session of the local listener.
type localSession struct {
	*session
	peer     *localPeer
	patterns []string
}

// Mail is the session's: the sender policy applies to the address after
// the origin domain completed it. A refusal is reworded for a local user.
func (l *localSession) Mail(from string, opts *smtp.MailOptions) error {
	return l.reword(l.session.Mail(from, opts), "-f")
}

// Data rewords the policy's refusal of a header author for a local user.
func (l *localSession) Data(r io.Reader) error {
	return l.reword(l.session.Data(r), "From:")
}

// reword turns the policy's "Network local:NAME may not ..." into a reply
// that says what this local user may use and who may use the rest.
func (l *localSession) reword(err error, field string) error {
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		return err
	}
	what, ok := strings.CutPrefix(se.Message, "Network "+l.network.Name+" ")
	if !ok {
		return err
	}
	allowed := "no address (the uid has no user name)"
	if len(l.patterns) > 0 {
		allowed = strings.Join(l.patterns, ", ")
	}
	return &smtp.SMTPError{Code: se.Code, EnhancedCode: se.EnhancedCode,
		Message: clean(fmt.Sprintf("Local user %s %s: it may use %s; other addresses in %s are for root and inkan's user, or auth.local_senders", l.peer, what, allowed, field))}
}

// localReceived is the Received field of a local submission, as Postfix
// writes it for sendmail and pickup.
func (s *session) localReceived(p *localPeer, id string) string {
	return fmt.Sprintf("Received: by %s (inkan, from userid %d)\r\n\tid %s; %s\r\n", s.st.Config.Hostname, p.uid, id, now().Format(time.RFC1123Z))
}

// clientName is the client as the queue records it: its address, or the
// local user.
func (s *session) clientName() string {
	if p := peerOf(s.conn.Conn()); p != nil {
		return "local " + p.String()
	}
	return s.ip.String()
}

// credListener accepts Unix connections and reads each peer's uid. One uid
// may hold limits.max_connections_per_ip connections at once, so that no
// local user can take every file descriptor of the server.
type credListener struct {
	net.Listener
	srv  *Server
	mu   sync.Mutex
	open map[int]int // connections per uid
}

func (l *credListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		uid, err := peerUID(c)
		if err != nil {
			l.srv.log.Warn("local connection refused: no peer credentials", "err", err)
			c.Close()
			continue
		}
		max := l.srv.state.Load().Config.Limits.MaxConnectionsPerIP
		l.mu.Lock()
		full := max > 0 && l.open[uid] >= max
		if !full {
			l.open[uid]++
		}
		l.mu.Unlock()
		if full {
			l.srv.log.Warn("connection refused", "listener", KindLocal.String(), "uid", uid, "reason", "too many connections from this uid (limits.max_connections_per_ip)")
			refused.WithLabelValues("too_many_connections").Inc()
			c.SetWriteDeadline(time.Now().Add(time.Second))
			fmt.Fprintf(c, "421 4.7.0 Too many connections from uid %d, try again later\r\n", uid)
			c.Close()
			continue
		}
		return &peerConn{Conn: &countedConn{Conn: c, release: func() { l.release(uid) }}, peer: newPeer(uid, "socket")}, nil
	}
}

func (l *credListener) release(uid int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[uid]--; l.open[uid] <= 0 {
		delete(l.open, uid)
	}
}

// countedConn calls release once, when closed.
type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// pipeEnd is the server's end of a DialLocal pipe: the client closing it is
// the end of input, as on a socket.
type pipeEnd struct{ net.Conn }

func (p pipeEnd) Read(b []byte) (int, error) {
	n, err := p.Conn.Read(b)
	if errors.Is(err, io.ErrClosedPipe) {
		err = io.EOF
	}
	return n, err
}

// SetReadDeadline on a closed end fails as on a closed socket, which
// go-smtp takes for the end of the connection, not an error to log.
func (p pipeEnd) SetReadDeadline(t time.Time) error {
	err := p.Conn.SetReadDeadline(t)
	if errors.Is(err, io.ErrClosedPipe) {
		err = net.ErrClosed
	}
	return err
}

// pipeListener hands DialLocal's connections to the SMTP server.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (p *pipeListener) push(c net.Conn, stop <-chan struct{}) error {
	select {
	case p.conns <- c:
		return nil
	case <-p.done:
	case <-stop:
	}
	return ErrShuttingDown
}

func (p *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-p.conns:
		return c, nil
	case <-p.done:
		return nil, net.ErrClosed
	}
}

func (p *pipeListener) Close() error { p.once.Do(func() { close(p.done) }); return nil }

func (p *pipeListener) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "maildrop" }
