package dnscheck

import (
	"reflect"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func FuzzParseSPF(f *testing.F) {
	for _, s := range []string{
		"v=spf1 mx a:relay.example.com/28 ip6:2001:db8::/32 include:_spf.example.net -all",
		"v=spf1 exists:%{ir}.%{l1r-}.lp._spf.%{d2} redirect=_spf.example.com exp=explain.%{d}",
		"v=spf1 +a/24//64 ?ptr:%{d} ~all foo=bar",
		"v=spf1 ip4:192.0.2.1/33",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseSPF(s)
		if err != nil {
			return
		}
		// Every parsed term prints back to text that parses to the same term.
		for _, term := range r.Terms {
			r2, err := ParseSPF("v=spf1 " + term.String())
			if err != nil || len(r2.Terms) != 1 || !reflect.DeepEqual(r2.Terms[0], term) {
				t.Fatalf("%q: term %+v printed as %q reparsed to %+v, %v", s, term, term.String(), r2, err)
			}
		}
	})
}

func FuzzParseDMARC(f *testing.F) {
	for _, s := range []string{
		"v=DMARC1; p=reject; sp=quarantine; adkim=s; aspf=r; pct=50; rua=mailto:a@example.com,mailto:b@example.net",
		"v=DMARC1; rua=mailto:d@example.com",
		"v=DMARC1; p=none;;",
		"p=none; v=DMARC1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseDMARC(s)
		if err != nil {
			return
		}
		valid := map[string]bool{"none": true, "quarantine": true, "reject": true}
		if !valid[r.Policy] || (r.SubdomainPolicy != "" && !valid[r.SubdomainPolicy]) || r.Pct < 0 || r.Pct > 100 ||
			(r.ADKIM != "r" && r.ADKIM != "s") || (r.ASPF != "r" && r.ASPF != "s") {
			t.Fatalf("%q parsed to invalid %+v", s, r)
		}
		if !IsDMARC(s) {
			t.Fatalf("%q parses but IsDMARC is false", s)
		}
	})
}

func FuzzParseDKIMRecord(f *testing.F) {
	for _, s := range []string{
		"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
		"v=DKIM1; k=rsa; h=sha256; s=email; t=y:s; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDwIRP/UC3SBsEmGqZ9ZJW3/DkMoGeLnQg1fWn7/zYtIxN2SnFCjxOCKG9v3b4jYfcTNh5ijSsq631uBItLa7od+v/RtdC2UzJ1lWT947qR+Rcac2gbto/NMqJ0fzfVjH4OuKhitdY9tf6mcwGjaNBcWToIMmPSPDdQPNUYckcQ2QIDAQAB",
		"v=DKIM1; p=",
		"k=rsa; v=DKIM1; p=AAAA",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseDKIMRecord(s)
		if err != nil {
			return
		}
		if r.KeyType != "rsa" && r.KeyType != "ed25519" {
			t.Fatalf("%q: key type %q", s, r.KeyType)
		}
		if tags, _, _ := parseTags(s); r.PublicKey == nil && strings.Join(strings.Fields(tags["p"]), "") != "" {
			t.Fatalf("%q: non-empty p= but no key", s)
		}
	})
}

// FuzzTXTMistakes: undoing presentation escapes never panics and gives back
// what miekg/dns escaped; a value with stored quotes or backslashes is always
// named, and the fix holds neither.
func FuzzTXTMistakes(f *testing.F) {
	f.Add(`"v=DKIM1; k=rsa; " "p=MIIB"`)
	f.Add(`v=DKIM1\; k=rsa\; p=MIIB\"`)
	f.Add("\\255\\0\\\\")
	f.Fuzz(func(t *testing.T, s string) {
		u := unescapeTXT(s)
		if len(u) > len(s) {
			t.Fatalf("unescape grew %q to %q", s, u)
		}
		rr := &dns.TXT{Hdr: dns.RR_Header{Name: "x.", Rrtype: dns.TypeTXT, Class: dns.ClassINET}, Txt: []string{s}}
		if len(s) <= 255 {
			buf := make([]byte, 1024)
			if n, err := dns.PackRR(rr, buf, 0, nil, false); err == nil {
				back, _, err := dns.UnpackRR(buf[:n], 0)
				if err == nil && unescapeTXT(back.(*dns.TXT).Txt[0]) != unescapeTXT(s) {
					t.Fatalf("%q: wire form %q reads back as %q", s, back.(*dns.TXT).Txt[0], unescapeTXT(back.(*dns.TXT).Txt[0]))
				}
			}
		}
		problem, fixed := storedSyntax(u)
		if strings.ContainsAny(u, `"\`) != (problem != "") {
			t.Fatalf("%q: problem %q", u, problem)
		}
		if strings.Contains(fixed, `"`) {
			t.Fatalf("%q: fix %q still has quotes", u, fixed)
		}
	})
}
