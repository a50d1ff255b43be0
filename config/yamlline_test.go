package config_test

import (
	"strings"
	"testing"
)

// TestSyntaxErrorLine: YAML syntax errors name the line that is wrong, not
// the start of the block the parser was in.
func TestSyntaxErrorLine(t *testing.T) {
	for _, c := range []struct{ text, want string }{
		// issue 18: one space too many on line 7 was reported at line 3 (or 6)
		{"hostname: mail.example.com\ndata_dir: /var/lib/inkan\nlisten:\n  smtps: \":465\"\n  submission: \":587\"\n  relay: \"\"\n   http: \"127.0.0.1:8025\"\n", ":7: invalid YAML: did not find expected key"},
		{"auth:\n  trusted_networks:\n    - 10.0.0.0/8\n    - 192.168.0.0/16\n   - 172.16.0.0/12\nhostname: x.example.com\n", ":5: invalid YAML"},
		{"hostname: \"mail.example.com\ndata_dir: /x\n", ":1: invalid YAML"},
		{"hostname: mail.example.com\n\tdata_dir: /x\n", ":2: invalid YAML: found a tab character"},
		{"hostname: a: b\n", ":1: invalid YAML: mapping values are not allowed"},
	} {
		_, err := load(t, c.text, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q:\n got %v\nwant %s", c.text, err, c.want)
		}
	}
}
