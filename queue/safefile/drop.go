package safefile

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Drop writes data durably as a new file in dir, a folder the caller may add
// files to but not list or open (a maildrop, mode 1733 or 3733), and returns
// the file's name, prefix followed by random letters.
//
// The steps are those of WriteFile, without the ones that need to open the
// folder: a temporary file "."+prefix+RANDOM is created with O_EXCL and
// O_NOFOLLOW (nothing planted under its name is opened or followed), given
// mode perm exactly (whatever the umask), written and fsynced, then renamed
// to its final name; the rename is made durable with syncfs on the file,
// which commits the file system's metadata, since the folder cannot be
// opened to fsync it. Readers of dir never see a partial file under a name
// without the leading dot. On failure the temporary file is removed.
func Drop(dir, prefix string, data []byte, perm fs.FileMode) (name string, err error) {
	var f *os.File
	var tmp string
	for range 10 {
		name = prefix + rand.Text()
		tmp = filepath.Join(dir, "."+name)
		f, err = os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|noFollow, 0o600)
		if !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	if err != nil {
		return "", fmt.Errorf("create a file in %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return "", fmt.Errorf("write %s: %w", tmp, err)
	}
	if _, err = f.Write(data); err != nil {
		return "", fmt.Errorf("write %s: %w", tmp, err)
	}
	if err = f.Sync(); err != nil {
		return "", fmt.Errorf("write %s: fsync: %w", tmp, err)
	}
	if err = os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return "", fmt.Errorf("write %s: %w", tmp, err)
	}
	tmp = filepath.Join(dir, name) // from here on, a failure removes the final name
	if err = syncFS(f); err != nil {
		return "", fmt.Errorf("write %s: %w", tmp, err)
	}
	if err = f.Close(); err != nil {
		return "", fmt.Errorf("write %s: %w", tmp, err)
	}
	return name, nil
}
