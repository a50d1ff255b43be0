package config

import (
	"net/netip"
	"slices"
)

// UnmapPrefix is how trusted networks store a prefix: an IPv4-mapped IPv6
// prefix of /96 or longer becomes the IPv4 prefix it means
// (::ffff:10.0.0.0/104 is 10.0.0.0/8, ::ffff:0:0/96 is 0.0.0.0/0), and host
// bits are cleared. Clients are matched by their unmapped address, so a
// shorter mapped prefix (::ffff:0:0/95) never matches an IPv4 client.
func UnmapPrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked()
}

// OpenTo names the address families that prefixes (as UnmapPrefix leaves
// them) cover completely between them: "IPv4", "IPv6", both, or none. Coverage is computed, so 0.0.0.0/1 with
// 128.0.0.0/1, or ::/1 with 8000::/1, count as much as 0.0.0.0/0 and ::/0.
func OpenTo(prefixes []netip.Prefix) []string {
	var v4, v6 []netip.Prefix
	for _, p := range prefixes {
		if !p.IsValid() {
			continue
		}
		if p = UnmapPrefix(p); p.Addr().Is4() {
			v4 = append(v4, p)
		} else {
			v6 = append(v6, p)
		}
	}
	var out []string
	if coversAll(v4, netip.IPv4Unspecified()) {
		out = append(out, "IPv4")
	}
	if coversAll(v6, netip.IPv6Unspecified()) {
		out = append(out, "IPv6")
	}
	return out
}

// coversAll reports whether the prefixes (all of one family, masked) leave
// no address uncovered, from first (0.0.0.0 or ::) to the last address.
func coversAll(ps []netip.Prefix, first netip.Addr) bool {
	slices.SortFunc(ps, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	next := first // the lowest address not covered yet
	for _, p := range ps {
		if p.Addr().Compare(next) > 0 {
			return false // a gap before p
		}
		last := lastAddr(p)
		if last.Compare(next) < 0 {
			continue // inside what is covered already
		}
		if next = last.Next(); !next.IsValid() {
			return true // covered up to the last address of the family
		}
	}
	return false
}

// lastAddr is the highest address of the masked prefix p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As16()
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	for i := bits; i < 128; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a := netip.AddrFrom16(b)
	if p.Addr().Is4() {
		a = a.Unmap()
	}
	return a
}
