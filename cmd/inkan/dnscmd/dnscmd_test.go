package dnscmd_test

import (
	"bytes"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"

	"github.com/inkan-relay/inkan/cmd/inkan/dkimcmd"
	"github.com/inkan-relay/inkan/cmd/inkan/dnscmd"
	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/relay/dnsutil/dnstest"
	"github.com/inkan-relay/inkan/relay/signing"
)

func run(f func(stdout, stderr *bytes.Buffer) int) (int, string, string) {
	var out, errb bytes.Buffer
	code := f(&out, &errb)
	return code, out.String(), errb.String()
}

// zoneServer answers TXT queries from a map; values longer than 255 bytes
// are split into several strings.
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

// startZone serves an empty zone on 127.0.0.1:0 and returns it and its address.
func startZone(t *testing.T) (*zoneServer, string) {
	t.Helper()
	z := &zoneServer{txt: map[string][]string{}}
	return z, dnstest.Serve(t, z)
}

// testConfig has one native RSA key for example.com in dir (made with
// inkan dkim keygen), and a user who may send as @example.org.
func testConfig(t *testing.T, dir string) func() (*config.Config, error) {
	t.Helper()
	if code, _, errs := run(func(o, e *bytes.Buffer) int {
		return dkimcmd.Keygen([]string{"-d", "example.com", "-s", "rsa1", "-o", dir}, o, e)
	}); code != 0 {
		t.Fatal(errs)
	}
	cfg := &config.Config{Hostname: "mail.example.com", DataDir: dir}
	cfg.DKIM.Keys = []config.DKIMKey{{Domain: "example.com", Selector: "rsa1", KeyFile: filepath.Join(dir, "example.com.rsa1.key")}}
	cfg.Auth.Senders = map[string][]string{"alice": {"alice@example.com", "@example.org"}}
	return func() (*config.Config, error) { return cfg, nil }
}

func TestRecordsAndCheck(t *testing.T) {
	dir := t.TempDir()
	load := testConfig(t, dir)
	code, out, errs := run(func(o, e *bytes.Buffer) int {
		return dnscmd.Main(load, []string{"records", "-ip", "203.0.113.5,2001:db8::5"}, o, e)
	})
	for _, want := range []string{
		"== example.com ==", "DKIM, selector rsa1 (rsa-sha256):", "v=spf1 mx ip4:203.0.113.5 ip6:2001:db8::5 -all",
		"TXT record at _dmarc.example.com\n  v=DMARC1; p=none; rua=mailto:dmarc-reports@example.com",
		"PTR: the reverse DNS of 203.0.113.5 should be mail.example.com",
		"== example.org ==", "DKIM: no key signs mail from example.org yet",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("records lacks %q (exit %d %s):\n%s", want, code, errs, out)
		}
	}
	code, out, _ = run(func(o, e *bytes.Buffer) int { return dnscmd.Main(load, []string{"records", "-d", "example.com"}, o, e) })
	if code != 0 || !strings.Contains(out, "v=spf1 mx a:mail.example.com -all") || strings.Contains(out, "example.org") {
		t.Errorf("records without -ip: %d\n%s", code, out)
	}

	z, resolver := startZone(t)
	key, _, _ := signing.LoadPrivateKey(filepath.Join(dir, "example.com.rsa1.key"))
	rec, _ := signing.PublicKeyRecord(key.Public())
	z.set("rsa1._domainkey.example.com", rec)
	z.set("example.com", "v=spf1 ip4:203.0.113.5 -all")
	z.set("_dmarc.example.com", "v=DMARC1; p=reject; rua=mailto:d@example.com")
	args := []string{"check", "-d", "example.com", "-ip", "203.0.113.5", "-resolver", resolver}
	code, out, _ = run(func(o, e *bytes.Buffer) int { return dnscmd.Main(load, args, o, e) })
	if code != 0 || strings.Count(out, "PASS ") != 3 {
		t.Errorf("check good: %d\n%s", code, out)
	}
	z.set("example.com", "v=spf1 ip4:198.51.100.1 -all")
	code, out, _ = run(func(o, e *bytes.Buffer) int { return dnscmd.Main(load, args, o, e) })
	if code != 1 || !strings.Contains(out, "FAIL spf example.com: 203.0.113.5 is not authorized: fail") {
		t.Errorf("check bad SPF: %d\n%s", code, out)
	}
	code, out, _ = run(func(o, e *bytes.Buffer) int {
		return dnscmd.Main(load, []string{"check", "-resolver", resolver}, o, e)
	})
	if code != 1 || !strings.Contains(out, "FAIL dkim example.org: no key signs mail from example.org") || !strings.Contains(out, "FAIL dmarc _dmarc.example.org") {
		t.Errorf("check all: %d\n%s", code, out)
	}
	for _, a := range [][]string{nil, {"nope"}, {"records", "-ip", "not-an-ip"}} {
		if code, _, _ := run(func(o, e *bytes.Buffer) int { return dnscmd.Main(load, a, o, e) }); code != 2 {
			t.Errorf("%q: exit %d", a, code)
		}
	}
}
