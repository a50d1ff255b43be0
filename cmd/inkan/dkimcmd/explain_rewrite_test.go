package dkimcmd

import (
	"bytes"
	"strings"
	"testing"

	"github.com/inkan-relay/inkan/config"
)

// TestExplainRewrite: "inkan dkim explain root" says what the origin domain
// (here the only signing domain, hostname being short) and the sender maps
// make of a local part or an unqualified address, then which key signs the
// result; a domain and a plain address are explained as before.
func TestExplainRewrite(t *testing.T) {
	load := testConfig(t, t.TempDir())
	cfg, _ := load()
	cfg.Hostname = "web01"
	cfg.Auth.Networks = []config.Network{{Name: "printers", CIDRs: []string{"192.0.2.0/24"},
		RewriteSenders: []config.SenderRewrite{{Match: "@nas.lan", Replace: "scans@example.com"}}}}
	code, out, _ := run(func(o, e *bytes.Buffer) int {
		return Main(load, []string{"explain", "root", "scan@nas.lan", "alice@example.com", "example.com"}, o, e)
	})
	for _, want := range []string{
		"root:\n  sent from this host or a trusted network (authenticated users are never rewritten):\n" +
			"    MAIL FROM: root -> root@example.com (origin domain example.com (rewrite.origin_domain unset: the only DKIM signing domain))\n" +
			"    From: root -> root@example.com (origin domain example.com",
		"  root@example.com then signs as:\n  sign d=example.com s=rsa1 (rsa-sha256) for root@example.com",
		"scan@nas.lan:\n  no rule matches scan@nas.lan",
		"  sent from network printers (authenticated users are never rewritten):\n" +
			"    MAIL FROM: scan@nas.lan -> scans@example.com (auth.networks[0].rewrite_senders[0] @nas.lan -> scans@example.com)\n" +
			"    From: scan@nas.lan -> scans@example.com (auth.networks[0].rewrite_senders[0] @nas.lan -> scans@example.com)\n" +
			"  scans@example.com then signs as:\n  sign d=example.com",
		"alice@example.com:\n  sign d=example.com",
		"example.com:\n  sign d=example.com s=rsa1 (rsa-sha256) for postmaster@example.com",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain lacks %q:\n%s", want, out)
		}
	}
	if code != 0 {
		t.Errorf("exit %d", code)
	}
}
