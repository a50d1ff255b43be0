package reportcmd

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// zeros gzips n zero bytes without holding them: a compression bomb.
func zerosGz(t *testing.T, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	chunk := make([]byte, 1<<20)
	for n > 0 {
		k := min(n, len(chunk))
		w.Write(chunk[:k])
		n -= k
	}
	w.Close()
	return buf.Bytes()
}

const billionLaughs = `<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<feedback><report_metadata><org_name>&lol9;</org_name></report_metadata></feedback>`

// TestHostileInputsRefusedOneByOne: each bad input gets its own error line,
// and the good report among them is still read and reported.
func TestHostileInputsRefusedOneByOne(t *testing.T) {
	dir := t.TempDir()
	good := readFixture(t, "dmarc/microsoft.xml")
	cases := []struct {
		file, want string
	}{
		{write(t, dir, "lolz.xml", []byte(billionLaughs)), "<!DOCTYPE> declaration refused"},
		{write(t, dir, "bomb.xml.gz", zerosGz(t, maxDocument+1)), "larger than 32 MiB, refused"},
		{write(t, dir, "traversal.zip", zipOf(t, "../../etc/cron.d/evil.xml", good)), "climbs out of the archive (path traversal)"},
		{write(t, dir, "absolute.zip", zipOf(t, "/etc/passwd", good)), "absolute name"},
		{write(t, dir, "wrong-root.xml", []byte(`<?xml version="1.0"?><html><body>hi</body></html>`)), "root element <html>, not <feedback>"},
		{write(t, dir, "no-org.xml", []byte(`<feedback><report_metadata><report_id>1</report_id></report_metadata></feedback>`)), "org_name is missing"},
		{write(t, dir, "bad-ip.xml", bytes.Replace(good, []byte("203.0.113.7"), []byte("203.0.113.777"), 1)), `record 1: row/source_ip "203.0.113.777" is not an IP address`},
		{write(t, dir, "negative.xml", bytes.Replace(good, []byte("<count>37<"), []byte("<count>-37<"), 1)), "row/count -37 is out of range"},
		{write(t, dir, "truncated.xml", good[:len(good)/2]), "XML: XML syntax error"},
		{write(t, dir, "tls.json", readFixture(t, "tlsrpt/google.json")), "a TLS-RPT report (JSON), not a DMARC aggregate report (XML): read it with inkan report tlsrpt"},
		{write(t, dir, "random.bin", []byte{0, 1, 2, 3, 0xff}), "not a report"},
		{write(t, dir, "broken.gz", []byte{0x1f, 0x8b, 8, 0, 0, 0}), "gzip:"},
		{write(t, dir, "broken.zip", []byte("PK\x03\x04garbage")), "zip:"},
		{write(t, dir, "nested.gz", nest(t, good, maxDepth+2)), "nested more than"},
		{filepath.Join(dir, "missing.xml"), "no such file"},
	}
	args := []string{"dmarc", "-json", write(t, dir, "good.xml", good)}
	for _, c := range cases {
		args = append(args, c.file)
	}
	code, out, errs := runMain(t, nil, nil, args...)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	var got jsonOut
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Reports) != 1 || got.Reports[0].Org != "Enterprise Outlook" {
		t.Errorf("the good report was not read: %+v", got.Reports)
	}
	for _, c := range cases {
		found := false
		for _, e := range got.Errors {
			if strings.HasPrefix(e.Input, c.file) && strings.Contains(e.Error, c.want) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no error with %q in\n%s", filepath.Base(c.file), c.want, errs)
		}
		if !strings.Contains(errs, "inkan report dmarc: "+c.file) {
			t.Errorf("%s not named on stderr", c.file)
		}
	}
}

// nest gzips b depth times.
func nest(t *testing.T, b []byte, depth int) []byte {
	for range depth {
		b = gz(t, "", b)
	}
	return b
}

// TestZipBombs: entries that decompress past the limits are refused, whatever
// size their headers declare, and the total is bounded.
func TestZipBombs(t *testing.T) {
	dir := t.TempDir()
	big := bytes.Repeat([]byte{' '}, maxDocument+1)
	// An entry whose header lies about its size: patch the sizes to 100.
	lying := zipOf(t, "report.xml", big)
	lying = bytes.Replace(lying, le32(uint32(len(big))), le32(100), -1)
	// The total budget, scaled down: 9 entries of 2 MiB against 16 MiB.
	var many []any
	for i := range 9 {
		many = append(many, fmt.Sprintf("r%d.xml", i), append([]byte("<"), bytes.Repeat([]byte{' '}, 2<<20)...))
	}
	entries := []any{}
	for i := range maxZipEntries + 1 {
		entries = append(entries, fmt.Sprintf("%d.xml", i), []byte("<x/>"))
	}
	x := newExtractor(kindXML, nil)
	for _, f := range []string{
		write(t, dir, "big.zip", zipOf(t, "report.xml", big)),
		write(t, dir, "lying.zip", lying),
		write(t, dir, "entries.zip", zipOf(t, entries...)),
	} {
		x.add(f)
	}
	x.budget = 16 << 20
	x.file(write(t, dir, "many.zip", zipOf(t, many...)), true)
	var msgs []string
	for _, e := range x.errors {
		msgs = append(msgs, e.String())
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{
		"big.zip: report.xml: zip entry: larger than 32 MiB",
		"lying.zip: report.xml: zip entry:",
		"many.zip: r7.xml: zip entry: decompresses to more than 256 MiB in all",
		"entries.zip: zip: 1001 entries, more than 1000: refused",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("no error %q in\n%s", want, all)
		}
	}
	if len(x.docs) != 7 {
		t.Errorf("%d documents from many.zip, want the 7 within the budget", len(x.docs))
	}
}

func le32(v uint32) []byte { return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)} }

// TestTerminalControlsStripped: remote text with escape sequences reaches
// the terminal as '?'.
func TestTerminalControlsStripped(t *testing.T) {
	dir := t.TempDir()
	evil := bytes.Replace(readFixture(t, "dmarc/microsoft.xml"), []byte("Enterprise Outlook"), []byte("Evil\u009b2J]0;pwned\u202eOrg"), 1)
	code, out, errs := runMain(t, nil, nil, "dmarc", write(t, dir, "evil\x1b[31m.xml", evil), write(t, dir, "bad\x1b[2J.xml", []byte("junk")))
	if code != 1 {
		t.Errorf("exit %d", code)
	}
	for _, s := range []string{out, errs} {
		if strings.ContainsAny(s, "\x1b\u009b\u202e") {
			t.Errorf("terminal control in output: %q", s)
		}
	}
	if !strings.Contains(out, "== Evil?2J]0;pwned?Org: example.com") {
		t.Errorf("org name not shown safely:\n%s", out)
	}
}

// TestReadyForQuarantine: 30 days of reports at p=none with 99.8% passing.
func TestReadyForQuarantine(t *testing.T) {
	dir := t.TempDir()
	tmpl := string(readFixture(t, "dmarc/microsoft.xml"))
	start := time.Date(2025, 10, 1, 0, 0, 0, 0, time.UTC)
	for day := range 30 {
		b := start.Add(time.Duration(day) * 24 * time.Hour).Unix()
		r := strings.NewReplacer("1761955200", fmt.Sprint(b), "1762041600", fmt.Sprint(b+86400),
			"7e1a2c4b9f3d4e0a8c6b5d2f1e0a9b8c", fmt.Sprint("day", day), "<count>37<", "<count>499<",
			"<count>2<", map[bool]string{true: "<count>1<", false: "<count>0<"}[day%3 == 0]).Replace(tmpl)
		write(t, dir, fmt.Sprintf("day%02d.xml", day), []byte(r))
	}
	cs := conclusionsOf(t, testConfig(t), dir)
	if !findConclusion(cs, levelOK, "example.com", "30 days of reports from 1 reporter: 99.9% of 14980 messages passed DMARC under p=none",
		"ready for p=quarantine: change p=none to p=quarantine in the TXT record at _dmarc.example.com") {
		t.Errorf("not ready for quarantine: %+v", cs)
	}
	// Three days only: wait.
	cs = conclusionsOf(t, testConfig(t), filepath.Join(dir, "day00.xml"), filepath.Join(dir, "day01.xml"), filepath.Join(dir, "day02.xml"))
	if !findConclusion(cs, levelInfo, "example.com", "collect 14 days or more of reports before p=quarantine") {
		t.Errorf("3 days: %+v", cs)
	}
}

// TestNoPublishedKey: inkan's selector never passes: the key is wrong.
func TestNoPublishedKey(t *testing.T) {
	dir := t.TempDir()
	b := bytes.Replace(readFixture(t, "dmarc/microsoft.xml"), []byte("<result>pass</result>\n      </dkim>"), []byte("<result>fail</result>\n      </dkim>"), 1)
	cs := conclusionsOf(t, testConfig(t), write(t, dir, "r.xml", b))
	if !findConclusion(cs, levelAction, "example.com", "no message signed with inkan's key example.com/rsa1 passed DKIM (37 failed)", "inkan dns check -d example.com") {
		t.Errorf("%+v", cs)
	}
}
