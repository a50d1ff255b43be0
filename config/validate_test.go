package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/inkan-relay/inkan/config"
)

func TestValidateErrors(t *testing.T) {
	for _, tc := range []struct {
		name, text, want string
	}{
		{"ip hostname", "hostname: 192.0.2.1", `hostname: "192.0.2.1" is an IP address`},
		{"empty data dir", `data_dir: ""`, "data_dir: is empty"},
		{"bad listen port", "listen:\n  relay: 127.0.0.1:99999", `listen.relay: invalid port "99999"`},
		{"bad listen host", "listen:\n  relay: 'no_such:25'", `listen.relay: "no_such" is not an IP address or host name`},
		{"duplicate listener", "listen:\n  relay: 127.0.0.1:2465", "listen.relay: 127.0.0.1:2465 is also used by listen.smtps"},
		{"cert without key", "tls:\n  cert_file: /c.pem", "tls.key_file: is empty while cert_file is set"},
		{"acme and files", "tls:\n  cert_file: /c\n  key_file: /k\n  acme:\n    domains: [a.example.com]", "tls.acme: cannot be combined with cert_file/key_file"},
		{"acme without domains", "tls:\n  acme:\n    email: a@example.com", "tls.acme.domains: is empty"},
		{"acme bad email", "tls:\n  acme:\n    domains: [a.example.com]\n    email: nobody", `tls.acme.email: "nobody" is not an email address`},
		{"acme bad url", "tls:\n  acme:\n    domains: [a.example.com]\n    directory_url: ftp://x", "tls.acme.directory_url"},
		{"bad sender", "auth:\n  senders:\n    alice: [alice]", `auth.senders.alice[0]: "alice" is neither an address nor @domain`},
		{"bad sender domain", "auth:\n  trusted_senders: ['@exa mple.com']", `auth.trusted_senders[0]: "@exa mple.com" has an invalid domain`},
		{"network without cidrs", "auth:\n  networks:\n    - name: lan", "auth.networks[0].cidrs: is empty"},
		{"network without name", "auth:\n  networks:\n    - cidrs: [10.0.0.0/8]", "auth.networks[0].name: is empty"},
		{"network dup name", "auth:\n  networks:\n    - {name: a, cidrs: [10.0.0.1]}\n    - {name: a, cidrs: [10.0.0.2]}", `auth.networks[1].name: "a" names two networks`},
		{"bad network host", "auth:\n  networks:\n    - {name: a, cidrs: ['bad host']}", `is not a CIDR, IP address or host name`},
		{"network zone", "auth:\n  trusted_networks: ['fe80::1%eth0']", "has a zone"},
		{"negative failures", "auth:\n  max_failures: -1", "auth.max_failures: is -1, must be at least 0"},
		{"bad canonicalization", "dkim:\n  canonicalization: loose/relaxed", `dkim.canonicalization: invalid value "loose/relaxed"`},
		{"oversign Received", "dkim:\n  oversign_headers: [From, received]", "dkim.oversign_headers: lists Received: it is added to the message after signing"},
		{"key table alone", "dkim:\n  key_table: /etc/kt", "dkim.signing_table: is empty while key_table is set"},
		{"table type", "dkim:\n  key_table: ldap:x\n  signing_table: /s", `dkim.key_table: OpenDKIM data set type "ldap" is not supported`},
		{"dkim key", "dkim:\n  keys:\n    - {domain: 'exa_mple.com', selector: s1, key_file: /k}", `dkim.keys[0].domain: "exa_mple.com" is not a valid domain`},
		{"dkim key file", "dkim:\n  keys:\n    - {domain: example.com, selector: s1}", "dkim.keys[0].key_file: is empty"},
		{"sign headers need from", "dkim:\n  sign_headers: [Subject]", "dkim.sign_headers: does not include From"},
		{"bad header name", "dkim:\n  oversign_headers: ['Sub ject']", `dkim.oversign_headers[0]: "Sub ject" is not a header field name`},
		{"delivery tls", "delivery:\n  tls: always", `delivery.tls: invalid value "always"`},
		{"tls policy", "delivery:\n  tls_policy:\n    example.net: strict", `delivery.tls_policy.example.net: invalid value "strict"`},
		{"mx port", "delivery:\n  mx_port: 0", "delivery.mx_port: invalid port 0"},
		{"resolver", "delivery:\n  resolver: dns.example.com:53", `delivery.resolver: "dns.example.com:53" is not ip:port`},
		{"transport ipv6", "delivery:\n  transport:\n    example.net: '2001:db8::1'", "delivery.transport.example.net: IPv6 address"},
		{"transport port", "delivery:\n  transport:\n    example.net: '[h.example.net]:0'", `delivery.transport.example.net: invalid port "0"`},
		{"transport bracket", "delivery:\n  transport:\n    example.net: '[h.example.net'", "lacks the closing ]"},
		{"smarthost tls", "delivery:\n  smarthost:\n    address: '[a.example.net]:465'\n    tls: ssl", `delivery.smarthost.tls: invalid value "ssl"; use one of: none, may, encrypt, verify, implicit`},
		{"smarthost two passwords", "delivery:\n  smarthost:\n    address: a.example.net\n    username: u\n    password: p\n    password_file: /p", "delivery.smarthost.password: is set together with password_file"},
		{"smarthost no password", "delivery:\n  smarthost:\n    address: a.example.net\n    username: u", "delivery.smarthost.username: is set but there is no password"},
		{"sender relay key", "delivery:\n  sender_relay:\n    nobody:\n      address: a.example.net", `delivery.sender_relay.nobody: "nobody" is neither`},
		{"timeout", "delivery:\n  connect_timeout: 0", "delivery.connect_timeout: must be a positive duration"},
		{"concurrency", "delivery:\n  max_concurrent: 0", "delivery.max_concurrent: is 0, must be at least 1"},
		{"lifetime", "queue:\n  max_lifetime: 0s", "queue.max_lifetime: must be a positive duration"},
		{"size", "limits:\n  max_message_size: 0", "limits.max_message_size: must be positive"},
		{"log format", "log:\n  format: xml", `log.format: invalid value "xml"; use one of: text, json`},
		{"log level", "log:\n  level: verbose", `log.level: invalid value "verbose"`},
		// Domain names: one rule per kind of name (relay/mailsyntax).
		{"numeric hostname", "hostname: mail.123", `hostname: "mail.123" is not a valid host name (domain ends in an all-numeric label`},
		{"one-label d=", "dkim:\n  keys:\n    - {domain: localhost, selector: s1, key_file: /k}", `dkim.keys[0].domain: "localhost" is not a valid domain (domain has only one label)`},
		{"non-ASCII d=", "dkim:\n  keys:\n    - {domain: bücher.example, selector: s1, key_file: /k}", `dkim.keys[0].domain: "bücher.example" is not a valid domain`},
		{"bad selector", "dkim:\n  keys:\n    - {domain: example.com, selector: '-s1', key_file: /k}", `dkim.keys[0].selector: "-s1" is not a valid selector (label "-s1" starts or ends with '-')`},
		{"sender address literal", "auth:\n  senders:\n    alice: ['@192.0.2.1']", `"@192.0.2.1" has an invalid domain (domain ends in an all-numeric label`},
		{"transport numeric key", "delivery:\n  transport:\n    .10.0.0: '[10.0.0.5]'", `delivery.transport..10.0.0: ".10.0.0" is not a domain or .domain`},
		{"acme name with _", "tls:\n  acme:\n    domains: [mail_1.example.com]", `tls.acme.domains[0]: "mail_1.example.com" is not a valid domain name (invalid character '_'`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.text+"\n")
			_, err := config.LoadEnv(path, envMap(nil))
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error\n%v\nlacks\n%s", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), path+":") {
				t.Errorf("error does not start with the file and line: %v", err)
			}
		})
	}
}

func TestValidateReportsAll(t *testing.T) {
	c := config.Default()
	c.Hostname = ""
	c.Log.Level = "loud"
	c.Queue.RetryMin = 0
	err := c.Validate()
	var n int
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var ce *config.Error
		if !errors.As(e, &ce) || ce.File != "" || ce.Env != "" {
			t.Errorf("unexpected %#v", e)
		}
		n++
	}
	if n != 3 {
		t.Errorf("got %d errors, want 3:\n%v", n, err)
	}
}

func TestErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		e    config.Error
		want string
	}{
		{config.Error{File: "f.yaml", Line: 3, Key: "a.b", Msg: "bad", Fix: "fix it"}, "f.yaml:3: a.b: bad; fix it"},
		{config.Error{File: "f.yaml", Key: "a.b", Msg: "bad"}, "f.yaml: a.b: bad"},
		{config.Error{Env: "INKAN_A_B", File: "ignored", Key: "a.b", Msg: "bad", Fix: "f"}, "env INKAN_A_B: a.b: bad; f"},
		{config.Error{Key: "a.b", Msg: "bad"}, "a.b: bad"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
	c := mustLoad(t, "queue:\n  retry_min: 1m\n", map[string]string{"INKAN_HOSTNAME": "a.example.com"})
	if got := c.NewError("queue.retry_min", "m", "").Error(); !strings.HasSuffix(got, ":2: queue.retry_min: m") {
		t.Errorf("NewError from file = %q", got)
	}
	if got := c.NewError("hostname", "m", "f").Error(); got != "env INKAN_HOSTNAME: hostname: m; f" {
		t.Errorf("NewError from env = %q", got)
	}
	if got := c.NewError("log.level", "m", "").Error(); got != "log.level: m" {
		t.Errorf("NewError for default = %q", got)
	}
}

func TestWarningsList(t *testing.T) {
	c := mustLoad(t, `
hostname: mail
data_dir: relative/dir
listen:
  submission: ":2587"
  http: ""
auth:
  trusted_networks: [0.0.0.0/0, 10.1.2.3/8]
delivery:
  tls: none
  smarthost:
    address: "[a.example.net]:25"
    username: u
    password: secret
    tls: verify
queue:
  delay_warning: 6d
http:
  metrics: true
`, nil)
	got := strings.Join(c.Warnings(), "\n")
	for _, w := range []string{
		`:2: hostname: "mail" is not fully qualified`,
		":3: data_dir:",
		":5: listen.submission: :2587 is reachable from the network but the certificate is self-signed",
		":8: auth.trusted_networks[0]: trusts every address: this is an open relay",
		`:8: auth.trusted_networks[1]: "10.1.2.3/8" has host bits set and means 10.0.0.0/8`,
		":10: delivery.tls: mail is sent without encryption",
		":14: delivery.smarthost.password: the password is written in the configuration",
		":17: queue.delay_warning: is not shorter than max_lifetime",
		":6: listen.http: is empty, so http.metrics and http.autoconfig are not served",
	} {
		if !strings.Contains(got, w) {
			t.Errorf("warnings\n%s\nlack %s", got, w)
		}
	}
	if w := config.Default(); len(w.Warnings()) > 1 {
		t.Errorf("default config warns: %q", w.Warnings())
	}
}

func TestParseRoute(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want config.Route
		err  bool
	}{
		{in: "[127.0.0.1]:2526", want: config.Route{Host: "127.0.0.1", Port: 2526}},
		{in: "[smtp.example.net]:587", want: config.Route{Host: "smtp.example.net", Port: 587}},
		{in: "[smtp.example.net]", want: config.Route{Host: "smtp.example.net"}},
		{in: "example.net:2525", want: config.Route{Host: "example.net", Port: 2525, MX: true}},
		{in: "example.net", want: config.Route{Host: "example.net", MX: true}},
		{in: "10.0.0.1", want: config.Route{Host: "10.0.0.1"}},
		{in: "10.0.0.1:25", want: config.Route{Host: "10.0.0.1", Port: 25}},
		{in: "[::1]:25", want: config.Route{Host: "::1", Port: 25}},
		{in: "[::1]", want: config.Route{Host: "::1"}},
		{in: "::1", err: true},
		{in: "", err: true},
		{in: "[x.example]:", err: true},
		{in: "[x.example]25", err: true},
		{in: "host:port", err: true},
		{in: "bad_host:25", err: true},
		{in: "mail.123:25", err: true}, // an all-numeric last label is an address, not a name
		{in: "[]:25", err: true},
		{in: "a.example:65536", err: true},
	} {
		got, err := config.ParseRoute(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseRoute(%q) = %+v, %v; want %+v err=%v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestParseCanonicalization(t *testing.T) {
	for in, want := range map[string][2]string{
		"relaxed/relaxed": {"relaxed", "relaxed"}, "simple/relaxed": {"simple", "relaxed"},
		"relaxed": {"relaxed", "simple"}, "Simple": {"simple", "simple"}, "relaxed/": {}, "x/simple": {}, "": {},
	} {
		h, b, err := config.ParseCanonicalization(in)
		if (err != nil) != (want[0] == "") || h != want[0] || b != want[1] {
			t.Errorf("ParseCanonicalization(%q) = %q, %q, %v", in, h, b, err)
		}
	}
}

func TestDump(t *testing.T) {
	dir := t.TempDir()
	c := mustLoad(t, `
hostname: mail.example.com
data_dir: `+dir+`
delivery:
  smarthost:
    address: "[smtp.example.net]:587"
    username: u
    password: hunter2
  sender_relay:
    "@example.org":
      address: "[smtp.example.org]:465"
      username: v
      password: swordfish
      tls: implicit
limits:
  max_message_size: 10MiB
queue:
  max_lifetime: 36h
`, nil)
	out, err := c.Dump()
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	if strings.Contains(s, "hunter2") || strings.Contains(s, "swordfish") || strings.Count(s, config.Redacted) != 2 {
		t.Errorf("secrets not redacted:\n%s", s)
	}
	for _, w := range []string{"max_message_size: 10MiB", "max_lifetime: 1d12h", "retry_max: 1h", "hostname: mail.example.com", "smtps: 127.0.0.1:2465,[::1]:2465"} {
		if !strings.Contains(s, w) {
			t.Errorf("dump lacks %q:\n%s", w, s)
		}
	}
	// The dump loads back to the same configuration, secrets aside.
	back := mustLoad(t, s, nil)
	back.Delivery.Smarthost.Password = "hunter2"
	r := back.Delivery.SenderRelay["@example.org"]
	r.Password = "swordfish"
	back.Delivery.SenderRelay["@example.org"] = r
	a, _ := c.Dump()
	b, _ := back.Dump()
	if strings.SplitN(string(a), "\n", 2)[1] != strings.SplitN(string(b), "\n", 2)[1] {
		t.Errorf("round trip differs:\n%s\n---\n%s", a, b)
	}
}

func TestValidateAcceptsLenientForms(t *testing.T) {
	c := mustLoad(t, `
hostname: mail.example.com
auth:
  trusted_networks: ["[2001:db8::]/32", 10.0.0.1, gateway.example.com, printer_1.lan]
  senders:
    alice: ['"john doe"@example.com', "@xn--bcher-kva.example", "@bücher.example"]
delivery:
  tls_policy:
    .example.net: verify
    Example.ORG.: encrypt
  transport:
    .internal.example.com: "[10.0.0.5]"
dkim:
  keys:
    - {domain: Example.COM, selector: "20230601", key_file: /k}
    - {domain: example.com, selector: s_2024.mail, key_file: /k2}
`, nil)
	if len(c.Auth.TrustedNetworks) != 4 || len(c.Delivery.TLSPolicy) != 2 || len(c.DKIM.Keys) != 2 {
		t.Errorf("unexpected: %+v", c.Auth)
	}
}
