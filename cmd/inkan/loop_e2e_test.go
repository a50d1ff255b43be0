package main_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A next hop that is inkan's own relay listener: the mail would come back
// to inkan and go round. It bounces at once, saying so, as Postfix does.
func TestMailLoopsBackToMyself(t *testing.T) {
	s := startSink(t)
	dir := t.TempDir()
	relay := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := fmt.Sprintf(`hostname: relay.test.example
data_dir: %s
listen:
  smtps: "127.0.0.1:%d"
  submission: "127.0.0.1:%d"
  relay: "%s"
  http: ""
auth:
  trusted_networks: [127.0.0.0/8]
delivery:
  resolver: "127.0.0.1:9"
  transport:
    loop.test: "[127.0.0.1]:%s"
    example.net: "[127.0.0.1]:%s"
queue:
  retry_min: 1s
  retry_max: 2s
`, filepath.Join(dir, "data"), freePort(t), freePort(t), relay, portOf(relay), portOf(s.addr))
	cfgPath := filepath.Join(dir, "inkan.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	cmd := exec.Command(binPath, "serve", "-config", cfgPath, "-quiet")
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("inkan logs:\n%s", logs)
		}
	})
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", relay); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("inkan does not listen on %s", relay)
		}
	}
	sendRaw(t, relay, "alice@example.net", []string{"bob@loop.test"},
		"From: alice@example.net\r\nTo: bob@loop.test\r\nSubject: round and round\r\n\r\nhello\r\n")
	got := s.wait(t, 1)
	dsn := string(got[0].data)
	if got[0].to[0] != "alice@example.net" || !strings.Contains(dsn, "loops back to myself") || !strings.Contains(dsn, "5.4.6") {
		t.Fatalf("want a bounce to alice saying the mail loops back to myself (5.4.6); got to %v:\n%s", got[0].to, dsn)
	}
}
