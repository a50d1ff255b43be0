package inbound

import (
	"net"
	"net/netip"
	"testing"

	"github.com/inkan-relay/inkan/config"
)

func repeat(a string, n int) []netip.Addr {
	var out []netip.Addr
	for range n {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

// A Postfix relaying through inkan from a trusted network opens 20
// connections at once (its default destination concurrency), and the next
// as soon as one closes: trusted addresses have their own, much higher,
// per-address limit, so the default stranger limit (20) never gives it a
// 421; strangers keep theirs.
func TestTrustedClientsOwnLimit(t *testing.T) {
	s := testServer(t, func(c *config.Config) {
		c.Limits.MaxConnectionsPerIP = 20
		c.Limits.MaxConnectionsPerTrustedIP = 200
	})
	if got := acceptAll(s, repeat("127.0.0.1", 60)); len(got) != 60 {
		t.Fatalf("trusted 127.0.0.1: %d of 60 connections accepted", len(got))
	}
	if got := acceptAll(s, repeat("192.0.2.1", 30)); len(got) != 20 {
		t.Fatalf("stranger: %d of 30 accepted, want 20", len(got))
	}
	s = testServer(t, func(c *config.Config) { c.Limits.MaxConnectionsPerTrustedIP = 3 })
	if got := acceptAll(s, repeat("127.0.0.1", 5)); len(got) != 3 {
		t.Fatalf("max_connections_per_trusted_ip 3: %d of 5 accepted", len(got))
	}
	s = testServer(t, func(c *config.Config) { c.Limits.MaxConnectionsPerTrustedIP = 0 })
	if got := acceptAll(s, repeat("127.0.0.1", 50)); len(got) != 50 {
		t.Fatalf("max_connections_per_trusted_ip 0: %d of 50 accepted", len(got))
	}
}

// A stranger that logs in frees its per-address slot at once, and the
// count is given back when the connection closes, once.
func TestAuthenticatedFreesStrangerSlot(t *testing.T) {
	s := testServer(t, nil) // max_connections_per_ip 4
	ln := &limitListener{Listener: &fakeListener{addrs: repeat("192.0.2.7", 10)}, srv: s, kind: KindSubmission}
	var open []net.Conn
	for {
		c, err := ln.Accept()
		if err != nil {
			break
		}
		open = append(open, c)
		s.authenticated(c)
	}
	if len(open) != 10 {
		t.Fatalf("logged-in clients of one address: %d of 10 accepted", len(open))
	}
	s.mu.Lock()
	if s.perIP[netip.MustParseAddr("192.0.2.7")] != 0 || s.total != 10 {
		t.Errorf("after AUTH: perIP %v total %d", s.perIP, s.total)
	}
	s.mu.Unlock()
	for _, c := range open {
		c.Close()
		c.Close()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.total != 0 || len(s.perIP) != 0 || len(s.perTrusted) != 0 || len(s.preauth) != 0 {
		t.Errorf("after closing: total %d perIP %v perTrusted %v preauth %v", s.total, s.perIP, s.perTrusted, s.preauth)
	}
}

// PROXY protocol headers: v1 and v2 parsed, malformed ones refused.
func TestReadProxyHeader(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // client address, "" = the proxy's own (health check), "err"
	}{
		{"PROXY TCP4 192.0.2.1 192.0.2.2 40000 25\r\nEHLO", "192.0.2.1:40000"},
		{"PROXY TCP6 2001:db8::1 2001:db8::2 40000 25\r\n", "[2001:db8::1]:40000"},
		{"PROXY UNKNOWN\r\n", ""},
		{"PROXY TCP4 2001:db8::1 192.0.2.2 40000 25\r\n", "err"},
		{"PROXY TCP4 192.0.2.1 192.0.2.2 040000 25\r\n", "err"},
		{"PROXY TCP4 192.0.2.1 192.0.2.2 40000\r\n", "err"},
		{"PROXY TCP4 192.0.2.1 192.0.2.2 40000 25\n", "err"},
		{"EHLO client\r\n", "err"},
		{string(proxyV2Sig) + "\x21\x11\x00\x0c\xc0\x00\x02\x05\xc0\x00\x02\x06\x9c\x40\x00\x19", "192.0.2.5:40000"},
		{string(proxyV2Sig) + "\x20\x00\x00\x00", ""},                    // LOCAL
		{string(proxyV2Sig) + "\x21\x11\x00\x04\xc0\x00\x02\x05", "err"}, // truncated
		{string(proxyV2Sig) + "\x31\x11\x00\x00", "err"},                 // version 3
	} {
		c1, c2 := net.Pipe()
		go func() { c2.Write([]byte(tc.in)); c2.Close() }()
		pc, err := readProxyHeader(c1, proxyHeaderTimeout)
		got := "err"
		if err == nil {
			got = ""
			if pc.remote != nil {
				got = pc.remote.String()
			}
		}
		if got != tc.want {
			t.Errorf("%q: got %q (%v), want %q", tc.in, got, err, tc.want)
		}
		c1.Close()
	}
}
