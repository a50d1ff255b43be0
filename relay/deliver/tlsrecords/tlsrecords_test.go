package tlsrecords_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/inkan-relay/inkan/relay/deliver/tlsrecords"
)

func TestSTSRecord(t *testing.T) {
	for _, tc := range []struct {
		txts []string
		id   string
		err  string
	}{
		{[]string{"v=STSv1; id=20240101T0000;"}, "20240101T0000", ""},
		{[]string{"v=STSv1;id=abc"}, "abc", ""},
		{[]string{"v=spf1 -all", "v=STSv1; id=a1; ext=value"}, "a1", ""},
		{[]string{"v=spf1 -all"}, "", "no record"},
		{nil, "", "no record"},
		{[]string{"v=STSv1; id=a", "v=STSv1; id=b"}, "", "exactly one"},
		{[]string{"v=STSv1"}, "", "no id"},
		{[]string{"v=STSv1; id=has-dash"}, "", "letters and digits"},
		{[]string{"v=STSv1; id=" + strings.Repeat("a", 33)}, "", "1 to 32"},
		{[]string{"v=STSv1; id=a; id=b"}, "", "twice"},
		{[]string{"v=STSv1; id=a;; x=y"}, "", "empty field"},
		{[]string{"v=STSv10; id=a"}, "", "no record"},
	} {
		r, err := tlsrecords.FindSTSRecord(tc.txts)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.txts, err, tc.err)
			}
			continue
		}
		if err != nil || r.ID != tc.id {
			t.Errorf("%q: got %+v, %v; want id %q", tc.txts, r, err, tc.id)
		}
	}
	if _, err := tlsrecords.FindSTSRecord(nil); !errors.Is(err, tlsrecords.ErrNoRecord) {
		t.Errorf("no record: %v", err)
	}
}

func TestSTSPolicy(t *testing.T) {
	good := "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.Example.net.\r\nmax_age: 604800\r\nfuture: ignored\r\n"
	p, err := tlsrecords.ParseSTSPolicy([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode != tlsrecords.Enforce || p.MaxAge != 7*24*time.Hour || len(p.MX) != 2 {
		t.Fatalf("parsed %+v", p)
	}
	for host, want := range map[string]bool{
		"mail.example.com": true, "MAIL.example.com.": true, "a.example.net": true,
		"example.net": false, "a.b.example.net": false, "mail.example.org": false, "x.mail.example.com": false,
	} {
		if got := p.Matches(host); got != want {
			t.Errorf("Matches(%q) = %v, want %v", host, got, want)
		}
	}
	if got := strings.Join(p.Lines(), "|"); got != "version: STSv1|mode: enforce|mx: mail.example.com|mx: *.example.net|max_age: 604800" {
		t.Errorf("Lines: %s", got)
	}
	if _, err := tlsrecords.ParseSTSPolicy([]byte("version: STSv1\nmode: none\nmax_age: 86400\n")); err != nil {
		t.Errorf("mode none without mx: %v", err)
	}
	for body, want := range map[string]string{
		"mode: enforce\nmx: a.example\nmax_age: 1\n":                           "no version",
		"version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n":           "not STSv1",
		"version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1\n":            "not enforce",
		"version: STSv1\nmode: enforce\nmax_age: 1\n":                          "without any mx",
		"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 99999999999\n": "max_age",
		"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n":          "max_age",
		"version: STSv1\nmode: testing\nmode: enforce\nmx: a\nmax_age: 1\n":    "twice",
		"version: STSv1\nmode: enforce\nmx: a..example\nmax_age: 1\n":          "not a host name",
		"version: STSv1\nmode: enforce\nmx: *.*.example\nmax_age: 1\n":         "not a host name",
		"<html>not a policy</html>":                                            "not \"key: value\"",
		strings.Repeat("x", tlsrecords.MaxPolicySize+1):                        "larger",
	} {
		if _, err := tlsrecords.ParseSTSPolicy([]byte(body)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err %v, want %q", body, err, want)
		}
	}
}

func TestTLSRPTRecord(t *testing.T) {
	r, err := tlsrecords.FindTLSRPTRecord([]string{"v=TLSRPTv1; rua=mailto:tls%2Breports@example.com, https://reports.example.com/tlsrpt"})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.RUA) != 2 || tlsrecords.MailtoAddress(r.RUA[0]) != "tls+reports@example.com" || r.RUA[1].Host != "reports.example.com" {
		t.Fatalf("parsed %+v", r.RUA)
	}
	for txt, want := range map[string]string{
		"v=TLSRPTv1;":                                                "no rua",
		"v=TLSRPTv1; rua=ftp://x.example/":                           "only mailto",
		"v=TLSRPTv1; rua=mailto:":                                    "names no address",
		"v=TLSRPTv1; rua=mailto:not-an-addr":                         "not an address",
		"v=TLSRPTv1; rua=https:///x":                                 "names no host",
		"v=TLSRPTv1; rua=mailto:a@b.example; rua=mailto:c@d.example": "twice",
	} {
		if _, err := tlsrecords.FindTLSRPTRecord([]string{txt}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err %v, want %q", txt, err, want)
		}
	}
}

func FuzzParsers(f *testing.F) {
	f.Add("version: STSv1\nmode: enforce\nmx: *.example.com\nmax_age: 86400\n")
	f.Add("v=STSv1; id=1;")
	f.Add("v=TLSRPTv1; rua=mailto:a@b.example,https://x.example/")
	f.Fuzz(func(t *testing.T, s string) {
		if p, err := tlsrecords.ParseSTSPolicy([]byte(s)); err == nil {
			if p.Mode != tlsrecords.None && len(p.MX) == 0 {
				t.Fatalf("policy without mx accepted: %q", s)
			}
			p.Matches("mx.example.com")
		}
		tlsrecords.ParseSTSRecord(s)
		if r, err := tlsrecords.ParseTLSRPTRecord(s); err == nil && len(r.RUA) == 0 {
			t.Fatalf("record without rua accepted: %q", s)
		}
	})
}
