package inbound

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/inkan-relay/inkan/auth"
	"github.com/inkan-relay/inkan/config"
)

// fakeConn is a connection from a chosen address that discards writes.
type fakeConn struct {
	net.Conn
	remote net.Addr
}

func (c *fakeConn) RemoteAddr() net.Addr             { return c.remote }
func (c *fakeConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *fakeConn) SetWriteDeadline(time.Time) error { return nil }
func (c *fakeConn) Close() error                     { return nil }

// fakeListener hands out one fakeConn per address, then fails.
type fakeListener struct {
	net.Listener
	addrs []netip.Addr
}

func (l *fakeListener) Accept() (net.Conn, error) {
	if len(l.addrs) == 0 {
		return nil, errors.New("no more")
	}
	a := l.addrs[0]
	l.addrs = l.addrs[1:]
	return &fakeConn{remote: net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, 40000))}, nil
}

// acceptAll returns the addresses limitListener lets through.
func acceptAll(s *Server, addrs []netip.Addr) (got []netip.Addr) {
	ln := &limitListener{Listener: &fakeListener{addrs: addrs}, srv: s, kind: KindSubmission}
	for {
		c, err := ln.Accept()
		if err != nil {
			return got
		}
		got = append(got, remoteIP(c))
	}
}

func in64(prefix string, n int) []netip.Addr {
	var out []netip.Addr
	base := netip.MustParsePrefix(prefix).Addr().As16()
	for i := range n {
		a := base
		a[14], a[15] = byte((i+1)>>8), byte(i+1)
		out = append(out, netip.AddrFrom16(a))
	}
	return out
}

func testServer(t *testing.T, mutate func(*config.Config)) *Server {
	t.Helper()
	cfg := config.Default()
	cfg.Limits.MaxConnectionsPerIP = 4
	if mutate != nil {
		mutate(cfg)
	}
	nets, err := auth.NewNetworks(cfg.Auth, nil)
	if err != nil {
		t.Fatal(err)
	}
	return New(&State{Config: cfg, Networks: nets}, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

// One IPv6 host owns a whole /64: before AUTH, its connections count
// together, or a single host takes every slot of max_connections.
func TestAttackPreauthConnectionsPerIPv6Prefix(t *testing.T) {
	s := testServer(t, nil)
	addrs := append(in64("2001:db8:1:2::/64", 50), in64("2001:db8:1:3::/64", 1)...)
	got := acceptAll(s, addrs)
	if len(got) != 5 {
		t.Fatalf("accepted %d connections from one /64 and one from another, want 4 + 1: %v", len(got), got)
	}
	if got[4] != addrs[50] {
		t.Errorf("the other /64 was refused: %v", got)
	}
}

// Trusted networks and authenticated clients are counted per address, as
// before: a LAN /64 of devices, or an office of logged-in users, keeps its
// connections.
func TestConnectionsTrustedAndAuthenticatedPerAddress(t *testing.T) {
	s := testServer(t, func(c *config.Config) {
		c.Auth.TrustedNetworks = []string{"2001:db8:1:2::/64"}
	})
	if got := acceptAll(s, in64("2001:db8:1:2::/64", 50)); len(got) != 50 {
		t.Fatalf("trusted /64: %d of 50 connections accepted", len(got))
	}

	s = testServer(t, nil)
	ln := &limitListener{Listener: &fakeListener{addrs: in64("2001:db8:1:3::/64", 50)}, srv: s, kind: KindSMTPS}
	var open []net.Conn
	for {
		c, err := ln.Accept()
		if err != nil {
			break
		}
		open = append(open, c)
		s.authenticated(c) // each logs in at once: the /64 slot is free again
	}
	if len(open) != 50 {
		t.Fatalf("authenticated clients of one /64: %d of 50 accepted", len(open))
	}
	// Same address: max_connections_per_ip (4) as before.
	same := []netip.Addr{}
	for range 6 {
		same = append(same, netip.MustParseAddr("2001:db8:1:4::1"))
	}
	if got := acceptAll(s, same); len(got) != 4 {
		t.Fatalf("one address: %d of 6 accepted, want 4", len(got))
	}
	// Closing gives the slots back, once.
	for _, c := range open {
		c.Close()
		c.Close()
	}
	s.mu.Lock()
	n, pre := s.total, len(s.preauth)
	s.mu.Unlock()
	if n != 4 || pre != 1 {
		t.Fatalf("after closing: %d open, %d /64 counted; want 4 and 1", n, pre)
	}
}

// The context of a connection ends when it closes or Shutdown begins.
func TestConnContext(t *testing.T) {
	s := testServer(t, nil)
	ln := &limitListener{Listener: &fakeListener{addrs: in64("2001:db8:1:5::/64", 2)}, srv: s, kind: KindSMTPS}
	c1, _ := ln.Accept()
	c2, _ := ln.Accept()
	wrapped := struct{ net.Conn }{c1} // not unwrappable: falls back to the server's
	if s.connContext(wrapped) != s.ctx {
		t.Fatal("unknown conn: not the server context")
	}
	ctx1 := s.connContext(tlsLike{c1})
	c1.Close()
	if ctx1.Err() == nil {
		t.Fatal("context alive after Close")
	}
	ctx2 := s.connContext(c2)
	s.Shutdown(context.Background())
	if ctx2.Err() == nil {
		t.Fatal("context alive after Shutdown")
	}
}

// tlsLike wraps a conn the way *tls.Conn does.
type tlsLike struct{ net.Conn }

func (t tlsLike) NetConn() net.Conn { return t.Conn }
