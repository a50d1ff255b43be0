package dnsutil_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/inkan-relay/inkan/relay/dnsutil"
	"github.com/inkan-relay/inkan/relay/dnsutil/dnstest"
)

// A server that truncates every UDP answer: Exchange must retry over TCP.
func TestExchangeRetriesTruncatedOverTCP(t *testing.T) {
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if w.LocalAddr().Network() == "udp" {
			m.Truncated = true
		} else {
			rr, _ := dns.NewRR(r.Question[0].Name + " 60 IN A 192.0.2.7")
			m.Answer = append(m.Answer, rr)
		}
		w.WriteMsg(m)
	})
	addr := dnstest.Serve(t, handler)

	m := new(dns.Msg)
	m.SetQuestion("a.example.", dns.TypeA)
	resp, err := dnsutil.Exchange(context.Background(), m, addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	got := dnsutil.Addrs(resp.Answer)
	if len(got) != 1 || got[0] != netip.MustParseAddr("192.0.2.7") {
		t.Fatalf("Addrs = %v", got)
	}
}

func TestAddrs(t *testing.T) {
	var rrs []dns.RR
	for _, s := range []string{"x. 60 IN AAAA ::ffff:192.0.2.1", "x. 60 IN CNAME y.", "x. 60 IN AAAA 2001:db8::1"} {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		rrs = append(rrs, rr)
	}
	got := dnsutil.Addrs(rrs)
	if len(got) != 2 || got[0].String() != "192.0.2.1" || !strings.HasPrefix(got[1].String(), "2001:db8") {
		t.Fatalf("Addrs = %v", got)
	}
}
