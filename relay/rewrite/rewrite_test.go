package rewrite_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/relay/mailsyntax"
	"github.com/inkan-relay/inkan/relay/rewrite"
)

func cfgWith(mut func(c *config.Config)) *config.Config {
	c := &config.Config{Hostname: "mail.example.com"}
	if mut != nil {
		mut(c)
	}
	return c
}

func addr(s string) mailsyntax.Address {
	if !strings.Contains(s, "@") {
		return mailsyntax.Address{Local: s}
	}
	a, err := mailsyntax.SplitAddress(s)
	if err != nil {
		panic(err)
	}
	return a
}

func TestOriginDerivation(t *testing.T) {
	for _, tc := range []struct {
		name     string
		origin   string
		hostname string
		signing  []string
		want     string
		why      string
	}{
		{"explicit wins", "Example.ORG.", "mail.example.com", []string{"example.net"}, "example.org", "set in rewrite.origin_domain"},
		{"one signing domain", "", "web01", []string{"example.test", "EXAMPLE.test"}, "example.test", "the only DKIM signing domain"},
		{"hostname domain", "", "mail.example.com", []string{"a.example", "b.example"}, "example.com", "the domain of hostname"},
		{"two-label hostname", "", "example.com", nil, "example.com", "the domain of hostname"},
		{"short hostname, no keys", "", "web01", nil, "", "set rewrite.origin_domain"},
		{"localhost", "", "localhost", []string{"a.example", "b.example"}, "", "not fully qualified"},
		{"percent key is no domain", "", "web01", []string{"%", "example.test"}, "example.test", "the only DKIM signing domain"},
	} {
		c := cfgWith(func(c *config.Config) { c.Hostname, c.Rewrite.OriginDomain = tc.hostname, tc.origin })
		got, why := rewrite.Origin(c, tc.signing)
		if got != tc.want || !strings.Contains(why, tc.why) {
			t.Errorf("%s: Origin = %q (%s), want %q (%s)", tc.name, got, why, tc.want, tc.why)
		}
	}
}

func TestEnvelopeAndRecipient(t *testing.T) {
	c := cfgWith(func(c *config.Config) {
		c.Rewrite.OriginDomain = "example.test"
		c.Delivery.Transport = map[string]string{"intranet": "[10.0.0.5]"}
	})
	rw := rewrite.New(c, nil)
	for in, want := range map[string]string{
		"root": "root@example.test", "root@web01": "root@example.test", "scanner@localhost": "scanner@example.test",
		"root@localhost.localdomain": "root@example.test", "alice@example.com": "alice@example.com",
		"bob@intranet": "bob@intranet", "x@[192.0.2.1]": "x@[192.0.2.1]",
	} {
		got, steps, err := rw.EnvelopeSender("", addr(in))
		if err != nil || got.String() != want || (in == want) != (len(steps) == 0) {
			t.Errorf("EnvelopeSender(%s) = %s %v %v, want %s", in, got, steps, err, want)
		}
		if got, _, _ := rw.Recipient(addr(in)); got.String() != want {
			t.Errorf("Recipient(%s) = %s, want %s", in, got, want)
		}
	}
	// Without an origin: a local part alone is refused, web01 passes.
	rw = rewrite.New(cfgWith(func(c *config.Config) { c.Hostname = "web01" }), []string{"a.example", "b.example"})
	if _, _, err := rw.EnvelopeSender("", addr("root")); !errors.Is(err, rewrite.ErrNoOrigin) {
		t.Errorf("bare root without origin: %v", err)
	}
	if got, steps, err := rw.EnvelopeSender("", addr("root@web01")); err != nil || got.String() != "root@web01" || len(steps) != 0 {
		t.Errorf("root@web01 without origin: %s %v %v", got, steps, err)
	}
}

func TestSenderMap(t *testing.T) {
	c := cfgWith(func(c *config.Config) {
		c.Rewrite.OriginDomain = "example.test"
		c.Rewrite.Senders = []config.SenderRewrite{
			{Match: "@nas.lan", Replace: "@example.com"},
			{Match: "root@", Replace: "alerts@example.com"},
			{Match: "root@nas.lan", Replace: "nas-root@example.com"},
			{Match: "@example.test", Replace: "devices@example.com", Scope: config.ScopeHeader},
			{Match: "www-data@example.test", Replace: "web@example.com", Scope: config.ScopeEnvelope},
		}
		c.Auth.Networks = []config.Network{{Name: "printers", RewriteSenders: []config.SenderRewrite{{Match: "@nas.lan", Replace: "scans@example.org"}}}}
	})
	rw := rewrite.New(c, nil)
	for _, tc := range []struct{ network, in, env, from string }{
		{"", "root@nas.lan", "nas-root@example.com", "nas-root@example.com"}, // exact beats user@ beats @domain
		{"", "backup@nas.lan", "backup@example.com", "backup@example.com"},   // @domain keeps the local part
		{"", "root@web01", "alerts@example.com", "alerts@example.com"},       // origin first, then user@
		{"", "root", "alerts@example.com", "alerts@example.com"},
		{"", "cron@web01", "cron@example.test", "devices@example.com"}, // header-only line
		{"", "www-data", "web@example.com", "devices@example.com"},     // envelope-only exact, header @domain
		{"printers", "backup@nas.lan", "scans@example.org", "scans@example.org"},
		{"printers", "root@nas.lan", "scans@example.org", "scans@example.org"}, // the network's map first
		{"", "alice@example.com", "alice@example.com", "alice@example.com"},
	} {
		env, _, err := rw.EnvelopeSender(tc.network, addr(tc.in))
		from, _ := rw.HeaderAddress(tc.network, "From", addr(tc.in))
		if err != nil || env.String() != tc.env || from.String() != tc.from {
			t.Errorf("%s from %q: MAIL FROM %s From %s (%v), want %s %s", tc.in, tc.network, env, from, err, tc.env, tc.from)
		}
	}
	// To and Cc are completed, never mapped.
	if to, _ := rw.HeaderAddress("", "To", addr("root")); to.String() != "root@example.test" {
		t.Errorf("To: root became %s", to)
	}
}

func TestHeader(t *testing.T) {
	c := cfgWith(func(c *config.Config) {
		c.Rewrite.OriginDomain = "example.test"
		c.Rewrite.Senders = []config.SenderRewrite{{Match: "@nas.lan", Replace: "@example.com"}}
	})
	rw := rewrite.New(c, nil)
	in := "From: Scanner <scan@nas.lan>\r\nTo: root, ops@example.net\r\nSubject: x\r\n\r\n"
	out, steps := rw.Header("", []byte(in))
	want := "From: Scanner <scan@example.com>\r\nTo: root@example.test, ops@example.net\r\nSubject: x\r\n\r\n"
	if string(out) != want || len(steps) != 2 || !strings.HasPrefix(steps[0].Why, "From: rewrite.senders[0]") ||
		!strings.HasPrefix(steps[1].Why, "To: origin domain example.test") {
		t.Errorf("Header:\n%s\nsteps %v", out, steps)
	}
}

func TestExplainAndDescribe(t *testing.T) {
	c := cfgWith(func(c *config.Config) {
		c.Hostname = "web01"
		c.Rewrite.Senders = []config.SenderRewrite{{Match: "root@", Replace: "alerts@example.test", Scope: config.ScopeEnvelope}}
	})
	rw := rewrite.New(c, []string{"example.test"})
	from, lines, err := rw.Explain("", addr("root"))
	text := strings.Join(lines, "\n")
	if err != nil || from.String() != "root@example.test" ||
		!strings.Contains(text, "MAIL FROM: root -> root@example.test (origin domain example.test (rewrite.origin_domain unset: the only DKIM signing domain))") ||
		!strings.Contains(text, "MAIL FROM: root@example.test -> alerts@example.test (rewrite.senders[0] root@ -> alerts@example.test)") ||
		!strings.Contains(text, "From: root -> root@example.test") {
		t.Errorf("Explain(root) = %s %v\n%s", from, err, text)
	}
	d := strings.Join(rw.Describe(), "\n")
	if !strings.Contains(d, "origin domain: example.test") || !strings.Contains(d, "rewrite.senders[0] root@ -> alerts@example.test (envelope)") {
		t.Errorf("Describe:\n%s", d)
	}
}
