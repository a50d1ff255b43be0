// Package inbound is inkan's SMTP front door: the listeners (465 implicit TLS,
// 587 STARTTLS, a plain relay port for trusted networks), the go-smtp session
// that applies authentication, relay and sender policy, the RFC 6409 header
// fix-ups and the DKIM signature, and the hand-off to the spool.
//
// Promises: a client that is neither authenticated nor in a trusted network
// can never get a message queued; every refusal is an SMTP reply with an
// enhanced status code; the 250 reply is sent only after the spool reports the
// message durable; a failure of the spool or of signing is a 4xx, never a 5xx.
package inbound

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/inkan-relay/inkan/auth"
	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/queue"
	"github.com/inkan-relay/inkan/relay/mailsyntax"
	"github.com/inkan-relay/inkan/relay/signing"
)

var now = time.Now

// Kind is the role of a listener.
type Kind int

const (
	KindSMTPS      Kind = iota // implicit TLS, usually :465
	KindSubmission             // STARTTLS, usually :587
	KindRelay                  // plain SMTP for trusted networks, usually :25
	KindLocal                  // Unix socket and maildrop pickup for local users (local.go)
)

func (k Kind) String() string {
	return [...]string{"smtps", "submission", "relay", "local"}[k]
}

// State is everything a reload replaces at once. Sessions keep the State
// they started with, so a reload never changes the rules mid-conversation.
type State struct {
	Config   *config.Config
	Users    *auth.Users // nil: no users file, AUTH not offered
	Networks *auth.Networks
	Policy   *auth.Policy
	Signer   *signing.Signer // nil: no signing keys
	TLS      *tls.Config     // server certificate(s), modern profile

	legacyOnce sync.Once
	legacy     *tls.Config // TLS with the legacy profile (legacyTLS)
	proxyOnce  sync.Once
	proxies    map[Kind][]netip.Prefix // listeners.*.proxy_protocol_from
}

// proxyPrefixes are the proxies whose connections to a listener of kind
// start with a PROXY header.
func (st *State) proxyPrefixes(kind Kind) []netip.Prefix {
	st.proxyOnce.Do(func() {
		st.proxies = map[Kind][]netip.Prefix{}
		for _, k := range []Kind{KindSMTPS, KindSubmission, KindRelay} {
			st.proxies[k] = st.Config.Listeners.Options(k.String()).ProxyPrefixes()
		}
	})
	return st.proxies[kind]
}

// offersStartTLS reports whether STARTTLS is offered to the client on tc:
// not when its listener or its auth.networks entry turns it off.
func (st *State) offersStartTLS(kind Kind, tc *trackedConn) bool {
	if o := st.Config.Listeners.Options(kind.String()); o == nil || !o.OffersStartTLS() {
		return false
	}
	if st.Networks != nil {
		if n := st.Networks.Match(tc.ip); n != nil {
			if cn := st.Config.NetworkNamed(n.Name); cn != nil && !cn.OffersStartTLS() {
				return false
			}
		}
	}
	return true
}

// beginSign starts signing m. A nil stream with a nil error means "not
// signed".
func (st *State) beginSign(m signing.Message) (*signing.Stream, string, error) {
	if st.Signer == nil {
		return nil, "not signed: no DKIM keys configured", nil
	}
	stream, d := st.Signer.Begin(m)
	if d.Err != nil {
		return nil, d.String(), d.Err
	}
	return stream, d.String(), nil
}

// Spool is where accepted messages go (package queue).
type Spool interface {
	NewDraft(env *queue.Envelope) (*queue.Draft, error)
}

// Router tells whether the route for a recipient domain wants unsigned mail
// (a smarthost that rewrites messages would break the signature).
type Router interface {
	NoSign(from, domain string) bool
}

// Options are the parts of a Server that do not change on reload.
type Options struct {
	Spool  Spool
	Router Router // may be nil
	Logger *slog.Logger
}

// Server runs inkan's SMTP listeners.
type Server struct {
	state   atomic.Pointer[State]
	spool   Spool
	router  Router
	log     *slog.Logger
	limiter *auth.FailureLimiter
	hashes  *auth.HashGate
	quotas  *auth.Quotas
	// ctx ends when Shutdown begins: sessions waiting (AUTH slow-down,
	// hashing queue) stop waiting.
	ctx    context.Context
	cancel context.CancelFunc

	mu    sync.Mutex
	perIP map[netip.Addr]int // open connections of strangers per address, until they authenticate
	// perTrusted counts open connections per address of trusted networks
	// (limits.max_connections_per_trusted_ip).
	perTrusted map[netip.Addr]int
	// preauth counts connections of IPv6 clients outside trusted networks
	// that have not authenticated yet, per /64: one host owns a /64.
	preauth   map[netip.Addr]int
	total     int
	listeners []boundListener
	local     localState
	listen    config.Listen
	servers   []*smtp.Server
	wg        sync.WaitGroup
	serving   sync.WaitGroup // the smtp.Server Serve loops, ended before their Shutdown
}

type boundListener struct {
	kind Kind
	ln   net.Listener
}

// New returns a server using st; call Listen, then Serve.
func New(st *State, opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{
		spool:      opts.Spool,
		router:     opts.Router,
		log:        opts.Logger,
		perIP:      make(map[netip.Addr]int),
		perTrusted: make(map[netip.Addr]int),
		preauth:    make(map[netip.Addr]int),
		quotas:     auth.NewQuotas(),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	a := st.Config.Auth
	s.limiter = auth.NewFailureLimiter(a.MaxFailures, a.Lockout.D())
	s.limiter.MaxFailuresPerIP = a.MaxFailuresPerIP
	s.hashes = auth.NewHashGate(a.MaxConcurrentHashes, a.HashWait.D())
	s.state.Store(st)
	return s
}

// Swap installs a new State (a reload). Open sessions keep the old one.
// The lockout limits change at once (counts are kept); the hashing bound
// is fixed at start.
func (s *Server) Swap(st *State) {
	a := st.Config.Auth
	s.limiter.SetLimits(a.MaxFailures, a.MaxFailuresPerIP, a.Lockout.D())
	s.state.Store(st)
}

// Current returns the State in force.
func (s *Server) Current() *State { return s.state.Load() }

// Limiter exposes the AUTH failure limiter (for tests and metrics).
func (s *Server) Limiter() *auth.FailureLimiter { return s.limiter }

// Quotas exposes the sending quota counters (for the status endpoint).
func (s *Server) Quotas() *auth.Quotas { return s.quotas }

// authenticator is the AUTH check of one exchange, logging to log.
func (s *Server) authenticator(users *auth.Users, log *slog.Logger) *auth.Authenticator {
	return &auth.Authenticator{Users: users, Limiter: s.limiter, Hashes: s.hashes, Log: log}
}

// Listen binds every configured listener. Addresses may be comma-separated.
func (s *Server) Listen() error {
	l := s.state.Load().Config.Listen
	s.listen = l
	for _, x := range []struct {
		kind Kind
		addr string
	}{{KindSMTPS, l.SMTPS}, {KindSubmission, l.Submission}, {KindRelay, l.Relay}} {
		for _, a := range config.SplitAddrs(x.addr) {
			ln, err := ListenTCP(a, s.log)
			if err != nil {
				s.closeListeners()
				s.listeners = nil
				return fmt.Errorf("listen %s on %s: %w", x.kind, a, err)
			}
			if ln != nil {
				s.listeners = append(s.listeners, boundListener{x.kind, ln})
			}
		}
	}
	if err := s.listenLocal(s.state.Load().Config.LocalSocketPath()); err != nil {
		s.closeListeners()
		s.listeners = nil
		return err
	}
	return nil
}

// ListenTCP binds addr. On a host without IPv6, an IPv6 address (the
// default config listens on [::1] too) is skipped with a warning and
// (nil, nil) is returned.
//
// Accepted connections get no TCP keep-alive (Go's default turns it on, at
// four system calls per connection): limits.command_timeout already ends a
// session whose client went away, as in Postfix's smtpd.
func ListenTCP(addr string, logger *slog.Logger) (net.Listener, error) {
	ln, err := (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp", addr)
	if err == nil {
		return ln, nil
	}
	host, _, _ := net.SplitHostPort(addr)
	if ip, perr := netip.ParseAddr(host); perr == nil && ip.Is6() && !ip.Is4In6() &&
		(errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EAFNOSUPPORT)) {
		logger.Warn("IPv6 not available; skipping listener", "addr", addr, "err", err)
		return nil, nil
	}
	return nil, err
}

// closeListeners closes every bound listener (again is harmless). The list
// itself is written only by Listen, before Serve and Shutdown read it.
func (s *Server) closeListeners() {
	for _, l := range s.listeners {
		l.ln.Close()
	}
}

// Addrs lists the bound addresses of one kind of listener.
func (s *Server) Addrs(kind Kind) []net.Addr {
	var out []net.Addr
	for _, l := range s.listeners {
		if l.kind == kind {
			out = append(out, l.ln.Addr())
		}
	}
	return out
}

// Serve accepts connections on every bound listener until Shutdown. Each
// listener kind has one smtp.Server, and submission and relay a second one
// that does not offer STARTTLS, for the clients it is turned off for
// (go-smtp offers STARTTLS per server, not per client). A front per bound
// address prepares connections for them (front.go).
func (s *Server) Serve() error {
	cfg := s.state.Load().Config
	type pair struct{ offer, plain *smtp.Server }
	servers := map[Kind]pair{}
	for _, l := range s.listeners {
		p, ok := servers[l.kind]
		if !ok {
			p.offer = s.newSMTPServer(l.kind, cfg)
			if l.kind != KindSMTPS {
				p.plain = s.newSMTPServer(l.kind, cfg)
				p.plain.TLSConfig = nil // for clients STARTTLS is turned off for
			}
			servers[l.kind] = p
			s.mu.Lock()
			s.servers = append(s.servers, p.offer)
			if p.plain != nil {
				s.servers = append(s.servers, p.plain)
			}
			s.mu.Unlock()
		}
		f := s.newFront(l.kind, l.ln)
		attrs := []any{"listener", l.kind.String(), "addr", l.ln.Addr().String(),
			"tls_profile", cfg.Listeners.Options(l.kind.String()).TLSProfile}
		if px := s.state.Load().proxyPrefixes(l.kind); len(px) > 0 {
			attrs = append(attrs, "proxy_protocol_from", fmt.Sprint(px))
		}
		s.log.Info("listening", attrs...)
		s.wg.Add(1)
		go func() { defer s.wg.Done(); f.run() }()
		for _, x := range []struct {
			srv *smtp.Server
			ln  *chanListener
		}{{p.offer, f.offer}, {p.plain, f.plain}} {
			if x.srv == nil {
				continue
			}
			s.wg.Add(1)
			s.serving.Add(1)
			go func() {
				defer s.wg.Done()
				defer s.serving.Done()
				if err := x.srv.Serve(x.ln); err != nil && !errors.Is(err, smtp.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
					s.log.Error("listener stopped", "listener", l.kind.String(), "err", err)
				}
			}()
		}
	}
	s.serveLocal(cfg)
	s.wg.Wait()
	return nil
}

func (s *Server) newSMTPServer(kind Kind, cfg *config.Config) *smtp.Server {
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return s.newSession(kind, c), nil
	}))
	srv.Domain = cfg.Hostname
	srv.MaxMessageBytes = int64(cfg.Limits.MaxMessageSize)
	srv.ReadTimeout = cfg.Limits.CommandTimeout.D()
	srv.WriteTimeout = cfg.Limits.CommandTimeout.D()
	srv.EnableSMTPUTF8 = true
	srv.EnableDSN = true
	// The session decides per client whether AUTH may run without TLS.
	srv.AllowInsecureAuth = true
	if kind != KindSMTPS {
		srv.TLSConfig = s.tlsRoot(kind)
	}
	srv.ErrorLog = log.New(slogWriter{s.log}, "", 0)
	return srv
}

func (s *Server) newSession(kind Kind, c *smtp.Conn) *session {
	st := s.state.Load()
	ip := remoteIP(c.Conn())
	sess := &session{srv: s, st: st, conn: c, kind: kind, ip: ip}
	if st.Networks != nil {
		sess.network = st.Networks.Match(ip)
	}
	attrs := []any{"client", ip.String(), "listener", kind.String(), "helo", c.Hostname()}
	if p := proxyAddr(c.Conn()); p.IsValid() {
		attrs = append(attrs, "proxy", p.String())
	}
	if sess.network != nil {
		attrs = append(attrs, "network", sess.network.Name)
	}
	sess.log = s.log.With(attrs...)
	return sess
}

func (s *Server) noSign(from string, rcpts []string) bool {
	if s.router == nil || len(rcpts) == 0 {
		return false
	}
	for _, r := range rcpts {
		if !s.router.NoSign(from, mailsyntax.DomainOf(r)) {
			return false
		}
	}
	return true
}

// Shutdown stops accepting, lets sessions finish until ctx ends, then closes
// what is left. An unfinished DATA gets no 250, so nothing is lost.
func (s *Server) Shutdown(ctx context.Context) error {
	s.cancel()
	s.mu.Lock()
	servers := append([]*smtp.Server(nil), s.servers...)
	s.mu.Unlock()
	// Close the listeners and let every Serve loop end before go-smtp's
	// Shutdown waits for connections: a connection accepted while it waits
	// would be counted (WaitGroup.Add) concurrently with that wait.
	s.closeListeners()
	s.serving.Wait()
	var wg sync.WaitGroup
	for _, srv := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Shutdown(ctx); err != nil {
				srv.Close()
			}
		}()
	}
	wg.Wait()
	s.wg.Wait()
	return nil
}

func remoteIP(c net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// limitListener enforces the connection limits at accept time, before any
// SMTP is spoken (production uses admit through front; tests use this).
type limitListener struct {
	net.Listener
	srv  *Server
	kind Kind
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if tc := l.srv.admit(c, l.kind); tc != nil {
			return tc, nil
		}
	}
}

// admit counts the connection c from a client of a listener of kind, or
// refuses it (421 4.7.0, closed) and returns nil. c's RemoteAddr is the
// client's (after a PROXY header).
func (s *Server) admit(c net.Conn, kind Kind) *trackedConn {
	ip := remoteIP(c)
	class, prefix, why := s.acquire(ip)
	if why != "" {
		from, label := ip.String(), "too_many_connections"
		if why == refusedPreauth {
			from, label = auth.ClientString(ip), "too_many_preauth_connections"
		}
		attrs := []any{"client", ip.String(), "listener", kind.String(), "reason", why}
		if p := proxyAddr(c); p.IsValid() {
			attrs = append(attrs, "proxy", p.String())
		}
		s.log.Warn("connection refused", attrs...)
		refused.WithLabelValues(label).Inc()
		if kind != KindSMTPS {
			c.SetWriteDeadline(time.Now().Add(time.Second))
			fmt.Fprintf(c, "421 4.7.0 Too many connections from %s, try again later\r\n", from)
		}
		c.Close()
		return nil
	}
	connections.WithLabelValues(kind.String()).Inc()
	activeConns.Inc()
	ctx, cancel := context.WithCancel(s.ctx)
	return &trackedConn{Conn: c, srv: s, ip: ip, proxy: proxyAddr(c), class: class, prefix: prefix, ctx: ctx, cancel: cancel}
}

const refusedPreauth = "too many unauthenticated connections from one IPv6 /64 " +
	"(limits.max_connections_per_ip applies per /64 to IPv6 clients outside trusted networks until they authenticate)"

// How a connection is counted per client.
type connClass int

const (
	classStranger connClass = iota // per address against max_connections_per_ip (and per /64 for IPv6), until AUTH
	classTrusted                   // per address against max_connections_per_trusted_ip
	classAuthed                    // logged in: only max_connections
)

// acquire counts a new connection from ip, or says why it is refused.
// Every connection counts against max_connections. A client of a trusted
// network counts per address against max_connections_per_trusted_ip (a
// Postfix relaying through inkan opens 20 connections at once, and opens
// the next as soon as one closes); any other client ("a stranger") counts
// per address against max_connections_per_ip, and an IPv6 stranger also
// per /64, until it authenticates (prefix is that /64, or invalid).
func (s *Server) acquire(ip netip.Addr) (class connClass, prefix netip.Addr, refused string) {
	st := s.state.Load()
	lim := st.Config.Limits
	if st.Networks.Match(ip) != nil {
		class = classTrusted
	} else if ip.Is6() {
		prefix = auth.ClientKey(ip)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if lim.MaxConnections > 0 && s.total >= lim.MaxConnections {
		return class, netip.Addr{}, "too many connections in total (limits.max_connections)"
	}
	if class == classTrusted {
		if max := lim.MaxConnectionsPerTrustedIP; max > 0 && s.perTrusted[ip] >= max {
			return class, netip.Addr{}, "too many connections from this address of a trusted network (limits.max_connections_per_trusted_ip)"
		}
		s.total++
		s.perTrusted[ip]++
		return class, netip.Addr{}, ""
	}
	if lim.MaxConnectionsPerIP > 0 && s.perIP[ip] >= lim.MaxConnectionsPerIP {
		return class, netip.Addr{}, "too many connections from this address (limits.max_connections_per_ip)"
	}
	if prefix.IsValid() && lim.MaxConnectionsPerIP > 0 && s.preauth[prefix] >= lim.MaxConnectionsPerIP {
		return class, netip.Addr{}, refusedPreauth
	}
	s.total++
	s.perIP[ip]++
	if prefix.IsValid() {
		s.preauth[prefix]++
	}
	return class, prefix, ""
}

// release gives back the slots of a closed connection.
func (s *Server) release(c *trackedConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total--
	switch c.class {
	case classTrusted:
		decr(s.perTrusted, c.ip)
	case classStranger:
		decr(s.perIP, c.ip)
	}
	s.releasePreauth(c)
}

func decr(m map[netip.Addr]int, k netip.Addr) {
	if m[k]--; m[k] <= 0 {
		delete(m, k)
	}
}

// releasePreauth stops counting c against its /64; s.mu is held.
func (s *Server) releasePreauth(c *trackedConn) {
	if !c.prefix.IsValid() {
		return
	}
	decr(s.preauth, c.prefix)
	c.prefix = netip.Addr{}
}

// authenticated is called when the client on conn has logged in: from now
// on the connection counts only against max_connections, so an office of
// logged-in users behind one address or /64 keeps its connections, and
// the per-address slot of a stranger is free at once for the next one.
func (s *Server) authenticated(conn net.Conn) {
	if c := trackedOf(conn); c != nil {
		s.mu.Lock()
		if c.class == classStranger {
			decr(s.perIP, c.ip)
			c.class = classAuthed
		}
		s.releasePreauth(c)
		s.mu.Unlock()
	}
}

// connContext is a context that ends when conn is closed or Shutdown begins.
func (s *Server) connContext(conn net.Conn) context.Context {
	if c := trackedOf(conn); c != nil {
		return c.ctx
	}
	return s.ctx
}

// trackedOf finds the trackedConn under TLS wrappings.
func trackedOf(c net.Conn) *trackedConn {
	for c != nil {
		switch x := c.(type) {
		case *trackedConn:
			return x
		case interface{ NetConn() net.Conn }:
			c = x.NetConn()
		default:
			return nil
		}
	}
	return nil
}

// greetOf finds the greetConn under TLS wrappings.
func greetOf(c net.Conn) *greetConn {
	for c != nil {
		switch x := c.(type) {
		case *greetConn:
			return x
		case interface{ NetConn() net.Conn }:
			c = x.NetConn()
		default:
			return nil
		}
	}
	return nil
}

type trackedConn struct {
	net.Conn
	srv    *Server
	ip     netip.Addr // the client (after a PROXY header)
	proxy  netip.Addr // the proxy it came through, or invalid
	class  connClass  // guarded by srv.mu
	prefix netip.Addr // the /64 this connection counts against, until AUTH; guarded by srv.mu
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
	hs     handshakeWatch // what its TLS handshake showed
}

// Write watches a TLS handshake in progress for the alert that ends it.
func (c *trackedConn) Write(p []byte) (int, error) {
	if len(p) > 0 && p[0] == 21 {
		c.sawAlert(p, c.hs.listenerKind())
	}
	return c.Conn.Write(p)
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		if c.hs.pending() {
			c.srv.handshakeFailed(c, c.hs.listenerKind(), "incomplete", "the client ended the TLS handshake (did it refuse the certificate?)")
		}
		c.cancel()
		c.srv.release(c)
		activeConns.Dec()
	})
	return c.Conn.Close()
}

// slogWriter sends go-smtp's internal log lines (accept errors, failed TLS
// handshakes, recovered panics) to slog, where an operator sees them.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Warn("smtp", "msg", strings.TrimSpace(string(p)))
	return len(p), nil
}

// Warnings lists non-fatal problems an operator should hear about at start
// and on reload (unsigned domains, missing keys...).
func (st *State) Warnings() []string {
	var w []string
	if st.Config != nil {
		w = append(w, st.Config.Warnings()...)
	}
	if st.Signer != nil {
		w = append(w, st.Signer.Warnings()...)
		w = append(w, st.Signer.CheckDomains(senderDomains(st.Config))...)
	}
	if st.Config != nil {
		w = append(w, st.Rewriter().Warnings()...) // rewrite.go
	}
	return w
}

// senderDomains lists the domains the sender policy lets clients use, so
// that a domain nobody signs is reported at start instead of discovered in a
// DMARC report.
func senderDomains(cfg *config.Config) []string {
	seen := map[string]bool{}
	var out []string
	add := func(pats []string) {
		for _, p := range pats {
			if d := strings.ToLower(mailsyntax.DomainOf(p)); d != "" && !seen[d] {
				seen[d] = true
				out = append(out, d)
			}
		}
	}
	for _, pats := range cfg.Auth.Senders {
		add(pats)
	}
	add(cfg.Auth.TrustedSenders)
	for _, n := range cfg.Auth.Networks {
		add(n.Senders)
	}
	return out
}

// ListenConfig is the listener configuration the server was started with;
// a reload cannot change it.
func (s *Server) ListenConfig() config.Listen { return s.listen }
