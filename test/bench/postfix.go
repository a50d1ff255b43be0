package main

import (
	"context"
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
// one process can drive both stacks into the same sink: smtpd on
// 127.0.0.1:10587 -> [OpenDKIM milter inet:127.0.0.1:8891, RSA-2048,
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

// ensurePackages installs the anchor's Debian packages when missing, as the
// anchor script does.
func ensurePackages(install bool) error {
	need := []string{"/usr/sbin/postfix", "/usr/sbin/smtp-source", "/usr/sbin/smtp-sink", "/usr/sbin/opendkim", "/usr/sbin/opendkim-genkey", "/usr/bin/python3"}
	var missing []string
	for _, p := range need {
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, p)
		}
	}
	for _, m := range []string{"dkim", "nacl"} {
		if _, err := os.Stat("/usr/lib/python3/dist-packages/" + m); err != nil {
			missing = append(missing, "python3-"+m)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if !install {
		return fmt.Errorf("missing %v: apt-get install postfix opendkim opendkim-tools python3-dkim python3-nacl (or run without -install=false)", missing)
	}
	logf("installing postfix opendkim opendkim-tools python3-dkim python3-nacl (missing %v)", missing)
	if _, err := runCmd(time.Minute, "postfix postfix/main_mailer_type select No configuration\n", "debconf-set-selections"); err != nil {
		return err
	}
	cmd := exec.Command("apt-get", "install", "-y", "-qq", "postfix", "opendkim", "opendkim-tools", "python3-dkim", "python3-nacl")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get install: %w\n%s", err, b)
	}
	return nil
}

// postfixEnv is the private Postfix instance shared by both Postfix variants.
type postfixEnv struct {
	dir       string // work dir: etc/, spool/, data/, keys/, opendkim.conf, logs
	key       dkimKey
	smtpdPort int
	milter    int
	sinkPort  int
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

// prepare makes the OpenDKIM key and config and the private Postfix
// instance.
func (p *postfixEnv) prepare() error {
	if pid := p.masterPID(); pidAlive(pid) {
		// Only this harness uses this instance: a master left by an
		// interrupted run is ours to stop.
		logf("stopping the bench Postfix instance left running (master pid %d)", pid)
		p.stopMaster(pid)
	}
	if err := p.opendkim(); err != nil {
		return err
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

// postfixServer is Postfix, with or without the OpenDKIM milter.
type postfixServer struct {
	sys     string
	env     *postfixEnv
	dkim    bool
	reg     *registry
	dkimPID *child
	master  int
	stopID  int
	logOff  int64
}

func (s *postfixServer) name() string  { return s.sys }
func (s *postfixServer) loadPort() int { return s.env.smtpdPort }
func (s *postfixServer) mainPID() int  { return s.master }

func (s *postfixServer) expectAlgs() []string {
	if s.dkim {
		return []string{"rsa-sha256"}
	}
	return nil
}

func (s *postfixServer) start(ctx context.Context) error {
	if listening(s.env.smtpdPort) {
		return fmt.Errorf("127.0.0.1:%d is already in use", s.env.smtpdPort)
	}
	if s.dkim {
		if listening(s.env.milter) {
			return fmt.Errorf("127.0.0.1:%d (milter) is already in use", s.env.milter)
		}
		cmd := exec.Command("opendkim", "-f", "-x", filepath.Join(s.env.dir, "opendkim.conf"))
		var err error
		if s.dkimPID, err = startChild(s.reg, "opendkim", cmd, filepath.Join(s.env.dir, "opendkim.out")); err != nil {
			return err
		}
		if err := waitListen(ctx, s.env.milter, 10*time.Second, func() bool { return !s.dkimPID.exited() }); err != nil {
			s.stop()
			return fmt.Errorf("opendkim (output in %s): %w", filepath.Join(s.env.dir, "opendkim.out"), err)
		}
	}
	m := ""
	if s.dkim {
		m = fmt.Sprintf("inet:127.0.0.1:%d", s.env.milter)
	}
	if err := s.env.postconf("-e", "smtpd_milters="+m, "non_smtpd_milters="+m); err != nil {
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
	if err := s.env.postfix("start"); err != nil {
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
	logf("%s started: master pid %d, smtpd 127.0.0.1:%d%s", s.sys, pid, s.env.smtpdPort,
		map[bool]string{true: fmt.Sprintf(", opendkim pid %d", s.dkimPIDOr0()), false: ""}[s.dkim])
	return nil
}

func (s *postfixServer) dkimPIDOr0() int {
	if s.dkimPID == nil {
		return 0
	}
	return s.dkimPID.pid()
}

func (s *postfixServer) stop() {
	if s.stopID != 0 {
		s.reg.run(s.stopID)
		s.stopID, s.master = 0, 0
	}
	if s.dkimPID != nil {
		s.dkimPID.stop()
		s.dkimPID = nil
	}
}

// pids is the master, its children and OpenDKIM.
func (s *postfixServer) pids() []int {
	var out []int
	if s.master != 0 {
		out = append(out, s.master)
		out = append(out, childrenOf(s.master)...)
	}
	if s.dkimPID != nil {
		out = append(out, s.dkimPID.pid())
	}
	return out
}

// cpuTicks sums the master (self and reaped children: smtpd exits after
// max_use sessions), its live children (self and reaped) and OpenDKIM.
func (s *postfixServer) cpuTicks() int64 {
	var t int64
	for _, pid := range s.pids() {
		if st, err := readStat(pid); err == nil {
			t += st.utime + st.stime + st.cutime + st.cstime
		}
	}
	return t
}

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
