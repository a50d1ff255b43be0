package dkimcmd

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rsa"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/relay/dnsutil/dnstest"
	"github.com/inkan-relay/inkan/relay/signing"
)

func run(f func(stdout, stderr *bytes.Buffer) int) (int, string, string) {
	var out, errb bytes.Buffer
	code := f(&out, &errb)
	return code, out.String(), errb.String()
}

func TestKeygen(t *testing.T) {
	dir := t.TempDir()
	code, out, errs := run(func(o, e *bytes.Buffer) int {
		return Keygen([]string{"-d", "Example.COM", "-s", "rsa1", "-o", dir}, o, e)
	})
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	path := filepath.Join(dir, "example.com.rsa1.key")
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	data, _ := os.ReadFile(path)
	if !bytes.HasPrefix(data, []byte("-----BEGIN PRIVATE KEY-----")) {
		t.Errorf("not PKCS#8 PEM: %.40s", data)
	}
	key, _, err := signing.LoadPrivateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := key.Public().(*rsa.PublicKey); !ok || k.N.BitLen() != 2048 {
		t.Errorf("key %T", key.Public())
	}
	rec, _ := signing.PublicKeyRecord(key.Public())
	for _, want := range []string{
		"Selector:    rsa1 (the s= tag of signatures; not the s=email service tag)",
		"\n" + rec + "\n",
		"rsa1._domainkey\tIN\tTXT\t( \"v=DKIM1; k=rsa; \"\n\t\t\"p=",
		"key_file: " + path,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "h=") {
		t.Errorf("output has an h= tag:\n%s", out)
	}
	// Every quoted string of the zone form fits a DNS character-string, and
	// together they are the one-line value.
	zone := out[strings.Index(out, "rsa1._domainkey\tIN"):]
	zone = zone[:strings.Index(zone, " )")]
	var joined string
	for _, m := range regexp.MustCompile(`"([^"]*)"`).FindAllStringSubmatch(zone, -1) {
		if len(m[1]) > 255 {
			t.Errorf("string of %d bytes", len(m[1]))
		}
		joined += m[1]
	}
	if joined != rec {
		t.Errorf("zone strings join to %q\nwant %q", joined, rec)
	}

	// Never overwrite.
	code, _, errs = run(func(o, e *bytes.Buffer) int {
		return Keygen([]string{"-d", "example.com", "-s", "rsa1", "-o", dir}, o, e)
	})
	if after, _ := os.ReadFile(path); code != 1 || !strings.Contains(errs, "refusing to overwrite") || !bytes.Equal(after, data) {
		t.Errorf("overwrite: exit %d %s", code, errs)
	}

	code, out, _ = run(func(o, e *bytes.Buffer) int {
		return Keygen([]string{"-d", "example.com", "-s", "ed1", "-a", "ed25519", "-o", dir}, o, e)
	})
	if code != 0 || !strings.Contains(out, "v=DKIM1; k=ed25519; p=") || !strings.Contains(out, "ed25519-sha256") {
		t.Errorf("ed25519: exit %d\n%s", code, out)
	}
	if k, _, err := signing.LoadPrivateKey(filepath.Join(dir, "example.com.ed1.key")); err != nil {
		t.Error(err)
	} else if _, ok := k.Public().(ed25519.PublicKey); !ok {
		t.Errorf("ed25519 key is %T", k.Public())
	}

	// Selectors follow the rule of dkim.keys and the KeyTable: '_' and
	// all-numeric labels are accepted there, so keygen accepts them too.
	for _, sel := range []string{"20230601", "s_1"} {
		if code, _, errs := run(func(o, e *bytes.Buffer) int {
			return Keygen([]string{"-d", "example.com", "-s", sel, "-a", "ed25519", "-o", dir}, o, e)
		}); code != 0 {
			t.Errorf("selector %q: exit %d %s", sel, code, errs)
		}
	}

	for _, args := range [][]string{
		{"-s", "x"},
		{"-d", "example.com", "-s", "x", "-b", "1024"},
		{"-d", "example.com", "-s", "../x"}, // the selector is part of the file name
		{"-d", "example.com", "-s", "bad selector"},
		{"-d", "exa_mple.com", "-s", "x"},   // d= is LDH (RFC 6376 §3.5), as in dkim.keys
		{"-d", "bücher.example", "-s", "x"}, // A-labels only: xn--bcher-kva.example
		{"-d", "example.com", "-s", "x", "-a", "dsa"},
		{"-d", "localhost", "-s", "x"},
		{"-d", "example.com", "-s", "x", "extra"},
		{"-nope"},
	} {
		if code, _, errs := run(func(o, e *bytes.Buffer) int { return Keygen(append(args, "-o", dir), o, e) }); code != 2 || errs == "" {
			t.Errorf("%q: exit %d %q", args, code, errs)
		}
	}
}

// zoneServer answers TXT queries from a map on 127.0.0.1:0 (UDP) and
// returns its address. Values longer than 255 bytes are split.
type zoneServer struct {
	mu  sync.Mutex
	txt map[string][]string
}

func (z *zoneServer) set(name string, values ...string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.txt[dns.Fqdn(strings.ToLower(name))] = values
}

func (z *zoneServer) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	z.mu.Lock()
	defer z.mu.Unlock()
	m := new(dns.Msg)
	m.SetReply(req)
	q := req.Question[0]
	vals, ok := z.txt[strings.ToLower(q.Name)]
	if !ok {
		m.Rcode = dns.RcodeNameError
	}
	if q.Qtype == dns.TypeTXT {
		for _, v := range vals {
			rr := &dns.TXT{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}}
			for len(v) > 255 {
				rr.Txt, v = append(rr.Txt, v[:255]), v[255:]
			}
			rr.Txt = append(rr.Txt, v)
			m.Answer = append(m.Answer, rr)
		}
	}
	w.WriteMsg(m)
}

func startZone(t *testing.T) (*zoneServer, string) {
	t.Helper()
	z := &zoneServer{txt: map[string][]string{}}
	return z, dnstest.Serve(t, z)
}

// testConfig has one native RSA key for example.com in dir.
func testConfig(t *testing.T, dir string) func() (*config.Config, error) {
	t.Helper()
	if code, _, errs := run(func(o, e *bytes.Buffer) int {
		return Keygen([]string{"-d", "example.com", "-s", "rsa1", "-o", dir}, o, e)
	}); code != 0 {
		t.Fatal(errs)
	}
	cfg := &config.Config{Hostname: "mail.example.com", DataDir: dir}
	cfg.DKIM.Keys = []config.DKIMKey{{Domain: "example.com", Selector: "rsa1", KeyFile: filepath.Join(dir, "example.com.rsa1.key")}}
	cfg.Auth.Senders = map[string][]string{"alice": {"alice@example.com", "@example.org"}}
	return func() (*config.Config, error) { return cfg, nil }
}

func TestExplainAndRecords(t *testing.T) {
	load := testConfig(t, t.TempDir())
	code, out, _ := run(func(o, e *bytes.Buffer) int {
		return Main(load, []string{"explain", "Alice <alice@example.com>", "bob@example.org"}, o, e)
	})
	if code != 0 || !strings.Contains(out, `sign d=example.com s=rsa1 (rsa-sha256) for alice@example.com: dkim.keys[0] sender pattern "@example.com"`) ||
		!strings.Contains(out, "bob@example.org:\n  no rule matches bob@example.org") {
		t.Errorf("explain: %d\n%s", code, out)
	}
	code, out, _ = run(func(o, e *bytes.Buffer) int { return Main(load, []string{"records"}, o, e) })
	if code != 0 || !strings.Contains(out, "== example.com, selector rsa1 (rsa-sha256) ==") || !strings.Contains(out, "v=DKIM1; k=rsa; p=MII") {
		t.Errorf("records: %d\n%s", code, out)
	}
	for _, args := range [][]string{nil, {"nope"}, {"explain"}, {"rotate"}, {"rotate", "sideways"}} {
		if code, _, _ := run(func(o, e *bytes.Buffer) int { return Main(load, args, o, e) }); code != 2 {
			t.Errorf("%q: exit %d", args, code)
		}
	}
	broken := func() (*config.Config, error) { return nil, os.ErrNotExist }
	if code, _, errs := run(func(o, e *bytes.Buffer) int { return Main(broken, []string{"records"}, o, e) }); code != 78 || !strings.Contains(errs, "error: file does not exist") {
		t.Errorf("broken config: %d %s", code, errs)
	}
}

func TestRotate(t *testing.T) {
	dir := t.TempDir()
	load := testConfig(t, dir)
	z, resolver := startZone(t)

	code, out, errs := run(func(o, e *bytes.Buffer) int {
		return Main(load, []string{"rotate", "next", "-d", "example.com", "-s", "rsa2"}, o, e)
	})
	newKey := filepath.Join(dir, "example.com.rsa2.key")
	if code != 0 || !strings.Contains(out, "inkan dkim rotate check -d example.com -s rsa2") ||
		!strings.Contains(out, "replace\n      selector: rsa1") || !strings.Contains(out, "key_file: "+newKey) ||
		!strings.Contains(out, "inkan dkim rotate retire -d example.com -s rsa1") {
		t.Fatalf("next: %d %s\n%s", code, errs, out)
	}
	if code, _, errs := run(func(o, e *bytes.Buffer) int {
		return Main(load, []string{"rotate", "next", "-d", "example.com", "-s", "rsa1"}, o, e)
	}); code != 1 || !strings.Contains(errs, "already in use") {
		t.Errorf("next with the current selector: %d %s", code, errs)
	}

	checkArgs := []string{"rotate", "check", "-d", "example.com", "-s", "rsa2", "-resolver", resolver}
	code, out, _ = run(func(o, e *bytes.Buffer) int { return Main(load, checkArgs, o, e) })
	if code != 1 || !strings.Contains(out, "FAIL dkim rsa2._domainkey.example.com: no TXT record") {
		t.Errorf("check before publishing: %d\n%s", code, out)
	}
	key, _, err := signing.LoadPrivateKey(newKey)
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := signing.PublicKeyRecord(key.Public())
	z.set("rsa2._domainkey.example.com", rec)
	code, out, _ = run(func(o, e *bytes.Buffer) int { return Main(load, checkArgs, o, e) })
	if code != 0 || !strings.Contains(out, "PASS dkim rsa2._domainkey.example.com: key matches private key") {
		t.Errorf("check after publishing: %d\n%s", code, out)
	}
	old, _, _ := signing.LoadPrivateKey(filepath.Join(dir, "example.com.rsa1.key"))
	oldRec, _ := signing.PublicKeyRecord(old.Public())
	z.set("rsa2._domainkey.example.com", oldRec)
	if code, out, _ := run(func(o, e *bytes.Buffer) int { return Main(load, checkArgs, o, e) }); code != 1 || !strings.Contains(out, "does not match the private key") {
		t.Errorf("check with the wrong key published: %d\n%s", code, out)
	}

	if code, _, errs := run(func(o, e *bytes.Buffer) int {
		return Main(load, []string{"rotate", "retire", "-d", "example.com", "-s", "rsa1"}, o, e)
	}); code != 1 || !strings.Contains(errs, "still signs mail") {
		t.Errorf("retire of the configured key: %d %s", code, errs)
	}
	// Once the configuration signs with rsa2 only, rsa1 can be retired.
	cfg, _ := load()
	cfg.DKIM.Keys[0].Selector, cfg.DKIM.Keys[0].KeyFile = "rsa2", newKey
	code, out, errs = run(func(o, e *bytes.Buffer) int {
		return Main(load, []string{"rotate", "retire", "-d", "example.com", "-s", "rsa1"}, o, e)
	})
	if code != 0 || !strings.Contains(out, "\nv=DKIM1; k=rsa; p=\n") || !strings.Contains(out, "rm "+filepath.Join(dir, "example.com.rsa1.key")) {
		t.Errorf("retire: %d %s\n%s", code, errs, out)
	}
}
