package config_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/inkan-relay/inkan/config"
)

// envMap turns a map into a LookupEnv-style function.
func envMap(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// writeConfig writes text to a temporary config file and returns its path.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "inkan.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// load loads text (if not "") as a config file with env as the environment.
func load(t *testing.T, text string, env map[string]string) (*config.Config, error) {
	t.Helper()
	path := ""
	if text != "" {
		path = writeConfig(t, text)
	}
	return config.LoadEnv(path, envMap(env))
}

func mustLoad(t *testing.T, text string, env map[string]string) *config.Config {
	t.Helper()
	c, err := load(t, text, env)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return c
}

func TestDefaultValidates(t *testing.T) {
	c := config.Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Default() does not validate:\n%v", err)
	}
	if c.Hostname == "" || c.DataDir == "" {
		t.Fatalf("Default() hostname %q data_dir %q", c.Hostname, c.DataDir)
	}
	if got := config.SplitAddrs(c.Listen.SMTPS); !reflect.DeepEqual(got, []string{"127.0.0.1:2465", "[::1]:2465"}) {
		t.Errorf("default smtps = %q", got)
	}
	if c.Queue.MaxLifetime.D() != 5*24*time.Hour || c.Limits.MaxMessageSize != 25e6 || c.Delivery.TLS != "may" ||
		c.Auth.Lockout.D() != 15*time.Minute || c.DKIM.Canonicalization != "relaxed/relaxed" {
		t.Errorf("unexpected defaults: %+v", c)
	}
	// No file and no variables gives exactly the defaults.
	got := mustLoad(t, "", nil)
	if got.Hostname != c.Hostname || got.Limits != c.Limits || got.Queue != c.Queue || got.Listen != c.Listen {
		t.Errorf("LoadEnv(\"\") differs from Default()")
	}
}

func TestSplitAddrs(t *testing.T) {
	for in, want := range map[string][]string{
		"":                             nil,
		" , ":                          nil,
		"127.0.0.1:25":                 {"127.0.0.1:25"},
		"127.0.0.1:25, [::1]:25,":      {"127.0.0.1:25", "[::1]:25"},
		":587,[2001:db8::1]:587 ,  ,x": {":587", "[2001:db8::1]:587", "x"},
	} {
		if got := config.SplitAddrs(in); !reflect.DeepEqual(got, want) {
			t.Errorf("SplitAddrs(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLoadFile(t *testing.T) {
	c := mustLoad(t, `
hostname: mail.example.com
listen:
  relay: ""
auth:
  trusted_networks: [10.0.0.0/8]
  senders:
    alice: [alice@example.com, "@example.org"]
  networks:
    - name: lan
      cidrs: 192.168.1.0/24
      rate_limit: 10
delivery:
  smarthost:
    address: "[smtp.example.net]:587"
  transport:
    example.net: "[127.0.0.1]:2526"
queue:
  max_lifetime: 2d
limits:
  max_message_size: 10MB
headers:
  add_date: false
`, nil)
	if c.Hostname != "mail.example.com" || c.Listen.Relay != "" || c.Listen.SMTPS == "" {
		t.Errorf("listen/hostname: %+v %q", c.Listen, c.Hostname)
	}
	if !reflect.DeepEqual(c.Auth.TrustedNetworks, []string{"10.0.0.0/8"}) {
		t.Errorf("trusted_networks = %q (lists replace the default)", c.Auth.TrustedNetworks)
	}
	if !reflect.DeepEqual(c.Auth.Senders["alice"], []string{"alice@example.com", "@example.org"}) {
		t.Errorf("senders = %v", c.Auth.Senders)
	}
	n := c.Auth.Networks[0]
	if !reflect.DeepEqual(n.CIDRs, []string{"192.168.1.0/24"}) || n.RatePeriod.D() != time.Minute {
		t.Errorf("network = %+v (a single value is a list of one; rate_period defaults to 1m)", n)
	}
	if s := c.Delivery.Smarthost; s == nil || s.TLS != "encrypt" {
		t.Errorf("smarthost = %+v, want tls encrypt by default", s)
	}
	if c.Queue.MaxLifetime.D() != 48*time.Hour || c.Queue.RetryMin.D() != 5*time.Minute {
		t.Errorf("queue = %+v (unlisted keys keep defaults)", c.Queue)
	}
	if c.Limits.MaxMessageSize != 10e6 || *c.Headers.AddDate || !*c.Headers.AddMessageID {
		t.Errorf("limits/headers wrong: %+v %+v", c.Limits, c.Headers)
	}
	if c.Source == "" {
		t.Error("Source not set")
	}
}

// TestLoadErrors checks that file problems name the file, the line, the key and a fix.
func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       []string // substrings of the error, after FILE is replaced
	}{
		{"unknown key", "hostname: mail.example.com\nlimits:\n  max_mesage_size: 10MB\n",
			[]string{`FILE:3: limits.max_mesage_size: unknown setting; did you mean "max_message_size"?`}},
		{"key in wrong section", "delivery:\n  max_recipients: 5\n",
			[]string{"FILE:2: delivery.max_recipients: unknown setting; did you mean limits.max_recipients?"}},
		{"unknown top-level", "colour: blue\n", []string{"FILE:1: colour: unknown setting; valid top-level keys: hostname, data_dir"}},
		{"bad size", "limits:\n  max_message_size: 25 megs\n",
			[]string{`FILE:2: limits.max_message_size: invalid size "25 megs"; use units like 512KB, 25MB`}},
		{"bad duration", "queue:\n  retry_min: 5 minutes\n",
			[]string{`FILE:2: queue.retry_min: invalid duration "5 minutes"; use units like 90s, 5m`}},
		{"negative duration", "queue:\n  retry_min: -5m\n", []string{`FILE:2: queue.retry_min: invalid duration "-5m"`}},
		{"bad number", "limits:\n  max_recipients: lots\n", []string{`FILE:2: limits.max_recipients: invalid number "lots"`}},
		{"bad bool", "http:\n  metrics: maybe\n", []string{`FILE:2: http.metrics: invalid boolean "maybe"; write true or false`}},
		{"list for string", "hostname: [a, b]\n", []string{"FILE:1: hostname: expected a single value, got a list"}},
		{"scalar for section", "listen: 127.0.0.1:25\n", []string{"FILE:1: listen: expected a mapping of settings (smtps, submission, relay, http, local)"}},
		{"mapping for list", "auth:\n  trusted_networks: {a: b}\n", []string{"FILE:2: auth.trusted_networks: expected a list, got a mapping"}},
		{"duplicate key", "hostname: a.example.com\nhostname: b.example.com\n", []string{"FILE:2: hostname: set twice (also on line 1)"}},
		{"syntax error", "listen:\n  smtps: a\n bad\n", []string{"FILE:3: invalid YAML"}},
		{"two documents", "hostname: a.example.com\n---\nhostname: b.example.com\n", []string{"FILE:2: a second YAML document follows"}},
		{"top-level list", "- a\n- b\n", []string{"FILE:1: the top level must be a mapping"}},
		{"several at once", "limits:\n  max_recipients: x\n  max_connections: y\n",
			[]string{"FILE:2: limits.max_recipients", "FILE:3: limits.max_connections"}},
		{"decode and validation problems together", "limits:\n  max_recipients: x\nauth:\n  trusted_networks: [1.2.3.4/40]\n",
			[]string{"FILE:2: limits.max_recipients: invalid number", "FILE:4: auth.trusted_networks[0]: invalid CIDR"}},
		{"alias cycle", "auth:\n  trusted_senders: &x [*x]\n", []string{"FILE:2: auth.trusted_senders[0]: expected a single value, got a list"}},
		{"self merge", "auth: &x\n  <<: *x\n", []string{"FILE:2: auth: merge keys nest too deeply"}},
		// Validation errors carry the line the value came from.
		{"bad CIDR", "auth:\n  trusted_networks:\n    - 10.0.0.0/8\n    - 10.0.0.0/33\n",
			[]string{`FILE:4: auth.trusted_networks[1]: invalid CIDR "10.0.0.0/33"`}},
		{"bad hostname", "hostname: mail_example\n", []string{`FILE:1: hostname: "mail_example" is not a valid host name`}},
		{"bad listen", "listen:\n  smtps: 127.0.0.1\n", []string{`FILE:2: listen.smtps: "127.0.0.1" is not host:port`}},
		{"retry order", "queue:\n  retry_min: 2h\n", []string{"FILE:2: queue.retry_min: 2h is more than retry_max 1h"}},
		{"smarthost without address", "delivery:\n  smarthost:\n    username: u\n    password_file: /p\n",
			[]string{"FILE:2: delivery.smarthost.address: is empty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.text)
			_, err := config.LoadEnv(path, envMap(nil))
			if err == nil {
				t.Fatal("no error")
			}
			msg := strings.ReplaceAll(err.Error(), path, "FILE")
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error\n%s\ndoes not contain\n%s", msg, w)
				}
			}
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Errorf("error is not a *config.Error: %T", err)
			}
		})
	}
}

func TestMissingFile(t *testing.T) {
	_, err := config.LoadEnv(filepath.Join(t.TempDir(), "nope.yaml"), envMap(nil))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want not-exist", err)
	}
}

func TestEmptyAndCommentOnlyFile(t *testing.T) {
	for _, text := range []string{"\n", "# nothing\n", "---\n", "queue:\n  # max_lifetime: 1d\n"} {
		c := mustLoad(t, text, nil)
		if c.Queue.MaxLifetime.D() != 5*24*time.Hour {
			t.Errorf("%q changed defaults: %+v", text, c.Queue)
		}
	}
}

func TestNullSemantics(t *testing.T) {
	c := mustLoad(t, "hostname:\nauth:\n  trusted_networks:\nqueue:\n", nil)
	if c.Hostname != config.Default().Hostname {
		t.Errorf("empty scalar changed hostname to %q", c.Hostname)
	}
	if c.Auth.TrustedNetworks != nil {
		t.Errorf("empty list kept %q", c.Auth.TrustedNetworks)
	}
	if c.Queue.MaxLifetime == 0 {
		t.Error("empty section zeroed its settings")
	}
}

func TestAnchorsAndMerge(t *testing.T) {
	c := mustLoad(t, `
hostname: mail.example.com
delivery:
  smarthost: &relay
    address: "[smtp.example.net]:587"
    username: u
    password_file: /run/secrets/p
  sender_relay:
    "@example.org":
      <<: *relay
      tls: implicit
    "@example.com": *relay
`, nil)
	org := c.Delivery.SenderRelay["@example.org"]
	if org.Address != "[smtp.example.net]:587" || org.TLS != "implicit" || org.Username != "u" {
		t.Errorf("merged relay = %+v", org)
	}
	// A relay that logs in checks the certificate by default.
	if com := c.Delivery.SenderRelay["@example.com"]; com.Address != org.Address || com.TLS != "verify" {
		t.Errorf("aliased relay = %+v", com)
	}
}

func TestAliasBomb(t *testing.T) {
	// Each anchor merges the previous one ten times: 10^8 expansions if unbounded.
	text := "x0: &a0 {max_recipients: 1}\n"
	for i := 1; i <= 8; i++ {
		refs := strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 10), ", ")
		text += fmt.Sprintf("x%d: &a%d {<<: [%s]}\n", i, i, refs)
	}
	text += "limits:\n  <<: *a8\n"
	_, err := load(t, text, nil)
	if err == nil || !strings.Contains(err.Error(), "aliases expand too much") {
		t.Fatalf("alias bomb: err = %v", err)
	}
}
