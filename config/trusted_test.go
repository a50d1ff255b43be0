package config_test

import (
	"strings"
	"testing"
)

// A trusted network list is an open relay as soon as its prefixes cover an
// address family between them, however it is spelt.
func TestTrustedNetworksCoveringEverythingWarn(t *testing.T) {
	for _, tc := range []struct {
		name, auth, want string // want "" = no open-relay warning
	}{
		{"literal", "  trusted_networks: [0.0.0.0/0]", `auth.trusted_networks[0]: trusts every address: this is an open relay for IPv4 clients`},
		{"mapped", `  trusted_networks: ["::ffff:0:0/96"]`, `auth.trusted_networks[0]: trusts every address: this is an open relay for IPv4 clients`},
		{"halves", "  trusted_networks: [10.0.0.0/8, 0.0.0.0/1, 128.0.0.0/1]", `auth.trusted_networks: together trust every address: this is an open relay for IPv4 clients`},
		{"v6 halves", `  trusted_networks: ["::/1", "8000::/1"]`, `auth.trusted_networks: together trust every address: this is an open relay for IPv6 clients`},
		{"named network", "  networks:\n    - {name: all, cidrs: [0.0.0.0/1, 128.0.0.0/1]}", `auth.networks[0].cidrs: together trust every address: this is an open relay for IPv4 clients`},
		{"across lists", "  trusted_networks: [0.0.0.0/1]\n  networks:\n    - {name: upper, cidrs: [128.0.0.0/1]}",
			`auth: auth.trusted_networks and auth.networks together trust every address: this is an open relay for IPv4 clients`},
		{"own networks", `  trusted_networks: [10.0.0.0/8, "::1/128", "::ffff:0:0/95"]`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustLoad(t, "auth:\n"+tc.auth+"\n", nil)
			var open []string
			for _, w := range c.Warnings() {
				if strings.Contains(w, "open relay") {
					open = append(open, w)
				}
			}
			got := strings.Join(open, "\n")
			switch {
			case tc.want == "" && got != "":
				t.Errorf("unexpected warning:\n%s", got)
			case tc.want != "" && (len(open) != 1 || !strings.Contains(got, tc.want)):
				t.Errorf("warnings:\n%s\nwant one containing %q", got, tc.want)
			}
		})
	}
}
