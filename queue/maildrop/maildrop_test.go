package maildrop_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/inkan-relay/inkan/queue/maildrop"
)

func folder(t *testing.T) (string, *maildrop.Folder) {
	t.Helper()
	base := t.TempDir()
	dir := filepath.Join(base, "maildrop")
	if _, err := maildrop.Prepare(dir); err != nil {
		t.Fatal(err)
	}
	f, err := maildrop.OpenFolder(dir, filepath.Join(base, "held"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return dir, f
}

func TestWriteAndRead(t *testing.T) {
	dir, f := folder(t)
	fi, _ := os.Stat(dir)
	if fi.Mode() != maildrop.Mode {
		t.Fatalf("folder mode %s, want %s", fi.Mode(), maildrop.Mode)
	}
	env := maildrop.Envelope{From: "alice@example.com", To: []string{"bob@example.net"}, Notify: []string{"NEVER"}, Ret: "HDRS", EnvID: "e1"}
	msg := []byte("Subject: hi\r\n\r\nhello\r\n")
	name, err := maildrop.Write(dir, env, msg)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(filepath.Join(dir, name))
	if st.Mode().Perm() != maildrop.FileMode {
		t.Errorf("file mode %s, want %s whatever the umask", st.Mode(), maildrop.FileMode)
	}
	names, err := f.Names()
	if err != nil || len(names) != 1 || names[0] != name {
		t.Fatalf("Names = %v, %v; want [%s]", names, err, name)
	}
	e, err := f.Read(name, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if e.UID != os.Geteuid() || e.Env.From != env.From || e.Env.To[0] != "bob@example.net" || e.Env.Ret != "HDRS" || string(e.Msg) != string(msg) {
		t.Errorf("read back %+v", e)
	}
	if err := f.Remove(name); err != nil {
		t.Fatal(err)
	}
	if names, _ := f.Names(); len(names) != 0 {
		t.Errorf("after Remove: %v", names)
	}
}

// What a hostile local user can plant is refused, never submitted as
// someone else: links, FIFOs, folders, hard links, cut or foreign files.
func TestReadRefusesPlantedFiles(t *testing.T) {
	dir, f := folder(t)
	good, err := maildrop.Write(dir, maildrop.Envelope{From: "a@example.com", To: []string{"b@example.net"}}, []byte("x\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(outside, []byte("secret"), 0o600)
	os.Symlink(outside, filepath.Join(dir, "link"))
	syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600)
	os.Mkdir(filepath.Join(dir, "sub"), 0o700)
	os.Link(filepath.Join(dir, good), filepath.Join(dir, "hardlink"))
	os.WriteFile(filepath.Join(dir, "junk"), []byte("not a maildrop file\n"), 0o600)
	raw, _ := os.ReadFile(filepath.Join(dir, good))
	os.WriteFile(filepath.Join(dir, "cut"), raw[:len(raw)-2], 0o600)
	big, _ := maildrop.Write(dir, maildrop.Envelope{From: "a@example.com", To: []string{"b@example.net"}}, []byte(strings.Repeat("x", 9000)))

	for name, want := range map[string]string{
		"link": "symbolic link", "fifo": "FIFO", "sub": "folder", "hardlink": "2 names", good: "2 names",
		"junk": "not a maildrop file", "cut": "cut short", big: "more than the message size limit",
	} {
		_, err := f.Read(name, 1000)
		var bad *maildrop.BadFileError
		if !errors.As(err, &bad) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want a BadFileError with %q", name, err, want)
		}
	}
	// Held, not deleted.
	held, err := f.Hold("junk")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(held); err != nil {
		t.Errorf("held file: %v", err)
	}
	if _, err := os.Stat(outside); err != nil {
		t.Errorf("the link's target was touched: %v", err)
	}
}

// Prepare fixes the mode of a folder the server owns, and refuses a file
// in the folder's place.
func TestPrepare(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "maildrop")
	os.Mkdir(dir, 0o777)
	note, err := maildrop.Prepare(dir)
	if err != nil || !strings.Contains(note, "changed the mode") {
		t.Fatalf("Prepare = %q, %v", note, err)
	}
	if fi, _ := os.Stat(dir); fi.Mode() != maildrop.Mode {
		t.Errorf("mode %s", fi.Mode())
	}
	file := filepath.Join(base, "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := maildrop.Prepare(file); err == nil || !strings.Contains(err.Error(), "not a folder") {
		t.Errorf("Prepare(file) = %v", err)
	}
	open := filepath.Join(base, "open")
	os.Mkdir(open, 0o700)
	os.Chmod(open, 0o777)
	if _, err := maildrop.Prepare(filepath.Join(open, "maildrop")); err == nil || !strings.Contains(err.Error(), "written by every user") {
		t.Errorf("Prepare under a world-writable folder = %v", err)
	}
	os.Chmod(base, 0o700)
	note, err = maildrop.Traversable(base)
	if fi, _ := os.Stat(base); err != nil || fi.Mode().Perm()&0o005 != 0o001 || note == "" {
		t.Errorf("Traversable: %q, %v, mode %s; want o+x only", note, err, fi.Mode())
	}
}
