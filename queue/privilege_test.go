package queue

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// nobody is the uid and gid that plays the service user owning the spool.
const nobody = 65534

// ownedSpool makes a spool folder with its subfolders, owned by nobody when
// the test runs as root (the case the attacks are about: `inkan queue` run
// by root on the service user's spool), and a folder outside it holding a
// file the attacker wants root to destroy.
func ownedSpool(t *testing.T) (spool, outside, victim string) {
	t.Helper()
	base := t.TempDir()
	spool, outside = filepath.Join(base, "queue"), filepath.Join(base, "outside")
	for _, d := range []string{spool, filepath.Join(spool, "msg"), filepath.Join(spool, "tmp"), filepath.Join(spool, "corrupt"), outside} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	victim = filepath.Join(outside, "victim")
	if err := os.WriteFile(victim, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		filepath.Walk(spool, func(p string, _ os.FileInfo, _ error) error { return os.Lchown(p, nobody, nobody) })
	}
	return spool, outside, victim
}

// plant replaces spool/name with a symbolic link to target.
func plant(t *testing.T, spool, name, target string) {
	t.Helper()
	p := filepath.Join(spool, name)
	if err := os.RemoveAll(p); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		os.Lchown(p, nobody, nobody)
	}
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// openPlanted opens the spool and returns Open's error (nil when it opened).
func openPlanted(t *testing.T, spool string) error {
	t.Helper()
	opts, _ := testOptions(t, spool, nil)
	q, err := Open(opts)
	if err == nil {
		q.Close()
	}
	return err
}

// The spool's owner plants tmp -> a folder of someone else: cleaning tmp/
// at Open must not delete that folder's files.
func TestAttackTmpSymlinkDeletesOutside(t *testing.T) {
	spool, outside, victim := ownedSpool(t)
	plant(t, spool, "tmp", outside)
	err := openPlanted(t, spool)
	if _, serr := os.Stat(victim); serr != nil {
		t.Fatalf("Open followed tmp -> %s and deleted %s (Open: %v)", outside, victim, err)
	}
	if err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("Open = %v, want a refusal naming the symbolic link", err)
	}
}

// corrupt -> elsewhere: moving a stray file aside must not put it into
// another folder.
func TestAttackCorruptSymlinkMovesOutside(t *testing.T) {
	spool, outside, _ := ownedSpool(t)
	if err := os.WriteFile(filepath.Join(spool, "msg", "planted"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	plant(t, spool, "corrupt", outside)
	err := openPlanted(t, spool)
	if got := listDir(t, outside); len(got) != 1 {
		t.Fatalf("Open moved files into %s through corrupt/: %v (Open: %v)", outside, got, err)
	}
	if err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("Open = %v, want a refusal naming the symbolic link", err)
	}
}

// msg -> elsewhere: scanning must not move that folder's files aside.
func TestAttackMsgSymlinkMovesOutsideFiles(t *testing.T) {
	spool, outside, victim := ownedSpool(t)
	plant(t, spool, "msg", outside)
	err := openPlanted(t, spool)
	if _, serr := os.Stat(victim); serr != nil {
		t.Fatalf("Open moved %s away through msg/ (Open: %v)", victim, err)
	}
	if err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("Open = %v, want a refusal naming the symbolic link", err)
	}
}

// lock -> a path elsewhere: opening the lock must not create a file there
// (root-owned, where root would never put one).
func TestAttackLockSymlinkCreatesOutside(t *testing.T) {
	spool, outside, _ := ownedSpool(t)
	target := filepath.Join(outside, "created-by-root")
	plant(t, spool, "lock", target)
	err := openPlanted(t, spool)
	if _, serr := os.Lstat(target); serr == nil {
		t.Fatalf("Open created %s through the lock symlink (Open: %v)", target, err)
	}
	if err == nil {
		t.Errorf("Open accepted a lock that is a symbolic link out of the spool")
	}
}

// The spool folder itself is a link to another folder: root would create
// lock, msg/, tmp/ and corrupt/ there.
func TestAttackSpoolIsSymlink(t *testing.T) {
	spool, outside, _ := ownedSpool(t)
	os.RemoveAll(spool)
	if err := os.Symlink(outside, spool); err != nil {
		t.Fatal(err)
	}
	err := openPlanted(t, spool)
	if got := listDir(t, outside); len(got) != 1 {
		t.Fatalf("Open created %v in %s through the spool symlink (Open: %v)", got, outside, err)
	}
	if err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("Open = %v, want a refusal naming the symbolic link", err)
	}
}

// A spool every user may write to is refused: anyone could plant files.
func TestSpoolWritableByOthersRefused(t *testing.T) {
	spool, _, _ := ownedSpool(t)
	if err := os.Chmod(spool, 0o777); err != nil {
		t.Fatal(err)
	}
	err := openPlanted(t, spool)
	if err == nil || !strings.Contains(err.Error(), "chmod") {
		t.Fatalf("Open = %v, want a refusal that says which chmod fixes it", err)
	}
}

// Root working in the service user's spool gives what it creates to that
// user, so the server can still use it.
func TestRootGivesNewFilesToSpoolOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	spool, _, _ := ownedSpool(t)
	os.Remove(filepath.Join(spool, "corrupt"))
	opts, _ := testOptions(t, spool, nil)
	q := openQueue(t, opts)
	id := commit(t, q, "alice@example.com", "bob@example.org")
	q.Close()
	for _, name := range []string{"lock", "corrupt", filepath.Join("msg", id)} {
		fi, err := os.Lstat(filepath.Join(spool, name))
		if err != nil {
			t.Fatal(err)
		}
		if uid := fileUID(fi); uid != nobody {
			t.Errorf("%s belongs to uid %d, want the spool owner %d", name, uid, nobody)
		}
	}
}

func fileUID(fi os.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}

// A hard link in msg/ to a file that is not the spool owner's is not read
// for root (where protected_hardlinks is off, the owner can plant one).
func TestRootRefusesForeignFileInSpool(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	spool, _, _ := ownedSpool(t)
	opts, _ := testOptions(t, spool, nil)
	q := openQueue(t, opts)
	id := commit(t, q, "alice@example.com", "bob@example.org")
	toFile(t, q, id)
	os.Chown(filepath.Join(spool, "msg", id), 0, 0) // as if linked to a file of root's
	if _, err := q.Get(id); err == nil || !strings.Contains(err.Error(), "not to the spool owner") {
		t.Fatalf("Get = %v, want a refusal", err)
	}
}
