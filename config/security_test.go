package config

import (
	"strings"
	"testing"
)

// Without HOME, XDG_STATE_HOME or STATE_DIRECTORY, a user other than root
// used to get /tmp/inkan-UID: a name anyone can create first, with their
// own links and files in it. Now there is no default and the check says
// which setting to give.
func TestAttackNoPredictableTmpDataDir(t *testing.T) {
	none := func(string) (string, bool) { return "", false }
	c := defaults(1000, func() (string, error) { return "h.example.com", nil }, none)
	if strings.HasPrefix(c.DataDir, "/tmp") || c.DataDir != "" {
		t.Fatalf("data_dir defaults to %q", c.DataDir)
	}
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "data_dir") {
		t.Fatalf("Validate = %v, want an error naming data_dir", err)
	}
}

// A relay with a password checks the certificate: by default, and as the
// only choice the check accepts (the password would otherwise go to anyone
// who can answer in the relay's place).
func TestRelayPasswordNeedsVerifiedTLS(t *testing.T) {
	const fp = "3A:7B:C1:5D:2E:90:44:1F:AA:06:B3:58:9C:E2:71:0D:65:48:F3:1A:B7:2C:9E:80:D4:13:6F:A5:C8:39:E0:57"
	for _, tc := range []struct {
		name, yaml string
		want       string // "" = valid
	}{
		{"default is verify", "username: u\n    password: p", ""},
		{"implicit", "username: u\n    password: p\n    tls: implicit", ""},
		{"encrypt", "username: u\n    password: p\n    tls: encrypt",
			`delivery.smarthost.tls: "encrypt" does not check the relay's certificate, so anyone on the path could collect the password of u; use verify (STARTTLS) or implicit`},
		{"may", "username: u\n    password: p\n    tls: may", `delivery.smarthost.tls: "may" does not check`},
		{"none", "username: u\n    password: p\n    tls: none", `delivery.smarthost.tls: "none" does not check`},
		{"pin", "username: u\n    password: p\n    tls_fingerprint: " + fp, ""},
		{"pin without verify", "tls: encrypt\n    tls_fingerprint: " + fp, "ca_file and tls_fingerprint do nothing; use verify or implicit"},
		{"bad pin", "username: u\n    password: p\n    tls_fingerprint: 12:34", `delivery.smarthost.tls_fingerprint: "12:34" is not a SHA-256 fingerprint; write the 64 hex digits`},
		{"pin and ca", "username: u\n    password: p\n    ca_file: /ca.pem\n    tls_fingerprint: " + fp, "delivery.smarthost.tls_fingerprint: is set together with ca_file"},
		{"no username, encrypt", "tls: encrypt", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := "hostname: mail.example.com\ndata_dir: /var/lib/inkan\ndelivery:\n  smarthost:\n    address: \"[smtp.example.net]:587\"\n    " + tc.yaml + "\n"
			c, err := LoadEnv("", func(k string) (string, bool) {
				if k == EnvConfigYAML {
					return doc, true
				}
				return "", false
			})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want %q", err, tc.want)
			case tc.name == "default is verify" && c.Delivery.Smarthost.TLS != "verify":
				t.Fatalf("tls = %q, want verify", c.Delivery.Smarthost.TLS)
			}
		})
	}
}
