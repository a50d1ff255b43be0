package main_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// nobody plays a user other than the one inkan runs as.
const nobody = 65534

// writeConfig writes a config whose listeners are on free loopback ports.
func writeConfig(t *testing.T, dataDir, extra string) string {
	t.Helper()
	cfg := fmt.Sprintf(`hostname: relay.test.example
data_dir: %s
listen:
  smtps: "127.0.0.1:%d"
  submission: "127.0.0.1:%d"
  relay: "127.0.0.1:%d"
  http: ""
delivery:
  resolver: "127.0.0.1:9"
`, dataDir, freePort(t), freePort(t), freePort(t)) + extra
	p := filepath.Join(t.TempDir(), "inkan.yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// serveRefuses runs `inkan serve` and wants it to exit at once with an
// error containing each of want.
func serveRefuses(t *testing.T, cfgPath string, want ...string) {
	t.Helper()
	cmd := exec.Command(binPath, "serve", "-config", cfgPath, "-quiet")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("serve exited with 0; output:\n%s", out)
		}
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("serve started; output:\n%s", out)
	}
	for _, w := range want {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output does not mention %q:\n%s", w, out)
		}
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files to another user")
	}
}

// A data directory someone else owns could hold their links and files.
func TestDataDirOwnedByStrangerRefused(t *testing.T) {
	needRoot(t)
	data := filepath.Join(t.TempDir(), "data")
	os.Mkdir(data, 0o700)
	os.Chown(data, nobody, nobody)
	serveRefuses(t, writeConfig(t, data, ""), "data directory", "owned by uid 65534", "chown")
}

func TestDataDirWritableByOthersRefused(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	os.Mkdir(data, 0o700)
	os.Chmod(data, 0o777)
	serveRefuses(t, writeConfig(t, data, ""), "data directory", "every user", "chmod")
}

// The users file: root-owned and group-readable by inkan's group (what a
// Kubernetes secret with defaultMode 0440 and fsGroup gives) is fine; a
// stranger's file, or one others or a foreign group may read, is not.
func TestUsersFileOwnerAndMode(t *testing.T) {
	needRoot(t)
	groups, _ := os.Getgroups()
	foreign := 54321
	for slices.Contains(append(groups, os.Getegid()), foreign) {
		foreign++
	}
	for _, tc := range []struct {
		name     string
		mode     os.FileMode
		uid, gid int
		want     string // "" = accepted
	}{
		{"root 0440, inkan's group (Kubernetes secret)", 0o440, 0, os.Getegid(), ""},
		{"root 0640, inkan's group (/etc/inkan)", 0o640, 0, os.Getegid(), ""},
		{"inkan's own 0600", 0o600, os.Geteuid(), os.Getegid(), ""},
		{"a stranger's 0600", 0o600, nobody, nobody, "owned by uid 65534"},
		{"readable by every user", 0o644, 0, os.Getegid(), "chmod 0640"},
		{"readable by a foreign group", 0o640, 0, foreign, "which inkan is not in"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			users := filepath.Join(t.TempDir(), "users")
			os.WriteFile(users, []byte("alice:$2a$04$tnBln0aIncmFOC1FwInlvuNDGQjaeNVdUvU5CFrB.gx4ncoLD8CVS\n"), 0o600)
			os.Chown(users, tc.uid, tc.gid)
			os.Chmod(users, tc.mode)
			cfg := writeConfig(t, t.TempDir(), "auth:\n  users_file: "+users+"\n")
			out, err := exec.Command(binPath, "check", "-config", cfg).CombinedOutput()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("check refused the file: %v\n%s", err, out)
			case tc.want != "" && (err == nil || !strings.Contains(string(out), tc.want)):
				t.Fatalf("check = %v, want an error mentioning %q:\n%s", err, tc.want, out)
			}
		})
	}
}
