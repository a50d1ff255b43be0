package main_test

// Black-box tests: build the real binary, run it with a config file, talk
// SMTP to it over loopback, and receive its deliveries in an in-process sink.

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/inkan-relay/inkan/test/freeport"
)

var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "inkan-e2e")
	if err != nil {
		panic(err)
	}
	binPath = filepath.Join(dir, "inkan")
	out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build inkan: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a loopback port no other call in this test binary got.
func freePort(t *testing.T) int {
	t.Helper()
	port, err := freeport.Get()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// sink is an SMTP server that records what it receives.
type sink struct {
	mu   sync.Mutex
	msgs []sunk
	addr string
	srv  *smtp.Server
}

type sunk struct {
	from string
	to   []string
	data []byte
}

type sinkSession struct {
	s   *sink
	cur sunk
}

func (ss *sinkSession) Reset()                                      { ss.cur = sunk{} }
func (ss *sinkSession) Logout() error                               { return nil }
func (ss *sinkSession) Mail(from string, _ *smtp.MailOptions) error { ss.cur.from = from; return nil }
func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.cur.to = append(ss.cur.to, to)
	return nil
}
func (ss *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.cur.data = b
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, ss.cur)
	ss.s.mu.Unlock()
	return nil
}

func startSink(t *testing.T) *sink {
	t.Helper()
	s := &sink{}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &sinkSession{s: s}, nil }))
	s.srv.Domain = "sink.test"
	s.srv.AllowInsecureAuth = true
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	go s.srv.Serve(l)
	t.Cleanup(func() { s.srv.Close() })
	return s
}

func (s *sink) wait(t *testing.T, n int) []sunk {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		if len(s.msgs) >= n {
			out := append([]sunk(nil), s.msgs...)
			s.mu.Unlock()
			return out
		}
		s.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("sink got %d messages, want %d", len(s.msgs), n)
	return nil
}

// inkan is a running inkan process.
type inkan struct {
	t       *testing.T
	cmd     *exec.Cmd
	dir     string
	cfgPath string
	relay   string
	sub     string
	smtps   string
	http    string
	logs    *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// startInkan writes a config (extra YAML appended to the basics) and runs
// `inkan serve` until the test ends.
func startInkan(t *testing.T, sinkAddr, extra string) *inkan {
	t.Helper()
	dir := t.TempDir()
	in := &inkan{t: t, dir: dir, logs: &syncBuffer{},
		relay: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		sub:   fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		smtps: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		http:  fmt.Sprintf("127.0.0.1:%d", freePort(t)),
	}
	cfg := fmt.Sprintf(`hostname: relay.test.example
data_dir: %s
listen:
  smtps: "%s"
  submission: "%s"
  relay: "%s"
  http: "%s"
http:
  metrics: true
  autoconfig: true
  autoconfig_imap: "imap.example.com:993"
  autoconfig_submission_port: 587
auth:
  trusted_networks: [127.0.0.0/8]
delivery:
  resolver: "127.0.0.1:9"   # never the machine's resolver: tests stay on loopback
  transport:
    example.net: "[127.0.0.1]:%s"
queue:
  retry_min: 1s
  retry_max: 2s
`, dir, in.smtps, in.sub, in.relay, in.http, portOf(sinkAddr)) + extra
	in.cfgPath = filepath.Join(dir, "inkan.yaml")
	if err := os.WriteFile(in.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	in.start()
	return in
}

func portOf(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

func (in *inkan) start() {
	in.t.Helper()
	in.cmd = exec.Command(binPath, "serve", "-config", in.cfgPath, "-quiet")
	in.cmd.Stdout = in.logs
	in.cmd.Stderr = in.logs
	if err := in.cmd.Start(); err != nil {
		in.t.Fatal(err)
	}
	in.t.Cleanup(in.stop)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + in.http + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	in.t.Fatalf("inkan did not become ready; logs:\n%s", in.logs.String())
}

func (in *inkan) stop() {
	if in.cmd == nil || in.cmd.Process == nil || in.cmd.ProcessState != nil {
		return
	}
	in.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { in.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		in.cmd.Process.Kill()
		<-done
	}
	if in.t.Failed() {
		in.t.Logf("inkan logs:\n%s", in.logs.String())
	}
}

// run runs an inkan subcommand against this instance's config.
func (in *inkan) run(stdin string, args ...string) (string, error) {
	cmd := exec.Command(binPath, args...)
	cmd.Env = append(os.Environ(), "INKAN_CONFIG="+in.cfgPath)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func sendRaw(t *testing.T, addr, from string, to []string, body string) string {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("e2e.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail(from, nil); err != nil {
		t.Fatal(err)
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			t.Fatal(err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, body)
	resp, err := w.CloseWithResponse()
	if err != nil {
		t.Fatal(err)
	}
	c.Quit()
	return resp.StatusText
}

func metric(t *testing.T, httpAddr, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), name+" ") || strings.HasPrefix(sc.Text(), name+"{") {
			return sc.Text()
		}
	}
	return ""
}

func TestEndToEndDeliveryAndMetrics(t *testing.T) {
	s := startSink(t)
	in := startInkan(t, s.addr, "")
	before := metric(t, in.http, "inkan_messages_accepted_total")
	reply := sendRaw(t, in.relay, "cron@example.com", []string{"admin@example.net"},
		"From: cron@example.com\r\nTo: admin@example.net\r\nSubject: e2e\r\n\r\nhello\r\n")
	if !strings.Contains(reply, "queued as") {
		t.Fatalf("reply %q", reply)
	}
	got := s.wait(t, 1)
	if got[0].from != "cron@example.com" || got[0].to[0] != "admin@example.net" || !bytes.Contains(got[0].data, []byte("\r\n\r\nhello\r\n")) {
		t.Fatalf("sink got %+v", got[0])
	}
	after := metric(t, in.http, "inkan_messages_accepted_total")
	if after == "" || after == before {
		t.Fatalf("accepted counter did not move: %q -> %q", before, after)
	}
	if m := metric(t, in.http, `inkan_deliveries_total`); m == "" {
		t.Errorf("no inkan_deliveries_total metric")
	}
}

func TestReadyzUnreadyWhenSpoolUnwritable(t *testing.T) {
	s := startSink(t)
	in := startInkan(t, s.addr, "")
	q := filepath.Join(in.dir, "queue")
	// Root ignores permission bits, so replace the directory by a file.
	if err := os.Rename(q, q+".away"); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(q, []byte("not a directory"), 0o600)
	resp, err := http.Get("http://" + in.http + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(body), "spool") {
		t.Fatalf("readyz = %d %q, want 503 naming the spool", resp.StatusCode, body)
	}
	os.Remove(q)
	os.Rename(q+".away", q)
	if resp, err := http.Get("http://" + in.http + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v", err)
	}
}

func TestReloadUnderLiveConnections(t *testing.T) {
	s := startSink(t)
	in := startInkan(t, s.addr, "")
	c, err := smtp.Dial(in.relay)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("live.test"); err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(in.cfgPath)
	// Bad config: refused, old config keeps running.
	os.WriteFile(in.cfgPath, append(append([]byte(nil), good...), []byte("bogus_key: 1\n")...), 0o600)
	in.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, in, "reload refused")
	// Good config again (with a change): applied.
	os.WriteFile(in.cfgPath, bytes.Replace(good, []byte("retry_max: 2s"), []byte("retry_max: 3s"), 1), 0o600)
	in.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, in, "reloaded")
	// The connection opened before both reloads still works.
	if err := c.Mail("live@example.com", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("a@example.net", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "Subject: live\r\n\r\nstill here\r\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	s.wait(t, 1)
}

func waitLog(t *testing.T, in *inkan, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(in.logs.String(), what) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("log never said %q:\n%s", what, in.logs.String())
}

func TestSendmailLikeCronAndPHP(t *testing.T) {
	s := startSink(t)
	in := startInkan(t, s.addr, "")
	// cron: sendmail -FCronDaemon -i -B8BITMIME -oem root  (recipients as args)
	out, err := in.run("Subject: cron job\nTo: root\n\nfinished\n", "sendmail", "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "ops@example.net")
	if err != nil {
		t.Fatalf("cron-style sendmail: %v\n%s", err, out)
	}
	// PHP mail(): sendmail -t -i, recipients from the headers, Bcc removed.
	out, err = in.run("To: a@example.net\nBcc: hidden@example.net\nSubject: php\n\nbody\n.\nafter dot\n", "sendmail", "-t", "-i", "-f", "www@example.com")
	if err != nil {
		t.Fatalf("php-style sendmail: %v\n%s", err, out)
	}
	got := s.wait(t, 2)
	var php sunk
	for _, m := range got {
		if bytes.Contains(m.data, []byte("Subject: php")) {
			php = m
		}
	}
	if php.from != "www@example.com" || len(php.to) != 2 || bytes.Contains(php.data, []byte("Bcc:")) || !bytes.Contains(php.data, []byte("after dot")) {
		t.Fatalf("php message: from %q to %v\n%s", php.from, php.to, php.data)
	}
	// No recipients: a fatal error, exit 75 as Postfix's sendmail.
	_, err = in.run("Subject: x\n\n", "sendmail")
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 75 {
		t.Fatalf("no recipients: %v, want exit 75", err)
	}
}

func TestAutoconfig(t *testing.T) {
	s := startSink(t)
	in := startInkan(t, s.addr, "")
	for _, path := range []string{"/.well-known/autoconfig/mail/config-v1.1.xml", "/mail/config-v1.1.xml"} {
		resp, err := http.Get("http://" + in.http + path + "?emailaddress=alice%40example.com")
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Provider struct {
				Domain   []string `xml:"domain"`
				Incoming []struct {
					Type     string `xml:"type,attr"`
					Hostname string `xml:"hostname"`
					Port     int    `xml:"port"`
					Socket   string `xml:"socketType"`
				} `xml:"incomingServer"`
				Outgoing []struct {
					Hostname string `xml:"hostname"`
					Port     int    `xml:"port"`
					Socket   string `xml:"socketType"`
					Auth     string `xml:"authentication"`
				} `xml:"outgoingServer"`
			} `xml:"emailProvider"`
		}
		err = xml.NewDecoder(resp.Body).Decode(&doc)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		p := doc.Provider
		if len(p.Domain) != 1 || p.Domain[0] != "example.com" || len(p.Incoming) != 1 || p.Incoming[0].Port != 993 ||
			len(p.Outgoing) != 2 || p.Outgoing[0].Socket != "SSL" || p.Outgoing[1].Port != 587 || p.Outgoing[1].Socket != "STARTTLS" ||
			p.Outgoing[0].Hostname != "relay.test.example" || p.Outgoing[0].Auth != "password-cleartext" {
			t.Fatalf("%s: unexpected document %+v", path, p)
		}
	}
}
