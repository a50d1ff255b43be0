package config_test

import (
	"strings"
	"testing"
)

// listen.local and queue.maildrop are inside data_dir unless absolute; ""
// turns them off; a path leaving data_dir is refused; a socket path too long
// for sun_path is a warning (the default lives in data_dir, which may be
// deep), not a reason to refuse the start.
func TestLocalPaths(t *testing.T) {
	c := mustLoad(t, "data_dir: /var/lib/inkan\n", nil)
	if c.LocalSocketPath() != "/var/lib/inkan/sendmail.sock" || c.MaildropPath() != "/var/lib/inkan/maildrop" {
		t.Errorf("defaults: %q %q", c.LocalSocketPath(), c.MaildropPath())
	}
	c = mustLoad(t, "data_dir: /var/lib/inkan\nlisten:\n  local: /run/inkan/s.sock\nqueue:\n  maildrop: \"\"\n", nil)
	if c.LocalSocketPath() != "/run/inkan/s.sock" || c.MaildropPath() != "" {
		t.Errorf("absolute and off: %q %q", c.LocalSocketPath(), c.MaildropPath())
	}
	if _, err := load(t, "data_dir: /var/lib/inkan\nqueue:\n  maildrop: ../spool\n", nil); err == nil || !strings.Contains(err.Error(), "queue.maildrop") {
		t.Errorf("maildrop leaving data_dir: %v", err)
	}
	if _, err := load(t, "http:\n  autoconfig_username: email\n", nil); err == nil || !strings.Contains(err.Error(), "http.autoconfig_username") {
		t.Errorf("bad autoconfig_username: %v", err)
	}
	c = mustLoad(t, "data_dir: /"+strings.Repeat("d", 120)+"\n", nil)
	if w := strings.Join(c.Warnings(), "\n"); !strings.Contains(w, "listen.local") || !strings.Contains(w, "at most 107") {
		t.Errorf("a socket path too long is not warned about:\n%s", w)
	}
}
