package reportcmd

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inkan-relay/inkan/cmd/inkan/dkimcmd"
	"github.com/inkan-relay/inkan/config"
)

// testConfig has the keys example.com/rsa1 (RSA) and example.com/ed1
// (Ed25519), made with inkan dkim keygen, as the README walkthrough makes them.
func testConfig(t *testing.T) func(string) (*config.Config, error) {
	t.Helper()
	dir := t.TempDir()
	cfg := &config.Config{Hostname: "mail.example.com", DataDir: dir}
	for _, k := range [][]string{{"rsa1", "rsa"}, {"ed1", "ed25519"}} {
		var out, errb bytes.Buffer
		if code := dkimcmd.Keygen([]string{"-d", "example.com", "-s", k[0], "-a", k[1], "-o", dir}, &out, &errb); code != 0 {
			t.Fatal(errb.String())
		}
		cfg.DKIM.Keys = append(cfg.DKIM.Keys, config.DKIMKey{Domain: "example.com", Selector: k[0], KeyFile: filepath.Join(dir, "example.com."+k[0]+".key")})
	}
	return func(string) (*config.Config, error) { return cfg, nil }
}

func runMain(t *testing.T, load func(string) (*config.Config, error), stdin io.Reader, args ...string) (int, string, string) {
	t.Helper()
	if load == nil {
		load = func(string) (*config.Config, error) { return &config.Config{}, nil }
	}
	var out, errb bytes.Buffer
	code := Main(load, args, stdin, &out, &errb)
	return code, out.String(), errb.String()
}

const packed = "testdata/packed/"

// jsonOut is the shape of -json output the tests read.
type jsonOut struct {
	Reports     []dmarcReport `json:"reports"`
	Conclusions []conclusion  `json:"conclusions"`
	Errors      []problem     `json:"errors"`
	Skipped     []problem     `json:"skipped"`
}

// TestDMARCEveryInputFormat reads the same reports as receivers send them:
// a zip (Google), a .xml.gz (Microsoft), a .eml with the zip attached, an
// mbox with a gzip attachment, an inline text/xml part and a message that is
// no report, and a Maildir.
func TestDMARCEveryInputFormat(t *testing.T) {
	load := testConfig(t)
	code, out, errs := runMain(t, load, nil, "dmarc", "-json", packed+"dmarc/"+googleZip, packed+"dmarc/"+msGz,
		packed+"dmarc/google-report.eml", packed+"dmarc/reports.mbox", packed+"dmarc/Maildir")
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, errs, out)
	}
	var got jsonOut
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	orgs := map[string]string{}
	for _, r := range got.Reports {
		orgs[r.Org] = r.Input
	}
	want := map[string]string{
		"google.com":         googleZip,
		"Enterprise Outlook": msGz,
		"Mail.Ru":            "reports.mbox message 3",
		"Yahoo":              "Maildir/new/1762128000.M17P4242.mx.example.com",
	}
	for org, in := range want {
		if !strings.Contains(orgs[org], in) {
			t.Errorf("report of %s came from %q, want %q", org, orgs[org], in)
		}
	}
	if len(got.Reports) != 4 {
		t.Errorf("%d reports, want 4 (the .eml holds Google's report again): %v", len(got.Reports), orgs)
	}
	for _, r := range got.Reports {
		if r.Org == "google.com" && (len(r.Duplicates) != 1 || !strings.Contains(r.Duplicates[0], "google-report.eml")) {
			t.Errorf("Google's report in the .eml is not named a duplicate: %v", r.Duplicates)
		}
	}
	if len(got.Skipped) != 1 || !strings.Contains(got.Skipped[0].Input, "reports.mbox message 2 (reports go here)") {
		t.Errorf("skipped = %+v, want the mbox's welcome message", got.Skipped)
	}
	if len(got.Errors) != 0 {
		t.Errorf("errors: %+v", got.Errors)
	}
	// Standard input, and a folder holding everything.
	code, out, errs = runMain(t, load, bytes.NewReader(readFixture(t, "packed/dmarc/"+msGz)), "dmarc", "-")
	if code != 0 || !strings.Contains(out, "== Enterprise Outlook: example.com") {
		t.Errorf("stdin: exit %d %s\n%s", code, errs, out)
	}
	code, out, errs = runMain(t, load, nil, "dmarc", packed+"dmarc", "-json")
	if err := json.Unmarshal([]byte(out), &got); err != nil || code != 0 || len(got.Reports) != 4 {
		t.Errorf("folder: exit %d, %d reports, %v %s", code, len(got.Reports), err, errs)
	}
}

func conclusionsOf(t *testing.T, load func(string) (*config.Config, error), args ...string) []conclusion {
	t.Helper()
	code, out, errs := runMain(t, load, nil, append([]string{"dmarc", "-json"}, args...)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var got jsonOut
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	return got.Conclusions
}

func findConclusion(cs []conclusion, level, domain string, parts ...string) bool {
next:
	for _, c := range cs {
		if c.Level != level || c.Domain != domain {
			continue
		}
		for _, p := range parts {
			if !strings.Contains(c.Text, p) {
				continue next
			}
		}
		return true
	}
	return false
}

// TestDMARCConclusions checks what the fixtures mean, as an operator would
// read them.
func TestDMARCConclusions(t *testing.T) {
	cs := conclusionsOf(t, testConfig(t), packed+"dmarc")
	checks := []struct {
		level, domain string
		parts         []string
	}{
		// 12 (Google) + 4 (Yahoo) messages from one unauthenticated address.
		{levelAction, "example.com", []string{"16 messages from 198.51.100.7 failed SPF and DKIM", "Yahoo, google.com", "add ip4:198.51.100.7 to the SPF record of example.com or route it through inkan", "spoofing example.com"}},
		{levelAction, "example.com", []string{"2 messages from 2001:db8:bad::1 failed SPF and DKIM", "add ip6:2001:db8:bad::1"}},
		// A service signing as itself: the forgotten one.
		{levelAction, "example.com", []string{"40 messages from 192.0.2.55 authenticated as DKIM d=sendgrid.net s=smtpapi, SPF em4127.sendgrid.net, not as example.com", "have it sign with d=example.com"}},
		// Inkan's key works; 3 messages changed by a mailing list failed.
		{levelInfo, "example.com", []string{"key example.com/rsa1: 1534 of 1537 messages signed by inkan passed DKIM", "the 3 that failed"}},
		{levelOK, "example.com", []string{"key example.com/ed1 (selector ed1): all 1180 messages signed by inkan passed DKIM"}},
		// Google Workspace signs for the domain too.
		{levelInfo, "example.com", []string{"26 messages from 1 address passed DMARC through DKIM d=example.com s=google, not through inkan"}},
		// Two days at p=none, 97.5% passing: not yet.
		{levelAction, "example.com", []string{"2 days of reports from 3 reporters", "96.2% of 1621 messages passed DMARC under p=none", "before p=quarantine"}},
		// example.net: strict alignment, p=reject, receivers overriding it.
		{levelInfo, "example.net", []string{"receivers overrode the published policy for 6 messages (forwarded 5, local_policy 1)"}},
		{levelInfo, "example.net", []string{"no DKIM key for example.net"}},
		{levelOK, "example.net", []string{"p=reject", "receivers refuse mail that fails DMARC"}},
		{levelAction, "example.net", []string{"5 messages from 2a00:1450:4864:20::135 authenticated as DKIM d=mail.example.net s=mx, SPF gmail.com, not as example.net"}},
	}
	for _, c := range checks {
		if !findConclusion(cs, c.level, c.domain, c.parts...) {
			t.Errorf("no %s conclusion for %s with %q", c.level, c.domain, c.parts)
		}
	}
	if t.Failed() {
		for _, c := range cs {
			t.Logf("%s %s: %s", c.Level, c.Domain, c.Text)
		}
	}
	if cs[0].Level != levelAction {
		t.Errorf("the first conclusion is %s, want the actions first", cs[0].Level)
	}
}

// TestDMARCSeparatesInkanMail: the classes of the rows of Google's report.
func TestDMARCSeparatesInkanMail(t *testing.T) {
	_, keys, _ := loadKeys(testConfig(t), "", io.Discard)
	me := newSelf(keys, nil)
	f, err := parseDMARC(readFixture(t, "dmarc/google.xml"))
	if err != nil {
		t.Fatal(err)
	}
	rep := me.view("google.xml", f)
	want := map[string]string{
		"203.0.113.7": classInkan, "2001:db8:7::25": classInkan, "192.0.2.44": classInkan, // the list copy still carries inkan's signature
		"192.0.2.55": classUnaligned, "198.51.100.7": classUnauthentd, "209.85.220.69": classOther,
	}
	for _, rw := range rep.Rows {
		if want[rw.SourceIP] != rw.Class {
			t.Errorf("%s: class %s, want %s", rw.SourceIP, rw.Class, want[rw.SourceIP])
		}
	}
	if rep.Messages != 1366 || rep.DMARCPass != 1311 {
		t.Errorf("messages %d, pass %d", rep.Messages, rep.DMARCPass)
	}
	// Yahoo: mail From news.example.com signed d=example.com aligns in relaxed mode.
	f, _ = parseDMARC(readFixture(t, "dmarc/yahoo.xml"))
	rep = me.view("yahoo.xml", f)
	if d := rep.Rows[0].DKIM[0]; !d.Aligned || !d.Inkan {
		t.Errorf("news.example.com signed by example.com/rsa1: %+v", d)
	}
	// -ip: mail from this host without a selector is still inkan's.
	me = newSelf(keys, []netip.Addr{netip.MustParseAddr("198.51.100.7")})
	f, _ = parseDMARC(readFixture(t, "dmarc/google.xml"))
	for _, rw := range me.view("google.xml", f).Rows {
		if rw.SourceIP == "198.51.100.7" && (rw.Class != classInkan || !rw.ThisHost) {
			t.Errorf("-ip 198.51.100.7: %+v", rw)
		}
	}
}

func TestDMARCThisHostUnsigned(t *testing.T) {
	cs := conclusionsOf(t, testConfig(t), "-ip", "198.51.100.7", packed+"dmarc/"+googleZip)
	if !findConclusion(cs, levelAction, "example.com", "12 messages from this host (198.51.100.7) carried no inkan DKIM signature", "inkan dkim explain") {
		t.Errorf("no conclusion about this host's unsigned mail: %+v", cs)
	}
}

func TestDMARCTextOutput(t *testing.T) {
	code, out, errs := runMain(t, testConfig(t), nil, "dmarc", packed+"dmarc/"+googleZip)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"== google.com: example.com, 2025-11-01 00:00 to 2025-11-01 23:59 UTC ==",
		"report 9847061256138294710 from noreply-dmarc-support@google.com",
		"published p=none sp=none adkim=r aspf=r pct=100; 1366 messages, 1311 (95.9%) passed DMARC",
		"Signed by inkan (keys example.com/ed1, example.com/rsa1): 1288 messages",
		"Not signed by inkan: 78 messages",
		"example.com/rsa1 pass, example.com/ed1 pass",
		"authenticated as another domain",
		"\nConclusions\n  ACTION example.com: 12 messages from 198.51.100.7",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text output lacks %q:\n%s", want, out)
		}
	}
	t.Log("\n" + out)
}

// TestKeysFromFlagOrConfig: -keys names inkan's keys without a
// configuration; a configuration that does not load stops with status 78.
func TestKeysFromFlagOrConfig(t *testing.T) {
	broken := func(string) (*config.Config, error) {
		return nil, errors.Join(errors.New("inkan.yaml:7: invalid YAML"))
	}
	code, out, errs := runMain(t, broken, nil, "dmarc", packed+"dmarc/"+googleZip)
	if code != 78 || out != "" || errs != "error: inkan.yaml:7: invalid YAML\n" {
		t.Errorf("broken config: exit %d %q %q", code, out, errs)
	}
	code, out, errs = runMain(t, broken, nil, "dmarc", "-keys", "example.com/rsa1,example.com/ed1", packed+"dmarc/"+googleZip)
	if code != 0 || !strings.Contains(out, "Signed by inkan (keys example.com/rsa1, example.com/ed1): 1288 messages") {
		t.Errorf("-keys: exit %d %s\n%s", code, errs, out)
	}
	if code, _, _ := runMain(t, nil, nil, "dmarc", "-keys", "example.com", "x.xml"); code != 2 {
		t.Errorf("-keys without a selector: exit %d", code)
	}
	// Keys that no longer load: the pairs of dkim.keys still say which are inkan's.
	gone := func(string) (*config.Config, error) {
		cfg := &config.Config{}
		cfg.DKIM.Keys = []config.DKIMKey{{Domain: "example.com", Selector: "rsa1", KeyFile: filepath.Join(t.TempDir(), "gone.key")}}
		return cfg, nil
	}
	code, out, errs = runMain(t, gone, nil, "dmarc", packed+"dmarc/"+googleZip)
	if code != 0 || !strings.Contains(errs, "using the 1 domain/selector pairs of dkim.keys") || !strings.Contains(out, "Signed by inkan (keys example.com/rsa1)") {
		t.Errorf("unloadable keys: exit %d %s\n%s", code, errs, out)
	}
}

// TestSignedButNotAligned: mail From example.net that inkan signed as
// d=example.com passes DKIM but not DMARC: example.net needs its own key.
func TestSignedButNotAligned(t *testing.T) {
	r := strings.NewReplacer("<domain>example.com</domain>\n    <adkim>", "<domain>example.net</domain>\n    <adkim>",
		"<header_from>example.com</header_from>", "<header_from>example.net</header_from>",
		"<dkim>pass</dkim>", "<dkim>fail</dkim>", "<spf>pass</spf>", "<spf>fail</spf>")
	p := write(t, t.TempDir(), "r.xml", []byte(r.Replace(string(readFixture(t, "dmarc/microsoft.xml")))))
	cs := conclusionsOf(t, testConfig(t), p)
	if !findConclusion(cs, levelAction, "example.net", "37 messages From example.net were signed by inkan as d=example.com, which does not align with example.net: add a key for example.net") {
		t.Errorf("%+v", cs)
	}
}
