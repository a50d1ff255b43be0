package config_test

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/inkan-relay/inkan/config"
)

// TestAutoKeys: without any DKIM setting, the DOMAIN.SELECTOR.key files in
// data_dir/dkim are the keys; with one, that folder is not read.
func TestAutoKeys(t *testing.T) {
	data := t.TempDir()
	dir := filepath.Join(data, "dkim")
	os.Mkdir(dir, 0o700)
	for _, n := range []string{"example.com.s1.key", "example.org.ed1.key", "notes.txt", "nodot.key", ".hidden.s.key", "bad_domain!.s.key"} {
		os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o600)
	}
	os.Mkdir(filepath.Join(dir, "sub.dir.key"), 0o700)
	c := mustLoad(t, "", map[string]string{"INKAN_DATA_DIR": data})
	want := []config.DKIMKey{
		{Domain: "example.com", Selector: "s1", KeyFile: filepath.Join(dir, "example.com.s1.key")},
		{Domain: "example.org", Selector: "ed1", KeyFile: filepath.Join(dir, "example.org.ed1.key")},
	}
	if !reflect.DeepEqual(c.DKIM.Keys, want) || c.KeysDir != dir {
		t.Errorf("keys %+v from %q, want %+v", c.DKIM.Keys, c.KeysDir, want)
	}
	c = mustLoad(t, "dkim:\n  keys:\n    - {domain: example.net, selector: x, key_file: /k}\n", map[string]string{"INKAN_DATA_DIR": data})
	if len(c.DKIM.Keys) != 1 || c.KeysDir != "" {
		t.Errorf("configured keys: %+v, %q", c.DKIM.Keys, c.KeysDir)
	}
	c = mustLoad(t, "", map[string]string{"INKAN_DATA_DIR": t.TempDir()})
	if len(c.DKIM.Keys) != 0 || c.KeysDir != "" {
		t.Errorf("empty data dir: %+v", c.DKIM.Keys)
	}
}

func TestKeyFileName(t *testing.T) {
	for name, want := range map[string][2]string{
		"example.com.s1.key":      {"example.com", "s1"},
		"Mail.Example.COM.k1.key": {"mail.example.com", "k1"},
		"example.com.key":         {}, // "example" is not a signing domain
		"s1.key":                  {},
		"example.com.s1.pem":      {},
	} {
		d, s, ok := config.KeyFileName(name)
		if ok != (want[0] != "") || d != want[0] || s != want[1] {
			t.Errorf("KeyFileName(%q) = %q %q %v", name, d, s, ok)
		}
	}
}
