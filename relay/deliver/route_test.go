package deliver_test

import (
	"strings"
	"testing"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/relay/deliver"
)

func TestRoute(t *testing.T) {
	t.Parallel()
	c := config.Delivery{
		TLS:       "may",
		MXPort:    25,
		TLSPolicy: map[string]string{"secure.test": "verify", ".gov.test": "encrypt"},
		Transport: map[string]string{
			"exact.test":  "[10.0.0.1]:2525",
			".sub.test":   "relay.sub.test",
			"sub.test":    "[10.0.0.2]",
			"v6.test":     "[2001:db8::1]:25",
			"secure.test": "[10.0.0.3]",
		},
		Smarthost: &config.Smarthost{Address: "[smtp.relay.test]:587", Username: "u", Password: "p",
			Domains: []string{"partner.test", ".gov.test"}, NoSign: true},
		SenderRelay: map[string]config.Smarthost{
			"@a.test":     {Address: "[relay-a.test]"},
			"boss@a.test": {Address: "[relay-boss.test]:465", TLS: "implicit"},
			"@b.test":     {Address: "relay-b.test", TLS: "none"},
		},
	}
	tr := newTransport(t, deliver.Options{Config: c})
	for _, tc := range []struct {
		from, domain string
		want         string
	}{
		{"x@a.test", "dest.test", `sender_relay "@a.test" -> [relay-a.test]:25 tls=encrypt`},
		{"Boss@A.test", "dest.test", `sender_relay "boss@a.test" -> [relay-boss.test]:465 tls=implicit`},
		{"x@b.test", "exact.test", `sender_relay "@b.test" -> relay-b.test:25 tls=none`},
		{"x@c.test", "exact.test", `transport "exact.test" -> [10.0.0.1]:2525 tls=may`},
		{"x@c.test", "EXACT.test.", `transport "exact.test" -> [10.0.0.1]:2525 tls=may`},
		{"x@c.test", "sub.test", `transport "sub.test" -> [10.0.0.2]:25 tls=may`},
		{"x@c.test", "a.b.sub.test", `transport ".sub.test" -> relay.sub.test:25 tls=may`},
		{"x@c.test", "v6.test", `transport "v6.test" -> [2001:db8::1]:25 tls=may`},
		{"x@c.test", "secure.test", `transport "secure.test" -> [10.0.0.3]:25 tls=verify`},
		{"x@c.test", "partner.test", `smarthost -> [smtp.relay.test]:587 tls=verify auth=u no_sign`},
		{"x@c.test", "x.gov.test", `smarthost -> [smtp.relay.test]:587 tls=verify auth=u no_sign`},
		{"", "other.test", `mx -> other.test:25 tls=may`},
		{"x@c.test", "secure.test.example", `mx -> secure.test.example:25 tls=may`},
		{"x@c.test", "mail.secure.test", `mx -> mail.secure.test:25 tls=may`},
	} {
		if got := tr.Route(tc.from, tc.domain).String(); got != tc.want {
			t.Errorf("Route(%q, %q) = %s\nwant %s", tc.from, tc.domain, got, tc.want)
		}
	}
	if !tr.NoSign("x@c.test", "partner.test") || tr.NoSign("x@c.test", "other.test") {
		t.Error("NoSign does not follow the smarthost's no_sign")
	}
}

func TestSmarthostForAll(t *testing.T) {
	t.Parallel()
	tr := newTransport(t, deliver.Options{Config: config.Delivery{
		Transport: map[string]string{"local.test": "[127.0.0.9]"},
		Smarthost: &config.Smarthost{Address: "[smtp.relay.test]", TLS: "implicit"},
	}})
	if got := tr.Route("a@b.test", "anything.test").String(); got != "smarthost -> [smtp.relay.test]:465 tls=implicit" {
		t.Errorf("route %s", got)
	}
	if got := tr.Route("a@b.test", "local.test").Via; got != deliver.ViaTransport {
		t.Errorf("the transport map does not win over the smarthost: %s", got)
	}
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	good := config.Delivery{TLS: "may", MXPort: 25}
	for _, tc := range []struct {
		name   string
		edit   func(*config.Delivery)
		host   string
		wanted []string
	}{
		{"tls", func(c *config.Delivery) { c.TLS = "always" }, "", []string{"delivery.tls:"}},
		{"policy", func(c *config.Delivery) { c.TLSPolicy = map[string]string{"x.test": "strict"} }, "", []string{"delivery.tls_policy.x.test:"}},
		{"transport", func(c *config.Delivery) { c.Transport = map[string]string{"x.test": "[host"} }, "", []string{"delivery.transport.x.test:"}},
		{"transport key", func(c *config.Delivery) { c.Transport = map[string]string{"bad key": "[h]"} }, "", []string{"delivery.transport.bad key:"}},
		{"resolver", func(c *config.Delivery) { c.Resolver = "dns.example:53" }, "", []string{"delivery.resolver:"}},
		{"port", func(c *config.Delivery) { c.MXPort = 70000 }, "", []string{"delivery.mx_port:"}},
		{"smarthost", func(c *config.Delivery) { c.Smarthost = &config.Smarthost{Address: "", TLS: "sometimes"} }, "",
			[]string{"delivery.smarthost.address:", "delivery.smarthost.tls:"}},
		{"password file", func(c *config.Delivery) {
			c.Smarthost = &config.Smarthost{Address: "[h.test]", Username: "u", PasswordFile: "/nonexistent/pw"}
		}, "", []string{"delivery.smarthost.password_file:"}},
		{"no password", func(c *config.Delivery) { c.Smarthost = &config.Smarthost{Address: "[h.test]", Username: "u"} }, "",
			[]string{"delivery.smarthost.password_file:"}},
		{"sender relay", func(c *config.Delivery) {
			c.SenderRelay = map[string]config.Smarthost{"nobody": {Address: "[h.test]"}, "@x.test": {Address: "h:0"}}
		}, "", []string{"delivery.sender_relay.nobody:", "delivery.sender_relay.@x.test.address:"}},
		{"hostname", func(*config.Delivery) {}, "bad name", []string{"hostname:"}},
		{"password over unchecked tls", func(c *config.Delivery) {
			c.Smarthost = &config.Smarthost{Address: "[h.test]", Username: "u", Password: "p", TLS: "encrypt"}
		}, "", []string{`delivery.smarthost.tls: "encrypt" does not check the relay's certificate`, "use verify"}},
		{"ca file", func(c *config.Delivery) {
			c.Smarthost = &config.Smarthost{Address: "[h.test]", TLS: "verify", CAFile: "/nonexistent/ca.pem"}
		}, "", []string{"delivery.smarthost.ca_file:"}},
		{"fingerprint", func(c *config.Delivery) {
			c.SenderRelay = map[string]config.Smarthost{"@x.test": {Address: "[h.test]", TLS: "implicit", TLSFingerprint: "00:11"}}
		}, "", []string{"delivery.sender_relay.@x.test.tls_fingerprint:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.edit(&c)
			host := tc.host
			if host == "" {
				host = "relay.test"
			}
			_, err := deliver.New(deliver.Options{Config: c, Hostname: host})
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.wanted {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	tr, err := deliver.New(deliver.Options{Config: good, Hostname: "relay.test"})
	if err != nil {
		t.Fatal(err)
	}
	tr.Close()
	tr.Close() // twice is fine
}
