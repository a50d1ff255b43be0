// Package maildrop is the folder where `inkan sendmail` leaves a message
// while the server does not answer (a restart, an upgrade, a crash), and
// where the server picks it up when it runs: Postfix's maildrop and pickup,
// without a set-group-ID helper program.
//
// # Promises
//
//   - Write returns only after the message is on disk: file fsynced, renamed
//     to its final name, the rename committed (safefile.Drop). A caller that
//     got no error may exit 0; the message survives a crash or a reboot.
//   - A file is never changed in place. The server reads it, submits it, and
//     only then removes it, so a crash in between sends it twice rather than
//     not at all. A file the server cannot read or that the server refuses
//     is moved aside into a held folder, never deleted silently.
//   - Who submitted a file is the file's owner, which the kernel sets to the
//     uid that created it. Nothing inside the file says who wrote it.
//
// # Threat model
//
// The writers are every local user, some of them hostile; the reader is the
// server, running as root or as its own user. The folder is owned by the
// server's user, mode 3733 (drwx-wx-wt with set-group-ID):
//
//   - every user may create a file (write and search), none may list the
//     folder (no read), so a user cannot learn the names of others' files;
//   - the sticky bit lets only a file's owner, the folder's owner and root
//     rename or delete it: a user cannot remove or replace another's message;
//   - set-group-ID gives each new file the folder's group (the server's), and
//     Write makes it mode 0640: the server may read it, other users may not,
//     even knowing its name;
//   - a user cannot inject a message as another uid: the owner is the
//     creator; a hard link to another user's file (which fs.protected_hardlinks
//     forbids anyway) has a link count above one and is refused; a symbolic
//     link, FIFO, socket or folder is not a regular file and is refused;
//     a file is opened without following links and without blocking, and is
//     checked after opening to be the regular file that was listed;
//   - a user may fill the disk, as with any folder they can write; files
//     larger than the server's message size limit are held, not read.
//
// The folder must sit in folders the server's user owns and others cannot
// write (data_dir, made passable with o+x by Traversable), so no user can
// swap the folder itself.
package maildrop

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"

	"github.com/inkan-relay/inkan/queue/safefile"
)

// Mode is the folder's mode: set-group-ID, sticky, rwx for the server's user,
// -wx for its group and every other user.
const Mode = fs.ModeDir | fs.ModeSetgid | fs.ModeSticky | 0o733

// FileMode is the mode of a dropped file: the server's group may read it.
const FileMode fs.FileMode = 0o640

// magic is the first line of every file, with the format version.
const magic = "inkan-maildrop 1\n"

// prefix starts every final file name; temporary names add a dot in front.
const prefix = "m"

// Envelope is what sendmail was asked to do with the message.
type Envelope struct {
	From   string   `json:"from"`             // envelope sender; "" = <>
	To     []string `json:"to"`               // recipients, in order
	Notify []string `json:"notify,omitempty"` // DSN NOTIFY for every recipient (sendmail -N)
	Ret    string   `json:"ret,omitempty"`    // DSN RET: FULL or HDRS (sendmail -R)
	EnvID  string   `json:"envid,omitempty"`  // DSN ENVID (sendmail -V)
	UTF8   bool     `json:"smtputf8,omitempty"`
	// Size is the length of the message that follows; a file whose message
	// has another length is held as damaged.
	Size    int64     `json:"size"`
	Created time.Time `json:"created"`
}

// Write drops msg (CRLF line ends, as it will be submitted) with env into
// the maildrop folder dir, as the calling user, and returns the file name.
func Write(dir string, env Envelope, msg []byte) (string, error) {
	env.Size = int64(len(msg))
	if env.Created.IsZero() {
		env.Created = time.Now().UTC()
	}
	head, err := json.Marshal(env)
	if err != nil {
		return "", err
	}
	data := make([]byte, 0, len(magic)+len(head)+1+len(msg))
	data = append(append(append(append(data, magic...), head...), '\n'), msg...)
	return safefile.Drop(dir, prefix, data, FileMode)
}

// Parse reads a dropped file: its envelope, then the message.
func Parse(r io.Reader, max int64) (Envelope, []byte, error) {
	var env Envelope
	br := bufio.NewReader(io.LimitReader(r, max+1))
	first, err := br.ReadString('\n')
	if err != nil || first != magic {
		return env, nil, errors.New("not a maildrop file (first line is not " + strings.TrimSpace(magic) + ")")
	}
	head, err := br.ReadBytes('\n')
	if err != nil {
		return env, nil, errors.New("no envelope line")
	}
	dec := json.NewDecoder(bytes.NewReader(head))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&env); err != nil {
		return env, nil, fmt.Errorf("envelope: %w", err)
	}
	msg, err := io.ReadAll(br)
	if err != nil {
		return env, nil, err
	}
	if int64(len(first)+len(head)+len(msg)) > max {
		return env, nil, fmt.Errorf("larger than %d bytes", max)
	}
	if int64(len(msg)) != env.Size {
		return env, nil, fmt.Errorf("message is %d bytes, the envelope says %d (cut short?)", len(msg), env.Size)
	}
	if len(env.To) == 0 {
		return env, nil, errors.New("no recipients")
	}
	return env, msg, nil
}
