package dnscheck

import (
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// The publishing mistakes of the Postfix + OpenDKIM + OpenDMARC guides,
// each against a DNS server on loopback.

func txtRR(name string, strs ...string) dns.RR {
	return &dns.TXT{Hdr: dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 300}, Txt: strs}
}

func TestDKIMPublishingMistakes(t *testing.T) {
	k2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	k1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	// Go no longer makes keys under 1024 bits; this one is from openssl genrsa 512.
	const rsa512 = "v=DKIM1; k=rsa; p=MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAKETQd/t7AhAZSwYm62Wp2z3Pc9X4aDILvsodhxLHlC3pSyNLEV1GuQS7oaSwXyUGI1fexOVZndkc9eU/9zgjoECAwEAAQ=="
	rec := rsaRecord(t, k2048, "")
	half := len(rec) / 2
	c, _ := startDNS(t, []string{
		`_adsp._domainkey.example.com. 300 IN TXT "dkim=all"`,
	},
		// One key in two TXT records instead of one record of two strings.
		txtRR("split._domainkey.example.com", rec[half:]),
		txtRR("split._domainkey.example.com", rec[:half]),
		// A web panel stored the zone-file quotes.
		longTXT("quoted._domainkey.example.com", `\"`+rec[:200]+`\" \"`+rec[200:]+`\"`),
		// Backslash escapes copied from opendkim-genkey's output.
		longTXT("escaped._domainkey.example.com", strings.Replace(rec, ";", `\\;`, 2)),
		// Cut at 255 characters by a panel.
		txtRR("cut._domainkey.example.com", rec[:255]),
		// Right key, wrong names.
		longTXT("twice._domainkey.example.com.example.com", rec),
		longTXT("nodk.example.com", rec),
		longTXT("parent._domainkey.example.com", rec),
		longTXT("short._domainkey.example.com", rsaRecord(t, k1024, "")),
		longTXT("tiny._domainkey.example.com", rsa512),
	)
	tests := []struct {
		domain, sel string
		status      Status
		detail      string
		publish     string
	}{
		{"example.com", "split", Fail, "the key is split into 2 TXT records; it must be one TXT record made of several strings", `split._domainkey.example.com. TXT "v=DKIM1; k=rsa; p=`},
		{"example.com", "quoted", Fail, "the value contains quote characters", `quoted._domainkey.example.com. TXT "v=DKIM1; k=rsa; p=`},
		{"example.com", "escaped", Fail, `the value contains backslashes (\;)`, `escaped._domainkey.example.com. TXT "v=DKIM1; k=rsa; p=`},
		{"example.com", "cut", Fail, "the record is cut at 255 characters", ""},
		{"example.com", "twice", Fail, "a DKIM key is published at twice._domainkey.example.com.example.com: the name is wrong (a DNS panel for example.com wants the name twice._domainkey", ""},
		{"example.com", "nodk", Fail, "a DKIM key is published at nodk.example.com", ""},
		{"mail.example.com", "parent", Fail, "a DKIM key is published at parent._domainkey.example.com", ""},
		{"example.com", "short", Warn, "a 1024-bit RSA key (k=rsa, 1024-bit): too weak for today", ""},
		{"example.com", "tiny", Fail, "a 512-bit RSA key: verifiers refuse keys under 1024 bits (RFC 8301): make a 2048-bit key with inkan dkim rotate next -d example.com", ""},
	}
	for _, tt := range tests {
		f := c.CheckDKIM(bg, tt.domain, tt.sel, nil)
		if f.Status != tt.status || !strings.Contains(f.Detail, tt.detail) || !strings.HasPrefix(f.Publish, tt.publish) {
			t.Errorf("%s: %s [publish %q]\nwant %s %q [publish %q...]", tt.sel, f, f.Publish, tt.status, tt.detail, tt.publish)
		}
		if tt.publish != "" && strings.Contains(f.Publish, "TXT ") {
			// What we tell them to publish is the valid record, split for zone files.
			v := strings.Join(strings.Split(strings.Trim(f.Publish[strings.Index(f.Publish, "TXT ")+4:], `"`), `" "`), "")
			if r, err := ParseDKIMRecord(v); err != nil || !samePublicKey(&k2048.PublicKey, r.PublicKey) {
				t.Errorf("%s: publish %q does not hold the key: %v", tt.sel, f.Publish, err)
			}
		}
	}
	if f, ok := c.CheckADSP(bg, "example.com"); !ok || f.Status != Warn || !strings.Contains(f.Detail, "ADSP was declared historic in 2013") || !strings.Contains(f.Detail, "delete the TXT record at _adsp._domainkey.example.com") {
		t.Errorf("adsp: %v %s", ok, f)
	}
	if _, ok := c.CheckADSP(bg, "example.org"); ok {
		t.Error("adsp finding without a record")
	}
}

func TestSPFRecordMistakes(t *testing.T) {
	var lines []string
	// heavy.example includes 4 services costing 4 lookups each (include, a, mx, include): 16.
	heavy := "v=spf1"
	for i := range 4 {
		svc := fmt.Sprintf("svc%d.example", i)
		heavy += " include:" + svc
		lines = append(lines,
			fmt.Sprintf(`%s. 300 IN TXT "v=spf1 a mx include:_n.%s -all"`, svc, svc),
			fmt.Sprintf(`_n.%s. 300 IN TXT "v=spf1 ip4:198.51.100.%d -all"`, svc, i),
			fmt.Sprintf(`%s. 300 IN A 192.0.2.%d`, svc, 100+i),
			fmt.Sprintf(`%s. 300 IN MX 10 %s.`, svc, svc))
	}
	lines = append(lines,
		`heavy.example. 300 IN TXT "`+heavy+` -all"`,
		`open.example. 300 IN TXT "v=spf1 mx +all"`,
		`open.example. 300 IN MX 10 mx.open.example.`,
		`neutral.example. 300 IN TXT "v=spf1 ip4:192.0.2.1 ?all"`,
		`noall.example. 300 IN TXT "v=spf1 ip4:192.0.2.1"`,
		`two.example. 300 IN TXT "v=spf1 ip4:192.0.2.1 ~all"`,
		`two.example. 300 IN TXT "v=spf1 include:_spf.google.com ip4:192.0.2.1 -all"`,
		`voids.example. 300 IN TXT "v=spf1 a:x1.voids.example a:x2.voids.example a:x3.voids.example -all"`,
		`good.example. 300 IN TXT "v=spf1 ip4:192.0.2.1 -all"`,
	)
	c, _ := startDNS(t, lines)
	tests := []struct {
		domain  string
		status  Status
		broken  bool
		detail  string
		publish string
	}{
		{"heavy.example", Fail, true, "16 DNS lookups, over the limit of 10", ""},
		{"heavy.example", Fail, true, "lookups per term: include:svc0.example 4, include:svc1.example 4, include:svc2.example 4, include:svc3.example 4", ""},
		{"open.example", Fail, false, "+all authorizes every host on the internet to send as open.example", `open.example. TXT "v=spf1 mx -all"`},
		{"neutral.example", Warn, false, "?all tells receivers nothing", `neutral.example. TXT "v=spf1 ip4:192.0.2.1 ~all"`},
		{"noall.example", Warn, false, "no all term", `noall.example. TXT "v=spf1 ip4:192.0.2.1 -all"`},
		{"two.example", Fail, true, "2 SPF records", `two.example. TXT "v=spf1 ip4:192.0.2.1 include:_spf.google.com -all"`},
		{"voids.example", Fail, true, "3 lookups found nothing (x1.voids.example, x2.voids.example, x3.voids.example)", ""},
	}
	for _, tt := range tests {
		fs, broken := c.CheckSPFRecord(bg, tt.domain)
		found := false
		for _, f := range fs {
			if f.Status == tt.status && strings.Contains(f.Detail, tt.detail) && f.Publish == tt.publish {
				found = true
			}
		}
		if !found || broken != tt.broken {
			t.Errorf("%s: broken %v, findings %+v\nwant %s %q publish %q", tt.domain, broken, fs, tt.status, tt.detail, tt.publish)
		}
	}
	if fs, broken := c.CheckSPFRecord(bg, "good.example"); len(fs) != 0 || broken {
		t.Errorf("good record: %+v", fs)
	}
	// heavy.example: the evaluation for an address it lists stops early, yet the limit is found.
	if n, _, _, _, _ := c.SPFLookups(bg, "heavy.example"); n != 16 {
		t.Errorf("SPFLookups = %d, want 16", n)
	}
	// For an address the first include lists, evaluation stops early and passes,
	// which is why the lookups are counted over the whole record.
	if o := c.SPF(bg, netip.MustParseAddr("198.51.100.0"), "heavy.example"); o.Result != SPFPass {
		t.Errorf("SPF for a listed address: %+v", o)
	}
}

func TestDMARCReportAuthorization(t *testing.T) {
	c, _ := startDNS(t, []string{
		`_dmarc.example.com. 300 IN TXT "v=DMARC1; p=none; rua=mailto:dmarc@example.com,mailto:reports@dmarc.example.net!10m; ruf=mailto:f@other.example.org"`,
		`example.com._report._dmarc.other.example.org. 300 IN TXT "v=DMARC1"`,
		`_dmarc.wild.example. 300 IN TXT "v=DMARC1; p=reject; rua=mailto:x@reports.example.net"`,
		`wild.example._report._dmarc.reports.example.net. 300 IN TXT "v=DMARC1"`, // as a "*." record answers it
		`_dmarc.example.org. 300 IN TXT "v=DMARC1; p=reject; rua=mailto:d@sub.example.org"`,
		`SERVFAIL example.com._report._dmarc.dmarc.example.net`,
	})
	fs := c.CheckReportAuth(bg, "mail.example.com") // the organizational domain's record
	if len(fs) != 2 {
		t.Fatalf("findings %+v", fs)
	}
	if fs[0].Status != Warn || !strings.Contains(fs[0].Detail, "could not check") {
		t.Errorf("temp failure: %s", fs[0])
	}
	if fs[1].Status != Pass || !strings.Contains(fs[1].Detail, "other.example.org may receive the reports of example.com") {
		t.Errorf("authorized ruf: %s", fs[1])
	}
	c2, _ := startDNS(t, []string{`_dmarc.example.com. 300 IN TXT "v=DMARC1; p=none; rua=mailto:reports@dmarc.example.net"`})
	fs = c2.CheckReportAuth(bg, "example.com")
	if len(fs) != 1 || fs[0].Status != Warn || !strings.Contains(fs[0].Detail, "dmarc.example.net has not agreed to take them, so receivers send none") ||
		fs[0].Publish != `example.com._report._dmarc.dmarc.example.net. TXT "v=DMARC1"` {
		t.Errorf("unauthorized rua: %+v", fs)
	}
	if fs := c.CheckReportAuth(bg, "wild.example"); len(fs) != 1 || fs[0].Status != Pass {
		t.Errorf("authorization: %+v", fs)
	}
	if fs := c.CheckReportAuth(bg, "example.org"); len(fs) != 0 {
		t.Errorf("reports within the organization need no authorization: %+v", fs)
	}
}

func TestHostMistakes(t *testing.T) {
	c, _ := startDNS(t, []string{
		`mail.example.com. 300 IN A 203.0.113.7`,
		`mail.example.com. 300 IN AAAA 2001:db8::7`,
		`7.113.0.203.in-addr.arpa. 300 IN PTR mail.example.com.`,
		`8.113.0.203.in-addr.arpa. 300 IN PTR host-8.isp.example.`,
		`9.113.0.203.in-addr.arpa. 300 IN PTR relay.example.com.`,
		`relay.example.com. 300 IN A 203.0.113.9`,
		`example.com. 300 IN MX 10 mx1.example.com.`,
		`mx1.example.com. 300 IN A 203.0.113.25`,
		`nullmx.example. 300 IN MX 0 .`,
		`nomx.example. 300 IN A 192.0.2.80`,
		`dangling.example. 300 IN MX 10 gone.dangling.example.`,
		`noaddr.example. 300 IN TXT "v=spf1 -all"`,
	})
	ip := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	tests := []struct {
		helo, addr string
		check      string
		status     Status
		detail     string
		publish    string
	}{
		{"mail.example.com", "203.0.113.7", "ptr 203.0.113.7", Pass, "reverse DNS mail.example.com", ""},
		{"mail.example.com", "203.0.113.7", "helo mail.example.com", Pass, "resolves to 203.0.113.7", ""},
		{"mail.example.com", "2001:db8::7", "ptr 2001:db8::7", Fail, "2001:db8::7 has no reverse DNS", "7.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. PTR mail.example.com."},
		{"mail.example.com", "203.0.113.8", "ptr 203.0.113.8", Fail, "is host-8.isp.example, which does not resolve back to 203.0.113.8", "host-8.isp.example. A 203.0.113.8"},
		{"mail.example.com", "203.0.113.8", "helo mail.example.com", Fail, "does not resolve to 203.0.113.8", "mail.example.com. A 203.0.113.8"},
		{"mail.example.com", "203.0.113.9", "ptr 203.0.113.9", Warn, "set hostname: relay.example.com", ""},
		{"localhost", "203.0.113.7", "helo", Fail, "not a public host name", ""},
	}
	for _, tt := range tests {
		found := false
		var got []Finding
		for _, f := range c.CheckHost(bg, tt.helo, ip(tt.addr)) {
			got = append(got, f)
			if f.Check == tt.check && f.Status == tt.status && strings.Contains(f.Detail, tt.detail) && f.Publish == tt.publish {
				found = true
			}
		}
		if !found {
			t.Errorf("%s %s: %+v\nwant %s %s %q publish %q", tt.helo, tt.addr, got, tt.check, tt.status, tt.detail, tt.publish)
		}
	}
	mx := []struct {
		domain string
		status Status
		detail string
	}{
		{"example.com", Pass, "mail to example.com goes to mx1.example.com"},
		{"nullmx.example", Fail, "a null MX"},
		{"nomx.example", Warn, "no MX record: replies to nomx.example go to its A record"},
		{"dangling.example", Fail, "gone.dangling.example has no A or AAAA record"},
		{"noaddr.example", Fail, "no MX record and no address"},
		{"missing.example", Fail, "does not exist in the DNS"},
	}
	for _, tt := range mx {
		if f := c.CheckMX(bg, tt.domain); f.Status != tt.status || !strings.Contains(f.Detail, tt.detail) {
			t.Errorf("%s: %s\nwant %s %q", tt.domain, f, tt.status, tt.detail)
		}
	}
}
