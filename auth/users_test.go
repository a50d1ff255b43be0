package auth_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/inkan-relay/inkan/auth"
)

var testArgon2 = auth.Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1, KeyLen: 32, SaltLen: 16}

func bcryptHash(t *testing.T, pw string) string {
	t.Helper()
	h, err := auth.HashPasswordCost(pw, bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func argonHash(t *testing.T, pw string) string {
	t.Helper()
	h, err := auth.HashPasswordArgon2id(pw, testArgon2)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // umask-proof
		t.Fatal(err)
	}
}

func TestLoadUsersAndVerify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	y := "$2y$" + strings.TrimPrefix(bcryptHash(t, "ypass"), "$2a$")
	content := "# inkan users\r\n\n" +
		"alice@example.com:" + bcryptHash(t, "alicepw") + "\r\n" +
		"  bob : " + argonHash(t, "bob pw ü") + "\n" +
		"# carol:disabled\n" +
		"yuser:" + y
	writeFile(t, path, content, 0o600)
	u, err := auth.LoadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(u.Names(), ","); got != "alice@example.com,bob,yuser" {
		t.Errorf("Names() = %q", got)
	}
	tests := []struct {
		user, pw string
		ok       bool
	}{
		{"alice@example.com", "alicepw", true},
		{"alice@example.com", "alicepw", true}, // from the cache
		{"alice@example.com", "AlicePW", false},
		{"alice@example.com", "", false},
		{"ALICE@example.com", "alicepw", false},
		{"bob", "bob pw ü", true},
		{"bob", "bob pw u", false},
		{"yuser", "ypass", true},
		{"carol", "x", false},
		{"", "", false},
		{"mallory", "alicepw", false},
	}
	for _, tc := range tests {
		if got := u.Verify(tc.user, tc.pw); got != tc.ok {
			t.Errorf("Verify(%q, %q) = %v, want %v", tc.user, tc.pw, got, tc.ok)
		}
	}
	var none *auth.Users
	if none.Verify("alice@example.com", "alicepw") {
		t.Error("nil Users verified")
	}
}

func TestLoadUsersRefusesOpenPermissions(t *testing.T) {
	dir := t.TempDir()
	// Readable by its group is fine when inkan is in that group (as here:
	// the test's own group); see safefile.Check.
	for _, mode := range []os.FileMode{0o644, 0o604, 0o660, 0o602} {
		path := filepath.Join(dir, "users")
		writeFile(t, path, "a:"+bcryptHash(t, "x")+"\n", mode)
		_, err := auth.LoadUsers(path)
		if err == nil || !strings.Contains(err.Error(), "chmod ") || !strings.Contains(err.Error(), path) {
			t.Errorf("mode %o: err = %v, want a chmod hint", mode, err)
		}
	}
	for _, mode := range []os.FileMode{0o600, 0o400, 0o640, 0o440} {
		path := filepath.Join(dir, "users")
		writeFile(t, path, "a:"+bcryptHash(t, "x")+"\n", mode)
		if _, err := auth.LoadUsers(path); err != nil {
			t.Errorf("mode %o: %v", mode, err)
		}
	}
	if _, err := auth.LoadUsers(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "inkan user add") {
		t.Errorf("missing file: %v", err)
	}
	if _, err := auth.LoadUsers(""); err == nil {
		t.Error("empty path accepted")
	}
}

func TestLoadUsersBadLines(t *testing.T) {
	good := bcryptHash(t, "x")
	tests := []struct{ content, want string }{
		{"# c\nalice\n", ":2: want name:hash"},
		{"alice:" + good + "\nbob:plaintext\n", ":2: user \"bob\": unsupported password hash"},
		{"alice:" + good + "\n\nalice:" + good + "\n", ":3: user \"alice\" is already defined on line 1"},
		{":" + good + "\n", ":1: empty user name"},
		{"a b:" + good + "\n", ":1: user name \"a b\" may not contain"},
		{"a:$2a$10$short\n", ":1: user \"a\": invalid bcrypt hash"},
		{"a:$argon2id$v=16$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g\n", "version"},
		{"a:$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g\n", "unsupported"},
	}
	dir := t.TempDir()
	for _, tc := range tests {
		path := filepath.Join(dir, "users")
		writeFile(t, path, tc.content, 0o600)
		_, err := auth.LoadUsers(path)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("content %q: err = %v, want %q and the path", tc.content, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), good) {
			t.Errorf("error %v leaks a hash", err)
		}
	}
}

func TestArgon2idParsing(t *testing.T) {
	dir := t.TempDir()
	for _, h := range []string{
		"$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
		"$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ=$aGFzaGhhc2g=", // padded base64
	} {
		path := filepath.Join(dir, "users")
		writeFile(t, path, "a:"+h+"\n", 0o600)
		if _, err := auth.LoadUsers(path); err != nil {
			t.Errorf("%s: %v", h, err)
		}
	}
	for _, h := range []string{
		"$argon2id$v=19$m=64,t=1$c2FsdHNhbHQ$aGFzaGhhc2g",
		"$argon2id$v=19$m=64,t=0,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
		"$argon2id$v=19$m=4,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
		"$argon2id$v=19$m=64,t=1,p=256$c2FsdHNhbHQ$aGFzaGhhc2g",
		"$argon2id$v=19$m=064,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
		"$argon2id$v=19$t=1,m=64,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
		"$argon2id$v=19$m=64,t=1,p=1$c2FsdA$aGFzaGhhc2g",
		"$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$!!!",
		"$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ",
		"$argon2id$v=19$m=99999999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
	} {
		path := filepath.Join(dir, "users")
		writeFile(t, path, "a:"+h+"\n", 0o600)
		if _, err := auth.LoadUsers(path); err == nil {
			t.Errorf("%s accepted", h)
		}
	}
}

func TestReloadIfChanged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	if err := auth.SetUser(path, "alice", bcryptHash(t, "one")); err != nil {
		t.Fatal(err)
	}
	u, err := auth.LoadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := u.ReloadIfChanged(); changed || err != nil {
		t.Fatalf("unchanged file: %v, %v", changed, err)
	}
	if err := auth.SetUser(path, "alice", bcryptHash(t, "two")); err != nil {
		t.Fatal(err)
	}
	if err := auth.SetUser(path, "bob", bcryptHash(t, "bobpw")); err != nil {
		t.Fatal(err)
	}
	if changed, err := u.ReloadIfChanged(); !changed || err != nil {
		t.Fatalf("changed file: %v, %v", changed, err)
	}
	if u.Verify("alice", "one") || !u.Verify("alice", "two") || !u.Verify("bob", "bobpw") {
		t.Fatal("new passwords not in force")
	}

	// A broken file keeps the users in force.
	writeFile(t, path, "alice:"+bcryptHash(t, "three")+"\ngarbage line\n", 0o600)
	changed, err := u.ReloadIfChanged()
	if changed || err == nil || !strings.Contains(err.Error(), path+":2") {
		t.Fatalf("bad file: changed=%v err=%v", changed, err)
	}
	if !u.Verify("alice", "two") || !u.Verify("bob", "bobpw") {
		t.Fatal("old users lost after a bad reload")
	}
	// So does a file that became readable by others.
	writeFile(t, path, "alice:"+bcryptHash(t, "three")+"\n", 0o644)
	if _, err := u.ReloadIfChanged(); err == nil || !strings.Contains(err.Error(), "chmod 0640") {
		t.Fatalf("open permissions: %v", err)
	}
	// And a deleted one.
	os.Remove(path)
	if _, err := u.ReloadIfChanged(); err == nil {
		t.Fatal("missing file: no error")
	}
	if !u.Verify("bob", "bobpw") {
		t.Fatal("users lost after the file vanished")
	}
	writeFile(t, path, "alice:"+bcryptHash(t, "three")+"\n", 0o600)
	if err := u.Reload(); err != nil {
		t.Fatal(err)
	}
	if !u.Verify("alice", "three") || u.Has("bob") || u.Len() != 1 {
		t.Fatal("Reload did not install the new file")
	}
}

func TestVerifyCache(t *testing.T) {
	clock := auth.UseFakeClock(t)
	path := filepath.Join(t.TempDir(), "users")
	auth.SetUser(path, "alice", bcryptHash(t, "pw"))
	u, err := auth.LoadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	u.Verify("alice", "wrong")
	if u.CacheLen() != 0 {
		t.Fatal("failed verification cached")
	}
	u.Verify("alice", "pw")
	u.Verify("alice", "pw")
	if u.CacheLen() != 1 {
		t.Fatalf("cache has %d entries, want 1", u.CacheLen())
	}
	clock.Advance(auth.CacheTTL + 1)
	if !u.Verify("alice", "pw") {
		t.Fatal("verify after expiry")
	}
	// A reload starts a fresh cache: a changed password is not served from it.
	auth.SetUser(path, "alice", bcryptHash(t, "new"))
	if _, err := u.ReloadIfChanged(); err != nil {
		t.Fatal(err)
	}
	if u.CacheLen() != 0 || u.Verify("alice", "pw") {
		t.Fatal("cache survived a reload")
	}
}

func TestEditUsersFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "dir")
	path := filepath.Join(dir, "users")
	if names, err := auth.ListUsers(path); err != nil || len(names) != 0 {
		t.Fatalf("ListUsers(missing) = %v, %v", names, err)
	}
	if err := auth.AddUser(path, "bob", bcryptHash(t, "b")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("new file: %v, mode %v", err, fi.Mode())
	}
	if di, _ := os.Stat(dir); di.Mode().Perm() != 0o700 {
		t.Errorf("new dir mode %v", di.Mode())
	}
	// Comments and order survive rewrites.
	data, _ := os.ReadFile(path)
	writeFile(t, path, "# keep me\n"+string(data), 0o600)
	if err := auth.SetUser(path, "alice", bcryptHash(t, "a")); err != nil {
		t.Fatal(err)
	}
	if err := auth.AddUser(path, "alice", bcryptHash(t, "a")); !errors.Is(err, auth.ErrUserExists) {
		t.Errorf("AddUser existing: %v", err)
	}
	if err := auth.ChangePassword(path, "carol", bcryptHash(t, "c")); !errors.Is(err, auth.ErrNoSuchUser) {
		t.Errorf("ChangePassword missing: %v", err)
	}
	if err := auth.ChangePassword(path, "bob", argonHash(t, "b2")); err != nil {
		t.Fatal(err)
	}
	if err := auth.DeleteUser(path, "carol"); !errors.Is(err, auth.ErrNoSuchUser) {
		t.Errorf("DeleteUser missing: %v", err)
	}
	names, err := auth.ListUsers(path)
	if err != nil || strings.Join(names, ",") != "alice,bob" {
		t.Fatalf("ListUsers = %v, %v", names, err)
	}
	data, _ = os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 3 || lines[0] != "# keep me" || !strings.HasPrefix(lines[1], "bob:$argon2id$") || !strings.HasPrefix(lines[2], "alice:$2a$") {
		t.Fatalf("file:\n%s", data)
	}
	if err := auth.DeleteUser(path, "bob"); err != nil {
		t.Fatal(err)
	}
	u, err := auth.LoadUsers(path)
	if err != nil || u.Has("bob") || !u.Verify("alice", "a") {
		t.Fatalf("after delete: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}

func TestEditUsersRefusals(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	h := bcryptHash(t, "x")
	for _, name := range []string{"", "a:b", "a b", "a\tb", "a\nb", "#x", "a\x00b", "\xff"} {
		if err := auth.SetUser(path, name, h); err == nil {
			t.Errorf("SetUser(%q) accepted", name)
		}
	}
	for _, hash := range []string{"", "plain", "$2a$10$x", "x\nmallory:" + h, argonHash(t, "x") + "\nAAAA"} {
		if err := auth.SetUser(path, "a", hash); err == nil {
			t.Errorf("SetUser with hash %q accepted", hash)
		}
	}
	// A broken file is not rewritten.
	writeFile(t, path, "broken\n", 0o600)
	if err := auth.SetUser(path, "a", h); err == nil || !strings.Contains(err.Error(), path+":1") {
		t.Errorf("SetUser on a broken file: %v", err)
	}
	if err := auth.SetUser("", "a", h); err == nil {
		t.Error("empty path accepted")
	}
}

func TestEditUsersFollowsSymlink(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real-users")
	link := filepath.Join(dir, "users")
	if err := os.Symlink(real, link); err != nil {
		t.Skip("no symlinks:", err)
	}
	writeFile(t, real, "", 0o600)
	if err := auth.SetUser(link, "a", bcryptHash(t, "x")); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Lstat(link); fi.Mode()&os.ModeSymlink == 0 {
		t.Fatal("symlink replaced by a file")
	}
	if names, _ := auth.ListUsers(real); len(names) != 1 {
		t.Fatal("target not updated")
	}
}

func TestHashPassword(t *testing.T) {
	h, err := auth.HashPassword("secret")
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := bcrypt.Cost([]byte(h)); c != auth.DefaultBcryptCost {
		t.Errorf("cost %d", c)
	}
	if _, err := auth.HashPassword(""); err == nil {
		t.Error("empty password hashed")
	}
	if _, err := auth.HashPasswordCost(strings.Repeat("x", 73), bcrypt.MinCost); err == nil {
		t.Error("73-byte password hashed with bcrypt")
	}
	if _, err := auth.HashPasswordArgon2id("x", auth.Argon2Params{}); err == nil {
		t.Error("zero argon2 params accepted")
	}
	a1, a2 := argonHash(t, "same"), argonHash(t, "same")
	if a1 == a2 {
		t.Error("argon2id salts repeat")
	}
}

func TestWatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	auth.SetUser(path, "alice", bcryptHash(t, "old"))
	u, err := auth.LoadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		u.Watch(ctx, time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	auth.SetUser(path, "alice", bcryptHash(t, "new"))
	deadline := time.Now().Add(10 * time.Second)
	for !u.Verify("alice", "new") {
		if time.Now().After(deadline) {
			t.Fatal("Watch did not reload the file")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
}
