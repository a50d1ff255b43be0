package inbound_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/relay/inbound"
	"github.com/inkan-relay/inkan/test/dkimpy"
)

// corpusMsg is one awkward but legal message, as the client writes it
// (before dot-stuffing).
type corpusMsg struct {
	name string
	data string
	utf8 bool     // MAIL FROM ... SMTPUTF8
	rcpt string   // default rcpt@example.net
	want []string // what the queued copy must contain (repairs, additions)
}

// corpusHeader is a From and a To for messages that need nothing special.
const corpusHeader = "From: Alice <alice@example.com>\r\nTo: Bob <rcpt@example.net>\r\n"

func utf8Line(n int) string {
	// "é" and "日" are 2 and 3 octets: a line of n octets of UTF-8 text.
	var b strings.Builder
	for b.Len() < n-3 {
		b.WriteString(" é日")
	}
	for b.Len() < n {
		b.WriteByte('x')
	}
	return b.String()
}

var signingCorpus = []corpusMsg{
	{name: "plain", data: corpusHeader + "Subject: plain\r\n\r\nHello.\r\n"},
	{name: "long header line (998 octets)", data: corpusHeader + "Subject: " + strings.Repeat("long ", 197) + "end\r\n\r\nbody\r\n"},
	{name: "folded headers", data: corpusHeader + "Subject: folded\r\n over\r\n\tthree lines   \r\n" +
		"References: <a@example.com>\r\n <b@example.com>\r\n\t<c@example.com>\r\n" +
		"Cc: one@example.net,\r\n  two@example.net,\r\n\tthree@example.net\r\n\r\nbody\r\n"},
	{name: "long folded References", data: corpusHeader + "Subject: refs\r\nReferences:" +
		strings.Repeat("\r\n <0123456789abcdef0123456789abcdef@mail.example.com>", 60) + "\r\n\r\nbody\r\n"},
	{name: "duplicate headers", data: corpusHeader + "Subject: dup\r\nComments: one\r\nComments: two\r\nKeywords: a\r\nKeywords: b\r\n" +
		"X-Dup: 1\r\nX-Dup: 2\r\nX-Dup: 3\r\nReceived: from a by b; Mon, 2 Jun 2025 10:00:00 +0000\r\n" +
		"Received: from c by d; Mon, 2 Jun 2025 10:00:01 +0000\r\n\r\nbody\r\n"},
	{name: "empty header values", data: corpusHeader + "Subject:\r\nX-Empty:\r\nX-Spaces:    \r\n\r\nbody\r\n"},
	{name: "lower-case field names", data: "from: alice@example.com\r\nto: rcpt@example.net\r\nsubject: lower\r\n\r\nbody\r\n"},
	{name: "no From: added from the envelope", data: "To: rcpt@example.net\r\nSubject: no from\r\n\r\nbody\r\n", want: []string{"From: alice@example.com\r\n"}},
	{name: "empty message: From, Date and Message-ID added", data: "", want: []string{"From: alice@example.com\r\n"}},
	{name: "empty body", data: corpusHeader + "Subject: empty body\r\n\r\n"},
	{name: "header only, no blank line", data: corpusHeader + "Subject: header only\r\n"},
	{name: "body without final CRLF", data: corpusHeader + "Subject: no final CRLF\r\n\r\nfirst line\r\nlast line", want: []string{"last line\r\n"}},
	{name: "trailing blank lines and white space", data: corpusHeader + "Subject: ws \t \r\n\r\n  indented\r\ntrailing   \r\n\t\r\n \r\n\r\n\r\n"},
	{name: "dot-stuffing", data: corpusHeader + "Subject: dots\r\n\r\n.\r\n..\r\n.leading dot\r\n...three\r\n. \r\nend\r\n.", want: []string{"\r\n.\r\n..\r\n.leading dot\r\n"}},
	{name: "8BITMIME body", data: corpusHeader + "Subject: 8bit\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\n" +
		"Content-Transfer-Encoding: 8bit\r\n\r\nGr\xfc\xdfe aus K\xf6ln, \xe7a va ?\r\n\xff\xfe\x80\x81\r\n"},
	{name: "SMTPUTF8 header and body", utf8: true, rcpt: "bøb@exämple.net",
		data: "From: Ålice Ëxample <alice@example.com>\r\nTo: Bøb <bøb@exämple.net>\r\nSubject: Grüße, 日本語の件名\r\n" +
			"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nこんにちは\r\n"},
	{name: "SMTPUTF8 very long lines", utf8: true,
		data: corpusHeader + "Subject: " + utf8Line(980) + "\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" +
			utf8Line(998) + "\r\n" + utf8Line(997) + "\r\n" + utf8Line(998)},
	{name: "nested MIME", data: corpusHeader + "Subject: nested\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\npreamble\r\n--outer\r\n" +
		"Content-Type: multipart/alternative; boundary=\"inner\"\r\n\r\n--inner\r\nContent-Type: text/plain\r\n\r\ntext part\r\n" +
		"--inner\r\nContent-Type: text/html\r\n\r\n<p>html part</p>\r\n--inner--\r\n\r\n--outer\r\n" +
		"Content-Type: message/rfc822\r\n\r\nFrom: x@example.org\r\nSubject: inner message\r\n\r\n.inner body\r\n\r\n--outer\r\n" +
		"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0, 1, 2, 255, '\r', '\n', '.'}, 100)) + "\r\n--outer--\r\nepilogue\r\n"},
	{name: "C0 controls and DEL in the body", data: corpusHeader + "Subject: controls\r\n\r\nbell\x07 esc\x1b[31m vt\x0b ff\x0c del\x7f x\x01\x02\x1f\r\n\x0c\r\n"},
	{name: "C0 controls in header values (obs-utext)", data: corpusHeader + "Subject: ctl\x01\x1b[0m\x7f\r\nX-Ctl: \x0b\x0c\x1f\r\n\r\nbody\r\n"},
	{name: "bare LF line ends (repaired)", data: "From: alice@example.com\nTo: rcpt@example.net\nSubject: bare LF\n\nline one\nline two\n",
		want: []string{"Subject: bare LF\r\n\r\nline one\r\nline two\r\n"}},
	{name: "bare CR in the body (repaired)", data: corpusHeader + "Subject: bare CR\r\n\r\nold\rmac\rline\r\n", want: []string{"old\r\nmac\r\nline\r\n"}},
	{name: "signed upstream already", data: "DKIM-Signature: v=1; a=rsa-sha256; d=upstream.example; s=x; h=From; bh=AAAA; b=AAAA\r\n" + corpusHeader + "Subject: upstream\r\n\r\nbody\r\n"},
}

// TestSigningCorpus sends awkward but legal messages through the real
// listeners (the relay port, 465 with AUTH, 587 with STARTTLS and AUTH),
// with DATA and with BDAT chunks, and verifies every queued copy with
// three independent verifiers: go-msgauth, dkimpy and opendkim -t. Every
// message must be accepted and every inkan signature on it (Ed25519 and
// RSA) must verify with all three (issue 20: never a signature a verifier
// rejects).
func TestSigningCorpus(t *testing.T) {
	e, records := corpusEnv(t)
	dir := t.TempDir()
	type copyOf struct{ name, file string }
	var copies []copyOf
	ways := corpusWays(t, e)
	for _, m := range signingCorpus {
		for _, w := range ways {
			name := m.name + " / " + w.name
			id, err := w.send(m)
			if err != nil {
				t.Errorf("%s: refused: %v", name, err)
				continue
			}
			b := e.body(id)
			for _, s := range m.want {
				if !bytes.Contains(b, []byte(s)) {
					t.Errorf("%s: queued copy lacks %q:\n%q", name, s, b)
				}
			}
			if n := len(inkanSigs(b)); n != 2 {
				t.Errorf("%s: %d inkan signatures, want ed1 and rsa1", name, n)
			}
			vs, err := dkim.VerifyWithOptions(bytes.NewReader(b), &dkim.VerifyOptions{LookupTXT: func(d string) ([]string, error) {
				if r, ok := records[d]; ok {
					return []string{r}, nil
				}
				return nil, fmt.Errorf("no record for %s", d)
			}})
			if err != nil {
				t.Errorf("%s: go-msgauth cannot read the message: %v\n%q", name, err, b)
			}
			passed := 0
			for _, v := range vs {
				if v.Domain != "example.com" {
					continue
				}
				if v.Err != nil {
					t.Errorf("%s: go-msgauth: d=%s: %v", name, v.Domain, v.Err)
				} else {
					passed++
				}
			}
			if err == nil && passed != 2 {
				t.Errorf("%s: go-msgauth verified %d inkan signatures, want 2", name, passed)
			}
			f := filepath.Join(dir, fmt.Sprintf("copy%03d.eml", len(copies)))
			if err := os.WriteFile(f, b, 0o600); err != nil {
				t.Fatal(err)
			}
			copies = append(copies, copyOf{name, f})
		}
	}
	files := make([]string, len(copies))
	for i, c := range copies {
		files[i] = c.file
	}
	py := dkimpyVerify(t, files, records)
	od := opendkimVerify(t, dir, files, records)
	for i, c := range copies {
		for _, sel := range []string{"ed1", "rsa1"} {
			if py != nil && py[i][sel] != "pass" {
				t.Errorf("%s: dkimpy: s=%s: %s", c.name, sel, orNone(py[i][sel]))
			}
			if od != nil && od[i][sel] != "pass" {
				t.Errorf("%s: opendkim: s=%s: %s", c.name, sel, orNone(od[i][sel]))
			}
		}
	}
	t.Logf("%d messages x %d ways: %d queued copies, each inkan signature checked by go-msgauth, dkimpy (%v) and opendkim -t (%v)",
		len(signingCorpus), len(ways), len(copies), py != nil, od != nil)
}

func orNone(s string) string {
	if s == "" {
		return "no result"
	}
	return s
}

// corpusEnv is start() with a second key for example.com, RSA rsa1 beside
// Ed25519 ed1, so every message carries both algorithms.
func corpusEnv(t *testing.T) (*env, map[string]string) {
	t.Helper()
	records := map[string]string{}
	e := start(t, func(cfg *config.Config) {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		der, _ := x509.MarshalPKCS8PrivateKey(k)
		keyFile := filepath.Join(cfg.DataDir, "example.com.rsa1.key")
		if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		pub, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
		cfg.DKIM.Keys = append(cfg.DKIM.Keys, config.DKIMKey{Domain: "example.com", Selector: "rsa1", KeyFile: keyFile})
		records["rsa1._domainkey.example.com"] = "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(pub)
	})
	records["ed1._domainkey.example.com"] = e.dkimPub
	return e, records
}

// inkanSigs returns the DKIM-Signature fields inkan added (d=example.com,
// which go-msgauth folds after d=).
func inkanSigs(b []byte) [][]byte {
	hdr, _, _ := bytes.Cut(b, []byte("\r\n\r\n"))
	var out [][]byte
	for _, f := range regexp.MustCompile(`(?m)^DKIM-Signature:(?:[^\r]|\r\n[ \t])*`).FindAll(hdr, -1) {
		if bytes.Contains(bytes.ReplaceAll(f, []byte("\r\n"), nil), []byte("d=example.com;")) {
			out = append(out, f)
		}
	}
	return out
}

// corpusWay is one way of submitting a message.
type corpusWay struct {
	name string
	send func(m corpusMsg) (id string, err error)
}

func corpusWays(t *testing.T, e *env) []corpusWay {
	relay := e.dial(inbound.KindRelay, "127.0.0.2")
	smtps := e.dial(inbound.KindSMTPS, "127.0.0.1")
	if err := smtps.Auth(sasl.NewPlainClient("", "alice", testPassword)); err != nil {
		t.Fatal(err)
	}
	sub := e.dialStartTLS("127.0.0.1")
	if err := sub.Auth(sasl.NewPlainClient("", "alice", testPassword)); err != nil {
		t.Fatal(err)
	}
	rawRelay := rawConn(t, e, inbound.KindRelay, "127.0.0.2")
	rawSMTPS := rawConn(t, e, inbound.KindSMTPS, "127.0.0.1")
	rawAuth(t, rawSMTPS)
	viaData := func(c *smtp.Client) func(corpusMsg) (string, error) {
		return func(m corpusMsg) (string, error) {
			c.Reset()
			opts := &smtp.MailOptions{Body: smtp.Body8BitMIME, UTF8: m.utf8}
			if err := c.Mail("alice@example.com", opts); err != nil {
				return "", err
			}
			if err := c.Rcpt(rcptOf(m), nil); err != nil {
				return "", err
			}
			w, err := c.Data()
			if err != nil {
				return "", err
			}
			io.WriteString(w, m.data)
			resp, err := w.CloseWithResponse()
			if err != nil {
				return "", err
			}
			return queuedID(t, resp.StatusText), nil
		}
	}
	viaBDAT := func(c *textproto.Conn) func(corpusMsg) (string, error) {
		return func(m corpusMsg) (string, error) { return bdat(c, m) }
	}
	return []corpusWay{
		{"relay port, DATA", viaData(relay)},
		{"465 AUTH, DATA", viaData(smtps)},
		{"587 STARTTLS AUTH, DATA", viaData(sub)},
		{"relay port, BDAT chunks", viaBDAT(rawRelay)},
		{"465 AUTH, BDAT chunks", viaBDAT(rawSMTPS)},
	}
}

func rcptOf(m corpusMsg) string {
	if m.rcpt != "" {
		return m.rcpt
	}
	return "rcpt@example.net"
}

// rawConn is an SMTP connection for raw commands, after EHLO.
func rawConn(t *testing.T, e *env, kind inbound.Kind, from string) *textproto.Conn {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", e.addr(kind))
	if err != nil {
		t.Fatal(err)
	}
	if kind == inbound.KindSMTPS {
		conn = tls.Client(conn, clientTLS)
	}
	conn.SetDeadline(time.Now().Add(2 * time.Minute))
	c := textproto.NewConn(conn)
	t.Cleanup(func() { c.Close() })
	if _, _, err := c.ReadResponse(220); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := rawCmd(c, 250, "EHLO client.test"); err != nil || !strings.Contains(msg, "CHUNKING") {
		t.Fatalf("EHLO: %q %v", msg, err)
	}
	return c
}

func rawAuth(t *testing.T, c *textproto.Conn) {
	t.Helper()
	cred := base64.StdEncoding.EncodeToString([]byte("\x00alice\x00" + testPassword))
	if _, _, err := rawCmd(c, 235, "AUTH PLAIN %s", cred); err != nil {
		t.Fatal(err)
	}
}

func rawCmd(c *textproto.Conn, want int, format string, args ...any) (int, string, error) {
	id, err := c.Cmd(format, args...)
	if err != nil {
		return 0, "", err
	}
	c.StartResponse(id)
	defer c.EndResponse(id)
	return c.ReadResponse(want)
}

// bdat sends m with BDAT in uneven chunks that split line ends (RFC 3030:
// no dot-stuffing, the bytes as they are), sometimes ending with an empty
// "BDAT 0 LAST".
func bdat(c *textproto.Conn, m corpusMsg) (string, error) {
	if _, _, err := rawCmd(c, 250, "RSET"); err != nil {
		return "", err
	}
	mail := "MAIL FROM:<alice@example.com> BODY=8BITMIME"
	if m.utf8 {
		mail += " SMTPUTF8"
	}
	if _, _, err := rawCmd(c, 250, "%s", mail); err != nil {
		return "", err
	}
	if _, _, err := rawCmd(c, 250, "RCPT TO:<%s>", rcptOf(m)); err != nil {
		return "", err
	}
	data := []byte(m.data)
	sizes := []int{1, 2, 7, 64, 511}
	emptyLast := len(data)%2 == 0
	var msg string
	for i := 0; ; i++ {
		n := len(data)
		if i < len(sizes) && sizes[i] < n {
			n = sizes[i]
		}
		last := n == len(data) && !emptyLast
		cmd := fmt.Sprintf("BDAT %d", n)
		if last {
			cmd += " LAST"
		}
		if err := c.PrintfLine("%s", cmd); err != nil {
			return "", err
		}
		if _, err := c.W.Write(data[:n]); err != nil {
			return "", err
		}
		if err := c.W.Flush(); err != nil {
			return "", err
		}
		var err error
		if _, msg, err = c.ReadResponse(250); err != nil {
			return "", err
		}
		data = data[n:]
		if last {
			break
		}
		if len(data) == 0 {
			if err := c.PrintfLine("BDAT 0 LAST"); err != nil {
				return "", err
			}
			if _, msg, err = c.ReadResponse(250); err != nil {
				return "", err
			}
			break
		}
	}
	i := strings.Index(msg, "queued as ")
	if i < 0 {
		return "", fmt.Errorf("BDAT LAST reply %q has no queue ID", msg)
	}
	return strings.TrimSpace(msg[i+len("queued as "):]), nil
}

// needTool skips the verifier it names when missing, unless CI is set.
func needTool(t *testing.T, what string, ok bool) bool {
	t.Helper()
	if ok {
		return true
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is required in CI (.ci/install-deps.sh installs it)", what)
	}
	t.Logf("%s not installed: that verifier is skipped", what)
	return false
}

// dkimpyVerify verifies every DKIM-Signature of each file with dkimpy
// (Debian's python3-dkim), in one process, and returns per file the result
// by selector of d=example.com ("pass" or the failure); nil when dkimpy is
// missing.
func dkimpyVerify(t *testing.T, files []string, records map[string]string) []map[string]string {
	t.Helper()
	if !dkimpy.Available(t) {
		return nil
	}
	all, err := dkimpy.Verify(records, files)
	if err != nil {
		t.Fatal(err)
	}
	res := make([]map[string]string, len(files))
	for i, sigs := range all {
		res[i] = map[string]string{}
		for _, r := range sigs {
			if r.Domain != "example.com" {
				continue
			}
			if r.Pass {
				res[i][r.Selector] = "pass"
			} else {
				res[i][r.Selector] = r.Why
			}
		}
	}
	return res
}

var odkResult = regexp.MustCompile(`dkim=(\w+)[^;]*?header\.d=(\S+)[^;]*?header\.s=([^\s;]+)`)

// opendkimVerify runs opendkim -t (verifying, keys from TestDNSData) on
// each file and returns per file the dkim= result by selector of
// d=example.com; nil when opendkim is missing.
func opendkimVerify(t *testing.T, dir string, files []string, records map[string]string) []map[string]string {
	t.Helper()
	bin, err := exec.LookPath("opendkim")
	if err != nil {
		bin, err = exec.LookPath("/usr/sbin/opendkim")
	}
	if !needTool(t, "opendkim", err == nil) {
		return nil
	}
	var dns strings.Builder
	for k, v := range records {
		fmt.Fprintf(&dns, "%s %s\n", k, v)
	}
	dnsFile := filepath.Join(dir, "dns")
	conf := filepath.Join(dir, "opendkim-verify.conf")
	os.WriteFile(dnsFile, []byte(dns.String()), 0o600)
	os.WriteFile(conf, []byte("Mode v\nSyslog no\nTestDNSData file:"+dnsFile+"\nMaximumSignaturesToVerify 10\n"), 0o600)
	res := make([]map[string]string, len(files))
	for i, f := range files {
		res[i] = map[string]string{}
		out, err := exec.Command(bin, "-x", conf, "-vv", "-t", f).CombinedOutput()
		if err != nil {
			res[i]["ed1"] = fmt.Sprintf("opendkim failed: %v: %s", err, out)
			res[i]["rsa1"] = res[i]["ed1"]
			continue
		}
		for _, m := range odkResult.FindAllStringSubmatch(string(out), -1) {
			if m[2] == "example.com" {
				res[i][m[3]] = m[1]
			}
		}
	}
	return res
}
