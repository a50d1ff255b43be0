package config_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/inkan-relay/inkan/config"
)

func TestEnvOverrides(t *testing.T) {
	c := mustLoad(t, "hostname: file.example.com\nlimits:\n  max_recipients: 7\n", map[string]string{
		"INKAN_HOSTNAME":                   "env.example.com",
		"INKAN_DATA_DIR":                   "/srv/inkan",
		"INKAN_LISTEN_SMTPS":               "127.0.0.1:1465,[::1]:1465",
		"INKAN_LISTEN_RELAY":               "",
		"INKAN_AUTH_TRUSTED_NETWORKS":      "10.0.0.0/8, 192.168.0.0/16",
		"INKAN_AUTH_SENDERS":               "alice=alice@example.com|@example.org;bob=bob@example.net,@example.net",
		"INKAN_DELIVERY_SMARTHOST_ADDRESS": "[smtp.example.net]:587",
		"INKAN_DELIVERY_TRANSPORT":         "example.net=[127.0.0.1]:2526, other.org=relay.example.com",
		"INKAN_DELIVERY_TLS_POLICY":        "example.net=verify;other.org=none",
		"INKAN_QUEUE_MAX_LIFETIME":         "5d",
		"INKAN_LIMITS_MAX_MESSAGE_SIZE":    "10MB",
		"INKAN_HTTP_METRICS":               "true",
		"INKAN_HEADERS_ADD_DATE":           "no",
		"INKAN_TLS_ACME_DOMAINS":           "mail.example.com",
	})
	want := map[string]any{
		"hostname":      c.Hostname == "env.example.com",
		"data_dir":      c.DataDir == "/srv/inkan",
		"smtps":         c.Listen.SMTPS == "127.0.0.1:1465,[::1]:1465",
		"relay off":     c.Listen.Relay == "",
		"file kept":     c.Limits.MaxRecipients == 7,
		"trusted":       reflect.DeepEqual(c.Auth.TrustedNetworks, []string{"10.0.0.0/8", "192.168.0.0/16"}),
		"senders alice": reflect.DeepEqual(c.Auth.Senders["alice"], []string{"alice@example.com", "@example.org"}),
		"senders bob":   reflect.DeepEqual(c.Auth.Senders["bob"], []string{"bob@example.net", "@example.net"}),
		"smarthost":     c.Delivery.Smarthost != nil && c.Delivery.Smarthost.Address == "[smtp.example.net]:587" && c.Delivery.Smarthost.TLS == "encrypt",
		"transport":     reflect.DeepEqual(c.Delivery.Transport, map[string]string{"example.net": "[127.0.0.1]:2526", "other.org": "relay.example.com"}),
		"tls_policy":    reflect.DeepEqual(c.Delivery.TLSPolicy, map[string]string{"example.net": "verify", "other.org": "none"}),
		"lifetime":      c.Queue.MaxLifetime.D() == 5*24*time.Hour,
		"size":          c.Limits.MaxMessageSize == 10e6,
		"metrics":       c.HTTP.Metrics,
		"add_date":      !*c.Headers.AddDate,
		"acme":          c.TLS.ACME != nil && c.TLS.ACME.ChallengeListen == ":80",
	}
	for k, ok := range want {
		if ok != true {
			t.Errorf("%s not applied: %+v", k, c)
		}
	}
}

func TestEnvEmptyDoesNotCreateSection(t *testing.T) {
	c := mustLoad(t, "", map[string]string{"INKAN_DELIVERY_SMARTHOST_ADDRESS": ""})
	if c.Delivery.Smarthost != nil {
		t.Errorf("empty variable created smarthost %+v", c.Delivery.Smarthost)
	}
}

func TestEnvFile(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "user")
	if err := os.WriteFile(secret, []byte("relay-user\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(dir, "pw")
	c := mustLoad(t, "", map[string]string{
		"INKAN_DELIVERY_SMARTHOST_ADDRESS":       "[smtp.example.net]:587",
		"INKAN_DELIVERY_SMARTHOST_USERNAME_FILE": secret,
		// This is the password_file setting itself: the path is kept, not read.
		"INKAN_DELIVERY_SMARTHOST_PASSWORD_FILE": pw,
		"INKAN_HOSTNAME_FILE":                    secret,
	})
	s := c.Delivery.Smarthost
	if s.Username != "relay-user" || s.PasswordFile != pw || s.Password != "" || c.Hostname != "relay-user" {
		t.Errorf("smarthost = %+v hostname %q", s, c.Hostname)
	}
	if err := os.WriteFile(pw, []byte("hunter2\nignored\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := s.ReadPassword(); err != nil || got != "hunter2" {
		t.Errorf("ReadPassword = %q, %v", got, err)
	}

	_, err := load(t, "", map[string]string{"INKAN_HOSTNAME": "a.example.com", "INKAN_HOSTNAME_FILE": secret})
	if err == nil || !strings.Contains(err.Error(), "env INKAN_HOSTNAME_FILE: both INKAN_HOSTNAME and INKAN_HOSTNAME_FILE are set") {
		t.Errorf("both set: %v", err)
	}
	_, err = load(t, "", map[string]string{"INKAN_HOSTNAME_FILE": filepath.Join(dir, "missing")})
	if err == nil || !strings.Contains(err.Error(), "env INKAN_HOSTNAME_FILE: cannot read") {
		t.Errorf("missing file: %v", err)
	}
}

func TestEnvErrors(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"INKAN_QUEUE_MAX_LIFETIME": "5x"}, `env INKAN_QUEUE_MAX_LIFETIME: queue.max_lifetime: invalid duration "5x"; use units like`},
		{map[string]string{"INKAN_LIMITS_MAX_MESSAGE_SIZE": "big"}, `env INKAN_LIMITS_MAX_MESSAGE_SIZE: limits.max_message_size: invalid size "big"`},
		{map[string]string{"INKAN_DELIVERY_MX_PORT": "smtp"}, `env INKAN_DELIVERY_MX_PORT: delivery.mx_port: invalid number "smtp"`},
		{map[string]string{"INKAN_HTTP_METRICS": "sure"}, `env INKAN_HTTP_METRICS: http.metrics: invalid boolean "sure"`},
		{map[string]string{"INKAN_DELIVERY_TRANSPORT": "example.net"}, `env INKAN_DELIVERY_TRANSPORT: delivery.transport: invalid entry "example.net"`},
		// Validation errors name the variable the value came from.
		{map[string]string{"INKAN_AUTH_TRUSTED_NETWORKS": "10.0.0.0/8,10.1.0.0/99"}, `env INKAN_AUTH_TRUSTED_NETWORKS: auth.trusted_networks[1]: invalid CIDR "10.1.0.0/99"`},
		{map[string]string{"INKAN_DELIVERY_TLS": "always"}, `env INKAN_DELIVERY_TLS: delivery.tls: invalid value "always"; use one of: none, may, encrypt, verify`},
		{map[string]string{"INKAN_DELIVERY_SMARTHOST_USERNAME": "u"}, `env INKAN_DELIVERY_SMARTHOST_USERNAME: delivery.smarthost.address: is empty`},
	} {
		_, err := load(t, "", tc.env)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v\nwant %s", tc.env, err, tc.want)
		}
	}
}

func TestConfigYAMLEnv(t *testing.T) {
	file := "hostname: file.example.com\nqueue:\n  retry_min: 1m\n"
	doc := `
auth:
  networks:
    - name: lan
      cidrs: [192.168.1.0/24]
queue:
  retry_min: 2m
  retry_max: 3h
`
	c := mustLoad(t, file, map[string]string{
		"INKAN_CONFIG_YAML":      doc,
		"INKAN_QUEUE_RETRY_MAX":  "4h", // per-key variables win over INKAN_CONFIG_YAML
		"INKAN_LIMITS_MAX_RECIP": "",   // LoadEnv cannot list the environment: ignored here
	})
	if c.Hostname != "file.example.com" || len(c.Auth.Networks) != 1 || c.Queue.RetryMin.D() != 2*time.Minute || c.Queue.RetryMax.D() != 4*time.Hour {
		t.Errorf("got hostname %q networks %+v queue %+v", c.Hostname, c.Auth.Networks, c.Queue)
	}

	_, err := load(t, "", map[string]string{"INKAN_CONFIG_YAML": "queue:\n  retry_mim: 1m\n"})
	if err == nil || !strings.Contains(err.Error(), `INKAN_CONFIG_YAML:2: queue.retry_mim: unknown setting; did you mean "retry_min"?`) {
		t.Errorf("err = %v", err)
	}
	_, err = load(t, "", map[string]string{"INKAN_CONFIG_YAML": "auth:\n  trusted_networks: [nope/8]\n"})
	if err == nil || !strings.Contains(err.Error(), `INKAN_CONFIG_YAML:2: auth.trusted_networks[0]: invalid CIDR`) {
		t.Errorf("err = %v", err)
	}

	p := writeConfig(t, doc)
	c = mustLoad(t, "", map[string]string{"INKAN_CONFIG_YAML_FILE": p})
	if len(c.Auth.Networks) != 1 {
		t.Errorf("INKAN_CONFIG_YAML_FILE not applied")
	}
}

func TestEnvConfigPath(t *testing.T) {
	p := writeConfig(t, "hostname: path.example.com\n")
	c := mustLoad(t, "", map[string]string{"INKAN_CONFIG": p})
	if c.Hostname != "path.example.com" || c.Source != p {
		t.Errorf("INKAN_CONFIG not used: %q %q", c.Hostname, c.Source)
	}
}

// TestUnknownEnv uses the real environment, which only Load can list.
func TestUnknownEnv(t *testing.T) {
	t.Setenv("INKAN_QUEUE_MAX_LIFETME", "1d")
	t.Setenv("INKAN_AUTH_NETWORKS", "x")
	t.Setenv("INKAN_HOSTNAME_FILEZ", "x")
	t.Setenv("INKAN_CONFIG", "")
	_, err := config.Load("")
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{
		"env INKAN_QUEUE_MAX_LIFETME: unknown setting; did you mean INKAN_QUEUE_MAX_LIFETIME?",
		"env INKAN_AUTH_NETWORKS: unknown setting; auth.networks has no variable of its own; set it in INKAN_CONFIG_YAML",
		"env INKAN_HOSTNAME_FILEZ: unknown setting",
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error\n%v\nlacks %s", err, w)
		}
	}
}

func TestEnvName(t *testing.T) {
	if got := config.EnvName("delivery.smarthost.address"); got != "INKAN_DELIVERY_SMARTHOST_ADDRESS" {
		t.Errorf("EnvName = %q", got)
	}
}
