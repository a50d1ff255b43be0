package main

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/queue/safefile"
)

// serviceUserName is the account inkan runs as under systemd
// (deploy/systemd/inkan.sysusers).
const serviceUserName = "inkan"

// mayRedirect decides whether the sendmail options in flags (-server,
// -config) may be used. sendmail's arguments often come from a script: PHP
// hands mail()'s fifth parameter to it, and an attacker who controls part of
// that parameter adds options. With -server or -config they would send the
// message (password-reset links, Bcc recipients) to a server of their
// choosing. So only these users may use them:
//
//   - root;
//   - the account named "inkan" (the systemd sysusers account);
//   - the owner of the data directory that the default configuration names
//     (INKAN_CONFIG, INKAN_DATA_DIR: the container image's uid 65532 owns
//     /var/lib/inkan).
//
// Everyone else submits where the operator's configuration or environment
// says (INKAN_SENDMAIL_SERVER, INKAN_CONFIG), which an argument cannot
// change.
func mayRedirect(flags []string) error {
	if len(flags) == 0 {
		return nil
	}
	uid := os.Geteuid()
	if uid == 0 {
		return nil
	}
	name := "uid " + strconv.Itoa(uid)
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		if u.Username == serviceUserName {
			return nil
		}
		name += " (" + u.Username + ")"
	}
	if owner, ok := dataDirOwner(); ok && owner == uid {
		return nil
	}
	return fmt.Errorf("%s may only be used by root or the user inkan runs as (the account %q or the owner of its data directory); %s is neither. "+
		"Leave %s out to submit to the local inkan, or have the administrator set INKAN_SENDMAIL_SERVER or INKAN_CONFIG in the environment",
		strings.Join(flags, " and "), serviceUserName, name, strings.Join(flags, " and "))
}

// dataDirOwner returns the owner of the data directory of the
// configuration found without -config (config.Discover: INKAN_CONFIG,
// /etc/inkan/inkan.yaml, the per-user file, the embedded default), when
// there is one. Arguments cannot change which file that is.
func dataDirOwner() (int, bool) {
	cfg, _, err := config.LoadDiscovered("")
	if err != nil || cfg.DataDir == "" {
		return 0, false
	}
	fi, err := os.Lstat(cfg.DataDir)
	if err != nil || !fi.IsDir() {
		return 0, false
	}
	o, ok := safefile.OwnerOf(fi)
	return o.UID, ok
}
