package main_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// `inkan check` opens what an OAuth2 relay names: a missing refresh token
// is an error naming the setting and `inkan oauth2 login`; once it is
// there the config passes, and -print shows neither the inline client
// secret nor the refresh token.
func TestCheckOAuth2Relay(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rt := filepath.Join(dir, "oauth2", "m365.refresh")
	cfg := writeConfig(t, dir, `  smarthost:
    address: "[smtp.office365.com]:587, [smtp-backup.example.net]:587"
    username: relay@example.com
    oauth2:
      provider: microsoft
      tenant: 11111111-2222-3333-4444-555555555555
      client_id: 66666666-7777-8888-9999-000000000000
      client_secret: inline-client-secret-value
      refresh_token_file: `+rt+`
    pacing: {messages: 30, recipients_per_day: 10000}
`)
	out, err := exec.Command(binPath, "check", "-config", cfg).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 78 {
		t.Fatalf("check exited %v, want 78:\n%s", err, out)
	}
	for _, want := range []string{"delivery.smarthost.oauth2.refresh_token_file", "inkan oauth2 login"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}

	os.MkdirAll(filepath.Dir(rt), 0o700)
	if err := os.WriteFile(rt, []byte("refresh-token-value\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(binPath, "check", "-print", "-config", cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("check: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "delivery.smarthost.oauth2.client_secret") {
		t.Errorf("no warning about the client secret written in the config:\n%s", out)
	}
	for _, secret := range []string{"inline-client-secret-value", "refresh-token-value"} {
		if strings.Contains(string(out), secret) {
			t.Errorf("check -print shows a secret:\n%s", out)
		}
	}
}
