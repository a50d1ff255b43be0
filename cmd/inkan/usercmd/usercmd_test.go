package usercmd

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/inkan-relay/inkan/auth"
)

func init() {
	bcryptCost = bcrypt.MinCost
	argon2Params = auth.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1, KeyLen: 32, SaltLen: 16}
}

type result struct {
	code           int
	stdout, stderr string
}

func runCLI(t *testing.T, file, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(file, args, strings.NewReader(stdin), &out, &errb)
	return result{code, out.String(), errb.String()}
}

func mustRun(t *testing.T, file, stdin string, args ...string) result {
	t.Helper()
	r := runCLI(t, file, stdin, args...)
	if r.code != 0 {
		t.Fatalf("inkan user %q: exit %d, stderr %q", args, r.code, r.stderr)
	}
	return r
}

func verify(t *testing.T, file, user, pw string) bool {
	t.Helper()
	u, err := auth.LoadUsers(file)
	if err != nil {
		t.Fatal(err)
	}
	return u.Verify(user, pw)
}

func TestUserLifecycle(t *testing.T) {
	file := filepath.Join(t.TempDir(), "etc", "users")

	r := mustRun(t, file, "first pw\n", "add", "alice@example.com")
	if !strings.Contains(r.stdout, "Added user alice@example.com") {
		t.Errorf("stdout %q", r.stdout)
	}
	if !verify(t, file, "alice@example.com", "first pw") {
		t.Fatal("password from stdin not stored")
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}

	r = mustRun(t, file, "bobpw\r\n", "add", "-hash", "argon2id", "bob")
	if !strings.Contains(r.stderr, "auth.senders") {
		t.Errorf("no note about a non-address user: %q", r.stderr)
	}
	data, _ := os.ReadFile(file)
	if !strings.Contains(string(data), "bob:$argon2id$v=19$") {
		t.Fatalf("argon2id hash not written:\n%s", data)
	}
	if !verify(t, file, "bob", "bobpw") {
		t.Fatal("CRLF line: password not stored without the CR")
	}

	if r := runCLI(t, file, "x\n", "add", "bob"); r.code != 1 || !strings.Contains(r.stderr, "already exists") {
		t.Errorf("add existing: %+v", r)
	}
	if r := runCLI(t, file, "x\n", "passwd", "carol"); r.code != 1 || !strings.Contains(r.stderr, "no such user") {
		t.Errorf("passwd missing: %+v", r)
	}

	mustRun(t, file, "second", "passwd", "alice@example.com") // no newline at EOF
	if verify(t, file, "alice@example.com", "first pw") || !verify(t, file, "alice@example.com", "second") {
		t.Fatal("passwd did not change the password")
	}

	if r := mustRun(t, file, "", "list"); r.stdout != "alice@example.com\nbob\n" {
		t.Errorf("list = %q", r.stdout)
	}
	mustRun(t, file, "", "del", "bob")
	if r := runCLI(t, file, "", "del", "bob"); r.code != 1 || !strings.Contains(r.stderr, "no such user") {
		t.Errorf("del missing: %+v", r)
	}
	if r := mustRun(t, file, "", "list"); r.stdout != "alice@example.com\n" {
		t.Errorf("list after del = %q", r.stdout)
	}
}

func TestUserErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "users")
	tests := []struct {
		args  []string
		stdin string
		code  int
		want  string
	}{
		{nil, "", 2, "usage"},
		{[]string{"frobnicate"}, "", 2, "unknown command"},
		{[]string{"add"}, "pw\n", 2, "usage"},
		{[]string{"add", "alice", "secret"}, "pw\n", 2, "usage"}, // no password in argv
		{[]string{"list", "extra"}, "", 2, "usage"},
		{[]string{"add", "-hash", "md5", "alice"}, "pw\n", 2, "bcrypt or argon2id"},
		{[]string{"add", "-bogus", "alice"}, "pw\n", 2, ""},
		{[]string{"add", "al:ice"}, "pw\n", 1, "may not contain"},
		{[]string{"add", "alice"}, "", 1, "empty password"},
		{[]string{"add", "alice"}, "\n", 1, "empty password"},
		{[]string{"add", "alice"}, "a\x00b\n", 1, "control"},
		{[]string{"add", "alice"}, strings.Repeat("x", 73) + "\n", 1, "argon2id"},
	}
	for _, tc := range tests {
		r := runCLI(t, file, tc.stdin, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("inkan user %q: exit %d, stderr %q; want %d and %q", tc.args, r.code, r.stderr, tc.code, tc.want)
		}
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Error("a failed command created the file")
	}
	if r := runCLI(t, "", "pw\n", "add", "alice"); r.code != 78 || !strings.Contains(r.stderr, "auth.users_file") {
		t.Errorf("no users file: %+v", r)
	}
	if r := runCLI(t, file, "", "help"); r.code != 0 || !strings.Contains(r.stdout, "usage") {
		t.Errorf("help: %+v", r)
	}
	// A long password is fine with argon2id.
	mustRun(t, file, strings.Repeat("x", 100)+"\n", "add", "-hash", "argon2id", "long")
	if !verify(t, file, "long", strings.Repeat("x", 100)) {
		t.Error("long argon2id password")
	}
}
