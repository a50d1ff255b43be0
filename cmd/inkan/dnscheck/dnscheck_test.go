package dnscheck

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func rsaRecord(t *testing.T, k *rsa.PrivateKey, extra string) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return "v=DKIM1; k=rsa; " + extra + "p=" + base64.StdEncoding.EncodeToString(der)
}

func TestCheckDKIM(t *testing.T) {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := rsa.GenerateKey(rand.Reader, 1024)
	ek := ed25519.NewKeyFromSeed(make([]byte, 32))
	edRec := "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(ek.Public().(ed25519.PublicKey))
	c, _ := startDNS(t, []string{
		`ed._domainkey.example.com. 300 IN TXT "` + edRec + `"`,
		`two._domainkey.example.com. 300 IN TXT "v=DKIM1; p="`,
		`two._domainkey.example.com. 300 IN TXT "v=DKIM1; p=AAAA"`,
		`revoked._domainkey.example.com. 300 IN TXT "v=DKIM1; k=rsa; p="`,
		`junk._domainkey.example.com. 300 IN TXT "v=DKIM1; k=rsa; p=!!!"`,
		`ed448._domainkey.example.com. 300 IN TXT "v=DKIM1; k=ed448; p=AAAA"`,
		`delegated._domainkey.example.com. 300 IN CNAME ed._domainkey.example.com.`,
		`SERVFAIL broken._domainkey.example.com`,
	},
		longTXT("rsa1._domainkey.example.com", rsaRecord(t, rk, "")),
		longTXT("wrong._domainkey.example.com", rsaRecord(t, other, "")),
		longTXT("test._domainkey.example.com", rsaRecord(t, rk, "t=y; ")),
		longTXT("sha1._domainkey.example.com", rsaRecord(t, rk, "h=sha1; ")),
		longTXT("svc._domainkey.example.com", rsaRecord(t, rk, "s=rsa1; ")),
	)
	tests := []struct {
		sel    string
		pub    any
		status Status
		detail string
	}{
		{"rsa1", &rk.PublicKey, Pass, "key matches private key (k=rsa, 2048-bit)"},
		{"rsa1", nil, Pass, "record is valid"},
		{"ed", ek.Public(), Pass, "key matches private key (k=ed25519)"},
		{"delegated", ek.Public(), Pass, "key matches"},
		{"wrong", &rk.PublicKey, Fail, "does not match the private key"},
		{"ed", &rk.PublicKey, Fail, "does not match"},
		{"missing", ek.Public(), Fail, "no TXT record"},
		{"two", nil, Fail, "2 TXT records"},
		{"revoked", nil, Fail, "revoked"},
		{"junk", nil, Fail, "not valid base64"},
		{"ed448", nil, Fail, "unknown key type"},
		{"test", &rk.PublicKey, Warn, "t=y"},
		{"sha1", &rk.PublicKey, Fail, "h= excludes sha256"},
		{"svc", &rk.PublicKey, Fail, "s= does not allow email"},
		{"broken", nil, Warn, "could not check"},
	}
	for _, tt := range tests {
		f := c.CheckDKIM(bg, "example.com", tt.sel, tt.pub)
		if f.Status != tt.status || !strings.Contains(f.Detail, tt.detail) || f.Check != "dkim "+tt.sel+"._domainkey.example.com" {
			t.Errorf("%s: %s, want %s %q", tt.sel, f, tt.status, tt.detail)
		}
	}
	if got := c.CheckDKIM(bg, "example.com", "rsa1", &rk.PublicKey).String(); !strings.HasPrefix(got, "PASS dkim rsa1._domainkey.example.com: key matches private key") {
		t.Errorf("String() = %q", got)
	}
}

// chain returns n SPF records that include each other: l1 -> l2 -> ... -> ln.
func chain(n int) []string {
	var out []string
	for i := 1; i < n; i++ {
		out = append(out, fmt.Sprintf(`l%d.example. 300 IN TXT "v=spf1 include:l%d.example -all"`, i, i+1))
	}
	return append(out, fmt.Sprintf(`l%d.example. 300 IN TXT "v=spf1 ip4:192.0.2.10 -all"`, n))
}

func TestSPF(t *testing.T) {
	zone := []string{
		`example.com. 300 IN TXT "v=spf1 mx a:relay.example.com/28 ip6:2001:db8::/32 include:_spf.partner.example -all"`,
		`example.com. 300 IN TXT "google-site-verification=xyz"`,
		`example.com. 300 IN MX 10 mail.example.com.`,
		`mail.example.com. 300 IN A 198.51.100.25`,
		`relay.example.com. 300 IN A 203.0.113.1`,
		`_spf.partner.example. 300 IN TXT "v=spf1 ip4:192.0.2.0/24 ~all"`,
		`soft.example. 300 IN TXT "v=spf1 ip4:192.0.2.1 ~all"`,
		`neutral.example. 300 IN TXT "v=spf1 ?all"`,
		`double.example. 300 IN TXT "v=spf1 -all"`,
		`double.example. 300 IN TXT "v=spf1 +all"`,
		`redir.example. 300 IN TXT "v=spf1 redirect=_spf.partner.example"`,
		`badredir.example. 300 IN TXT "v=spf1 redirect=nospf.example"`,
		`nospf.example. 300 IN TXT "hello"`,
		`voids.example. 300 IN TXT "v=spf1 a:n1.example a:n2.example a:n3.example -all"`,
		`twovoids.example. 300 IN TXT "v=spf1 a:n1.example a:n2.example ip4:192.0.2.10 -all"`,
		`exists.example. 300 IN TXT "v=spf1 exists:%{i}._spf.%{d} -all"`,
		`192.0.2.99._spf.exists.example. 300 IN A 127.0.0.2`,
		`ptr.example. 300 IN TXT "v=spf1 ptr ip4:192.0.2.10 -all"`,
		`syntax.example. 300 IN TXT "v=spf1 ip4:300.1.1.1 -all"`,
		`unknown.example. 300 IN TXT "v=spf1 foo:bar -all"`,
		`loop.example. 300 IN TXT "v=spf1 include:loop.example -all"`,
		`SERVFAIL temp.example`,
		`tempinc.example. 300 IN TXT "v=spf1 include:temp.example -all"`,
		`manymx.example. 300 IN TXT "v=spf1 mx -all"`,
		`badinclude.example. 300 IN TXT "v=spf1 include:bad!name.example -all"`,
	}
	for i := 0; i < 11; i++ {
		zone = append(zone, fmt.Sprintf("manymx.example. 300 IN MX %d mx%d.manymx.example.", i, i))
	}
	zone = append(zone, chain(11)...)                                                // l1..l11: 10 includes from l1 is fine...
	zone = append(zone, `deep.example. 300 IN TXT "v=spf1 include:l1.example -all"`) // ...11 is not
	c, _ := startDNS(t, zone)
	tests := []struct {
		domain, ip string
		result     SPFResult
		reason     string
	}{
		{"example.com", "198.51.100.25", SPFPass, "mx matched"},
		{"example.com", "203.0.113.14", SPFPass, "a:relay.example.com/28 matched"},
		{"example.com", "203.0.113.17", SPFFail, "-all matched"},
		{"example.com", "2001:db8::1", SPFPass, "ip6:2001:db8::/32"},
		{"example.com", "192.0.2.7", SPFPass, "include:_spf.partner.example matched at example.com (ip4:192.0.2.0/24 matched at _spf.partner.example)"},
		{"soft.example", "192.0.2.2", SPFSoftFail, "~all"},
		{"neutral.example", "192.0.2.2", SPFNeutral, "?all"},
		{"double.example", "192.0.2.2", SPFPermError, "2 SPF records"},
		{"none.example", "192.0.2.2", SPFNone, "no SPF record"},
		{"nospf.example", "192.0.2.2", SPFNone, "no SPF record"},
		{"redir.example", "192.0.2.2", SPFPass, "ip4:192.0.2.0/24"},
		{"badredir.example", "192.0.2.2", SPFPermError, "redirect=nospf.example"},
		{"voids.example", "192.0.2.2", SPFPermError, "void lookups"},
		{"twovoids.example", "192.0.2.10", SPFPass, ""},
		{"exists.example", "192.0.2.99", SPFPass, "exists:%{i}._spf.%{d} matched"},
		{"exists.example", "192.0.2.98", SPFFail, "-all"},
		{"ptr.example", "192.0.2.10", SPFPass, ""},
		{"syntax.example", "192.0.2.10", SPFPermError, "not an IPv4 address"},
		{"unknown.example", "192.0.2.10", SPFPermError, "unknown mechanism"},
		{"loop.example", "192.0.2.10", SPFPermError, "more than 10"},
		{"temp.example", "192.0.2.10", SPFTempError, "SERVFAIL"},
		{"tempinc.example", "192.0.2.10", SPFTempError, "SERVFAIL"},
		{"manymx.example", "192.0.2.10", SPFPermError, "11 MX hosts"},
		{"l1.example", "192.0.2.10", SPFPass, ""},
		{"deep.example", "192.0.2.10", SPFPermError, "more than 10 DNS-querying terms"},
		// RFC 7208 §4.3: a malformed or single-label <domain> is "none"; an absolute name is fine.
		{"soft.example.", "192.0.2.2", SPFSoftFail, "~all"},
		{"localhost", "192.0.2.2", SPFNone, `"localhost" is not a valid domain: domain has only one label`},
		{"a..example", "192.0.2.2", SPFNone, "empty label"},
		{"192.0.2.1", "192.0.2.2", SPFNone, "all-numeric"},
		{"badinclude.example", "192.0.2.2", SPFPermError, `include:bad!name.example: "bad!name.example" is not a valid domain`},
	}
	for _, tt := range tests {
		o := c.SPF(bg, netip.MustParseAddr(tt.ip), tt.domain)
		if o.Result != tt.result || !strings.Contains(o.Reason, tt.reason) {
			t.Errorf("%s for %s: %s (%s), want %s %q", tt.domain, tt.ip, o.Result, o.Reason, tt.result, tt.reason)
		}
	}
	if o := c.SPF(bg, netip.MustParseAddr("192.0.2.10"), "l1.example"); o.Lookups != 10 {
		t.Errorf("l1 chain: %d lookups, want 10", o.Lookups)
	}
	if o := c.SPF(bg, netip.MustParseAddr("192.0.2.10"), "ptr.example"); len(o.Notes) != 1 || o.Lookups != 1 {
		t.Errorf("ptr: %+v", o)
	}

	findings := []struct {
		domain, ip string
		status     Status
		detail     string
	}{
		{"example.com", "198.51.100.25", Pass, "198.51.100.25 is authorized (mx matched at example.com; 1/10 DNS lookups)"},
		{"example.com", "203.0.113.17", Fail, "203.0.113.17 is not authorized: fail"},
		{"soft.example", "192.0.2.2", Fail, "softfail"},
		{"neutral.example", "192.0.2.2", Warn, "neutral"},
		{"deep.example", "192.0.2.10", Fail, "permerror"},
		{"double.example", "192.0.2.10", Fail, "merge them into one"},
		{"none.example", "192.0.2.10", Fail, "no SPF record"},
		{"ptr.example", "192.0.2.10", Warn, "ptr is deprecated"},
		{"temp.example", "192.0.2.10", Warn, "could not check"},
		{"example.com", "", Pass, "record is valid (3/10 DNS lookups); pass -ip"},
		{"l1.example", "192.0.2.10", Warn, "close to the 10-lookup limit"},
	}
	for _, tt := range findings {
		var ip netip.Addr
		if tt.ip != "" {
			ip = netip.MustParseAddr(tt.ip)
		}
		f := c.CheckSPF(bg, tt.domain, ip)
		if f.Status != tt.status || !strings.Contains(f.Detail, tt.detail) || f.Check != "spf "+tt.domain {
			t.Errorf("CheckSPF(%s, %s) = %s\nwant %s %q", tt.domain, tt.ip, f, tt.status, tt.detail)
		}
	}
}

// TestSPFMacros uses the examples of RFC 7208 §7.4.
func TestSPFMacros(t *testing.T) {
	e := &spfEval{ip: netip.MustParseAddr("192.0.2.3"), sender: "strong-bad@email.example.com", helo: "mx.example.org"}
	const d = "email.example.com"
	tests := map[string]string{
		"%{s}":                              "strong-bad@email.example.com",
		"%{o}":                              "email.example.com",
		"%{d}":                              "email.example.com",
		"%{d4}":                             "email.example.com",
		"%{d3}":                             "email.example.com",
		"%{d2}":                             "example.com",
		"%{d1}":                             "com",
		"%{dr}":                             "com.example.email",
		"%{d2r}":                            "example.email",
		"%{l}":                              "strong-bad",
		"%{l-}":                             "strong.bad",
		"%{lr}":                             "strong-bad",
		"%{lr-}":                            "bad.strong",
		"%{l1r-}":                           "strong",
		"%{ir}.%{v}._spf.%{d2}":             "3.2.0.192.in-addr._spf.example.com",
		"%{lr-}.lp._spf.%{d2}":              "bad.strong.lp._spf.example.com",
		"%{lr-}.lp.%{ir}.%{v}._spf.%{d2}":   "bad.strong.lp.3.2.0.192.in-addr._spf.example.com",
		"%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}":  "3.2.0.192.in-addr.strong.lp._spf.example.com",
		"%{d2}.trusted-domains.example.net": "example.com.trusted-domains.example.net",
		"%{h}%%%_%-":                        "mx.example.org% %20",
		"%{S}":                              "strong-bad@email.example.com",
	}
	for spec, want := range tests {
		got, err := e.expand(spec, d)
		if err != nil || got != want {
			t.Errorf("expand(%q) = %q, %v; want %q", spec, got, err, want)
		}
	}
	e.ip = netip.MustParseAddr("2001:db8::cb01")
	got, _ := e.expand("%{ir}.%{v}._spf.%{d2}", d)
	if want := "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com"; got != want {
		t.Errorf("ipv6: %q\nwant %q", got, want)
	}
	long := strings.Repeat("abcdefghi.", 30) + "%{d}"
	if got, _ := e.expand(long, d); len(got) > 253 || !strings.HasSuffix(got, "email.example.com") {
		t.Errorf("long expansion: %d %q", len(got), got)
	}
}

func TestCheckDMARC(t *testing.T) {
	c, _ := startDNS(t, []string{
		`_dmarc.example.com. 300 IN TXT "v=DMARC1; p=reject; sp=quarantine; adkim=s; rua=mailto:d@example.com"`,
		`_dmarc.monitor.example. 300 IN TXT "v=DMARC1; p=none; rua=mailto:d@monitor.example"`,
		`_dmarc.rua.example. 300 IN TXT "v=DMARC1; rua=mailto:d@rua.example"`,
		`_dmarc.bad.example. 300 IN TXT "v=DMARC1; p=block"`,
		`_dmarc.order.example. 300 IN TXT "p=reject; v=DMARC1"`,
		`_dmarc.two.example. 300 IN TXT "v=DMARC1; p=none"`,
		`_dmarc.two.example. 300 IN TXT "v=DMARC1; p=reject"`,
		`_dmarc.other.example. 300 IN TXT "some other text"`,
		`SERVFAIL _dmarc.temp.example`,
	})
	tests := []struct {
		domain string
		status Status
		detail string
	}{
		{"example.com", Pass, "policy reject, DKIM alignment strict, SPF alignment relaxed, pct=100, aggregate reports to mailto:d@example.com"},
		{"mail.example.com", Pass, "policy quarantine"}, // sp= from the organizational domain
		{"mail.example.com", Pass, "from _dmarc.example.com"},
		{"monitor.example", Warn, "p=none only monitors"},
		{"rua.example", Warn, "no p= tag: read as p=none"},
		{"bad.example", Fail, "p=block is not none, quarantine or reject"},
		{"order.example", Fail, "no DMARC record"}, // not a DMARC record at all: v= must come first
		{"two.example", Fail, "2 DMARC records"},
		{"missing.example", Fail, "no DMARC record: publish TXT at _dmarc.missing.example"},
		{"other.example", Fail, "no DMARC record"},
		{"temp.example", Warn, "could not check"},
	}
	for _, tt := range tests {
		f := c.CheckDMARC(bg, tt.domain)
		if f.Status != tt.status || !strings.Contains(f.Detail, tt.detail) {
			t.Errorf("%s: %s\nwant %s %q", tt.domain, f, tt.status, tt.detail)
		}
	}
}

func TestParsers(t *testing.T) {
	r, err := ParseSPF("v=spf1 +mx/24//64 a:%{d}.example -ip4:10.0.0.1/8 ~exists:x.example ?include:y.example redirect=z.example exp=e.%{d} foo=bar -all")
	if err != nil {
		t.Fatal(err)
	}
	var terms []string
	for _, tm := range r.Terms {
		terms = append(terms, tm.String())
	}
	if got := strings.Join(terms, " "); got != "mx/24//64 a:%{d}.example -ip4:10.0.0.0/8 ~exists:x.example ?include:y.example -all" || r.Redirect != "z.example" || r.Exp != "e.%{d}" {
		t.Errorf("parsed %q %+v", got, r)
	}
	for _, bad := range []string{"v=spf1 redirect=a redirect=b", "v=spf1 include", "v=spf1 all:x", "v=spf1 ip6:192.0.2.1", "v=spf1 a/33", "v=spf1 a:%{x}", "v=spf10 -all", "v=spf1 ptr/24", "v=spf1 mx:%"} {
		if _, err := ParseSPF(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := ParseDKIMRecord("k=rsa; v=DKIM1; p="); err == nil {
		t.Error("v= not first accepted")
	}
	if d, err := ParseDMARC("v=DMARC1;p=quarantine;pct=50;aspf=s"); err != nil || d.Pct != 50 || d.ASPF != "s" || d.Policy != "quarantine" {
		t.Errorf("dmarc %+v %v", d, err)
	}
}
