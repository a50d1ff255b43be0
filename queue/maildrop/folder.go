package maildrop

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/inkan-relay/inkan/queue/safefile"
)

// Prepare makes the maildrop folder dir (mode 3733, owned by the calling
// user) or checks the one that is there, fixing its mode when the caller owns
// it. The folder's parent must be the caller's or root's and not writable by
// others (safefile.Check). It returns a note when it changed something.
func Prepare(dir string) (note string, err error) {
	parent := filepath.Dir(dir)
	pfi, err := os.Stat(parent)
	if err != nil {
		return "", fmt.Errorf("maildrop %s: %w", dir, err)
	}
	if err := safefile.Check("maildrop's parent folder", parent, pfi); err != nil {
		return "", err
	}
	if err := os.Mkdir(dir, 0o700); err == nil {
		note = "created " + dir
	} else if !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("create maildrop: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return "", fmt.Errorf("maildrop: %w", err)
	}
	if !fi.IsDir() {
		return "", &safefile.UnsafeError{What: "maildrop", Path: dir, Problem: "is not a folder",
			Fix: "remove it (inkan makes the folder), or set queue.maildrop to another path"}
	}
	owner, _ := safefile.OwnerOf(fi)
	me := os.Geteuid()
	if owner.UID != me && owner.UID != 0 {
		return "", &safefile.UnsafeError{What: "maildrop", Path: dir, Problem: fmt.Sprintf("is owned by uid %d, not by uid %d that inkan runs as", owner.UID, me),
			Fix: fmt.Sprintf("run chown %d %s", me, dir)}
	}
	if fi.Mode()&(fs.ModeType|fs.ModePerm|fs.ModeSetgid|fs.ModeSticky|fs.ModeSetuid) == Mode {
		return note, nil
	}
	if err := os.Chmod(dir, Mode&^fs.ModeDir); err != nil {
		return "", &safefile.UnsafeError{What: "maildrop", Path: dir,
			Problem: fmt.Sprintf("has mode %s and inkan cannot make it %s (%v)", fi.Mode(), Mode, err),
			Fix:     fmt.Sprintf("as root: install -d -m 3733 -o %d -g %d %s (under systemd, whose RestrictSUIDSGID= forbids the set-group-ID bit to the service, make it before the start, e.g. with systemd-tmpfiles)", me, os.Getegid(), dir)}
	}
	if note == "" {
		note = fmt.Sprintf("changed the mode of %s from %s to %s", dir, fi.Mode(), Mode)
	}
	return note, nil
}

// Traversable lets every user pass through dir (adds o+x, never r or w), so
// that a socket or folder inside it can be reached by its own mode. It
// returns a note when it changed the mode.
func Traversable(dir string) (string, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return "", err
	}
	if fi.Mode().Perm()&0o001 != 0 {
		return "", nil
	}
	mode := fi.Mode().Perm() | 0o011
	if err := os.Chmod(dir, mode); err != nil {
		return "", fmt.Errorf("let local users pass through %s: %w (run chmod o+x %s)", dir, err, dir)
	}
	return fmt.Sprintf("changed the mode of %s from %04o to %04o so local users reach sendmail's socket and maildrop (they cannot list it)", dir, fi.Mode().Perm(), mode), nil
}

// Folder is the server's view of the maildrop: it lists, reads, removes and
// holds the files users dropped.
type Folder struct {
	path string
	root *os.Root
	held string
}

// OpenFolder opens the maildrop dir; files the server will not submit go to
// the folder held (made with mode 0700 when missing).
func OpenFolder(dir, held string) (*Folder, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open maildrop: %w", err)
	}
	if err := os.MkdirAll(held, 0o700); err != nil {
		root.Close()
		return nil, fmt.Errorf("create %s: %w", held, err)
	}
	return &Folder{path: dir, root: root, held: held}, nil
}

// Close releases the folder.
func (f *Folder) Close() error { return f.root.Close() }

// Path is the folder's path.
func (f *Folder) Path() string { return f.path }

// Names lists the finished files (temporary ones, starting with a dot, are
// left out), oldest first.
func (f *Folder) Names() ([]string, error) {
	d, err := f.root.Open(".")
	if err != nil {
		return nil, err
	}
	defer d.Close()
	ents, err := d.ReadDir(-1)
	if err != nil {
		return nil, err
	}
	type item struct {
		name string
		t    time.Time
	}
	var items []item
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		var t time.Time
		if fi, err := e.Info(); err == nil {
			t = fi.ModTime()
		}
		items = append(items, item{e.Name(), t})
	}
	sort.Slice(items, func(i, j int) bool { return items[i].t.Before(items[j].t) })
	names := make([]string, len(items))
	for i, it := range items {
		names[i] = it.name
	}
	return names, nil
}

// Entry is one dropped message.
type Entry struct {
	Name     string
	UID      int // the file's owner: who submitted it
	Env      Envelope
	Msg      []byte
	Modified time.Time
}

// BadFileError says why a file is not a message the server will submit; the
// caller holds it.
type BadFileError struct {
	Name, Problem string
	UID           int // -1 when unknown
}

func (e *BadFileError) Error() string { return "maildrop file " + e.Name + ": " + e.Problem }

// Read opens and parses the file name, refusing anything but a regular file
// with one link and at most max bytes of message (see the threat model).
func (f *Folder) Read(name string, max int64) (*Entry, error) {
	bad := func(uid int, format string, a ...any) error {
		return &BadFileError{Name: name, UID: uid, Problem: fmt.Sprintf(format, a...)}
	}
	lfi, err := f.root.Lstat(name)
	if err != nil {
		return nil, err
	}
	if !lfi.Mode().IsRegular() {
		return nil, bad(ownerUID(lfi), "is a %s, not a regular file", kind(lfi.Mode()))
	}
	fh, err := f.root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	uid := ownerUID(fi)
	switch {
	case !os.SameFile(fi, lfi) || !fi.Mode().IsRegular():
		return nil, bad(uid, "changed while it was opened")
	case linkCount(fi) != 1:
		return nil, bad(uid, "has %d names (a hard link to someone's file?)", linkCount(fi))
	case fi.Size() > max+4096:
		return nil, bad(uid, "is %d bytes, more than the message size limit", fi.Size())
	}
	env, msg, err := Parse(fh, max+4096)
	if err != nil {
		return nil, bad(uid, "%v", err)
	}
	return &Entry{Name: name, UID: uid, Env: env, Msg: msg, Modified: fi.ModTime()}, nil
}

// Remove deletes a submitted file and makes the removal durable.
func (f *Folder) Remove(name string) error {
	if err := f.root.Remove(name); err != nil {
		return err
	}
	return safefile.SyncDir(f.root)
}

// Hold moves name into the held folder, under a name that says when, and
// returns its new path.
func (f *Folder) Hold(name string) (string, error) {
	dst := filepath.Join(f.held, time.Now().UTC().Format("20060102T150405Z")+"-"+name)
	if err := os.Rename(filepath.Join(f.path, name), dst); err != nil {
		return "", err
	}
	if d, err := os.OpenRoot(f.held); err == nil {
		safefile.SyncDir(d)
		d.Close()
	}
	return dst, safefile.SyncDir(f.root)
}

// RemoveStale deletes temporary files (a sendmail that died before the
// rename) older than age, and returns how many it removed.
func (f *Folder) RemoveStale(age time.Duration) int {
	d, err := f.root.Open(".")
	if err != nil {
		return 0
	}
	defer d.Close()
	ents, _ := d.ReadDir(-1)
	n := 0
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > age && f.root.Remove(e.Name()) == nil {
			n++
		}
	}
	return n
}

func ownerUID(fi fs.FileInfo) int {
	if o, ok := safefile.OwnerOf(fi); ok {
		return o.UID
	}
	return -1
}

func linkCount(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 1
}

func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	case m.IsDir():
		return "folder"
	case m&fs.ModeNamedPipe != 0:
		return "FIFO"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "special file"
}
