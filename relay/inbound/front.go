package inbound

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	proxyRefused = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "inkan_proxy_protocol_refused_total", Help: "Connections refused for their PROXY protocol header, by listener and reason (unlisted: a PROXY header from a client that is not a listed proxy; missing: a listed proxy sent none or a broken one).",
	}, []string{"listener", "reason"})
	bareHelo = promauto.NewCounter(prometheus.CounterOpts{
		Name: "inkan_bare_helo_total", Help: "Sessions that went on after a HELO/EHLO without a name (501 sent).",
	})
)

// front accepts the connections of one bound address and prepares each
// before go-smtp sees it: the PROXY header of a listed proxy is read (in
// the connection's own goroutine, so a slow proxy cannot stall the
// others), the connection limits are applied to the client's address,
// the first bytes are watched (greetConn), implicit TLS is set up with the
// handshake logged when it fails, and the connection goes to the
// smtp.Server that offers STARTTLS or to the one that does not.
type front struct {
	s     *Server
	kind  Kind
	ln    net.Listener // the bound socket
	offer *chanListener
	plain *chanListener // submission and relay: for clients STARTTLS is not offered to

	wg      sync.WaitGroup // connections being prepared
	done    chan struct{}
	ctx     context.Context // ends with done or Shutdown, for the PROXY header reads
	cancel  context.CancelFunc
	once    sync.Once
	errMu   sync.Mutex
	err     error // why Accept stopped
	tlsConf *tls.Config
}

func (s *Server) newFront(kind Kind, ln net.Listener) *front {
	f := &front{s: s, kind: kind, ln: ln, done: make(chan struct{}), tlsConf: s.tlsRoot(kind)}
	f.ctx, f.cancel = context.WithCancel(s.ctx)
	f.offer = &chanListener{f: f, ch: make(chan net.Conn)}
	f.plain = &chanListener{f: f, ch: make(chan net.Conn)}
	return f
}

// run accepts until the listener is closed, then waits for the
// connections it is still preparing.
func (f *front) run() {
	defer f.wg.Wait()
	var delay time.Duration
	for {
		c, err := f.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				f.s.log.Warn("accept failed; retrying", "listener", f.kind.String(), "err", err, "in", delay)
				select {
				case <-time.After(delay):
					continue
				case <-f.done:
				}
			}
			f.stop(err)
			return
		}
		delay = 0
		if f.fromProxy(c) {
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				stop := context.AfterFunc(f.ctx, func() { c.SetReadDeadline(time.Now()) })
				pc, err := readProxyHeader(c, proxyHeaderTimeout)
				stop()
				if err != nil {
					proxyRefused.WithLabelValues(f.kind.String(), "missing").Inc()
					f.s.log.Warn("connection from a listed proxy refused: no valid PROXY header", "proxy", remoteIP(c).String(),
						"listener", f.kind.String(), "err", err,
						"fix", "make the proxy send the PROXY protocol (HAProxy: send-proxy or send-proxy-v2 on the server line), or remove its address from listeners."+f.kind.String()+".proxy_protocol_from")
					c.Close()
					return
				}
				f.admit(pc)
			}()
			continue
		}
		f.admit(c)
	}
}

func isTemporary(err error) bool {
	t, ok := err.(interface{ Temporary() bool })
	return ok && t.Temporary()
}

// fromProxy reports whether c comes from a listed proxy of this listener.
func (f *front) fromProxy(c net.Conn) bool {
	prefixes := f.s.state.Load().proxyPrefixes(f.kind)
	if len(prefixes) == 0 {
		return false
	}
	ip := remoteIP(c)
	return slices.ContainsFunc(prefixes, func(p netip.Prefix) bool { return p.Contains(ip) })
}

// admit applies the connection limits and hands c on.
func (f *front) admit(c net.Conn) {
	tc := f.s.admit(c, f.kind)
	if tc == nil {
		return
	}
	if f.kind != KindSMTPS {
		// No handshake to wait for: prepared here, without a goroutine
		// more per connection (go-smtp starts the session's own).
		f.prepare(tc)
		return
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		f.prepare(tc)
	}()
}

// prepare wraps tc for go-smtp and delivers it to the right server.
func (f *front) prepare(tc *trackedConn) {
	st := f.s.state.Load()
	checkProxy := len(st.proxyPrefixes(f.kind)) > 0 && !tc.proxy.IsValid()
	g := newGreetConn(tc, f.s, f.kind, f.kind != KindSMTPS, checkProxy)
	var c net.Conn = g
	to := f.offer
	if f.kind == KindSMTPS {
		tlsConn := tls.Server(g, f.tlsConf)
		ctx, cancel := context.WithTimeout(tc.ctx, st.Config.Limits.CommandTimeout.D())
		err := tlsConn.HandshakeContext(ctx)
		cancel()
		if err != nil {
			if errors.Is(err, io.EOF) && !tc.hs.started() {
				// Connected and closed without a byte: a port probe or a
				// health check, not a client that failed at TLS.
				tc.hs.quiet()
				f.s.log.Debug("connection closed before TLS", "client", tc.ip.String(), "listener", f.kind.String())
			} else {
				f.s.handshakeFailed(tc, f.kind, handshakeReason(err), err.Error())
			}
			tlsConn.Close()
			return
		}
		c = tlsConn
	} else if !st.offersStartTLS(f.kind, tc) {
		to = f.plain
	}
	c = watchBarePaths(c) // MAIL FROM:<root> (barepath.go)
	select {
	case to.ch <- c:
	case <-f.done:
		c.Close()
	}
}

// stop ends Accept for both servers; err is why (nil: closed).
func (f *front) stop(err error) {
	f.once.Do(func() {
		f.errMu.Lock()
		f.err = err
		f.errMu.Unlock()
		close(f.done)
		f.cancel()
		f.ln.Close()
	})
}

// chanListener is what one smtp.Server serves: the connections front
// prepared for it.
type chanListener struct {
	f  *front
	ch chan net.Conn
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.f.done:
		l.f.errMu.Lock()
		defer l.f.errMu.Unlock()
		if l.f.err != nil && !errors.Is(l.f.err, net.ErrClosed) {
			return nil, l.f.err
		}
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error { l.f.stop(nil); return nil }

func (l *chanListener) Addr() net.Addr { return l.f.ln.Addr() }
