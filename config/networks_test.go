package config

import (
	"net/netip"
	"strings"
	"testing"
)

func TestOpenTo(t *testing.T) {
	for _, tc := range []struct {
		prefixes string
		want     string
	}{
		{"0.0.0.0/0", "IPv4"},
		{"::/0", "IPv6"},
		{"::ffff:0:0/96", "IPv4"},
		{"0.0.0.0/1 128.0.0.0/1", "IPv4"},
		{"128.0.0.0/1 0.0.0.0/1", "IPv4"},
		{"::/1 8000::/1", "IPv6"},
		{"0.0.0.0/2 64.0.0.0/2 128.0.0.0/2 192.0.0.0/3 224.0.0.0/3", "IPv4"},
		{"0.0.0.0/2 64.0.0.0/2 128.0.0.0/2 192.0.0.0/3 224.0.0.0/4", ""}, // 240/4 left
		{"0.0.0.0/1 10.0.0.0/8 128.0.0.0/2 192.0.0.0/2", "IPv4"},
		{"0.0.0.0/1 128.0.0.0/2 192.0.0.0/2 ::/0 0.0.0.0/32", "IPv4,IPv6"},
		{"10.0.0.0/8 192.168.0.0/16 ::1/128", ""},
		{"0.0.0.0/1 ::ffff:128.0.0.0/97", "IPv4"},
		{"::ffff:0:0/95", ""}, // matches no IPv4 client: they are compared unmapped
		{"0.0.0.0/1 127.255.255.255/32 128.0.0.0/1", "IPv4"},
		{"255.255.255.255/32 0.0.0.0/1 128.0.0.0/2 192.0.0.0/3 224.0.0.0/4 240.0.0.0/5 248.0.0.0/6", ""}, // 252.0.0.0-255.255.255.254 left
		{"", ""},
	} {
		var ps []netip.Prefix
		for _, s := range strings.Fields(tc.prefixes) {
			ps = append(ps, netip.MustParsePrefix(s))
		}
		if got := strings.Join(OpenTo(ps), ","); got != tc.want {
			t.Errorf("OpenTo(%s) = %q, want %q", tc.prefixes, got, tc.want)
		}
	}
}
