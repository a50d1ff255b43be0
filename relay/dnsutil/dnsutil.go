// Package dnsutil holds the DNS plumbing that delivery (MX lookups) and the
// record checker (`inkan dns check`) share: one query over UDP with a TCP
// retry when the answer is truncated, and address records as netip.Addr.
package dnsutil

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// Exchange sends m to srv ("host:port") over UDP and again over TCP when the
// answer comes back truncated.
func Exchange(ctx context.Context, m *dns.Msg, srv string, timeout time.Duration) (*dns.Msg, error) {
	c := &dns.Client{Net: "udp", Timeout: timeout, UDPSize: 1232}
	resp, _, err := c.ExchangeContext(ctx, m, srv)
	if err == nil && resp.Truncated {
		c.Net = "tcp"
		resp, _, err = c.ExchangeContext(ctx, m, srv)
	}
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", srv, err)
	}
	return resp, nil
}

// Addrs returns the addresses of the A and AAAA records among rrs, in order;
// other records are skipped.
func Addrs(rrs []dns.RR) []netip.Addr {
	out := make([]netip.Addr, 0, len(rrs))
	for _, rr := range rrs {
		var ip net.IP
		switch v := rr.(type) {
		case *dns.A:
			ip = v.A
		case *dns.AAAA:
			ip = v.AAAA
		}
		if a, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, a.Unmap())
		}
	}
	return out
}
