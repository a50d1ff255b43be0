package deliver

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// localRecheck is how long the list of this machine's addresses is kept.
const localRecheck = time.Minute

// self recognises next hops that are this server: inkan's own listening
// addresses (Options.Listen). A listener on a wildcard address (":25",
// "0.0.0.0:25", "[::]:25") answers on every local address, loopback
// included, so for its port every address of this machine is "myself".
// Address and port are compared: tests and LAN setups deliver to other
// servers on 127.0.0.1 or the host's own address, on other ports.
type self struct {
	exact map[netip.AddrPort]bool
	wild  map[uint16]bool

	mu      sync.Mutex
	local   map[netip.Addr]bool // interface addresses, for wild ports
	checked time.Time
}

// newSelf parses listen addresses ("host:port"). A host name is resolved
// once, here; one that does not resolve is skipped (the listener itself
// would have failed).
func newSelf(listen []string) *self {
	s := &self{exact: map[netip.AddrPort]bool{}, wild: map[uint16]bool{}}
	for _, l := range listen {
		host, p, err := net.SplitHostPort(l)
		port, perr := strconv.ParseUint(p, 10, 16)
		if err != nil || perr != nil || port == 0 {
			continue
		}
		var addrs []netip.Addr
		if a, err := netip.ParseAddr(host); err == nil {
			addrs = []netip.Addr{a}
		} else if host != "" {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			addrs, _ = net.DefaultResolver.LookupNetIP(ctx, "ip", host)
			cancel()
		}
		if host == "" {
			s.wild[uint16(port)] = true
		}
		for _, a := range addrs {
			if a = a.Unmap(); a.IsUnspecified() {
				s.wild[uint16(port)] = true
			} else {
				s.exact[netip.AddrPortFrom(a, uint16(port))] = true
			}
		}
	}
	return s
}

// is reports whether a connection to a would reach this machine: an
// unspecified address (0.0.0.0, ::) always does, whatever the port;
// otherwise only inkan's own listening addresses count.
func (s *self) is(a netip.AddrPort) bool {
	ip := a.Addr().Unmap()
	switch {
	case ip.IsUnspecified():
		return true
	case s.exact[netip.AddrPortFrom(ip, a.Port())]:
		return true
	case s.wild[a.Port()]:
		return ip.IsLoopback() || s.isLocal(ip)
	}
	return false
}

// isLocal reports whether ip is an address of one of this machine's
// interfaces; the list is read again after localRecheck.
func (s *self) isLocal(ip netip.Addr) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := now(); s.local == nil || t.Sub(s.checked) > localRecheck {
		s.checked = t
		s.local = map[netip.Addr]bool{}
		addrs, _ := net.InterfaceAddrs()
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				s.local[p.Addr().Unmap()] = true
			}
		}
	}
	return s.local[ip]
}

// private reports whether an MX address is one delivery.refuse_private_mx
// refuses: loopback, private (RFC 1918, RFC 4193) or link-local.
func private(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsUnspecified()
}
