// Package safefile is how inkan writes its state to disk and opens the
// folders it keeps state in. It is the durable-storage layer under the queue,
// the users file and the generated certificates, and imports nothing of
// inkan.
//
// Promises:
//
//   - WriteFile replaces a file atomically and durably: a new temporary file
//     in the same folder, write, fsync, rename over the old name, fsync of
//     the folder. Readers see the old content or the new one, never a mix;
//     after a crash, one of the two. The queue does the same steps with
//     CreateTemp and its own batched rename and folder fsync (group commit).
//   - CreateNew is WriteFile for a file that must not exist yet (a private
//     key): the same steps, but the new name is a hard link to the
//     temporary file, which fails if anything, a link included, has it.
//   - Nothing here follows a symbolic link out of the folder it works in:
//     OpenDir refuses a folder that is a link, a temporary file is created
//     with O_EXCL, a rename replaces a link rather than its target, and
//     folders are used through os.Root, which refuses paths that leave them.
//     So root running `inkan queue` or `inkan user` in a folder another user
//     owns cannot be made to write, move or delete files elsewhere.
//   - Check refuses what inkan must not trust: a file or folder owned by a
//     user other than root and the user inkan runs as, one that others may
//     write, or a secret file that others may read. Its errors say what to
//     run to fix it.
package safefile

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// WriteFile atomically and durably replaces path with data (see the package
// promises). The file gets mode perm. A file being replaced keeps its owner
// and group, and its group may still read it if it could: root editing a
// file of the service user (0600 inkan:inkan, or 0640 root:inkan) leaves it
// readable by the service. If path is a symbolic link, the link is replaced,
// not its target. Missing folders are created with mode 0700.
func WriteFile(path string, data []byte, perm fs.FileMode) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if base == "" {
		return fmt.Errorf("write %s: not a file name", path)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer root.Close()
	f, tmp, err := CreateTemp(root, "."+base+".tmp", perm)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			root.Remove(tmp)
		}
	}()
	if old, err := root.Lstat(base); err == nil && old.Mode().IsRegular() {
		if err := keepOwner(f, old); err != nil {
			return fmt.Errorf("write %s: keep the owner of the old file: %w", path, err)
		}
		perm |= old.Mode().Perm() & 0o040
	}
	// After the chown, which may clear bits; and the umask may have taken
	// some away: perm is what was asked for.
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: fsync: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := root.Rename(tmp, base); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := SyncDir(root); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// CreateNew writes data, durably, to a new file path with mode perm and
// fails with an error wrapping fs.ErrExist if path exists (as anything,
// a dangling link included). Readers never see the file half written.
func CreateNew(path string, data []byte, perm fs.FileMode) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if base == "" {
		return fmt.Errorf("create %s: not a file name", path)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	defer root.Close()
	f, tmp, err := CreateTemp(root, "."+base+".tmp", perm)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	defer root.Remove(tmp) // the link keeps the file
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("create %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("create %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("create %s: fsync: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if err := root.Link(tmp, base); err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if err := SyncDir(root); err != nil {
		root.Remove(base)
		return fmt.Errorf("create %s: %w", path, err)
	}
	return nil
}

// CreateTemp creates a new file prefix.RANDOM in dir with mode perm (less
// the umask), opened for reading and writing, and returns it with its name.
// O_EXCL makes it fail rather than open an existing file or follow a link
// planted under that name.
func CreateTemp(dir *os.Root, prefix string, perm fs.FileMode) (*os.File, string, error) {
	for range 10 {
		name := tempName(prefix)
		f, err := dir.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, perm)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, "", err
		}
		return f, name, nil
	}
	return nil, "", errors.New("cannot create a temporary file")
}

func tempName(prefix string) string { return prefix + "." + rand.Text()[:16] }

// SyncDir fsyncs the folder dir, so that renames and new files in it survive
// a crash. File systems that cannot sync a folder (EINVAL, ENOTSUP) are
// taken at their word.
func SyncDir(dir *os.Root) error {
	d, err := dir.Open(".")
	if err != nil {
		return fmt.Errorf("open folder for fsync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSUP) {
		return fmt.Errorf("fsync folder: %w", err)
	}
	return nil
}

// keepOwner gives f the owner and group of old when they differ from the
// process's.
func keepOwner(f *os.File, old fs.FileInfo) error {
	uid, gid, ok := ownerOf(old)
	if !ok || (uid == os.Geteuid() && gid == os.Getegid()) {
		return nil
	}
	return f.Chown(uid, gid)
}

func ownerOf(fi fs.FileInfo) (uid, gid int, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return int(st.Uid), int(st.Gid), true
}
