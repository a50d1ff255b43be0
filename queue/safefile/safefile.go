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
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	root, base, err := openParent(path, true)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer root.Close()
	var keep func(*os.File) error
	if old, err := root.Lstat(base); err == nil && old.Mode().IsRegular() {
		keep = func(f *os.File) error {
			if err := keepOwner(f, old); err != nil {
				return fmt.Errorf("keep the owner of the old file: %w", err)
			}
			return nil
		}
		perm |= old.Mode().Perm() & 0o040
	}
	tmp, err := writeTemp(root, base, data, perm, keep)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := root.Rename(tmp, base); err != nil {
		root.Remove(tmp)
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
func CreateNew(path string, data []byte, perm fs.FileMode) error {
	root, base, err := openParent(path, false)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	defer root.Close()
	tmp, err := writeTemp(root, base, data, perm, nil)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	defer root.Remove(tmp) // the link keeps the file
	if err := root.Link(tmp, base); err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if err := SyncDir(root); err != nil {
		root.Remove(base)
		return fmt.Errorf("create %s: %w", path, err)
	}
	return nil
}

// openParent opens the folder of path (making it, mode 0700, if mkdir) and
// returns it with the file's name in it.
func openParent(path string, mkdir bool) (*os.Root, string, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if base == "" {
		return nil, "", errors.New("not a file name")
	}
	if mkdir {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, "", err
		}
	}
	root, err := os.OpenRoot(dir)
	return root, base, err
}

// writeTemp writes data to a new temporary file beside base in root, with
// mode perm (set after prepare, which may chown and so clear bits; and the
// umask may have taken some away), fsynced and closed, and returns its name.
// On error nothing is left behind.
func writeTemp(root *os.Root, base string, data []byte, perm fs.FileMode, prepare func(*os.File) error) (tmp string, err error) {
	f, tmp, err := CreateTemp(root, "."+base+".tmp", perm)
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			f.Close()
			root.Remove(tmp)
		}
	}()
	if prepare != nil {
		if err := prepare(f); err != nil {
			return "", err
		}
	}
	if err := f.Chmod(perm); err != nil {
		return "", err
	}
	if _, err := f.Write(data); err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("fsync: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", err // the deferred Close is then a harmless no-op
	}
	return tmp, nil
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
