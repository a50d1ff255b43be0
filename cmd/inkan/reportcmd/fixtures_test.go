package reportcmd

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the packed fixtures in testdata/packed")

// The packed fixtures are the plain reports of testdata/dmarc and
// testdata/tlsrpt packed the ways receivers send them: Google zips its
// DMARC reports and mails them as application/zip; Microsoft gzips them
// (application/gzip); Yahoo's arrive here in a Maildir; TLS-RPT reports come
// gzipped, in mail as multipart/report; report-type="tlsrpt" (RFC 8460 §5.3).
// They are built from the plain files; TestPackedFixturesUpToDate fails when
// they differ, and -update rewrites them.

var fixtureTime = time.Date(2025, 11, 2, 6, 0, 0, 0, time.UTC)

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func gz(t testing.TB, name string, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	w.Name, w.ModTime = name, fixtureTime
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// zipOf builds a zip archive of name/content pairs.
func zipOf(t testing.TB, files ...any) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for i := 0; i < len(files); i += 2 {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: files[i].(string), Method: zip.Deflate, Modified: fixtureTime})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(files[i+1].([]byte))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// mailWith builds a report message: a text part and the report attached.
func mailWith(from, subject, reportType, ctype, file string, body []byte) []byte {
	var b strings.Builder
	boundary := "=_report_" + strings.ReplaceAll(file, "!", "_")
	outer := fmt.Sprintf("multipart/mixed; boundary=%q", boundary)
	if reportType != "" {
		outer = fmt.Sprintf("multipart/report; report-type=%q; boundary=%q", reportType, boundary)
	}
	fmt.Fprintf(&b, "Return-Path: <%s>\r\nFrom: %s\r\nTo: dmarc-reports@example.com\r\nSubject: %s\r\n", from, from, subject)
	fmt.Fprintf(&b, "Date: %s\r\nMessage-ID: <%d.%s>\r\nMIME-Version: 1.0\r\nContent-Type: %s\r\n\r\n", fixtureTime.Format(time.RFC1123Z), len(body), file, outer)
	fmt.Fprintf(&b, "--%s\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\nThis is an aggregate report from %s.\r\n\r\n", boundary, from)
	fmt.Fprintf(&b, "--%s\r\nContent-Type: %s; name=\"%s\"\r\nContent-Disposition: attachment; filename=\"%s\"\r\nContent-Transfer-Encoding: base64\r\n\r\n", boundary, ctype, file, file)
	enc := base64.StdEncoding.EncodeToString(body)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n--" + boundary + "--\r\n")
	return []byte(b.String())
}

// mbox joins messages into an mboxrd file.
func mbox(msgs ...[]byte) []byte {
	var b bytes.Buffer
	for _, m := range msgs {
		fmt.Fprintf(&b, "From MAILER-DAEMON %s\n", fixtureTime.Format("Mon Jan _2 15:04:05 2006"))
		for _, l := range strings.SplitAfter(strings.ReplaceAll(string(m), "\r\n", "\n"), "\n") {
			if strings.HasPrefix(strings.TrimLeft(l, ">"), "From ") {
				b.WriteString(">")
			}
			b.WriteString(l)
		}
		b.WriteString("\n")
	}
	return b.Bytes()
}

const (
	googleZip = "google.com!example.com!1761955200!1762041599.zip"
	msGz      = "enterprise.protection.outlook.com!example.com!1761955200!1762041600.xml.gz"
	tlsGz     = "google.com!example.com!1761955200!1762041599!001.json.gz"
)

func packedFixtures(t testing.TB) map[string][]byte {
	t.Helper()
	google := zipOf(t, strings.TrimSuffix(googleZip, ".zip")+".xml", readFixture(t, "dmarc/google.xml"))
	ms := gz(t, strings.TrimSuffix(msGz, ".gz"), readFixture(t, "dmarc/microsoft.xml"))
	yahoo := gz(t, "yahoo.com!example.com!1762041600!1762127999.xml", readFixture(t, "dmarc/yahoo.xml"))
	msMsg := mailWith("dmarcreport@microsoft.com", "Report Domain: example.com Submitter: enterprise.protection.outlook.com Report-ID: <7e1a2c4b9f3d4e0a8c6b5d2f1e0a9b8c>", "", "application/gzip", msGz, ms)
	welcome := []byte("From: postmaster@example.com\r\nTo: dmarc-reports@example.com\r\nSubject: reports go here\r\n\r\nFrom now on this mailbox gets the DMARC reports.\r\n")
	mailru := mailWith("dmarc_support@corp.mail.ru", "Report Domain: example.net Submitter: Mail.Ru", "", "text/xml", "mail.ru!example.net!1761955200!1762041600.xml", readFixture(t, "dmarc/mailru-overrides.xml"))
	tlsMsg := mailWith("tlsrpt-noreply@microsoft.com", "Report Domain: example.com Submitter: microsoft.com Report-ID: <133432992000000000+example.com>", "tlsrpt", "application/tlsrpt+gzip",
		"microsoft.com!example.com!1761955200!1762041599.json.gz", gz(t, "", readFixture(t, "tlsrpt/microsoft.json")))
	return map[string][]byte{
		"dmarc/" + googleZip: google,
		"dmarc/" + msGz:      ms,
		"dmarc/google-report.eml": mailWith("noreply-dmarc-support@google.com", "Report domain: example.com Submitter: google.com Report-ID: 9847061256138294710",
			"", "application/zip", googleZip, google),
		"dmarc/reports.mbox": mbox(msMsg, welcome, mailru),
		"dmarc/Maildir/new/1762128000.M17P4242.mx.example.com": mailWith("dmarchelp@yahooinc.com", "Report Domain: example.com Submitter: Yahoo", "", "application/gzip",
			"yahoo.com!example.com!1762041600!1762127999.xml.gz", yahoo),
		"dmarc/Maildir/cur/.gitkeep":  nil,
		"dmarc/Maildir/tmp/.gitkeep":  nil,
		"tlsrpt/" + tlsGz:             gz(t, strings.TrimSuffix(tlsGz, ".gz"), readFixture(t, "tlsrpt/google.json")),
		"tlsrpt/microsoft-tlsrpt.eml": tlsMsg,
	}
}

func TestPackedFixturesUpToDate(t *testing.T) {
	for name, want := range packedFixtures(t) {
		p := filepath.Join("testdata", "packed", name)
		if *update {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is not what the plain fixtures pack to (%v): run go test ./cmd/inkan/reportcmd -run TestPackedFixtures -update", p, err)
		}
	}
}
