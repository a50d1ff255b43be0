package config_test

import (
	"strings"
	"testing"

	"github.com/inkan-relay/inkan/config"
)

const relayBase = "delivery:\n  smarthost:\n    address: '[smtp.example.net]:587'\n"

// Every mistake in the OAuth2, failover, client certificate and pacing
// settings names its key and the fix.
func TestValidateRelayErrors(t *testing.T) {
	for _, tc := range []struct {
		name, text, want string
	}{
		{"oauth2 without username", relayBase + "    oauth2: {provider: google, client_id: c, refresh_token_file: /r}",
			"delivery.smarthost.username: is empty but oauth2 is set; set it to the mailbox that sends"},
		{"oauth2 and password", relayBase + "    username: u@example.com\n    password_file: /p\n    oauth2: {provider: google, client_id: c, refresh_token_file: /r}",
			"delivery.smarthost.password_file: is set together with oauth2"},
		{"microsoft needs tenant", relayBase + "    username: u@example.com\n    oauth2: {provider: microsoft, client_id: c, refresh_token_file: /r}",
			"delivery.smarthost.oauth2.tenant: is empty; copy the Directory (tenant) ID"},
		{"tenant syntax", relayBase + "    username: u@example.com\n    oauth2: {provider: microsoft, tenant: 'a/b', client_id: c, refresh_token_file: /r}",
			`delivery.smarthost.oauth2.tenant: "a/b" is not a directory ID or domain`},
		{"app token from common", relayBase + "    username: u@example.com\n    oauth2: {provider: microsoft, tenant: common, client_id: c, client_secret_file: /s}",
			`delivery.smarthost.oauth2.tenant: "common" cannot issue application tokens`},
		{"google client credentials", relayBase + "    username: u@example.com\n    oauth2: {provider: google, flow: client_credentials, client_id: c, client_secret_file: /s}",
			"delivery.smarthost.oauth2.flow: Google has no client-credentials flow for SMTP"},
		{"no provider no url", relayBase + "    username: u@example.com\n    oauth2: {client_id: c, refresh_token_file: /r}",
			"delivery.smarthost.oauth2.token_url: is empty and no provider is set"},
		{"plain http", relayBase + "    username: u@example.com\n    oauth2: {token_url: 'http://login.example.net/token', client_id: c, refresh_token_file: /r}",
			`delivery.smarthost.oauth2.token_url: "http://login.example.net/token" is plain http`},
		{"no refresh token", relayBase + "    username: u@example.com\n    oauth2: {provider: google, flow: refresh_token, client_id: c}",
			"delivery.smarthost.oauth2.refresh_token_file: is empty, so there is no refresh token; get one with `inkan oauth2 login`"},
		{"no client id", relayBase + "    username: u@example.com\n    oauth2: {provider: google, refresh_token_file: /r}",
			"delivery.smarthost.oauth2.client_id: is empty"},
		{"two secrets", relayBase + "    username: u@example.com\n    oauth2: {provider: google, client_id: c, client_secret: s, client_secret_file: /s, refresh_token_file: /r}",
			"delivery.smarthost.oauth2.client_secret: is set together with client_secret_file"},
		{"bad flow", relayBase + "    username: u@example.com\n    oauth2: {provider: google, flow: password, client_id: c}",
			`delivery.smarthost.oauth2.flow: invalid value "password"`},
		{"bad mechanism", relayBase + "    username: u@example.com\n    oauth2: {provider: google, mechanism: plain, client_id: c, refresh_token_file: /r}",
			`delivery.smarthost.oauth2.mechanism: invalid value "plain"; use one of: , xoauth2, oauthbearer`},
		{"oauth2 over unchecked tls", relayBase + "    username: u@example.com\n    tls: encrypt\n    oauth2: {provider: google, client_id: c, refresh_token_file: /r}",
			"delivery.smarthost.tls: \"encrypt\" does not check the relay's certificate, so anyone on the path could collect the OAuth2 access tokens of u@example.com"},
		{"cert without key", relayBase + "    client_cert_file: /c.pem", "delivery.smarthost.client_key_file: is empty while client_cert_file is set"},
		{"client cert over unchecked tls", relayBase + "    tls: may\n    client_cert_file: /c.pem\n    client_key_file: /k.pem", `delivery.smarthost.tls: "may" does not check the relay's certificate`},
		{"bad failover item", "delivery:\n  smarthost:\n    address: '[a.example.net]:587, [b.example.net'", "delivery.smarthost.address: item 2: \"[b.example.net\" lacks the closing ]"},
		{"negative pacing", relayBase + "    pacing: {messages: -1}", "delivery.smarthost.pacing.messages: is -1"},
		{"sender relay pacing", "delivery:\n  sender_relay:\n    '@example.org':\n      address: '[smtp.example.org]:587'\n      pacing: {recipients_per_day: -5}",
			"delivery.sender_relay.@example.org.pacing.recipients_per_day: is -5"},
		{"pacing domain", "delivery:\n  pacing:\n    'exa mple.net': {messages: 5}", `delivery.pacing.exa mple.net: "exa mple.net" is not a domain or .domain`},
		{"failover backoff", "delivery:\n  failover_backoff: -1m", "delivery.failover_backoff: invalid duration"},
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
		})
	}
}

// A complete Microsoft 365 setup loads; pacing gets its default period;
// a client certificate alone makes tls default to verify; secrets written
// in the file are warned about and never printed by `inkan check -print`.
func TestRelaySettingsLoad(t *testing.T) {
	c := mustLoad(t, `
delivery:
  smarthost:
    address: "[smtp.office365.com]:587, [smtp-backup.example.net]:587"
    username: relay@example.com
    oauth2:
      provider: microsoft
      tenant: 11111111-2222-3333-4444-555555555555
      client_id: 66666666-7777-8888-9999-000000000000
      client_secret: the-client-secret-value
      refresh_token: the-refresh-token-value
    pacing: {messages: 30, recipients_per_day: 10000}
  sender_relay:
    "@connector.example.com":
      address: "[example-com.mail.protection.outlook.com]:25"
      client_cert_file: /etc/inkan/connector.crt
      client_key_file: /etc/inkan/connector.key
  pacing:
    .example.net: {messages: 1, period: 2s}
`, nil)
	s := c.Delivery.Smarthost
	if got := s.Addresses(); len(got) != 2 || got[1] != "[smtp-backup.example.net]:587" {
		t.Errorf("addresses %q", got)
	}
	if s.TLS != "verify" || s.Pacing.Period.D().String() != "1m0s" || s.OAuth2.FlowName() != config.FlowRefreshToken {
		t.Errorf("tls %q, pacing period %s, flow %s", s.TLS, s.Pacing.Period, s.OAuth2.FlowName())
	}
	if got := c.Delivery.SenderRelay["@connector.example.com"].TLS; got != "verify" {
		t.Errorf("a relay with a client certificate has tls %q, want verify", got)
	}
	if c.Delivery.FailoverBackoff.D().String() != "1m0s" {
		t.Errorf("failover_backoff %s", c.Delivery.FailoverBackoff)
	}
	w := strings.Join(c.Warnings(), "\n")
	for _, key := range []string{"delivery.smarthost.oauth2.client_secret", "delivery.smarthost.oauth2.refresh_token"} {
		if !strings.Contains(w, key) {
			t.Errorf("no warning about %s in:\n%s", key, w)
		}
	}
	dump, err := c.Dump()
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"the-client-secret-value", "the-refresh-token-value"} {
		if strings.Contains(string(dump), secret) {
			t.Errorf("check -print shows a secret:\n%s", dump)
		}
	}
}

// INKAN_..._OAUTH2_CLIENT_SECRET_FILE and ..._REFRESH_TOKEN_FILE are the
// *_file settings (read when used, so a rotated secret is picked up), like
// the smarthost's password_file.
func TestOAuth2SecretFilesFromEnv(t *testing.T) {
	c := mustLoad(t, "hostname: mail.example.com\n", map[string]string{
		"INKAN_DELIVERY_SMARTHOST_ADDRESS":                   "[smtp.gmail.com]:465",
		"INKAN_DELIVERY_SMARTHOST_TLS":                       "implicit",
		"INKAN_DELIVERY_SMARTHOST_USERNAME":                  "relay@example.com",
		"INKAN_DELIVERY_SMARTHOST_OAUTH2_PROVIDER":           "google",
		"INKAN_DELIVERY_SMARTHOST_OAUTH2_CLIENT_ID":          "1234-abc.apps.googleusercontent.com",
		"INKAN_DELIVERY_SMARTHOST_OAUTH2_CLIENT_SECRET_FILE": "/run/secrets/client_secret",
		"INKAN_DELIVERY_SMARTHOST_OAUTH2_REFRESH_TOKEN_FILE": "/run/secrets/refresh_token",
		"INKAN_DELIVERY_SMARTHOST_PACING_MESSAGES":           "20",
		"INKAN_DELIVERY_SMARTHOST_PACING_RECIPIENTS_PER_DAY": "2000",
	})
	o := c.Delivery.Smarthost.OAuth2
	if o.ClientSecretFile != "/run/secrets/client_secret" || o.RefreshTokenFile != "/run/secrets/refresh_token" || o.ClientSecret != "" {
		t.Errorf("oauth2 from env: %+v", o)
	}
	if p := c.Delivery.Smarthost.Pacing; p.Messages != 20 || p.RecipientsPerDay != 2000 {
		t.Errorf("pacing from env: %+v", p)
	}
}
