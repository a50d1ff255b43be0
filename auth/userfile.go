package auth

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/inkan-relay/inkan/queue/safefile"
)

// Errors of the users-file editors; test with errors.Is.
var (
	ErrUserExists = errors.New("user already exists")
	ErrNoSuchUser = errors.New("no such user")
)

// maxUsersFile bounds what LoadUsers reads.
const maxUsersFile = 16 << 20

// userLine is one line of a users file; comments and blank lines have no name
// and are kept verbatim when the file is rewritten.
type userLine struct {
	raw  string
	name string
	hash string
	ph   passwordHash
}

// ValidateUserName refuses names the users file cannot hold: empty, longer
// than 320 bytes, invalid UTF-8, containing ':', white space or control
// characters, or starting with '#'.
func ValidateUserName(name string) error {
	switch {
	case name == "":
		return errors.New("empty user name")
	case len(name) > 320:
		return errors.New("user name longer than 320 bytes")
	case !utf8.ValidString(name):
		return errors.New("user name is not valid UTF-8")
	case name[0] == '#':
		return errors.New("user name may not start with '#'")
	}
	for _, r := range name {
		if r == ':' || unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("user name %q may not contain ':', white space or control characters", name)
		}
	}
	return nil
}

// parseUsers reads "name:hash" lines; errors are prefixed with file:line.
func parseUsers(data []byte, file string) ([]userLine, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	text := string(data)
	if text == "" {
		return nil, nil
	}
	text = strings.TrimSuffix(text, "\n")
	var lines []userLine
	seen := map[string]int{}
	for i, raw := range strings.Split(text, "\n") {
		raw = strings.TrimSuffix(raw, "\r")
		no := i + 1
		s := strings.TrimSpace(raw)
		if s == "" || s[0] == '#' {
			lines = append(lines, userLine{raw: raw})
			continue
		}
		name, hash, ok := strings.Cut(s, ":")
		name, hash = strings.TrimSpace(name), strings.TrimSpace(hash)
		if !ok {
			return nil, fmt.Errorf("%s:%d: want name:hash", file, no)
		}
		if err := ValidateUserName(name); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", file, no, err)
		}
		if prev, dup := seen[name]; dup {
			return nil, fmt.Errorf("%s:%d: user %q is already defined on line %d", file, no, name, prev)
		}
		seen[name] = no
		ph, err := parseHash(hash)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: user %q: %w", file, no, name, err)
		}
		lines = append(lines, userLine{raw: raw, name: name, hash: hash, ph: ph})
	}
	return lines, nil
}

func formatUsers(lines []userLine) []byte {
	var b bytes.Buffer
	for _, l := range lines {
		b.WriteString(l.raw)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// SetUser adds name with hash to the users file at path, or replaces its
// hash. The file (and its directory) is created when missing.
func SetUser(path, name, hash string) error { return setUser(path, name, hash, true, true) }

// AddUser is SetUser that fails with ErrUserExists when name is present.
func AddUser(path, name, hash string) error { return setUser(path, name, hash, true, false) }

// ChangePassword is SetUser that fails with ErrNoSuchUser when name is absent.
func ChangePassword(path, name, hash string) error { return setUser(path, name, hash, false, true) }

func setUser(path, name, hash string, add, replace bool) error {
	if err := ValidateUserName(name); err != nil {
		return err
	}
	if _, err := parseHash(hash); err != nil {
		return err
	}
	return editUsers(path, func(lines []userLine) ([]userLine, error) {
		line := userLine{raw: name + ":" + hash, name: name, hash: hash}
		for i, l := range lines {
			if l.name == name {
				if !replace {
					return nil, fmt.Errorf("%w: %s", ErrUserExists, name)
				}
				lines[i] = line
				return lines, nil
			}
		}
		if !add {
			return nil, fmt.Errorf("%w: %s", ErrNoSuchUser, name)
		}
		return append(lines, line), nil
	})
}

// DeleteUser removes name from the users file; ErrNoSuchUser when absent.
func DeleteUser(path, name string) error {
	return editUsers(path, func(lines []userLine) ([]userLine, error) {
		for i, l := range lines {
			if l.name == name {
				return append(lines[:i], lines[i+1:]...), nil
			}
		}
		return nil, fmt.Errorf("%w: %s", ErrNoSuchUser, name)
	})
}

// ListUsers returns the user names in the file at path, sorted; a missing
// file has none.
func ListUsers(path string) ([]string, error) {
	lines, err := readUsersForEdit(path)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, l := range lines {
		if l.name != "" {
			names = append(names, l.name)
		}
	}
	sort.Strings(names)
	return names, nil
}

func readUsersForEdit(path string) ([]userLine, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read users file: %w", err)
	}
	return parseUsers(data, path)
}

// editUsers rewrites the users file with safefile.WriteFile (atomic, mode
// 0600 for a new file, the old file's owner kept). A symlinked path is
// followed so the link survives.
func editUsers(path string, edit func([]userLine) ([]userLine, error)) error {
	if path == "" {
		return errors.New("no users file configured (auth.users_file)")
	}
	if p, err := filepath.EvalSymlinks(path); err == nil {
		path = p
	}
	lines, err := readUsersForEdit(path)
	if err != nil {
		return err
	}
	if lines, err = edit(lines); err != nil {
		return err
	}
	if err := safefile.WriteFile(path, formatUsers(lines), 0o600); err != nil {
		return fmt.Errorf("users file: %w", err)
	}
	return nil
}
