package safefile_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/inkan-relay/inkan/queue/safefile"
)

const nobody = 65534

func owner(t *testing.T, path string) (uid, gid int) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return int(st.Uid), int(st.Gid)
}

func TestWriteFileReplaces(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sub", "state")
	for _, data := range []string{"one", "two"} {
		if err := safefile.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(p); string(b) != data {
			t.Errorf("content %q, want %q", b, data)
		}
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	if ents, _ := os.ReadDir(filepath.Dir(p)); len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
}

// A link planted at the destination is replaced; its target is untouched.
func TestWriteFileReplacesLinkNotTarget(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "victim")
	os.WriteFile(target, []byte("precious"), 0o644)
	p := filepath.Join(dir, "state")
	os.Symlink(target, p)
	if err := safefile.WriteFile(p, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(target); string(b) != "precious" {
		t.Errorf("WriteFile wrote through the link: target now %q", b)
	}
	if fi, _ := os.Lstat(p); fi.Mode()&os.ModeSymlink != 0 {
		t.Error("the link is still there")
	}
}

// Root rewriting the service user's file leaves it to that user, readable
// by its group if it was.
func TestWriteFileKeepsOwnerAndGroupRead(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	p := filepath.Join(t.TempDir(), "users")
	os.WriteFile(p, []byte("old"), 0o640)
	os.Chown(p, nobody, nobody)
	if err := safefile.WriteFile(p, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	if uid, gid := owner(t, p); uid != nobody || gid != nobody {
		t.Errorf("owner %d:%d, want %d:%d", uid, gid, nobody, nobody)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", fi.Mode())
	}
}

func TestCheck(t *testing.T) {
	root := os.Geteuid() == 0
	gs, _ := os.Getgroups()
	gs = append(gs, os.Getegid())
	stranger := 54321 // a group inkan is not in
	for slices.Contains(gs, stranger) {
		stranger++
	}
	for _, tc := range []struct {
		name     string
		dir      bool
		mode     os.FileMode
		uid, gid int // -1: leave as created
		ok       bool
		want     string
	}{
		{"own 0600 file", false, 0o600, -1, -1, true, ""},
		{"own 0640 file of our group", false, 0o640, -1, -1, true, ""},
		{"root 0440 file of our group (Kubernetes secret)", false, 0o440, 0, -1, true, ""},
		{"file others may read", false, 0o644, -1, -1, false, "every user"},
		{"file others may write", false, 0o602, -1, -1, false, "written by every user"},
		{"file of a group inkan is not in", false, 0o640, -1, stranger, false, "which inkan is not in"},
		{"file owned by a stranger", false, 0o600, nobody, -1, false, "is owned by uid 65534"},
		{"own 0700 folder", true, 0o700, -1, -1, true, ""},
		{"folder others may list", true, 0o755, -1, -1, true, ""},
		{"folder others may write", true, 0o777, -1, -1, false, "chmod 0775"},
		{"folder a foreign group may write", true, 0o770, -1, stranger, false, "which inkan is not in"},
		{"folder owned by a stranger", true, 0o700, nobody, -1, false, "chown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if (tc.uid >= 0 || tc.gid >= 0) && !root {
				t.Skip("needs root")
			}
			p := filepath.Join(t.TempDir(), "x")
			if tc.dir {
				os.Mkdir(p, 0o700)
			} else {
				os.WriteFile(p, nil, 0o600)
			}
			if err := os.Chown(p, tc.uid, tc.gid); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tc.mode); err != nil {
				t.Fatal(err)
			}
			fi, _ := os.Lstat(p)
			err := safefile.Check("users file", p, fi)
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var ue *safefile.UnsafeError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) || ue.Fix == "" {
				t.Fatalf("Check = %v, want an UnsafeError mentioning %q", err, tc.want)
			}
		})
	}
}

func TestOpenDirRefusesLink(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	os.Mkdir(real, 0o700)
	link := filepath.Join(dir, "link")
	os.Symlink(real, link)
	if r, _, err := safefile.OpenDir("data directory", link); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		if r != nil {
			r.Close()
		}
		t.Fatalf("OpenDir(link) = %v", err)
	}
	r, _, err := safefile.OpenDir("data directory", real)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	os.Symlink(dir, filepath.Join(real, "sub"))
	if _, err := safefile.OpenSubdir("spool folder", r, "sub", nil); err == nil || !strings.Contains(err.Error(), "rm ") {
		t.Fatalf("OpenSubdir(link) = %v, want a refusal saying to remove it", err)
	}
	sub, err := safefile.OpenSubdir("spool folder", r, "made", nil)
	if err != nil {
		t.Fatal(err)
	}
	sub.Close()
	if fi, err := os.Lstat(filepath.Join(real, "made")); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Errorf("made: %v %v", fi, err)
	}
}

// TestInFolderRefusesLinks: OpenIn and CreateTempIn never follow a link
// planted in the folder, nor take a path for a name; RenameIn replaces a
// link rather than writing through it.
func TestInFolderRefusesLinks(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	target := filepath.Join(outside, "target")
	os.WriteFile(target, []byte("secret"), 0o600)
	os.Symlink(target, filepath.Join(dir, "link"))
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if f, err := safefile.OpenIn(d, "link", os.O_RDONLY, 0); err == nil {
		f.Close()
		t.Error("OpenIn followed a symbolic link")
	}
	for _, name := range []string{"../x", "a/b", "..", "."} {
		if _, err := safefile.OpenIn(d, name, os.O_RDWR|os.O_CREATE, 0o600); err == nil {
			t.Errorf("OpenIn(%q) opened a path, not a name", name)
		}
	}
	f, name, err := safefile.CreateTempIn(d, "msg", 0o600)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("new")
	f.Close()
	if err := safefile.RenameIn(d, name, d, "link"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(target); string(b) != "secret" {
		t.Errorf("the link's target was written: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "link")); string(b) != "new" {
		t.Errorf("renamed file: %q", b)
	}
	if err := safefile.RenameIn(d, "link", d, "../escaped"); err == nil {
		t.Error("RenameIn took a path for the new name")
	}
}

// CreateNew never replaces anything at the name, a dangling link included,
// and leaves no temporary file behind.
func TestCreateNew(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "k.key")
	if err := safefile.CreateNew(p, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "one" {
		t.Fatalf("content %q", b)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	if err := safefile.CreateNew(p, []byte("two"), 0o600); !errors.Is(err, os.ErrExist) {
		t.Errorf("second CreateNew: %v, want ErrExist", err)
	}
	link := filepath.Join(dir, "l.key")
	target := filepath.Join(dir, "elsewhere")
	os.Symlink(target, link)
	if err := safefile.CreateNew(link, []byte("x"), 0o600); !errors.Is(err, os.ErrExist) {
		t.Errorf("CreateNew over a dangling link: %v, want ErrExist", err)
	}
	if _, err := os.Lstat(target); err == nil {
		t.Error("CreateNew wrote through the link")
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("files left: %v", ents)
	}
}
