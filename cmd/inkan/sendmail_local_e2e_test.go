package main_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// startLocalInkan runs inkan with its data directory where other users can
// reach it (the local socket and the maildrop are inside), on the default
// listen.local and queue.maildrop.
func startLocalInkan(t *testing.T, sinkAddr, extra string) *inkan {
	t.Helper()
	base, err := os.MkdirTemp("", "inkan-local")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	dir := filepath.Join(base, "data")
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
auth:
  trusted_networks: [127.0.0.0/8]
delivery:
  resolver: "127.0.0.1:9"
  transport:
    example.net: "[127.0.0.1]:%s"
queue:
  retry_min: 1s
  retry_max: 2s
`, dir, in.smtps, in.sub, in.relay, in.http, portOf(sinkAddr)) + extra
	in.cfgPath = filepath.Join(base, "inkan.yaml")
	if err := os.WriteFile(in.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	in.start()
	return in
}

// sendmailAs runs `inkan sendmail ARGS` as uid (0: this process's user)
// with the instance's config, and returns its output and exit code.
func (in *inkan) sendmailAs(uid int, stdin string, args ...string) (string, int) {
	in.t.Helper()
	var cmd *exec.Cmd
	env := []string{"INKAN_CONFIG=" + in.cfgPath}
	if uid == 0 {
		cmd = exec.Command(binPath, append([]string{"sendmail"}, args...)...)
		cmd.Env = append(os.Environ(), env...)
	} else {
		cmd = asUser(in.t, uid, env, append([]string{"sendmail"}, args...)...)
	}
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		in.t.Fatal(err)
	}
	return string(out), code
}

func bySubject(t *testing.T, msgs []sunk, subject string) sunk {
	t.Helper()
	for _, m := range msgs {
		if bytes.Contains(m.data, []byte("Subject: "+subject+"\r\n")) {
			return m
		}
	}
	t.Fatalf("no message with Subject %q among %d", subject, len(msgs))
	return sunk{}
}

// Local identity: the uid on the local socket is the sender's identity. It
// is written into Received as Postfix writes it; root may use any sender;
// another user only its own name at the host, in MAIL FROM and in From.
func TestSendmailLocalIdentity(t *testing.T) {
	needRoot(t)
	s := startSink(t)
	in := startLocalInkan(t, s.addr, "")

	if out, code := in.sendmailAs(0, "Subject: as-root\n\nhello\n", "-f", "anyone@example.org", "ops@example.net"); code != 0 {
		t.Fatalf("root with -f: exit %d\n%s", code, out)
	}
	if out, code := in.sendmailAs(nobody, "Subject: as-nobody\n\nhello\n", "ops@example.net"); code != 0 {
		t.Fatalf("nobody without -f: exit %d\n%s", code, out)
	}
	// Refused: another user's address, in -f or in the header.
	out, code := in.sendmailAs(nobody, "Subject: forged\n\nhello\n", "-f", "root@relay.test.example", "ops@example.net")
	if code != 77 || !strings.Contains(out, "may not send as <root@relay.test.example>") || !strings.Contains(out, "nobody@test.example") {
		t.Errorf("nobody with -f root@: exit %d, want 77 naming what nobody may use:\n%s", code, out)
	}
	out, code = in.sendmailAs(nobody, "From: CEO <ceo@example.com>\nTo: ops@example.net\nSubject: forged-from\n\nhello\n", "-t")
	if code != 77 || !strings.Contains(out, "ceo@example.com") {
		t.Errorf("nobody with From: ceo@: exit %d, want 77:\n%s", code, out)
	}

	got := s.wait(t, 2)
	time.Sleep(300 * time.Millisecond) // a forged message would arrive by now
	if n := len(s.msgs); n != 2 {
		t.Errorf("sink got %d messages, want the 2 allowed ones", n)
	}
	root := bySubject(t, got, "as-root")
	if root.from != "anyone@example.org" || !bytes.Contains(root.data, []byte("(inkan, from userid 0)")) {
		t.Errorf("root's message: from %q\n%s", root.from, root.data)
	}
	nb := bySubject(t, got, "as-nobody")
	// Without -f: the user at the origin domain (here hostname's domain).
	if nb.from != "nobody@test.example" || !bytes.Contains(nb.data, []byte("(inkan, from userid 65534)")) ||
		!bytes.Contains(nb.data, []byte("From: ")) {
		t.Errorf("nobody's message: from %q\n%s", nb.from, nb.data)
	}
	if !strings.Contains(in.logs.String(), "uid=65534") {
		t.Errorf("the log does not name the submitting uid:\n%s", in.logs.String())
	}
}

// Cron with the relay down: sendmail leaves the message in the maildrop and
// exits 0; the server sends it when it runs again, as the user who wrote
// it. Other users can neither list, read nor delete the dropped files.
func TestSendmailMaildropWhileServerDown(t *testing.T) {
	needRoot(t)
	s := startSink(t)
	in := startLocalInkan(t, s.addr, "")
	in.stop()
	in.cmd = nil

	cron := "Subject: cron-nobody\nTo: ops@example.net\n\njob done\n"
	if out, code := in.sendmailAs(nobody, cron, "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "ops@example.net"); code != 0 {
		t.Fatalf("nobody, server down: exit %d, want 0 (maildrop)\n%s", code, out)
	}
	if out, code := in.sendmailAs(0, "Subject: cron-root\nBcc: hidden@example.net\n\njob done\n", "-i", "ops@example.net"); code != 0 {
		t.Fatalf("root, server down: exit %d, want 0 (maildrop)\n%s", code, out)
	}
	// The policy still applies, now: nothing is dropped that pickup would refuse.
	if out, code := in.sendmailAs(nobody, "Subject: forged\n\n", "-f", "root@relay.test.example", "ops@example.net"); code != 77 {
		t.Errorf("nobody -f root@ with the server down: exit %d, want 77\n%s", code, out)
	}

	drop := filepath.Join(in.dir, "maildrop")
	fi, err := os.Stat(drop)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&(fs.ModePerm|fs.ModeSetgid|fs.ModeSticky) != fs.ModeSetgid|fs.ModeSticky|0o733 {
		t.Errorf("maildrop mode %s, want dgtrwx-wx-wx (3733)", fi.Mode())
	}
	files, _ := os.ReadDir(drop)
	if len(files) != 2 {
		t.Fatalf("maildrop holds %d files, want 2", len(files))
	}
	owners := map[uint32]string{}
	for _, f := range files {
		fi, _ := f.Info()
		st := fi.Sys().(*syscall.Stat_t)
		owners[st.Uid] = f.Name()
		if fi.Mode().Perm() != 0o640 {
			t.Errorf("%s: mode %s, want 0640", f.Name(), fi.Mode())
		}
	}
	rootFile := filepath.Join(drop, owners[0])
	if owners[0] == "" || owners[nobody] == "" {
		t.Fatalf("files are not owned by their writers: %v", owners)
	}
	// Another user: cannot list the folder, read root's file, or delete it.
	for _, c := range [][]string{{"/bin/ls", drop}, {"/bin/cat", rootFile}, {"/bin/rm", "-f", rootFile}} {
		cmd := exec.Command(c[0], c[1:]...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Errorf("as nobody, %s succeeded:\n%s", strings.Join(c, " "), out)
		}
	}
	if _, err := os.Stat(rootFile); err != nil {
		t.Errorf("root's dropped file is gone: %v", err)
	}

	// What the server will not submit is held, never deleted: a file that
	// is not a maildrop file, and a message the server refuses (its From
	// does not parse: 550 5.6.0).
	os.WriteFile(filepath.Join(drop, "mjunk"), []byte("not a maildrop file\n"), 0o640)
	if out, code := in.sendmailAs(0, "From: a@@b\nSubject: malformed\n\n", "ops@example.net"); code != 0 {
		t.Fatalf("root, malformed From, server down: exit %d\n%s", code, out)
	}

	in.start()
	got := s.wait(t, 2)
	nb := bySubject(t, got, "cron-nobody")
	if nb.from != "nobody@test.example" || !bytes.Contains(nb.data, []byte("(inkan, from userid 65534)")) ||
		!bytes.Contains(nb.data, []byte("CronDaemon")) || !bytes.Contains(nb.data, []byte("<nobody@test.example>\r\n")) {
		t.Errorf("nobody's cron mail: from %q\n%s", nb.from, nb.data)
	}
	rt := bySubject(t, got, "cron-root")
	if !bytes.Contains(rt.data, []byte("(inkan, from userid 0)")) || bytes.Contains(rt.data, []byte("hidden@")) {
		t.Errorf("root's cron mail:\n%s", rt.data)
	}
	waitLog(t, in, "maildrop: picked up")
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(in.logs.String(), "file not submitted, held") < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if left, _ := os.ReadDir(drop); len(left) != 0 {
		t.Errorf("maildrop still holds %d files after pickup", len(left))
	}
	if held, _ := os.ReadDir(filepath.Join(in.dir, "maildrop.held")); len(held) != 2 {
		t.Errorf("maildrop.held has %d files, want the junk file and the refused message", len(held))
	}
	if len(s.msgs) != 2 {
		t.Errorf("sink got %d messages, want 2", len(s.msgs))
	}
}

// sendmail -bs, driven as Symfony Mailer drives it: EHLO, MAIL, RCPT, DATA,
// QUIT, reading each reply. Bcc is removed; with the server down the reply
// says where the message went.
func TestSendmailBs(t *testing.T) {
	needRoot(t)
	s := startSink(t)
	in := startLocalInkan(t, s.addr, "")
	conv := func(subject string) []string {
		t.Helper()
		cmd := asUser(t, nobody, []string{"INKAN_CONFIG=" + in.cfgPath}, "sendmail", "-bs")
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(stdout)
		var replies []string
		read := func() {
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					t.Fatalf("-bs: %v after %q", err, replies)
				}
				if len(line) < 4 || line[3] != '-' {
					replies = append(replies, strings.TrimSpace(line))
					return
				}
			}
		}
		say := func(s string) { io.WriteString(stdin, s+"\r\n"); read() }
		read()
		say("EHLO app.example")
		say("MAIL FROM:<nobody@relay.test.example>")
		say("RCPT TO:<ops@example.net>")
		say("RCPT TO:<hidden@example.net>")
		say("DATA")
		say("From: nobody@relay.test.example\r\nTo: ops@example.net\r\nBcc: hidden@example.net\r\nSubject: " + subject + "\r\n\r\nvia -bs\r\n.")
		say("QUIT")
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Fatalf("-bs exit: %v; replies %q", err, replies)
		}
		return replies
	}
	replies := conv("bs-live")
	want := []string{"220 ", "250 ", "250 ", "250 ", "250 ", "354 ", "250 2.0.0 Ok: queued as ", "221 "}
	for i, w := range want {
		if i >= len(replies) || !strings.HasPrefix(replies[i], w) {
			t.Fatalf("-bs replies %q, want prefixes %q", replies, want)
		}
	}
	m := bySubject(t, s.wait(t, 1), "bs-live")
	if len(m.to) != 2 || bytes.Contains(m.data, []byte("Bcc:")) || !bytes.Contains(m.data, []byte("from userid 65534")) {
		t.Errorf("-bs message: to %v\n%s", m.to, m.data)
	}

	in.stop()
	in.cmd = nil
	replies = conv("bs-down")
	if len(replies) < 7 || !strings.Contains(replies[6], "maildrop") {
		t.Fatalf("-bs with the server down: %q, want the DATA reply to name the maildrop", replies)
	}
	in.start()
	bySubject(t, s.wait(t, 2), "bs-down")
}

// The modes Postfix's sendmail has besides sending.
func TestSendmailModes(t *testing.T) {
	s := startSink(t)
	in := startLocalInkan(t, s.addr, "")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-bi"}, 0, "no aliases"},
		{[]string{"-I"}, 0, "no aliases"},
		{[]string{"-bv", "ops@example.net", "bad%route@example.net"}, 67, "<ops@example.net>: deliverable via transport"},
		{[]string{"-bv", "ops@example.net"}, 0, "deliverable"},
		{[]string{"-bp"}, 0, "Mail queue is empty"},
		{[]string{"-q"}, 0, ""},
		{[]string{"-q30m"}, 0, "nothing to do"},
		// Postfix's sendmail exits 75 (EX_TEMPFAIL) on every fatal error,
		// usage errors included.
		{[]string{"-bd"}, 75, "inkan serve"},
		{[]string{"-bz"}, 75, "unsupported: -bz"},
		{[]string{"-k", "x@example.net"}, 75, "unsupported option -k"},
		{[]string{"-F"}, 75, "-F needs a value"},
		{[]string{}, 75, "no recipients"},
		{[]string{"-t"}, 75, "no recipient addresses"},
	} {
		out, code := in.sendmailAs(0, "Subject: x\n\n", tc.args...)
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("sendmail %s: exit %d, want %d and %q:\n%s", strings.Join(tc.args, " "), code, tc.code, tc.want, out)
		}
	}
	if len(s.msgs) != 0 {
		t.Errorf("the modes sent %d messages", len(s.msgs))
	}
	// Bad DSN values are ignored with a warning, and the message is sent.
	out, code := in.sendmailAs(0, "Subject: bad-dsn\n\n", "-N", "sometimes", "-R", "body", "ops@example.net")
	if code != 0 || !strings.Contains(out, "warning: -N") || !strings.Contains(out, "warning: -R") {
		t.Errorf("bad -N and -R: exit %d, want 0 with warnings:\n%s", code, out)
	}
	bySubject(t, s.wait(t, 1), "bad-dsn")
}

// dsnSink records the DSN parameters of what it receives.
type dsnSink struct {
	mu   sync.Mutex
	got  []string // "RET=... ENVID=... NOTIFY=..."
	addr string
}

type dsnSession struct {
	s    *dsnSink
	mail string
	rcpt string
}

func (d *dsnSession) Reset()        {}
func (d *dsnSession) Logout() error { return nil }
func (d *dsnSession) Mail(_ string, o *smtp.MailOptions) error {
	d.mail = fmt.Sprintf("RET=%s ENVID=%s", o.Return, o.EnvelopeID)
	return nil
}
func (d *dsnSession) Rcpt(_ string, o *smtp.RcptOptions) error {
	var n []string
	for _, x := range o.Notify {
		n = append(n, string(x))
	}
	d.rcpt = "NOTIFY=" + strings.Join(n, ",")
	return nil
}
func (d *dsnSession) Data(r io.Reader) error {
	io.Copy(io.Discard, r)
	d.s.mu.Lock()
	d.s.got = append(d.s.got, d.mail+" "+d.rcpt)
	d.s.mu.Unlock()
	return nil
}

// sendmail -N, -R and -V reach the next hop as NOTIFY, RET and ENVID,
// through the local socket and through the maildrop alike.
func TestSendmailDSNOptions(t *testing.T) {
	needRoot(t)
	ds := &dsnSink{}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &dsnSession{s: ds}, nil }))
	srv.EnableDSN = true
	srv.AllowInsecureAuth = true
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	in := startLocalInkan(t, l.Addr().String(), "")
	args := []string{"-N", "success,failure", "-R", "hdrs", "-V", "env-123", "ops@example.net"}
	if out, code := in.sendmailAs(nobody, "Subject: dsn\n\nx\n", args...); code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	in.stop()
	in.cmd = nil
	if out, code := in.sendmailAs(nobody, "Subject: dsn-drop\n\nx\n", args...); code != 0 {
		t.Fatalf("server down: exit %d\n%s", code, out)
	}
	in.start()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ds.mu.Lock()
		got := append([]string(nil), ds.got...)
		ds.mu.Unlock()
		if len(got) == 2 {
			for _, g := range got {
				if g != "RET=HDRS ENVID=env-123 NOTIFY=SUCCESS,FAILURE" {
					t.Errorf("next hop got %q", g)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("next hop got %q, want 2 messages", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A bad auth.local_senders stops `inkan check` and the start, naming the key.
func TestLocalSendersChecked(t *testing.T) {
	cfg := writeConfig(t, t.TempDir(), "auth:\n  local_senders:\n    www-data: [\"not an address\"]\n")
	out, err := exec.Command(binPath, "check", "-config", cfg).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 78 || !strings.Contains(string(out), "auth.local_senders") {
		t.Errorf("check: %v, want exit 78 naming auth.local_senders:\n%s", err, out)
	}
	serveRefuses(t, cfg, "auth.local_senders")
}
