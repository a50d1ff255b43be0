package safefile

import (
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
)

// UnsafeError says why a file or folder is not trusted, and what fixes it.
type UnsafeError struct {
	What    string // "users file", "data directory", "spool"...
	Path    string
	Problem string // "is owned by uid 1001 (mallory), ..."
	Fix     string // "run chown 0 /path"
}

func (e *UnsafeError) Error() string {
	return fmt.Sprintf("%s %s %s: %s", e.What, e.Path, e.Problem, e.Fix)
}

// Process is a user and the groups it is in: who Check decides for.
type Process struct {
	UID    int
	Groups []int // effective and supplementary
}

// Self is the running process.
var Self = sync.OnceValue(func() Process {
	g, _ := os.Getgroups()
	return Process{UID: os.Geteuid(), Groups: append(g, os.Getegid())}
})

// Check is Self().Check.
func Check(what, path string, fi fs.FileInfo, owners ...int) error {
	return Self().Check(what, path, fi, owners...)
}

// Check returns an *UnsafeError when fi (the Lstat of path, or the Stat of
// an open file) describes something inkan, running as p, must not trust,
// and nil otherwise. what names it in the error ("users file").
//
//   - The owner must be root, p's user, or one of owners (root acting for
//     the owner of a spool passes that owner).
//   - Every user: may not write; may not read a file.
//   - A file (a secret: passwords, keys) may be read, not written, by its
//     group, and only when p is in that group. So a root-owned 0440 or 0640
//     file of inkan's group (a Kubernetes secret with fsGroup, a file in
//     /etc/inkan) is accepted, and so is a 0600 file of inkan's user.
//   - A folder may be written by its group when p is in it (a Kubernetes
//     volume with fsGroup), and listed by anyone: what inkan keeps in it has
//     its own private mode.
//
// A symbolic link is refused: open it first and check what it points to.
func (p Process) Check(what, path string, fi fs.FileInfo, owners ...int) error {
	if fi.Mode()&fs.ModeSymlink != 0 {
		return &UnsafeError{What: what, Path: path, Problem: "is a symbolic link", Fix: "point the setting at the real file or folder"}
	}
	uid, gid, ok := ownerOf(fi)
	if !ok {
		return nil // no owners on this system
	}
	return p.CheckMode(what, path, fi.Mode(), uid, gid, owners...)
}

// CheckMode is Check for a file or folder (mode.IsDir()) described by its
// mode, owner and group.
func (p Process) CheckMode(what, path string, mode fs.FileMode, uid, gid int, owners ...int) error {
	bad := func(problem, fix string) error {
		return &UnsafeError{What: what, Path: path, Problem: problem, Fix: fix}
	}
	euid := p.UID
	if uid != 0 && uid != euid && !slices.Contains(owners, uid) {
		return bad(fmt.Sprintf("is owned by %s, not by root or by %s that inkan runs as", describeUser(uid), describeUser(euid)),
			fmt.Sprintf("run chown %d %s, or run inkan as its owner", euid, path))
	}
	perm, dir := mode.Perm(), mode.IsDir()
	ourGroup := slices.Contains(p.Groups, gid)
	group := "group " + describeGroup(gid)
	if !ourGroup {
		group += ", which inkan is not in"
	}
	var mask fs.FileMode
	var problem string
	refuse := func(bits fs.FileMode, text string) {
		if perm&bits != 0 && problem == "" {
			problem = fmt.Sprintf("%s (mode %04o)", text, perm)
		}
		mask |= bits
	}
	refuse(0o002, "may be written by every user")
	if !dir {
		refuse(0o004, "may be read by every user")
	}
	if !dir || !ourGroup {
		refuse(0o020, "may be written by "+group)
	}
	if !dir && !ourGroup {
		refuse(0o040, "may be read by "+group)
	}
	if problem == "" {
		return nil
	}
	return bad(problem, fmt.Sprintf("run chmod %04o %s", perm&^mask, path))
}

func describeUser(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return fmt.Sprintf("uid %d (%s)", uid, u.Username)
	}
	return fmt.Sprintf("uid %d", uid)
}

func describeGroup(gid int) string {
	if g, err := user.LookupGroupId(strconv.Itoa(gid)); err == nil {
		return fmt.Sprintf("%d (%s)", gid, g.Name)
	}
	return strconv.Itoa(gid)
}

// MakeDir creates the folder path (mode 0700, with its parents) when it is
// missing, and checks the folder it names (following links: path is a
// setting the administrator chose) with Check.
func MakeDir(what, path string) error {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return fmt.Errorf("create %s %s: %w", what, path, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return Check(what, path, fi)
}

// OpenDir opens the folder path as an os.Root after checking it with Check.
// The last element of path must not be a symbolic link. It returns the
// folder's FileInfo too.
func OpenDir(what, path string, owners ...int) (*os.Root, fs.FileInfo, error) {
	root, err := os.OpenRoot(path)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", what, err)
	}
	fi, err := checkOpened(what, path, root, func() (fs.FileInfo, error) { return os.Lstat(path) }, owners)
	if err != nil {
		root.Close()
		return nil, nil, err
	}
	return root, fi, nil
}

// OpenSubdir opens the folder name inside parent, creating it with mode
// 0700 (and giving it to owner, when not nil) when missing, and checks it
// like OpenDir. A name that is a symbolic link is refused, even one that
// stays inside parent.
func OpenSubdir(what string, parent *os.Root, name string, owner *Owner, owners ...int) (*os.Root, error) {
	path := filepath.Join(parent.Name(), name)
	if err := parent.Mkdir(name, 0o700); err == nil {
		if owner != nil {
			if err := parent.Lchown(name, owner.UID, owner.GID); err != nil {
				return nil, fmt.Errorf("create %s: %w", what, err)
			}
		}
	} else if !os.IsExist(err) {
		return nil, fmt.Errorf("create %s: %w", what, err)
	}
	lfi, err := parent.Lstat(name)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", what, err)
	}
	if err := RefuseLink(what, path, lfi); err != nil {
		return nil, err
	}
	if err := Check(what, path, lfi, owners...); err != nil {
		return nil, err
	}
	root, err := parent.OpenRoot(name)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", what, err)
	}
	if _, err := checkOpened(what, path, root, func() (fs.FileInfo, error) { return lfi, nil }, owners); err != nil {
		root.Close()
		return nil, err
	}
	return root, nil
}

// checkOpened checks the folder root was opened as, and that the name it
// was opened by (lstat) is that same folder and not a link to it.
func checkOpened(what, path string, root *os.Root, lstat func() (fs.FileInfo, error), owners []int) (fs.FileInfo, error) {
	fi, err := root.Stat(".")
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", what, err)
	}
	lfi, err := lstat()
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", what, err)
	}
	if lfi.Mode()&fs.ModeSymlink != 0 || !os.SameFile(fi, lfi) {
		return nil, &UnsafeError{What: what, Path: path, Problem: "is a symbolic link, which inkan does not follow here",
			Fix: "replace it with a real folder, or point the setting at the real folder"}
	}
	if err := Check(what, path, fi, owners...); err != nil {
		return nil, err
	}
	return fi, nil
}

// RefuseLink returns an *UnsafeError when lfi (from Lstat) is a symbolic
// link: for a file or folder inkan makes itself inside a folder it owns,
// where a link can only have been planted.
func RefuseLink(what, path string, lfi fs.FileInfo) error {
	if lfi.Mode()&fs.ModeSymlink == 0 {
		return nil
	}
	return &UnsafeError{What: what, Path: path, Problem: "is a symbolic link, which inkan does not follow in its own folders",
		Fix: "remove the link (rm " + path + "); inkan makes a new one"}
}

// Owner is a user and group to give new files to.
type Owner struct{ UID, GID int }

// OwnerOf returns the owner of fi, when the system has owners.
func OwnerOf(fi fs.FileInfo) (Owner, bool) {
	uid, gid, ok := ownerOf(fi)
	return Owner{uid, gid}, ok
}
