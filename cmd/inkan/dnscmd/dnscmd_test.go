package dnscmd_test

import (
	"bytes"
	"encoding/json"
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

// zoneServer answers TXT queries from a map (values longer than 255 bytes
// are split into several strings) and other queries from zone-file records.
type zoneServer struct {
	mu  sync.Mutex
	txt map[string][]string
	rrs []dns.RR
}

func (z *zoneServer) set(name string, values ...string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.txt[dns.Fqdn(strings.ToLower(name))] = values
}

// add serves zone-file records such as "mail.example.com. A 203.0.113.5".
func (z *zoneServer) add(t *testing.T, lines ...string) {
	t.Helper()
	z.mu.Lock()
	defer z.mu.Unlock()
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatal(err)
		}
		z.rrs = append(z.rrs, rr)
	}
}

func (z *zoneServer) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	z.mu.Lock()
	defer z.mu.Unlock()
	m := new(dns.Msg)
	m.SetReply(req)
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	vals, ok := z.txt[name]
	for _, rr := range z.rrs {
		if strings.ToLower(rr.Header().Name) == name {
			ok = true
			if rr.Header().Rrtype == q.Qtype {
				m.Answer = append(m.Answer, rr)
			}
		}
	}
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
	z.add(t, "example.com. MX 10 mx.example.com.", "mx.example.com. A 203.0.113.25",
		"mail.example.com. A 203.0.113.5", "5.113.0.203.in-addr.arpa. PTR mail.example.com.")
	args := []string{"check", "-d", "example.com", "-ip", "203.0.113.5", "-resolver", resolver}
	code, out, _ = run(func(o, e *bytes.Buffer) int { return dnscmd.Main(load, args, o, e) })
	if code != 0 || strings.Count(out, "PASS ") != 6 {
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

// TestCheckMistakesWithFixes: the mistakes of the usual guides, as
// `inkan dns check` prints them, each with what to publish instead, and as
// -json gives them.
func TestCheckMistakesWithFixes(t *testing.T) {
	dir := t.TempDir()
	load := testConfig(t, dir)
	z, resolver := startZone(t)
	key, _, _ := signing.LoadPrivateKey(filepath.Join(dir, "example.com.rsa1.key"))
	rec, _ := signing.PublicKeyRecord(key.Public())
	z.set("rsa1._domainkey.example.com.example.com", rec) // the panel appended the zone
	z.set("_adsp._domainkey.example.com", "dkim=unknown")
	z.set("example.com", "v=spf1 mx ?all", "v=spf1 ip4:203.0.113.5 -all")
	z.set("_dmarc.example.com", "v=DMARC1; p=none; rua=mailto:reports@dmarc.example.net")
	z.add(t, "example.com. MX 0 .", "mail.example.com. A 192.0.2.99", "5.113.0.203.in-addr.arpa. PTR host5.isp.example.")
	args := []string{"check", "-d", "example.com", "-ip", "203.0.113.5", "-resolver", resolver}
	code, out, _ := run(func(o, e *bytes.Buffer) int { return dnscmd.Main(load, args, o, e) })
	for _, want := range []string{
		"FAIL dkim rsa1._domainkey.example.com: no TXT record here, but a DKIM key is published at rsa1._domainkey.example.com.example.com",
		"WARN adsp _adsp._domainkey.example.com: an ADSP record",
		"FAIL spf-record example.com: 2 SPF records",
		"  publish instead: example.com. TXT \"v=spf1 mx ip4:203.0.113.5 -all\"",
		"WARN dmarc-report example.com._report._dmarc.dmarc.example.net: reports go to mailto:reports@dmarc.example.net",
		"  publish instead: example.com._report._dmarc.dmarc.example.net. TXT \"v=DMARC1\"",
		"FAIL mx example.com: a null MX",
		"FAIL ptr 203.0.113.5: the reverse DNS of 203.0.113.5 is host5.isp.example, which does not resolve back",
		"  publish instead: host5.isp.example. A 203.0.113.5",
		"FAIL helo mail.example.com: inkan greets as mail.example.com (hostname), which does not resolve to 203.0.113.5",
		"  publish instead: mail.example.com. A 203.0.113.5",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check lacks %q", want)
		}
	}
	if code != 1 || strings.Contains(out, "FAIL spf example.com:") {
		t.Errorf("exit %d (want 1), or the SPF evaluation repeats the permerror:\n%s", code, out)
	}
	if t.Failed() {
		t.Log("\n" + out)
	}
	code, out, _ = run(func(o, e *bytes.Buffer) int { return dnscmd.Main(load, append(args, "-json"), o, e) })
	var got struct {
		OK       bool `json:"ok"`
		Findings []struct {
			Check, Status, Detail, Publish string
		} `json:"findings"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil || code != 1 || got.OK {
		t.Fatalf("-json: exit %d, %v\n%s", code, err, out)
	}
	found := false
	for _, f := range got.Findings {
		if f.Check == "spf-record example.com" && f.Status == "FAIL" && f.Publish == `example.com. TXT "v=spf1 mx ip4:203.0.113.5 -all"` {
			found = true
		}
	}
	if !found {
		t.Errorf("-json lacks the merged SPF record: %+v", got.Findings)
	}
}
