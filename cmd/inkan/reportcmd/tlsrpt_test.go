package reportcmd

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestTLSRPT(t *testing.T) {
	code, out, errs := runMain(t, nil, nil, "tlsrpt", packed+"tlsrpt/"+tlsGz, packed+"tlsrpt/microsoft-tlsrpt.eml", "testdata/tlsrpt/google.json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"== Google Inc.: 2025-11-01 00:00 to 2025-11-01 23:59 UTC ==",
		"(the same report was also in testdata/tlsrpt/google.json)",
		"example.com, policy sts (mode enforce), mx mx1.example.com, mx2.example.com: 4210 sessions, 4190 (99.5%) with TLS, 20 failed",
		"certificate-expired     15        mx2.example.com",
		"== Microsoft Corporation:",
		"microsoft-tlsrpt.eml (Report Domain: example.com",
		"example.org, policy no-policy-found: 43 sessions",
		"X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN",
		"ACTION example.com: 15 failed sessions (certificate-expired, reported by Google Inc.): the certificate of mx2.example.com has expired: renew it",
		"ACTION example.com: 5 failed sessions (starttls-not-supported, reported by Google Inc.): mx1.example.com did not offer STARTTLS",
		"ACTION example.org: 3 failed sessions (certificate-not-trusted, reported by Microsoft Corporation): the certificate of mail.example.org is not trusted",
		"INFO   example.com: 5002 (99.6%) of 5022 sessions to the MX hosts of example.com used TLS",
		"INFO   example.org: example.org publishes neither MTA-STS nor DANE",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log("\n" + out)
	}
	code, out, _ = runMain(t, nil, nil, "tlsrpt", "-json", packed+"tlsrpt")
	var got struct {
		Reports []tlsReport `json:"reports"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil || code != 0 || len(got.Reports) != 2 {
		t.Errorf("-json: exit %d, %v, %d reports", code, err, len(got.Reports))
	}
}

func TestTLSRPTRefusesBadReports(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]string{
		`[1,2,3]`:                   "JSON: json: cannot unmarshal array",
		`{"organization-name":"x"}`: "report-id is missing",
		`{"a":1}{"b":2}`:            "more than one value",
		strings.Repeat("[", 20000):  "exceeded max depth",
		`{"organization-name":"x","report-id":"1","date-range":{"start-datetime":"2025-11-01T00:00:00Z","end-datetime":"2025-11-02T00:00:00Z"},"policies":[{"policy":{"policy-type":"sts","policy-domain":"example.com"},"summary":{"total-successful-session-count":-1}}]}`: "session counts out of range",
		`{"organization-name":"x","report-id":"1","date-range":{"start-datetime":"2025-11-01T00:00:00Z","end-datetime":"2025-11-02T00:00:00Z"},"policies":[{"policy":{"policy-type":"dkim","policy-domain":"example.com"}}]}`:                                                "policy-type \"dkim\" is not sts",
		`{"organization-name":"x","report-id":"1","date-range":{"start-datetime":"2025-11-01T00:00:00Z","end-datetime":"2025-11-02T00:00:00Z"},"policies":[{"policy":{"policy-type":"sts","policy-domain":"example.com","mx-host":5}}]}`:                                     "mx-host is neither",
	}
	i := 0
	for body, want := range cases {
		i++
		p := write(t, dir, "r"+string(rune('a'+i))+".json", []byte(body))
		code, _, errs := runMain(t, nil, nil, "tlsrpt", p)
		if code != 1 || !strings.Contains(errs, want) {
			t.Errorf("%.40s: exit %d, stderr %q, want %q", body, code, errs, want)
		}
	}
	code, _, errs := runMain(t, nil, nil, "tlsrpt", packed+"dmarc/"+msGz)
	if code != 1 || !strings.Contains(errs, "a DMARC aggregate report (XML), not a TLS-RPT report (JSON): read it with inkan report dmarc") {
		t.Errorf("DMARC report given to tlsrpt: %d %s", code, errs)
	}
}

func TestUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
	}{
		{nil, 2}, {[]string{"nope"}, 2}, {[]string{"dmarc"}, 2}, {[]string{"tlsrpt", "-bogus"}, 2},
		{[]string{"help"}, 0}, {[]string{"dmarc", "-h"}, 0}, {[]string{"tlsrpt", "--help"}, 0},
	} {
		if code, _, _ := runMain(t, nil, nil, c.args...); code != c.code {
			t.Errorf("%q: exit %d, want %d", c.args, code, c.code)
		}
	}
	// Flags after the inputs, and "--" before an input that looks like a flag.
	code, out, _ := runMain(t, nil, nil, "tlsrpt", packed+"tlsrpt/"+tlsGz, "-json")
	if code != 0 || !strings.HasPrefix(out, "{") {
		t.Errorf("flag after input: %d %q", code, out)
	}
	code, _, errs := runMain(t, nil, nil, "tlsrpt", "--", "-json")
	if code != 1 || !strings.Contains(errs, "-json: stat -json: no such file") {
		t.Errorf("-- then -json: %d %s", code, errs)
	}
}
