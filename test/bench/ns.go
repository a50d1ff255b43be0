package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Every system runs in a private mount namespace whose /etc/resolv.conf
// holds only "lookup file" and "nameserver 127.0.0.1", as
// shared/bench/peers.sh does: no
// resolver of any system can reach past loopback (the bench is offline),
// and none waits on an unreachable name server. The namespace is made by
// `unshare -m` (mounts private by default), which execs, so the PID the
// harness starts is the server's own.

// nsScript bind-mounts $0 on /etc/resolv.conf and execs the command.
const nsScript = `mount --bind "$0" /etc/resolv.conf || exit 1; exec "$@"`

// nsCommand returns name args... to run in such a namespace with resolv
// (or as is when resolv is "").
func nsCommand(resolv, name string, args ...string) *exec.Cmd {
	if resolv == "" {
		return exec.Command(name, args...)
	}
	return exec.Command("unshare", append([]string{"-m", "sh", "-c", nsScript, resolv, name}, args...)...)
}

// nsArgs is nsCommand for runCmd.
func nsArgs(resolv, name string, args ...string) (string, []string) {
	if resolv == "" {
		return name, args
	}
	return "unshare", append([]string{"-m", "sh", "-c", nsScript, resolv, name}, args...)
}

// privateResolv writes the namespace's resolv.conf under work and checks
// that a namespace can be made here; it returns "" (and says so) when not.
func privateResolv(work string) string {
	f := filepath.Join(work, "resolv.conf")
	if err := os.WriteFile(f, []byte("lookup file\nnameserver 127.0.0.1\n"), 0o644); err != nil {
		logf("WARNING no private resolv.conf (%v): systems use the machine's", err)
		return ""
	}
	name, args := nsArgs(f, "true")
	if _, err := runCmd(30*time.Second, "", name, args...); err != nil {
		logf("WARNING cannot make a private mount namespace (%v): systems use the machine's resolv.conf", err)
		return ""
	}
	return f
}

// peersBatch: the peers run under SCHED_BATCH (-peers-batch).
var peersBatch bool

// peerCmd is name args... for a peer's process, under `chrt -b 0` when
// peersBatch is set (chrt execs, so the PID stays the server's).
func peerCmd(name string, args ...string) (string, []string) {
	if !peersBatch {
		return name, args
	}
	return "chrt", append([]string{"-b", "0", name}, args...)
}
