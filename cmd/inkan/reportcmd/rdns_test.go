package reportcmd

import (
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/inkan-relay/inkan/relay/dnsutil/dnstest"
)

// TestReverseDNS: -rdns asks the resolver for the PTR of each source
// address and shows the names (made safe for the terminal) beside them.
func TestReverseDNS(t *testing.T) {
	ptr := map[string]string{
		"7.113.0.203.in-addr.arpa.":  "mail.example.com.",
		"7.100.51.198.in-addr.arpa.": "printer\\027[2J.office.example.", // escapes are remote text too
	}
	resolver := dnstest.Serve(t, dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		q := req.Question[0]
		if name, ok := ptr[strings.ToLower(q.Name)]; ok && q.Qtype == dns.TypePTR {
			m.Answer = append(m.Answer, &dns.PTR{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: 60}, Ptr: name})
		} else {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	}))
	code, out, errs := runMain(t, testConfig(t), nil, "dmarc", "-rdns", "-resolver", resolver, packed+"dmarc/"+googleZip)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"203.0.113.7 (mail.example.com)",
		"12 messages from 198.51.100.7 (printer",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b") {
		t.Errorf("escape character in output")
	}
}
