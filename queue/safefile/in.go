package safefile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// The queue opens, creates and renames a few files per message in folders
// it holds open. os.Root does that safely but costs, per open of a regular
// file, five system calls more than the open itself (Go tries and fails to
// register the file with its network poller, switching O_NONBLOCK on and
// off around it), and per rename two folder opens and closes. OpenIn,
// CreateTempIn and RenameIn do the same confined work on an open folder
// with one openat or renameat: names are single path elements, the last
// element is never followed if it is a symbolic link, and the folder file
// cannot be closed under them.

// checkName refuses a name that is not one element of the folder.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return fmt.Errorf("%q is not a file name in the folder", name)
	}
	return nil
}

// OpenIn opens the file name in the open folder dir with flag and perm (see
// os.OpenFile), refusing a symbolic link (O_NOFOLLOW).
func OpenIn(dir *os.File, name string, flag int, perm fs.FileMode) (*os.File, error) {
	if err := checkName(name); err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	rc, err := dir.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	var oerr error
	err = rc.Control(func(dfd uintptr) {
		for {
			fd, oerr = unix.Openat(int(dfd), name, flag|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(perm.Perm()))
			if !errors.Is(oerr, unix.EINTR) {
				return
			}
		}
	})
	if err == nil {
		err = oerr
	}
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
}

// CreateTempIn is CreateTemp in the open folder dir.
func CreateTempIn(dir *os.File, prefix string, perm fs.FileMode) (*os.File, string, error) {
	for range 10 {
		name := tempName(prefix)
		f, err := OpenIn(dir, name, os.O_RDWR|os.O_CREATE|os.O_EXCL, perm)
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

// RenameIn renames oldname in the open folder from to newname in the open
// folder to, replacing a file (or a link, not its target) of that name.
func RenameIn(from *os.File, oldname string, to *os.File, newname string) error {
	if err := checkName(oldname); err != nil {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: err}
	}
	if err := checkName(newname); err != nil {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: err}
	}
	rf, err := from.SyscallConn()
	if err != nil {
		return err
	}
	rt, err := to.SyscallConn()
	if err != nil {
		return err
	}
	var rerr error
	err = rf.Control(func(ffd uintptr) {
		err := rt.Control(func(tfd uintptr) {
			rerr = unix.Renameat(int(ffd), oldname, int(tfd), newname)
		})
		if rerr == nil {
			rerr = err
		}
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: err}
	}
	return nil
}
