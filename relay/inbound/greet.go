package inbound

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// greetConn watches the first bytes of a connection, before go-smtp reads
// them, for two things go-smtp cannot be told:
//
//   - A bare HELO or EHLO (old printers and scanners with a blank host
//     name). go-smtp answers 501 and then refuses MAIL with "Please
//     introduce yourself first"; Postfix answers 501 and lets the session
//     go on, and such devices ignore the 501. greetConn hands go-smtp a HELO
//     with the client's address literal instead, drops go-smtp's 250 to it
//     and sends the client its 501: the session goes on, and the Received
//     field says the client gave no name.
//   - A PROXY protocol header from a client that is not a listed proxy, on
//     a listener that takes the PROXY protocol: it is refused (554 5.7.0)
//     and the connection closed, so nobody can claim another address.
//
// It stops watching at the first greeting with a name or STARTTLS (after
// which the bytes are TLS), and then costs one atomic load per call.
type greetConn struct {
	net.Conn
	srv        *Server
	kind       Kind
	tc         *trackedConn
	watchHelo  bool // plain-text listener: look for a bare HELO/EHLO
	checkProxy bool // refuse a PROXY header at the start of the stream

	passthrough atomic.Bool

	mu      sync.Mutex
	start   bool   // nothing read yet
	in      []byte // read from the client, not yet examined
	out     []byte // examined, to hand to go-smtp
	swallow bool   // drop go-smtp's reply to the HELO we made up
	reply   []byte // the reply being dropped, until its last line
	anon    bool   // the client gave no name
	errLine string // the 501 to send instead of the dropped reply
}

func newGreetConn(c *trackedConn, srv *Server, kind Kind, watchHelo, checkProxy bool) *greetConn {
	g := &greetConn{Conn: c, srv: srv, kind: kind, tc: c, watchHelo: watchHelo, checkProxy: checkProxy, start: true}
	g.passthrough.Store(!watchHelo && !checkProxy)
	return g
}

// NetConn lets trackedOf find the connection below.
func (g *greetConn) NetConn() net.Conn { return g.Conn }

// anonymous reports whether the client sent a bare HELO/EHLO.
func (g *greetConn) anonymous() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.anon
}

const maxGreetLine = 4096 // past this without a line end, stop watching

func (g *greetConn) Read(p []byte) (int, error) {
	if g.passthrough.Load() {
		return g.Conn.Read(p)
	}
	for {
		g.mu.Lock()
		if len(g.out) > 0 {
			n := copy(p, g.out)
			g.out = g.out[n:]
			if len(g.out) == 0 && !g.watching() {
				g.passthrough.Store(len(g.in) == 0 && !g.swallow)
			}
			g.mu.Unlock()
			return n, nil
		}
		if !g.watching() {
			n := copy(p, g.in)
			g.in = g.in[n:]
			if len(g.in) == 0 && !g.swallow {
				g.passthrough.Store(true)
			}
			g.mu.Unlock()
			if n > 0 {
				return n, nil
			}
			return g.Conn.Read(p)
		}
		if refused, err := g.examine(); refused || err != nil {
			g.mu.Unlock()
			return 0, err
		}
		if len(g.out) > 0 || !g.watching() {
			g.mu.Unlock()
			continue
		}
		g.mu.Unlock()
		buf := make([]byte, 1024)
		n, err := g.Conn.Read(buf)
		g.mu.Lock()
		g.in = append(g.in, buf[:n]...)
		g.mu.Unlock()
		if err != nil && n == 0 {
			return 0, err
		}
	}
}

// watching reports whether bytes still need a look; g.mu is held.
func (g *greetConn) watching() bool { return g.watchHelo || (g.checkProxy && g.start) }

// examine moves what it can from g.in to g.out; g.mu is held. refused
// means the connection was refused (closed).
func (g *greetConn) examine() (refused bool, err error) {
	if g.checkProxy && g.start {
		yes, more := looksLikeProxyHeader(g.in)
		if more {
			return false, nil
		}
		g.start = false
		if yes {
			g.refuseProxy()
			return true, net.ErrClosed
		}
		if !g.watchHelo {
			return false, nil
		}
	}
	g.start = false
	for g.watchHelo {
		i := bytes.IndexByte(g.in, '\n')
		if i < 0 {
			if len(g.in) > maxGreetLine {
				g.watchHelo = false
			}
			return false, nil
		}
		line := g.in[:i+1]
		cmd := bytes.ToUpper(bytes.TrimSpace(line))
		switch {
		case bytes.Equal(cmd, []byte("HELO")) || bytes.Equal(cmd, []byte("EHLO")):
			if len(g.out) > 0 {
				return false, nil // hand out what came before first, so the made-up HELO is read alone
			}
			g.in = g.in[i+1:]
			g.out = fmt.Appendf(nil, "HELO %s\r\n", addrLiteral(g.tc.ip))
			g.swallow, g.anon, g.watchHelo = true, true, false
			g.errLine = fmt.Sprintf("501 5.5.2 Syntax: %s hostname (a name or an address literal is required; going on without one)\r\n", cmd)
			g.srv.log.Info("bare HELO; going on without a name", "client", g.tc.ip.String(), "listener", g.kind.String(), "command", string(cmd))
			bareHelo.Inc()
			return false, nil
		case bytes.HasPrefix(cmd, []byte("HELO ")) || bytes.HasPrefix(cmd, []byte("EHLO ")) ||
			bytes.HasPrefix(cmd, []byte("LHLO")) || bytes.Equal(cmd, []byte("STARTTLS")):
			g.watchHelo = false
		}
		g.out = append(g.out, line...)
		g.in = g.in[i+1:]
	}
	return false, nil
}

// refuseProxy answers a PROXY header from a client that is not a listed
// proxy; g.mu is held.
func (g *greetConn) refuseProxy() {
	g.tc.hs.quiet()
	proxyRefused.WithLabelValues(g.kind.String(), "unlisted").Inc()
	g.srv.log.Warn("PROXY header refused: the client is not a listed proxy", "client", g.tc.ip.String(), "listener", g.kind.String(),
		"fix", fmt.Sprintf("if %s is your proxy or load balancer, add it to listeners.%s.proxy_protocol_from", g.tc.ip, g.kind))
	if g.kind != KindSMTPS {
		g.Conn.SetWriteDeadline(time.Now().Add(time.Second))
		fmt.Fprintf(g.Conn, "554 5.7.0 PROXY protocol header not accepted from %s: it is not a listed proxy\r\n", g.tc.ip)
	}
	g.Conn.Close()
}

func (g *greetConn) Write(p []byte) (int, error) {
	if g.passthrough.Load() {
		return g.Conn.Write(p)
	}
	g.mu.Lock()
	if !g.swallow {
		g.mu.Unlock()
		return g.Conn.Write(p)
	}
	// Drop go-smtp's reply to the made-up HELO up to its last line
	// ("250 " rather than "250-"), and send the 501 in its place.
	g.reply = append(g.reply, p...)
	end := -1
	for off := 0; ; {
		i := bytes.IndexByte(g.reply[off:], '\n')
		if i < 0 {
			break
		}
		line := g.reply[off : off+i+1]
		off += i + 1
		if len(line) < 4 || line[3] != '-' {
			end = off
			break
		}
	}
	if end < 0 {
		g.mu.Unlock()
		return len(p), nil
	}
	rest := append([]byte(g.errLine), g.reply[end:]...)
	g.swallow, g.reply = false, nil
	if !g.watching() && len(g.in) == 0 && len(g.out) == 0 {
		g.passthrough.Store(true)
	}
	g.mu.Unlock()
	if _, err := g.Conn.Write(rest); err != nil {
		return 0, err
	}
	return len(p), nil
}

// addrLiteral is the RFC 5321 address literal of ip: [192.0.2.1],
// [IPv6:2001:db8::1].
func addrLiteral(ip netip.Addr) string {
	if ip.Is6() {
		return "[IPv6:" + ip.String() + "]"
	}
	return "[" + ip.String() + "]"
}
