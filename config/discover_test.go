package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDiscoverOrder(t *testing.T) {
	user := "/home/u/.config/inkan/inkan.yaml"
	for _, c := range []struct {
		name       string
		flag       string
		env        map[string]string
		files      []string
		path, from string
	}{
		{"flag wins", "/x.yaml", map[string]string{"INKAN_CONFIG": "/e.yaml", "HOME": "/home/u"}, []string{SystemPath, user}, "/x.yaml", FromFlag},
		{"env next", "", map[string]string{"INKAN_CONFIG": "/e.yaml", "HOME": "/home/u"}, []string{SystemPath, user}, "/e.yaml", FromEnv},
		{"env set empty: embedded default", "", map[string]string{"INKAN_CONFIG": "", "HOME": "/home/u"}, []string{SystemPath, user}, "", FromEmbedded},
		{"system path", "", map[string]string{"HOME": "/home/u"}, []string{SystemPath, user}, SystemPath, FromSystem},
		{"per-user path", "", map[string]string{"HOME": "/home/u"}, []string{user}, user, FromUser},
		{"XDG_CONFIG_HOME", "", map[string]string{"HOME": "/home/u", "XDG_CONFIG_HOME": "/cfg"}, []string{user, "/cfg/inkan/inkan.yaml"}, "/cfg/inkan/inkan.yaml", FromUser},
		{"nothing: embedded default", "", map[string]string{"HOME": "/home/u"}, nil, "", FromEmbedded},
		{"no HOME", "", nil, []string{user}, "", FromEmbedded},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := func(k string) (string, bool) { v, ok := c.env[k]; return v, ok }
			exists := func(p string) bool {
				for _, f := range c.files {
					if f == p {
						return true
					}
				}
				return false
			}
			path, from := discover(c.flag, env, exists)
			if path != c.path || from != c.from {
				t.Errorf("discover = %q, %q; want %q, %q", path, from, c.path, c.from)
			}
		})
	}
}

// TestLoadDiscoveredReadErrors: a config file that cannot be read is one
// *Error naming where the path came from, with a fix.
func TestLoadDiscoveredReadErrors(t *testing.T) {
	t.Setenv("INKAN_CONFIG", "")
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	_, from, err := LoadDiscovered(missing)
	var e *Error
	if from != FromFlag || !errors.As(err, &e) || e.File != missing || !strings.Contains(err.Error(), "no such file; give -config") {
		t.Errorf("flag: %q %v", from, err)
	}
	t.Setenv("INKAN_CONFIG", missing)
	_, from, err = LoadDiscovered("")
	if from != FromEnv || !errors.As(err, &e) || e.Env != EnvConfig || !strings.HasPrefix(err.Error(), "env INKAN_CONFIG: "+missing+": no such file; point INKAN_CONFIG") {
		t.Errorf("env: %q %v", from, err)
	}
	dir := t.TempDir()
	_, _, err = LoadDiscovered(dir)
	if err == nil || !strings.Contains(err.Error(), dir+": is a directory; ") {
		t.Errorf("directory: %v", err)
	}
	if os.Geteuid() != 0 {
		p := filepath.Join(dir, "locked.yaml")
		os.WriteFile(p, nil, 0)
		if _, _, err = LoadDiscovered(p); err == nil || !strings.Contains(err.Error(), "permission denied; run the command as root") {
			t.Errorf("unreadable: %v", err)
		}
	}
}

func TestDescribe(t *testing.T) {
	if got := Describe("/etc/inkan/inkan.yaml", FromSystem); got != "config: /etc/inkan/inkan.yaml (system path)" {
		t.Errorf("Describe = %q", got)
	}
	t.Setenv("INKAN_CONFIG", "")
	if got := Describe("", FromEmbedded); got != `config: embedded default (INKAN_CONFIG is set to "")` {
		t.Errorf("Describe = %q", got)
	}
	os.Unsetenv("INKAN_CONFIG")
	t.Setenv("HOME", "/home/u")
	t.Setenv("XDG_CONFIG_HOME", "")
	if got := Describe("", FromEmbedded); got != "config: embedded default (no -config, INKAN_CONFIG, /etc/inkan/inkan.yaml or /home/u/.config/inkan/inkan.yaml)" {
		t.Errorf("Describe = %q", got)
	}
}
