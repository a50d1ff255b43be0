package reportcmd

import (
	"strings"
	"testing"

	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// FuzzParseDMARC: any input either fails with an error or gives a report
// whose rows the analysis and the text output handle; nothing panics.
func FuzzParseDMARC(f *testing.F) {
	f.Add([]byte(`<feedback><report_metadata><org_name>o</org_name><report_id>1</report_id><date_range><begin>1</begin><end>2</end></date_range></report_metadata><policy_published><domain>example.com</domain><p>none</p></policy_published><record><row><source_ip>::1</source_ip><count>1</count><policy_evaluated><disposition>none</disposition><dkim>pass</dkim><spf>fail</spf></policy_evaluated></row><auth_results><dkim><domain>example.com</domain><selector>s</selector><result>pass</result></dkim></auth_results></record></feedback>`))
	f.Add([]byte(billionLaughs))
	f.Fuzz(func(t *testing.T, b []byte) {
		fb, err := parseDMARC(b)
		if err != nil {
			return
		}
		if fb.Metadata.OrgName == "" || !policies[fb.Policy.P] {
			t.Fatalf("accepted without org_name or p: %+v", fb)
		}
		me := newSelf(nil, nil)
		rep := me.view("fuzz", fb)
		if rep.DMARCPass > rep.Messages || rep.Messages < 0 {
			t.Fatalf("pass %d of %d", rep.DMARCPass, rep.Messages)
		}
		var out strings.Builder
		renderDMARC(newPrintable(&out), []dmarcReport{rep}, me.conclude([]dmarcReport{rep}), me)
		for _, line := range strings.Split(out.String(), "\n") {
			if mailsyntax.Printable(line) != line {
				t.Fatalf("unsafe line %q", line)
			}
		}
	})
}

func FuzzParseTLSRPT(f *testing.F) {
	f.Add([]byte(`{"organization-name":"x","report-id":"1","date-range":{"start-datetime":"2025-11-01T00:00:00Z","end-datetime":"2025-11-02T00:00:00Z"},"policies":[{"policy":{"policy-type":"sts","policy-domain":"example.com","mx-host":"mx.example.com"},"summary":{"total-successful-session-count":3,"total-failure-session-count":1},"failure-details":[{"result-type":"certificate-expired","failed-session-count":1}]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseTLSRPT(b)
		if err != nil {
			return
		}
		var out strings.Builder
		renderTLS(newPrintable(&out), []*tlsReport{r}, concludeTLS([]*tlsReport{r}))
		for _, line := range strings.Split(out.String(), "\n") {
			if mailsyntax.Printable(line) != line {
				t.Fatalf("unsafe line %q", line)
			}
		}
	})
}

// FuzzExtract: containers (gzip, zip, mail, mbox) of any shape end in
// documents or errors, within the limits.
func FuzzExtract(f *testing.F) {
	f.Add([]byte("From x\nSubject: a\nContent-Type: application/zip; name=a.zip\nContent-Transfer-Encoding: base64\n\nUEsDBA==\n"))
	f.Add([]byte("Subject: r\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/xml\r\n\r\n<feedback/>\r\n--b--\r\n"))
	f.Add([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		x := newExtractor(kindXML, nil)
		x.budget = maxExpand
		x.data("fuzz", b, 0, true)
		var n int64
		for _, d := range x.docs {
			n += int64(len(d.data))
			if len(d.data) > maxDocument && d.name != "fuzz" {
				t.Fatalf("document %s of %d bytes", d.name, len(d.data))
			}
		}
		if n > maxExpand+int64(len(b)) {
			t.Fatalf("%d bytes out of %d", n, len(b))
		}
	})
}
