package dnscheck

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inkan-relay/inkan/relay/dnsutil/dnstest"
	"github.com/miekg/dns"
)

// testZone is a tiny recursive-resolver stand-in: it answers from records,
// follows CNAMEs the way a resolver would, answers SERVFAIL for names in
// servfail, NODATA for names with other types and NXDOMAIN otherwise.
type testZone struct {
	rrs      []dns.RR
	servfail map[string]bool
	queries  atomic.Int64
}

func (z *testZone) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	z.queries.Add(1)
	m := new(dns.Msg)
	m.SetReply(req)
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	if z.servfail[name] {
		m.Rcode = dns.RcodeServerFailure
		w.WriteMsg(m)
		return
	}
	exists := false
	for hops := 0; hops < 8; hops++ {
		var cname string
		for _, rr := range z.rrs {
			h := rr.Header()
			if strings.ToLower(h.Name) != name {
				continue
			}
			exists = true
			switch {
			case h.Rrtype == q.Qtype:
				m.Answer = append(m.Answer, rr)
			case h.Rrtype == dns.TypeCNAME:
				m.Answer = append(m.Answer, rr)
				cname = strings.ToLower(rr.(*dns.CNAME).Target)
			}
		}
		if cname == "" {
			break
		}
		name = cname
	}
	if !exists {
		m.Rcode = dns.RcodeNameError
	}
	w.WriteMsg(m)
}

// startDNS serves records (zone-file lines, or ready RRs) on 127.0.0.1:0 over
// UDP and returns a Checker that asks it.
func startDNS(t *testing.T, lines []string, extra ...dns.RR) (*Checker, *testZone) {
	t.Helper()
	z := &testZone{servfail: map[string]bool{}}
	for _, l := range lines {
		if strings.HasPrefix(l, "SERVFAIL ") {
			z.servfail[dns.Fqdn(strings.ToLower(strings.TrimPrefix(l, "SERVFAIL ")))] = true
			continue
		}
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatalf("record %q: %v", l, err)
		}
		z.rrs = append(z.rrs, rr)
	}
	z.rrs = append(z.rrs, extra...)
	c, err := New(dnstest.Serve(t, z))
	if err != nil {
		t.Fatal(err)
	}
	c.Timeout = 2 * time.Second
	return c, z
}

// longTXT builds a TXT record whose value is split into 255-byte strings, as
// zone files must hold long DKIM keys.
func longTXT(name, value string) dns.RR {
	rr := &dns.TXT{Hdr: dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 300}}
	for len(value) > 255 {
		rr.Txt = append(rr.Txt, value[:255])
		value = value[255:]
	}
	rr.Txt = append(rr.Txt, value)
	return rr
}

var bg = context.Background()
