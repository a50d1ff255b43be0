package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Postfix + rspamd, the fastest peer of shared/bench/peers.sh: Postfix smtpd
// -> rspamd's proxy worker in milter mode (self_scan) signing with
// dkim_signing, the same RSA-2048 key as OpenDKIM (selector s1),
// relaxed/relaxed. rspamd is cut down to DKIM signing; the config below is
// its whole configuration (nothing is read from /etc/rspamd):
//   - Lua plugins: only dkim_signing (modules.path names that one file);
//     explicit_modules = [] also drops the always-on ones. Not loaded: rbl,
//     spf, dmarc, arc, phishing, multimap, fuzzy_check, neural, ratelimit,
//     greylist, reputation, milter_headers, history_redis, ...
//   - C modules: filters = "dkim" only (dkim_signing signs through it; for
//     mail from local networks its verifier does nothing). Not loaded:
//     chartable, regexp, fuzzy_check.
//   - no rules, no statistic (Bayes) classifier, no Redis, no maps, no
//     controller/normal/fuzzy workers: one rspamd_proxy worker (milter = yes,
//     self_scan = yes, count = 1).
//   - DNS: 127.0.0.1:53, and the namespace's resolv.conf points there too
//     (nothing asks: rspamd logs "dns req: 0" per message).

const (
	rspamdBin  = "/usr/bin/rspamd"
	rspamdUser = "_rspamd" // made by Debian's rspamd package
)

func (p *postfixEnv) rspamdDir() string  { return filepath.Join(p.dir, "rspamd") }
func (p *postfixEnv) rspamdConf() string { return filepath.Join(p.rspamdDir(), "rspamd.conf") }
func (p *postfixEnv) rspamdLog() string  { return filepath.Join(p.rspamdDir(), "rspamd.log") }

// rspamdConfig is peers.sh's rspamd.conf.
func rspamdConfig(port int, keyFile, logFile string) string {
	return fmt.Sprintf(`options {
  filters = "dkim";
  explicit_modules = [];
  local_addrs = [127.0.0.0/8, ::1];
  dns { nameserver = ["127.0.0.1:53"]; timeout = 1s; retransmits = 1; }
  url_tld = "/usr/share/rspamd/effective_tld_names.dat";
}
logging { type = "file"; filename = "%s"; level = "info"; }
modules { path = "/usr/share/rspamd/plugins/dkim_signing.lua"; }
worker "rspamd_proxy" {
  bind_socket = "127.0.0.1:%d";
  milter = yes; timeout = 120s; count = 1;
  upstream "local" { default = yes; self_scan = yes; }
}
dkim { }
dkim_signing {
  domain { %s { selector = "%s"; path = "%s"; } }
  sign_local = true; sign_authenticated = true; use_domain = "header"; use_esld = false; try_fallback = false;
}
`, logFile, port, signDomain, opendkimSel, keyFile)
}

// rspamd writes rspamd's config and its copy of the OpenDKIM key (owned by
// its user, who reads it after dropping root), in a directory of its own.
func (p *postfixEnv) rspamd() error {
	d := p.rspamdDir()
	if err := os.RemoveAll(d); err != nil {
		return fmt.Errorf("clear %s: %w", d, err)
	}
	if err := os.MkdirAll(d, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", d, err)
	}
	key, err := os.ReadFile(p.key.file)
	if err != nil {
		return fmt.Errorf("read the OpenDKIM key for rspamd: %w", err)
	}
	keyFile := filepath.Join(d, opendkimSel+".key")
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		return fmt.Errorf("write rspamd key: %w", err)
	}
	if err := os.WriteFile(p.rspamdConf(), []byte(rspamdConfig(p.rspamdPort, keyFile, p.rspamdLog())), 0o644); err != nil {
		return fmt.Errorf("write rspamd.conf: %w", err)
	}
	for _, f := range []string{d, keyFile, p.rspamdConf()} {
		if err := chownTo(f, rspamdUser); err != nil {
			return err
		}
	}
	return nil
}

// rspamdModulesRE matches rspamd's start-up lines naming what it loaded.
var rspamdModulesRE = regexp.MustCompile(`init (lua module [a-z_]+|internal [a-z_]+ module)`)

// rspamdModules says which modules the running rspamd loaded (from its log),
// as peers.sh prints them: the proof that it is cut down to DKIM signing.
func (p *postfixEnv) rspamdModules() string {
	b, err := os.ReadFile(p.rspamdLog())
	if err != nil {
		return "rspamd log unreadable: " + err.Error()
	}
	return "rspamd modules loaded: " + strings.Join(rspamdModuleList(string(b)), " ")
}

func rspamdModuleList(log string) []string {
	seen := map[string]bool{}
	for _, m := range rspamdModulesRE.FindAllStringSubmatch(log, -1) {
		s := m[1]
		if n, ok := strings.CutPrefix(s, "lua module "); ok {
			s = "lua:" + n
		} else {
			s = "C:" + strings.TrimSuffix(strings.TrimPrefix(s, "internal "), " module")
		}
		seen[s] = true
	}
	out := make([]string, 0, len(seen))
	for s := range seen {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}
