package config

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Local submission: `inkan sendmail` on this host reaches the server over
// the Unix socket listen.local and, while the server does not answer, leaves
// messages in the folder queue.maildrop. Both paths may be relative, to
// data_dir, so the default configuration needs neither.

// MaxSocketPath is the longest path a Unix socket address holds (sun_path
// is 108 bytes on Linux, with a terminating NUL).
const MaxSocketPath = 107

// LocalSocketPath is listen.local as an absolute path, "" when it is off.
func (c *Config) LocalSocketPath() string { return c.inDataDir(c.Listen.Local) }

// MaildropPath is queue.maildrop as an absolute path, "" when it is off.
func (c *Config) MaildropPath() string { return c.inDataDir(c.Queue.Maildrop) }

func (c *Config) inDataDir(p string) string {
	switch {
	case p == "":
		return ""
	case filepath.IsAbs(p):
		return filepath.Clean(p)
	case c.DataDir == "":
		return ""
	}
	return filepath.Join(c.DataDir, p)
}

// local checks listen.local, queue.maildrop and http.autoconfig_username.
func (k *checker) local() {
	for _, e := range []struct{ key, val string }{{"listen.local", k.c.Listen.Local}, {"queue.maildrop", k.c.Queue.Maildrop}} {
		switch {
		case e.val == "":
		case strings.ContainsRune(e.val, 0):
			k.bad(e.key, "contains a NUL byte", "write a path, e.g. "+localExample(e.key))
		case !filepath.IsAbs(e.val) && (e.val == ".." || strings.HasPrefix(filepath.Clean(e.val), "../")):
			k.bad(e.key, fmt.Sprintf("%q leaves data_dir", e.val), "write a name inside data_dir, e.g. "+localExample(e.key)+", or an absolute path")
		case e.key == "listen.local" && len(k.c.LocalSocketPath()) > MaxSocketPath:
			// A warning: the default lives in data_dir, which may be deep.
			k.warn(e.key, fmt.Sprintf("%q is %d bytes long; a Unix socket path holds at most %d, so there is no local socket and sendmail uses a TCP listener", k.c.LocalSocketPath(), len(k.c.LocalSocketPath()), MaxSocketPath),
				"use a shorter absolute path, e.g. /run/inkan/sendmail.sock")
		}
	}
	if u := k.c.HTTP.AutoconfigUsername; u != "" {
		k.enum("http.autoconfig_username", u, "address", "localpart")
	}
}

func localExample(key string) string {
	if key == "listen.local" {
		return `"sendmail.sock"`
	}
	return `"maildrop"`
}
