package auth_test

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/inkan-relay/inkan/auth"
	"github.com/inkan-relay/inkan/config"
)

func fakeLookup(hosts map[string][]string) func(string) ([]netip.Addr, error) {
	return func(h string) ([]netip.Addr, error) {
		list, ok := hosts[h]
		if !ok {
			return nil, errors.New("no such host")
		}
		var out []netip.Addr
		for _, s := range list {
			out = append(out, netip.MustParseAddr(s))
		}
		return out, nil
	}
}

func testNetworks(t *testing.T) *auth.Networks {
	t.Helper()
	cfg := config.Auth{
		TrustedNetworks: []string{"10.0.0.0/8", "192.0.2.7", "[2001:db8::]/32", "printer.lan", "::ffff:172.16.0.0/108"},
		TrustedSenders:  []string{"@example.com"},
		Networks: []config.Network{
			{Name: "office", CIDRs: []string{"10.1.0.0/16"}, AllowPlainAuth: true, MaxRecipients: 5,
				MaxMessageSize: 1000, Senders: []string{"@office.example"}},
			{Name: "host", CIDRs: []string{"10.1.2.3"}},
			{CIDRs: []string{"198.51.100.0/24"}},
		},
	}
	ns, err := auth.NewNetworks(cfg, fakeLookup(map[string][]string{"printer.lan": {"192.168.1.50", "::ffff:192.168.1.51"}}))
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

func TestNetworksMatch(t *testing.T) {
	ns := testNetworks(t)
	tests := []struct{ ip, want string }{
		{"10.9.9.9", auth.TrustedNetworksName},
		{"10.1.5.5", "office"},
		{"10.1.2.3", "host"},
		{"10.1.2.4", "office"},
		{"::ffff:10.1.5.5", "office"},
		{"::ffff:10.1.2.3", "host"},
		{"::ffff:192.0.2.7", auth.TrustedNetworksName},
		{"192.0.2.7", auth.TrustedNetworksName},
		{"192.0.2.8", ""},
		{"2001:db8::1", auth.TrustedNetworksName},
		{"2001:db8:ffff::1", auth.TrustedNetworksName},
		{"2001:db9::1", ""},
		{"192.168.1.50", auth.TrustedNetworksName},
		{"192.168.1.51", auth.TrustedNetworksName},
		{"192.168.1.52", ""},
		{"172.16.3.4", auth.TrustedNetworksName},
		{"172.31.0.1", auth.TrustedNetworksName},
		{"172.32.0.1", ""},
		{"198.51.100.9", "networks[2]"},
		{"fe80::1%eth0", ""},
		{"::1", ""},
		{"11.0.0.1", ""},
	}
	for _, tc := range tests {
		n := ns.Match(netip.MustParseAddr(tc.ip))
		got := ""
		if n != nil {
			got = n.Name
		}
		if got != tc.want {
			t.Errorf("Match(%s) = %q, want %q", tc.ip, got, tc.want)
		}
	}
	if ns.Match(netip.Addr{}) != nil {
		t.Error("invalid address matched")
	}
	var none *auth.Networks
	if none.Match(netip.MustParseAddr("10.0.0.1")) != nil {
		t.Error("nil Networks matched")
	}
}

func TestNetworkFields(t *testing.T) {
	ns := testNetworks(t)
	office := ns.Match(netip.MustParseAddr("10.1.0.1"))
	if !office.AllowPlainAuth || office.MaxRecipients != 5 || office.MaxMessageSize != 1000 {
		t.Errorf("office = %+v", office)
	}
	if !office.Senders.Allows("a@office.example") || office.Senders.Allows("a@example.com") {
		t.Error("office senders wrong")
	}
	trusted := ns.Match(netip.MustParseAddr("10.0.0.1"))
	if trusted.AllowPlainAuth || !trusted.Senders.Allows("x@example.com") || trusted.Senders.Allows("x@example.org") {
		t.Errorf("trusted_networks = %+v", trusted)
	}
	if host := ns.Match(netip.MustParseAddr("10.1.2.3")); host.Senders != nil {
		t.Error("no senders must mean any (nil)")
	}
	if got := len(ns.All()); got != 4 {
		t.Errorf("All() has %d networks, want 4", got)
	}
}

func TestNewNetworksErrors(t *testing.T) {
	lookup := fakeLookup(map[string][]string{"empty.lan": {}})
	tests := []struct {
		cfg  config.Auth
		want string
	}{
		{config.Auth{TrustedNetworks: []string{"10.0.0.0/33"}}, `auth.trusted_networks[0] "10.0.0.0/33"`},
		{config.Auth{TrustedNetworks: []string{"10.0.0.1", "not a host!"}}, `auth.trusted_networks[1] "not a host!"`},
		{config.Auth{TrustedNetworks: []string{"missing.lan"}}, `"missing.lan": resolve host name`},
		{config.Auth{TrustedNetworks: []string{"empty.lan"}}, `"empty.lan": host name has no addresses`},
		{config.Auth{TrustedNetworks: []string{"fe80::1%eth0"}}, `zones`},
		{config.Auth{TrustedNetworks: []string{""}}, `empty entry`},
		{config.Auth{TrustedNetworks: []string{"10.0.0.0/8"}, TrustedSenders: []string{"nodomain"}}, `auth.trusted_senders`},
		{config.Auth{Networks: []config.Network{{Name: "lan", CIDRs: []string{"10.0.0.0/8", "300.1.1.1"}}}}, `auth.networks[0] (lan).cidrs[1] "300.1.1.1"`},
		{config.Auth{Networks: []config.Network{{Name: "lan"}}}, `no addresses`},
		{config.Auth{Networks: []config.Network{{Name: "lan", CIDRs: []string{"10.0.0.0/8"}, Senders: []string{"x"}}}}, `auth.networks[0] (lan).senders`},
		{config.Auth{Networks: []config.Network{{Name: "lan", CIDRs: []string{"10.0.0.0/8"}, RateLimit: -1}}}, `rate_limit`},
	}
	for _, tc := range tests {
		_, err := auth.NewNetworks(tc.cfg, lookup)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewNetworks(%+v) = %v, want error containing %q", tc.cfg, err, tc.want)
		}
	}
}

func TestNewNetworksNoDNSForAddresses(t *testing.T) {
	// nil lookupHost would use the system resolver; addresses and CIDRs must
	// not need it.
	ns, err := auth.NewNetworks(config.Auth{TrustedNetworks: []string{"127.0.0.1", "::1", "10.0.0.0/8"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ns.Match(netip.MustParseAddr("::1")) == nil || ns.Match(netip.MustParseAddr("::ffff:127.0.0.1")) == nil {
		t.Error("loopback not matched")
	}
	empty, err := auth.NewNetworks(config.Auth{}, nil)
	if err != nil || empty.Match(netip.MustParseAddr("127.0.0.1")) != nil {
		t.Errorf("empty config: %v", err)
	}
}

func TestNetworkRateLimit(t *testing.T) {
	clock := auth.UseFakeClock(t)
	ns, err := auth.NewNetworks(config.Auth{Networks: []config.Network{
		{Name: "limited", CIDRs: []string{"10.0.0.0/8"}, RateLimit: 2, RatePeriod: config.Duration(time.Minute)},
		{Name: "free", CIDRs: []string{"192.0.2.0/24"}},
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	n := ns.Match(a)
	allow := func(ip netip.Addr, want bool) {
		t.Helper()
		err := n.AllowMessage(ip)
		if want && err != nil {
			t.Fatalf("AllowMessage(%s) = %v, want nil", ip, err)
		}
		if !want {
			if err == nil {
				t.Fatalf("AllowMessage(%s) = nil, want rate limited", ip)
			}
			wantSMTP(t, err, 450, smtp.EnhancedCode{4, 7, 1})
		}
	}
	allow(a, true)
	allow(a, true)
	allow(a, false)
	allow(netip.MustParseAddr("::ffff:10.0.0.1"), false) // same client, mapped
	allow(b, true)                                       // other IPs keep their own allowance
	clock.Advance(30 * time.Second)
	allow(a, true)
	allow(a, false)
	clock.Advance(2 * time.Minute)
	allow(a, true)
	allow(a, true)
	allow(a, false)

	free := ns.Match(netip.MustParseAddr("192.0.2.1"))
	for range 100 {
		if err := free.AllowMessage(netip.MustParseAddr("192.0.2.1")); err != nil {
			t.Fatal(err)
		}
	}
	var none *auth.Network
	if none.AllowMessage(a) != nil {
		t.Error("nil network limited")
	}
}

func TestNetworkRateLimitBoundedMemory(t *testing.T) {
	clock := auth.UseFakeClock(t)
	ns, _ := auth.NewNetworks(config.Auth{Networks: []config.Network{
		{Name: "big", CIDRs: []string{"::/0", "0.0.0.0/0"}, RateLimit: 1},
	}}, nil)
	n := ns.Match(netip.MustParseAddr("10.0.0.1"))
	base := netip.MustParseAddr("2001:db8::").As16()
	for i := range auth.MaxRateEntries + 100 {
		a := base
		a[12], a[13], a[14], a[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		n.AllowMessage(netip.AddrFrom16(a))
	}
	if got := n.RateEntries(); got > auth.MaxRateEntries {
		t.Errorf("%d buckets, want at most %d", got, auth.MaxRateEntries)
	}
	clock.Advance(2 * time.Minute) // default period 1m: everything refilled
	n.AllowMessage(netip.MustParseAddr("10.0.0.1"))
	if got := n.RateEntries(); got != 1 {
		t.Errorf("after refill: %d buckets, want 1", got)
	}
}

// config.OpenTo, which warns about open relays, and Match, which decides,
// agree on what a set of prefixes trusts, mapped forms included.
func TestOpenToAgreesWithMatch(t *testing.T) {
	v4 := []string{"0.0.0.0", "1.2.3.4", "127.255.255.255", "128.0.0.0", "203.0.113.9", "255.255.255.255", "::ffff:198.51.100.1"}
	v6 := []string{"::", "::2", "2001:db8::1", "7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "8000::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}
	for _, cidrs := range [][]string{
		{"0.0.0.0/0"}, {"0.0.0.0/1", "128.0.0.0/1"}, {"::ffff:0:0/96"}, {"::ffff:0:0/97", "128.0.0.0/1"},
		{"::/0"}, {"::/1", "8000::/1"}, {"::ffff:0:0/95"}, {"0.0.0.0/1", "::/1"},
	} {
		ns, err := auth.NewNetworks(config.Auth{TrustedNetworks: cidrs}, nil)
		if err != nil {
			t.Fatal(err)
		}
		var prefixes []netip.Prefix
		for _, n := range ns.All() {
			prefixes = append(prefixes, n.Prefixes...)
		}
		open := strings.Join(config.OpenTo(prefixes), ",")
		for family, addrs := range map[string][]string{"IPv4": v4, "IPv6": v6} {
			all := true
			for _, a := range addrs {
				all = all && ns.Match(netip.MustParseAddr(a)) != nil
			}
			if all != strings.Contains(open, family) {
				t.Errorf("%v: Match trusts every %s sample: %v; OpenTo says %q", cidrs, family, all, open)
			}
		}
	}
}
