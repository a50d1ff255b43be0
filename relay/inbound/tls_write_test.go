package inbound_test

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/relay/inbound"
)

// Whoever can write the data directory plants tls/selfsigned.key.tmp as a
// link to a file of root's: making the self-signed certificate (as root)
// must not write the private key through it.
func TestAttackSelfSignedTempLink(t *testing.T) {
	data := t.TempDir()
	os.Mkdir(filepath.Join(data, "tls"), 0o700)
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("precious"), 0o644)
	for _, name := range []string{"selfsigned.key.tmp", "selfsigned.crt.tmp"} {
		os.Symlink(victim, filepath.Join(data, "tls", name))
	}
	cfg := config.Default()
	cfg.DataDir, cfg.Hostname = data, "mail.example.test"
	if _, err := inbound.ServerTLS(cfg, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Fatalf("the certificate files were written through a planted link: %s now holds %.40q", victim, b)
	}
	if fi, err := os.Stat(filepath.Join(data, "tls", "selfsigned.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("selfsigned.key: %v %v", fi, err)
	}
}
