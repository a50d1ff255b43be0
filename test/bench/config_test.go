package main

import (
	"reflect"
	"sort"
	"strings"
	"testing"
)

// yamlKeys returns the YAML config's top-level keys and the second-level keys
// under each ("limits.max_connections").
func yamlKeys(cfg string) []string {
	var keys []string
	top := ""
	for _, l := range strings.Split(cfg, "\n") {
		if strings.TrimSpace(l) == "" || strings.HasPrefix(strings.TrimSpace(l), "-") {
			continue
		}
		k, _, _ := strings.Cut(strings.TrimSpace(l), ":")
		if !strings.HasPrefix(l, " ") {
			top = k
			keys = append(keys, k)
		} else if strings.HasPrefix(l, "  ") && !strings.HasPrefix(l, "   ") {
			keys = append(keys, top+"."+k)
		}
	}
	sort.Strings(keys)
	return keys
}

func TestTimedConfigIsDefaultsPlusPlacement(t *testing.T) {
	s := &inkanServer{dir: "/w/inkan-rsa", port: 10525, smtpsPort: 10465, subPort: 10589, httpPort: 10880, sinkPort: 2526,
		keys: []dkimKey{{domain: signDomain, selector: "inkanrsa", file: "/k/rsa.key", alg: "rsa"}}}
	want := []string{"data_dir", "delivery", "delivery.transport", "dkim", "dkim.keys", "hostname",
		"listen", "listen.http", "listen.relay", "listen.smtps", "listen.submission"}
	if got := yamlKeys(s.config()); !reflect.DeepEqual(got, want) {
		t.Errorf("timed config sets %v, want only %v:\n%s", got, want, s.config())
	}
	for _, bad := range []string{"canonicalization", "trusted_networks", "retry", "max_connections", "pprof", "level"} {
		if strings.Contains(s.config(), bad) {
			t.Errorf("timed config overrides %s:\n%s", bad, s.config())
		}
	}

	s.logLevel = "debug"
	if !strings.Contains(s.config(), "log:\n  level: debug\n") {
		t.Errorf("-inkan-log-level not applied:\n%s", s.config())
	}
	s.logLevel, s.idleLimits = "", 2000
	if c := s.config(); !strings.Contains(c, "max_connections: 2000\n") || !strings.Contains(c, "max_connections_per_trusted_ip: 2000\n") || strings.Contains(c, "pprof") {
		t.Errorf("idle instance config:\n%s", c)
	}
	s.idleLimits, s.pprof = 0, true
	if c := s.config(); !strings.Contains(c, "http:\n  pprof: true\n") || strings.Contains(c, "limits") {
		t.Errorf("profile instance config:\n%s", c)
	}
}

func TestBackendOf(t *testing.T) {
	cases := map[string]string{
		"inkan bae99e7\ncrypto: BoringCrypto (BoringSSL FIPS module, cgo, static)\n": "boring",
		"inkan dev\ncrypto: Go standard library (pure Go)\n":                         "go",
		"inkan v0.1\n": "",
		"inkan 928f6de\ncrypto: BoringCrypto (BoringSSL FIPS module, cgo, static)\nDKIM RSA signing: OpenSSL 3.0.22 25 Aug 2026 libcrypto (static, cgo)\n": "openssl",
		"inkan 928f6de\ncrypto: BoringCrypto (BoringSSL FIPS module, cgo, static)\nDKIM RSA signing: the Go crypto library above\n":                        "boring",
		"inkan fd0d38b-dirty; crypto: BoringCrypto (BoringSSL FIPS module, cgo, static)":                                                                   "boring",
	}
	for in, want := range cases {
		if got := backendOf(in); got != want {
			t.Errorf("backendOf(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseSignRate(t *testing.T) {
	r, err := parseSignRate("backend=boring alg=rsa2048 workers=2 signs=3361 wall_s=2.001 cpu_s=2.257 signs_per_s=1680.0 cpu_us_per_sign=671.6\n")
	if err != nil || r.backend != "boring" || r.workers != 2 || r.perSec != 1680 || r.cpuUsPerSign != 671.6 {
		t.Fatalf("got %+v, %v", r, err)
	}
	for _, bad := range []string{"", "backend=go alg=rsa2048 workers=1", "signrate: sign: boom"} {
		if _, err := parseSignRate(bad); err == nil {
			t.Errorf("parseSignRate(%q): no error", bad)
		}
	}
}

func TestSignCostUsesCheaper(t *testing.T) {
	b := &bench{}
	b.signPre.rsa1.cpuUsPerSign, b.signPre.ed1.cpuUsPerSign = 700, 30
	if b.rsaSignMs() != 0.7 {
		t.Errorf("before only: %v", b.rsaSignMs())
	}
	b.signPost.rsa1.cpuUsPerSign, b.signPost.ed1.cpuUsPerSign = 650, 40
	if b.rsaSignMs() != 0.65 || b.edSignMs() != 0.03 {
		t.Errorf("got rsa %v ed %v", b.rsaSignMs(), b.edSignMs())
	}
}

func TestMissingPackages(t *testing.T) {
	none := func(string) bool { return false }
	all := func(string) bool { return true }
	if got := missingPackages(false, none); contains(got, "rspamd") || len(got) != 5 {
		t.Errorf("without rspamd: %v", got)
	}
	if got := missingPackages(true, none); !contains(got, "rspamd") || len(got) != 6 {
		t.Errorf("with rspamd: %v", got)
	}
	if got := missingPackages(true, all); len(got) != 0 {
		t.Errorf("all there: %v", got)
	}
}

func TestTreesOf(t *testing.T) {
	table := map[int]procStat{
		1: {ppid: 0}, 10: {ppid: 1}, 11: {ppid: 10}, 12: {ppid: 11}, // master 10 -> 11 -> 12
		20: {ppid: 1}, 21: {ppid: 20}, // milter 20 -> worker 21
		30: {ppid: 1}, 31: {ppid: 30}, // not ours
	}
	got := treesOf(table, []int{10, 20})
	sort.Ints(got)
	if !reflect.DeepEqual(got, []int{10, 11, 12, 20, 21}) {
		t.Fatalf("got %v", got)
	}
	if got := treesOf(table, []int{0}); len(got) != 0 {
		t.Fatalf("no root: %v", got)
	}
}

func TestRspamdModuleList(t *testing.T) {
	log := "2026-12-06 #1(main) <x>; cfg; rspamd_init_lua_filters: init lua module dkim_signing from /usr/share/rspamd/plugins/dkim_signing.lua; priority 0\n" +
		"2026-12-06 #1(main) <x>; cfg; rspamd_init_filters: init internal dkim module\n" +
		"2026-12-06 #1(main) <x>; cfg; rspamd_init_filters: init internal dkim module\n"
	if got := rspamdModuleList(log); !reflect.DeepEqual(got, []string{"C:dkim", "lua:dkim_signing"}) {
		t.Fatalf("got %v", got)
	}
	c := rspamdConfig(11332, "/k/s1.key", "/l/rspamd.log")
	for _, want := range []string{`filters = "dkim";`, "explicit_modules = [];", `path = "/usr/share/rspamd/plugins/dkim_signing.lua"`,
		`bind_socket = "127.0.0.1:11332"`, "milter = yes", "self_scan = yes", `selector = "s1"; path = "/k/s1.key"`} {
		if !strings.Contains(c, want) {
			t.Errorf("rspamd.conf lacks %q:\n%s", want, c)
		}
	}
}

func TestDefaultSystems(t *testing.T) {
	o, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(o.systems, ",") != "inkan-rsa,inkan-dual,postfix-opendkim,postfix-rspamd" {
		t.Errorf("default systems %v", o.systems)
	}
	o, err = parseFlags([]string{"-bin", "/x/inkan"})
	if err != nil || o.inkanBin != "/x/inkan" || o.logLevel != "" {
		t.Errorf("-bin: %+v %v", o, err)
	}
}
