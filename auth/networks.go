package auth

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// TrustedNetworksName is the Name of the network built from
// auth.trusted_networks.
const TrustedNetworksName = "trusted_networks"

// Network is a set of client addresses that may relay without AUTH, with its
// own policy.
type Network struct {
	Name     string
	Prefixes []netip.Prefix // IPv4 prefixes are stored unmapped
	Senders  *SenderSet     // nil = any sender address
	// sendersSet says the configuration listed senders (["*"] lists "any"),
	// so DefaultSenders leaves the network alone.
	sendersSet     bool
	AllowPlainAuth bool  // offer AUTH without TLS to these clients
	MaxRecipients  int   // 0 = the global limit
	MaxMessageSize int64 // 0 = the global limit
	RateLimit      int   // messages per RatePeriod per client IP; 0 = unlimited
	RatePeriod     time.Duration

	rate *rateLimiter // nil when RateLimit is 0
}

// AllowMessage takes one message from ip's allowance (a token bucket of
// RateLimit messages refilled over RatePeriod) and returns ErrRateLimited
// when it is spent. A nil Network or a zero RateLimit allows everything.
func (n *Network) AllowMessage(ip netip.Addr) error {
	if n == nil || n.rate == nil {
		return nil
	}
	if !n.rate.allow(ip.Unmap().WithZone("")) {
		return ErrRateLimited
	}
	return nil
}

// Networks maps a client address to its trusted network.
type Networks struct {
	all     []*Network
	entries []netEntry // most specific first
}

type netEntry struct {
	prefix netip.Prefix
	net    *Network
}

// NewNetworks builds the trusted networks of cfg: one network named
// TrustedNetworksName from cfg.TrustedNetworks and cfg.TrustedSenders, then one
// per cfg.Networks entry. Entries are CIDRs, IP addresses (also "[::1]") or
// host names, which are resolved now with lookupHost (nil: the system
// resolver); call NewNetworks again to re-resolve.
func NewNetworks(cfg config.Auth, lookupHost func(string) ([]netip.Addr, error)) (*Networks, error) {
	if lookupHost == nil {
		lookupHost = systemLookup
	}
	ns := &Networks{}
	// Named networks come first so that, for the very same prefix, their
	// explicit policy beats the generic trusted list (the sort is stable).
	for i, c := range cfg.Networks {
		name := c.Name
		if name == "" {
			name = fmt.Sprintf("networks[%d]", i)
		}
		where := fmt.Sprintf("auth.networks[%d] (%s)", i, name)
		n := &Network{
			Name:           name,
			AllowPlainAuth: c.AllowPlainAuth,
			MaxRecipients:  c.MaxRecipients,
			MaxMessageSize: int64(c.MaxMessageSize),
			RateLimit:      c.RateLimit,
			RatePeriod:     c.RatePeriod.D(),
		}
		if err := ns.add(n, where+".cidrs", c.CIDRs, where+".senders", c.Senders, lookupHost); err != nil {
			return nil, err
		}
	}
	if len(cfg.TrustedNetworks) > 0 {
		n := &Network{Name: TrustedNetworksName}
		if err := ns.add(n, "auth.trusted_networks", cfg.TrustedNetworks, "auth.trusted_senders", cfg.TrustedSenders, lookupHost); err != nil {
			return nil, err
		}
	}
	sort.SliceStable(ns.entries, func(i, j int) bool {
		return ns.entries[i].prefix.Bits() > ns.entries[j].prefix.Bits()
	})
	return ns, nil
}

func (ns *Networks) add(n *Network, cidrKey string, cidrs []string, sendersKey string, senders []string,
	lookup func(string) ([]netip.Addr, error)) error {
	n.sendersSet = len(senders) > 0 // ["*"] too: NewSenderSet makes it nil, "any"
	if len(senders) > 0 {
		s, err := NewSenderSet(senders)
		if err != nil {
			return fmt.Errorf("%s: %w", sendersKey, err)
		}
		n.Senders = s
	}
	if n.RateLimit < 0 {
		return fmt.Errorf("%s: rate_limit %d is negative", cidrKey, n.RateLimit)
	}
	if n.RateLimit > 0 {
		if n.RatePeriod <= 0 {
			n.RatePeriod = time.Minute
		}
		n.rate = newRateLimiter(n.RateLimit, n.RatePeriod)
	}
	for i, entry := range cidrs {
		prefixes, err := parseNetworkEntry(entry, lookup)
		if err != nil {
			return fmt.Errorf("%s[%d] %q: %w", cidrKey, i, entry, err)
		}
		for _, p := range prefixes {
			n.Prefixes = append(n.Prefixes, p)
			ns.entries = append(ns.entries, netEntry{p, n})
		}
	}
	if len(n.Prefixes) == 0 {
		return fmt.Errorf("%s: network %s has no addresses", cidrKey, n.Name)
	}
	ns.all = append(ns.all, n)
	return nil
}

// parseNetworkEntry turns one CIDR, address or host name into prefixes.
func parseNetworkEntry(s string, lookup func(string) ([]netip.Addr, error)) ([]netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("empty entry")
	}
	// Postfix writes IPv6 networks as [2001:db8::]/32.
	if strings.HasPrefix(s, "[") {
		if i := strings.IndexByte(s, ']'); i > 0 {
			s = s[1:i] + s[i+1:]
		}
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("not a valid CIDR: %w", err)
		}
		if p.Addr().Zone() != "" {
			return nil, fmt.Errorf("zones are not allowed")
		}
		return []netip.Prefix{config.UnmapPrefix(p)}, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return nil, fmt.Errorf("zones are not allowed")
		}
		a = a.Unmap()
		return []netip.Prefix{netip.PrefixFrom(a, a.BitLen())}, nil
	}
	// Host names follow the one rule for names inkan resolves (underscores
	// tolerated: internal hosts have them), kept in mailsyntax.
	if err := mailsyntax.CheckDomain(s, mailsyntax.HostName|mailsyntax.Underscore|mailsyntax.TrailingDot); err != nil {
		return nil, fmt.Errorf("not a CIDR, IP address or host name (%v)", err)
	}
	addrs, err := lookup(s)
	if err != nil {
		return nil, fmt.Errorf("resolve host name: %w", err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("host name has no addresses")
	}
	var out []netip.Prefix
	for _, a := range addrs {
		a = a.Unmap().WithZone("")
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

func systemLookup(host string) ([]netip.Addr, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// Match returns the trusted network of ip, or nil when ip is untrusted. The
// most specific prefix wins; IPv4-mapped IPv6 addresses match IPv4 prefixes.
// A nil *Networks trusts nobody.
func (ns *Networks) Match(ip netip.Addr) *Network {
	if ns == nil || !ip.IsValid() {
		return nil
	}
	ip = ip.Unmap().WithZone("")
	for _, e := range ns.entries {
		if e.prefix.Contains(ip) {
			return e.net
		}
	}
	return nil
}

// All returns every network, named ones first.
func (ns *Networks) All() []*Network {
	if ns == nil {
		return nil
	}
	return append([]*Network(nil), ns.all...)
}

// DefaultSenders limits the generic trusted network (auth.trusted_networks)
// to patterns when auth.trusted_senders is not set, and returns it (nil when
// it is left as it was). It is the safer default: a host's local users and
// LAN devices may send as the domains inkan signs for and the host's own
// names, not as anyone; ["*"] in auth.trusted_senders restores "anyone".
func (ns *Networks) DefaultSenders(patterns []string) (*Network, error) {
	if len(patterns) == 0 {
		return nil, nil
	}
	for _, n := range ns.all {
		if n.Name != TrustedNetworksName || n.sendersSet {
			continue
		}
		s, err := NewSenderSet(patterns)
		if err != nil {
			return nil, fmt.Errorf("default trusted senders: %w", err)
		}
		n.Senders = s
		return n, nil
	}
	return nil, nil
}
