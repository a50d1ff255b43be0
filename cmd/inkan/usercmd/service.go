package usercmd

import (
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// serviceUser is the account the systemd unit runs inkan as.
const serviceUser = "inkan"

// serviceCanRead warns root when the users file it just wrote cannot be
// read by the service user (when that user exists): the file ownership
// model is root-owned and readable by inkan's group (0640 root:inkan), or
// owned by inkan itself.
func serviceCanRead(file string, stderr io.Writer) {
	if os.Geteuid() != 0 {
		return
	}
	u, err := user.Lookup(serviceUser)
	if err != nil {
		return
	}
	fi, err := os.Stat(file)
	if err != nil {
		return
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return
	}
	uid, gid := strconv.Itoa(int(st.Uid)), strconv.Itoa(int(st.Gid))
	if uid == u.Uid || (gid == u.Gid && fi.Mode().Perm()&0o040 != 0) {
		return
	}
	fmt.Fprintf(stderr, "warning: the %s service user cannot read %s (owner %s, group %s, mode %04o); run: chgrp %s %s && chmod 0640 %s\n",
		serviceUser, file, uid, gid, fi.Mode().Perm(), serviceUser, file, file)
}
