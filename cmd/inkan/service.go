package main

import (
	"os"
	"os/user"
	"strconv"

	"github.com/inkan-relay/inkan/queue/safefile"
)

// serviceUser is the account the systemd unit and the sysusers file run
// inkan as. A variable so that a package can build inkan for another name
// (-ldflags "-X main.serviceUser=mail"), and tests for an account that
// exists everywhere.
var serviceUser = "inkan"

// judgedAs names the account whose view the file checks take, when it is
// not the process's own ("" otherwise); set by judgeAsService.
var judgedAs string

// judgeAsService makes the file checks (safefile.Check: users file, data
// directory) of root's administrative commands (check, user, queue...)
// judge files as the service account does, when that account exists: a
// file of root or of the service account, readable by the service's group
// at most. So `sudo inkan check` and `sudo inkan user add` accept the 0640
// root:inkan users file and the inkan-owned data directory the service
// uses, instead of telling the administrator to chmod 0600 or chown 0 what
// the service must read.
func judgeAsService() {
	if os.Geteuid() != 0 {
		return
	}
	if p, ok := serviceProcess(); ok {
		judgedAs = serviceUser
		safefile.Self = func() safefile.Process { return p }
	}
}

// rootReadsForService lets `inkan serve` run by root (the README's
// walk-through, before the systemd unit takes over) accept files readable
// by the service account's group, which is where the ownership model puts
// them. It trusts no other owner: root's process stays root's.
func rootReadsForService() {
	if os.Geteuid() != 0 {
		return
	}
	svc, ok := serviceProcess()
	if !ok {
		return
	}
	p := safefile.Self()
	p.Groups = append(append([]int(nil), p.Groups...), svc.Groups...)
	safefile.Self = func() safefile.Process { return p }
}

// serviceProcess is the service account and its groups.
func serviceProcess() (safefile.Process, bool) {
	u, err := user.Lookup(serviceUser)
	if err != nil {
		return safefile.Process{}, false
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil || uid == 0 {
		return safefile.Process{}, false
	}
	p := safefile.Process{UID: uid}
	if g, err := strconv.Atoi(u.Gid); err == nil {
		p.Groups = append(p.Groups, g)
	}
	gids, _ := u.GroupIds()
	for _, s := range gids {
		if g, err := strconv.Atoi(s); err == nil {
			p.Groups = append(p.Groups, g)
		}
	}
	return p, true
}
