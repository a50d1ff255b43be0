package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The anchor's setup (shared/bench/anchor-postfix.sh), reimplemented so that
// one process can drive every stack into the same sink: smtpd on
// 127.0.0.1:10587 -> [OpenDKIM milter inet:127.0.0.1:8891, or rspamd's proxy
// worker in milter mode on 127.0.0.1:11332 (rspamd.go); RSA-2048,
// relaxed/relaxed] -> queue -> smtp client -> relayhost = the sink.
//
// Unlike the anchor it runs a private Postfix instance (`postfix -c DIR`,
// with its own queue and data directories under the work dir), so it never
// touches /etc/postfix or a Postfix someone else runs on the machine.

const (
	opendkimSel = "s1"
	postfixEtc  = "/etc/postfix" // only read: master.cf.proto, dynamicmaps
)

var postfixQueues = []string{"incoming", "active", "deferred", "maildrop", "hold", "defer", "bounce", "trace", "flush"}

// debPackages are the Debian packages the harness needs, and a file each
// one installs (to tell whether it is there).
var debPackages = []struct{ pkg, file string }{
	{"postfix", "/usr/sbin/postfix"},
	{"postfix", "/usr/sbin/smtp-source"},
	{"postfix", "/usr/sbin/smtp-sink"},
	{"opendkim", "/usr/sbin/opendkim"},
	{"opendkim-tools", "/usr/sbin/opendkim-genkey"},
	{"python3-dkim", "/usr/lib/python3/dist-packages/dkim"},
	{"python3-nacl", "/usr/lib/python3/dist-packages/nacl"},
	{"rspamd", rspamdBin}, // only with postfix-rspamd among the systems
}

// missingPackages lists the packages not installed (rspamd only when
// wanted), each once.
func missingPackages(wantRspamd bool, exists func(string) bool) []string {
	var out []string
	for _, p := range debPackages {
		if (p.pkg == "rspamd" && !wantRspamd) || exists(p.file) || contains(out, p.pkg) {
			continue
		}
		out = append(out, p.pkg)
	}
	return out
}

// ensurePackages installs the missing Debian packages with apt-get (after
// `apt-get update` when the first attempt fails), with services kept from
// starting as shared/bench/peers.sh does: rspamd's package would otherwise
// start the distribution's full rspamd.
func ensurePackages(install, wantRspamd bool) error {
	missing := missingPackages(wantRspamd, func(f string) bool { _, err := os.Stat(f); return err == nil })
	if len(missing) == 0 {
		return nil
	}
	if !install {
		return fmt.Errorf("missing packages: apt-get install %s (or run without -install=false)", strings.Join(missing, " "))
	}
	logf("installing %s", strings.Join(missing, " "))
	if _, err := runCmd(time.Minute, "postfix postfix/main_mailer_type select No configuration\n", "debconf-set-selections"); err != nil {
		return err
	}
	const policy = "/usr/sbin/policy-rc.d"
	if _, err := os.Stat(policy); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(policy, []byte("#!/bin/sh\n# inkan-bench: no service starts during apt-get install\nexit 101\n"), 0o755); err != nil {
			return fmt.Errorf("write %s: %w", policy, err)
		}
		defer os.Remove(policy)
	}
	apt := func(args ...string) error {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %s: %w\n%s", strings.Join(args, " "), err, b)
		}
		return nil
	}
	args := append([]string{"install", "-y", "-qq", "--no-install-recommends"}, missing...)
	if err := apt(args...); err != nil {
		logf("apt-get install failed; running apt-get update and retrying")
		if err := apt("update", "-qq"); err != nil {
			return err
		}
		return apt(args...)
	}
	return nil
}

// postfixEnv is the private Postfix instance shared by both Postfix variants.
type postfixEnv struct {
	dir        string // work dir: etc/, spool/, data/, keys/, opendkim.conf, rspamd/, logs
	key        dkimKey
	smtpdPort  int
	milter     int // OpenDKIM's port
	rspamdPort int // rspamd proxy worker's (milter) port
	sinkPort   int
	resolv     string // private-namespace resolv.conf, "" = none
}

func (p *postfixEnv) etc() string     { return filepath.Join(p.dir, "etc") }
func (p *postfixEnv) spool() string   { return filepath.Join(p.dir, "spool") }
func (p *postfixEnv) maillog() string { return filepath.Join(p.dir, "maillog") }

func (p *postfixEnv) masterPID() int {
	b, err := os.ReadFile(filepath.Join(p.spool(), "pid", "master.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// postfix runs the postfix command on the private instance.
func (p *postfixEnv) postfix(args ...string) error {
	_, err := runCmd(2*time.Minute, "", "postfix", append([]string{"-c", p.etc()}, args...)...)
	return err
}

func (p *postfixEnv) postconf(args ...string) error {
	_, err := runCmd(time.Minute, "", "postconf", append([]string{"-c", p.etc()}, args...)...)
	return err
}

// prepare makes the OpenDKIM key and config, rspamd's config (withRspamd)
// and the private Postfix instance.
func (p *postfixEnv) prepare(withRspamd bool) error {
	if pid := p.masterPID(); pidAlive(pid) {
		// Only this harness uses this instance: a master left by an
		// interrupted run is ours to stop.
		logf("stopping the bench Postfix instance left running (master pid %d)", pid)
		p.stopMaster(pid)
	}
	if err := p.opendkim(); err != nil {
		return err
	}
	if withRspamd {
		if err := p.rspamd(); err != nil {
			return err
		}
	}
	return p.configure()
}

func (p *postfixEnv) opendkim() error {
	keys := filepath.Join(p.dir, "keys")
	priv := filepath.Join(keys, opendkimSel+".private")
	if _, err := os.Stat(priv); err != nil {
		if err := os.MkdirAll(keys, 0o700); err != nil {
			return fmt.Errorf("create opendkim key dir: %w", err)
		}
		if _, err := runCmd(time.Minute, "", "opendkim-genkey", "-b", "2048", "-d", signDomain, "-s", opendkimSel, "-D", keys); err != nil {
			return err
		}
	}
	for _, f := range []string{keys, priv, filepath.Join(keys, opendkimSel+".txt")} {
		if err := chownTo(f, "opendkim"); err != nil {
			return err
		}
	}
	_ = os.Chmod(keys, 0o700)
	_ = os.Chmod(priv, 0o600)
	txt, err := os.ReadFile(filepath.Join(keys, opendkimSel+".txt"))
	if err != nil {
		return fmt.Errorf("read opendkim record: %w", err)
	}
	rec, err := bindTXT(txt)
	if err != nil {
		return fmt.Errorf("parse %s.txt: %w", opendkimSel, err)
	}
	p.key = dkimKey{domain: signDomain, selector: opendkimSel, file: priv, alg: "rsa", record: rec}
	conf := fmt.Sprintf(`Mode                s
Domain              %s
Selector            %s
KeyFile             %s
Canonicalization    relaxed/relaxed
Socket              inet:%d@127.0.0.1
InternalHosts       127.0.0.1
UserID              opendkim:opendkim
PidFile             %s
Syslog              no
`, signDomain, opendkimSel, priv, p.milter, filepath.Join(p.dir, "opendkim.pid"))
	if err := os.WriteFile(filepath.Join(p.dir, "opendkim.conf"), []byte(conf), 0o644); err != nil {
		return fmt.Errorf("write opendkim.conf: %w", err)
	}
	return nil
}

// configure writes the instance's main.cf and master.cf: the anchor's
// settings plus its own queue, data directory and log file.
func (p *postfixEnv) configure() error {
	if err := os.RemoveAll(p.etc()); err != nil {
		return fmt.Errorf("clear postfix etc: %w", err)
	}
	if err := os.MkdirAll(p.etc(), 0o755); err != nil {
		return fmt.Errorf("create postfix etc: %w", err)
	}
	master, err := os.ReadFile(filepath.Join(postfixEtc, "master.cf.proto"))
	if err != nil {
		if master, err = os.ReadFile(filepath.Join(postfixEtc, "master.cf")); err != nil {
			return fmt.Errorf("read a master.cf to start from: %w", err)
		}
	}
	files := map[string][]byte{"master.cf": master, "main.cf": nil}
	if b, err := os.ReadFile(filepath.Join(postfixEtc, "dynamicmaps.cf")); err == nil {
		files["dynamicmaps.cf"] = b
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(p.etc(), name), b, 0o644); err != nil {
			return fmt.Errorf("write postfix %s: %w", name, err)
		}
	}
	data := filepath.Join(p.dir, "data")
	for _, d := range []string{p.spool(), data} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	if err := chownTo(data, "postfix"); err != nil {
		return err
	}
	steps := [][]string{
		{"-e", "compatibility_level=3.6", "queue_directory=" + p.spool(), "data_directory=" + data,
			"myhostname=relay.example.test", "mydestination=",
			"mynetworks=127.0.0.0/8", "inet_interfaces=loopback-only", "inet_protocols=ipv4",
			fmt.Sprintf("relayhost=[127.0.0.1]:%d", p.sinkPort), "alias_maps=", "alias_database=",
			"local_transport=error:nolocal", "milter_default_action=tempfail", "maillog_file=" + p.maillog()},
		// Debian's master.cf chroots services into an environment nobody set up.
		{"-F", "*/*/chroot = n"},
		{"-M", fmt.Sprintf("127.0.0.1:%d/inet=127.0.0.1:%d inet n - n - - smtpd", p.smtpdPort, p.smtpdPort)},
	}
	for _, s := range steps {
		if err := p.postconf(s...); err != nil {
			return err
		}
	}
	// No port-25 listener.
	_ = p.postconf("-MX", "smtp/inet")
	return nil
}

// stopMaster runs `postfix stop` on the instance and makes sure its master
// (pid) is gone.
func (p *postfixEnv) stopMaster(pid int) {
	_ = p.postfix("stop")
	for i := 0; i < 100 && pidAlive(pid); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if pidAlive(pid) {
		logf("postfix master pid %d still running after postfix stop; killing it", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// Milters Postfix runs with: none (plain Postfix), OpenDKIM or rspamd.
const (
	milterNone     = ""
	milterOpenDKIM = "opendkim"
	milterRspamd   = "rspamd"
)

// postfixServer is Postfix, with or without a DKIM milter.
type postfixServer struct {
	sys    string
	env    *postfixEnv
	milter string
	reg    *registry
	mproc  *child // the milter's main process
	master int
	stopID int
	logOff int64
}

func (s *postfixServer) name() string  { return s.sys }
func (s *postfixServer) loadPort() int { return s.env.smtpdPort }
func (s *postfixServer) mainPID() int  { return s.master }

func (s *postfixServer) expectAlgs() []string {
	if s.milter != milterNone {
		return []string{"rsa-sha256"}
	}
	return nil
}

// startMilter starts the milter in the bench's namespace and waits for its
// socket; it returns the Postfix settings that connect to it.
func (s *postfixServer) startMilter(ctx context.Context) ([]string, error) {
	var cmd *exec.Cmd
	var port int
	var out string
	var wait time.Duration
	var main []string
	switch s.milter {
	case milterNone:
		return []string{"smtpd_milters=", "non_smtpd_milters="}, nil
	case milterOpenDKIM:
		port, out, wait = s.env.milter, filepath.Join(s.env.dir, "opendkim.out"), 10*time.Second
		n, a := peerCmd("opendkim", "-f", "-x", filepath.Join(s.env.dir, "opendkim.conf"))
		cmd = nsCommand(s.env.resolv, n, a...)
		main = []string{"smtpd_milters=inet:127.0.0.1:" + strconv.Itoa(port), "non_smtpd_milters=inet:127.0.0.1:" + strconv.Itoa(port)}
	case milterRspamd:
		port, out, wait = s.env.rspamdPort, filepath.Join(s.env.rspamdDir(), "rspamd.out"), 3*time.Minute
		n, a := peerCmd(rspamdBin, "-f", "-u", rspamdUser, "-g", rspamdUser, "-c", s.env.rspamdConf())
		cmd = nsCommand(s.env.resolv, n, a...)
		// As rspamd's documentation (and shared/bench/peers.sh) sets them.
		main = []string{"smtpd_milters=inet:127.0.0.1:" + strconv.Itoa(port), "non_smtpd_milters=inet:127.0.0.1:" + strconv.Itoa(port),
			"milter_protocol=6", "milter_mail_macros=i {mail_addr} {client_addr} {client_name} {auth_authen}"}
	default:
		return nil, fmt.Errorf("unknown milter %q", s.milter)
	}
	if listening(port) {
		return nil, fmt.Errorf("127.0.0.1:%d (%s milter) is already in use", port, s.milter)
	}
	var err error
	if s.mproc, err = startChild(s.reg, s.milter, cmd, out); err != nil {
		return nil, err
	}
	t0 := time.Now()
	if err := waitListen(ctx, port, wait, func() bool { return !s.mproc.exited() }); err != nil {
		return nil, fmt.Errorf("%s (output in %s): %w", s.milter, out, err)
	}
	if s.milter == milterRspamd {
		logf("rspamd listening after %.1fs; %s", time.Since(t0).Seconds(), s.env.rspamdModules())
	}
	return main, nil
}

func (s *postfixServer) start(ctx context.Context) error {
	if listening(s.env.smtpdPort) {
		return fmt.Errorf("127.0.0.1:%d is already in use", s.env.smtpdPort)
	}
	set, err := s.startMilter(ctx)
	if err != nil {
		s.stop()
		return err
	}
	// The rspamd settings are taken back for the others (Postfix's defaults).
	_ = s.env.postconf("-X", "milter_protocol", "milter_mail_macros")
	if err := s.env.postconf(append([]string{"-e"}, set...)...); err != nil {
		s.stop()
		return err
	}
	// Leftovers from an earlier, interrupted run would be delivered now.
	for _, q := range postfixQueues {
		clearSpool(filepath.Join(s.env.spool(), q))
	}
	if fi, err := os.Stat(s.env.maillog()); err == nil {
		s.logOff = fi.Size()
	}
	pn, pa := peerCmd("postfix", "-c", s.env.etc(), "start") // the master and its children inherit it
	name, args := nsArgs(s.env.resolv, pn, pa...)
	if _, err := runCmd(2*time.Minute, "", name, args...); err != nil {
		s.stop()
		return err
	}
	s.master = s.env.masterPID()
	pid := s.master
	s.stopID = s.reg.add(fmt.Sprintf("postfix master (pid %d)", pid), func() { s.env.stopMaster(pid) })
	if err := waitListen(ctx, s.env.smtpdPort, 20*time.Second, func() bool { return pidAlive(pid) }); err != nil {
		s.stop()
		return fmt.Errorf("postfix: %w (see %s)", err, s.env.maillog())
	}
	m := ""
	if s.mproc != nil {
		m = fmt.Sprintf(", %s pid %d", s.milter, s.mproc.pid())
	}
	logf("%s started: master pid %d, smtpd 127.0.0.1:%d%s", s.sys, pid, s.env.smtpdPort, m)
	return nil
}

func (s *postfixServer) stop() {
	if s.stopID != 0 {
		s.reg.run(s.stopID)
		s.stopID, s.master = 0, 0
	}
	if s.mproc != nil {
		s.mproc.stop()
		s.mproc = nil
	}
}

func (s *postfixServer) roots() []int {
	r := []int{s.master}
	if s.mproc != nil {
		r = append(r, s.mproc.pid())
	}
	return r
}

// pids is the master's process tree and the milter's (rspamd's workers).
func (s *postfixServer) pids() []int { return treePIDs(s.roots()...) }

// cpuTicks is the CPU of those trees, reaped children included (smtpd
// exits after max_use sessions).
func (s *postfixServer) cpuTicks() int64 { return treeTicks(s.roots()...) }

// health counts Postfix's log verdicts since start and what is left queued.
func (s *postfixServer) health() string {
	b, _ := os.ReadFile(s.env.maillog())
	if int64(len(b)) >= s.logOff {
		b = b[s.logOff:]
	}
	l := string(b)
	left := 0
	for _, q := range []string{"incoming", "active", "deferred", "maildrop", "hold"} {
		left += countFiles(filepath.Join(s.env.spool(), q))
	}
	return fmt.Sprintf("log: sent=%d deferred=%d bounced=%d milter-reject=%d warnings=%d; queue files=%d",
		strings.Count(l, "status=sent"), strings.Count(l, "status=deferred"), strings.Count(l, "status=bounced"),
		strings.Count(l, "milter-reject"), strings.Count(l, "warning:"), left)
}
