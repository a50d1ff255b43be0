package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Domains and addresses every system handles the same way.
const (
	signDomain = "example.test" // header From domain: what both signers sign for
	sender     = "sender@example.test"
	rcptDomain = "dest.test"
	recipient  = "rcpt@dest.test"
	benchUser  = "bench"
)

// dkimKey is one signing key with its published record.
type dkimKey struct {
	domain, selector, file, alg string
	record                      string // TXT value
}

func (k dkimKey) dnsLine() string {
	return k.selector + "._domainkey." + k.domain + " " + k.record
}

// buildInkan builds the binary under test as it ships: deploy/build.sh, the
// release build (static; BoringCrypto on linux/amd64 and arm64, or pure Go
// with CRYPTO=go in the environment, which the script reads).
func buildInkan(repo, out string) error {
	logf("building inkan as shipped: deploy/build.sh %s", out)
	cmd := exec.Command("sh", "deploy/build.sh", out)
	cmd.Dir = repo
	b, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("deploy/build.sh: %w\n%s", err, b)
	}
	return nil
}

// inkanVersion is `BIN version` on one line ("inkan v1.2.3; crypto: ...").
func inkanVersion(bin string) (string, error) {
	out, err := runCmd(30*time.Second, "", bin, "version")
	if err != nil {
		return "", err
	}
	return strings.Join(strings.Fields(strings.ReplaceAll(strings.TrimSpace(out), "\n", "; ")), " "), nil
}

// gitDescribe names the source a build came from: commit, plus "+dirty"
// when the work tree has uncommitted changes.
func gitDescribe(repo string) string {
	out, err := runCmd(30*time.Second, "", "git", "-C", repo, "rev-parse", "--short", "HEAD")
	if err != nil {
		return "unknown commit"
	}
	c := strings.TrimSpace(out)
	if st, err := runCmd(30*time.Second, "", "git", "-C", repo, "status", "--porcelain", "--untracked-files=no"); err == nil && strings.TrimSpace(st) != "" {
		c += "+dirty"
	}
	return c
}

// inkanKeys creates (once) the RSA-2048 and Ed25519 keys with
// `inkan dkim keygen`. The TXT value is derived from the key file itself, so
// the check does not depend on how keygen prints its record.
func inkanKeys(bin, dir string) (rsaKey, edKey dkimKey, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return rsaKey, edKey, fmt.Errorf("create key dir: %w", err)
	}
	mk := func(sel, alg string, bits string) (dkimKey, error) {
		k := dkimKey{domain: signDomain, selector: sel, file: filepath.Join(dir, signDomain+"."+sel+".key"), alg: alg}
		if _, err := os.Stat(k.file); err != nil {
			args := []string{"dkim", "keygen", "-d", signDomain, "-s", sel, "-a", alg, "-o", dir}
			if bits != "" {
				args = append(args, "-b", bits)
			}
			if _, err := runCmd(time.Minute, "", bin, args...); err != nil {
				logf("WARNING inkan dkim keygen failed (%v); generating %s key in Go instead", err, alg)
				if err := writeKey(k.file, alg); err != nil {
					return k, err
				}
			}
		}
		if err := os.Chmod(k.file, 0o600); err != nil {
			return k, fmt.Errorf("chmod key: %w", err)
		}
		rec, err := dkimRecord(k.file)
		if err != nil {
			return k, err
		}
		k.record = rec
		return k, nil
	}
	if rsaKey, err = mk("inkanrsa", "rsa", "2048"); err != nil {
		return rsaKey, edKey, err
	}
	edKey, err = mk("inkaned", "ed25519", "")
	return rsaKey, edKey, err
}

// writeKey is the fallback when keygen is unavailable: a PKCS#8 PEM key.
func writeKey(path, alg string) error {
	var key any
	var err error
	if alg == "rsa" {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		_, key, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		return fmt.Errorf("generate %s key: %w", alg, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("marshal %s key: %w", alg, err)
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// inkanServer is inkan with a given set of signing keys.
type inkanServer struct {
	sys        string
	bin        string
	dir        string // config, log; data/ is recreated at each start
	keys       []dkimKey
	port       int // plain relay port (trusted network, no AUTH)
	smtpsPort  int
	subPort    int
	httpPort   int
	pprof      bool // profile run only: http.pprof
	idleLimits int  // >0: idle-memory instance only: connection limits raised to this
	sinkPort   int
	logLevel   string // "" = inkan's default
	password   string
	resolv     string // private-namespace resolv.conf, "" = none
	reg        *registry
	proc       *child
}

func (s *inkanServer) name() string    { return s.sys }
func (s *inkanServer) loadPort() int   { return s.port }
func (s *inkanServer) cfgPath() string { return filepath.Join(s.dir, "inkan.yaml") }
func (s *inkanServer) dataDir() string { return filepath.Join(s.dir, "data") }

func (s *inkanServer) expectAlgs() []string {
	var a []string
	for _, k := range s.keys {
		a = append(a, map[string]string{"rsa": "rsa-sha256", "ed25519": "ed25519-sha256"}[k.alg])
	}
	return a
}

// timedSettings are the only settings the timed runs give inkan: each one
// says where this machine's inkan is (listeners, names, files, the sink), not
// how it behaves; everything else is inkan's shipped default (config.Default,
// shown by `inkan check -print`). The report prints this list.
func timedSettings(o *options) []string {
	l := []string{
		"hostname: relay.example.test (the name the peers use; the default is the machine's name)",
		"data_dir: under the work dir, recreated for every run (the default /var/lib/inkan may hold someone's queue)",
		fmt.Sprintf("listen: relay 127.0.0.1:%d (the load), smtps :%d, submission :%d, http :%d, IPv4 loopback only: the default listeners, "+
			"moved off 2525/2465/2587/8025 and [::1], none turned off (the local socket stays at its default)", o.relayPort, o.smtpsPort, o.subPort, o.httpPort),
		"dkim.keys: the benchmark's keys (RSA-2048 and/or Ed25519, example.test); the default has none",
		"delivery.transport: dest.test -> [127.0.0.1]:2526, the smtp-sink (the default delivers to MX hosts)",
	}
	if o.logLevel != "" {
		l = append(l, "log.level: "+o.logLevel+" (-inkan-log-level; the default is info)")
	}
	return l
}

// notOverridden are settings earlier versions of the bench set and that are
// now left at inkan's defaults, with why that is the same thing or no loss.
var notOverridden = []string{
	"auth.trusted_networks: default [127.0.0.0/8, ::1/128] already lets the loopback load relay without AUTH, like Postfix's mynetworks",
	"dkim.canonicalization: default relaxed/relaxed, what OpenDKIM and rspamd are configured with",
	"limits: default max_connections 500, max_connections_per_trusted_ip 200 (20 sessions fit)",
	"log.level: default info (Postfix logs every message too)",
	"queue.retry_*, http.pprof: defaults (no retries happen in a good run; pprof only in the profile run)",
}

// idleOverride and profileOverride are what the two unmeasured instances
// add, and why.
const (
	idleOverride = "idle-memory instance only: limits.max_connections and max_connections_per_trusted_ip %d " +
		"(the test holds %d connections from 127.0.0.1; the defaults 500 and 200 refuse them, as they should)"
	profileOverride = "profile run only (unmeasured): http.pprof: true"
)

// config is the YAML inkan runs with: timedSettings, plus pprof or raised
// connection limits for the two unmeasured instances.
func (s *inkanServer) config() string {
	var b strings.Builder
	fmt.Fprintf(&b, "hostname: relay.example.test\ndata_dir: %s\n", s.dataDir())
	fmt.Fprintf(&b, "listen:\n  smtps: \"127.0.0.1:%d\"\n  submission: \"127.0.0.1:%d\"\n  relay: \"127.0.0.1:%d\"\n  http: \"127.0.0.1:%d\"\n",
		s.smtpsPort, s.subPort, s.port, s.httpPort)
	if s.pprof {
		fmt.Fprintf(&b, "http:\n  pprof: true\n")
	}
	if s.idleLimits > 0 {
		fmt.Fprintf(&b, "limits:\n  max_connections: %d\n  max_connections_per_trusted_ip: %d\n", s.idleLimits, s.idleLimits)
	}
	if len(s.keys) > 0 {
		fmt.Fprintf(&b, "dkim:\n  keys:\n")
		for _, k := range s.keys {
			fmt.Fprintf(&b, "    - {domain: %s, selector: %s, key_file: %s}\n", k.domain, k.selector, k.file)
		}
	}
	fmt.Fprintf(&b, "delivery:\n  transport: {%s: \"[127.0.0.1]:%d\"}\n", rcptDomain, s.sinkPort)
	if s.logLevel != "" {
		fmt.Fprintf(&b, "log:\n  level: %s\n", s.logLevel)
	}
	return b.String()
}

// start writes the config, recreates the data directory, adds the AUTH user
// and starts `inkan serve`.
func (s *inkanServer) start(ctx context.Context) error {
	for _, p := range s.ports() {
		if listening(p) {
			return fmt.Errorf("127.0.0.1:%d is already in use", p)
		}
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", s.dir, err)
	}
	if err := os.RemoveAll(s.dataDir()); err != nil {
		return fmt.Errorf("clear data dir: %w", err)
	}
	if err := os.MkdirAll(s.dataDir(), 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	if err := os.WriteFile(s.cfgPath(), []byte(s.config()), 0o600); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	if out, err := runCmd(30*time.Second, "", s.bin, "check", "-config", s.cfgPath()); err != nil {
		return fmt.Errorf("inkan check rejected the bench config %s: %w\n%s", s.cfgPath(), err, out)
	}
	if s.password == "" {
		b := make([]byte, 12)
		_, _ = rand.Read(b)
		s.password = hex.EncodeToString(b)
	}
	// The password goes on stdin, never in arguments.
	if _, err := runCmd(time.Minute, s.password+"\n", s.bin, "user", "-config", s.cfgPath(), "add", benchUser); err != nil {
		return fmt.Errorf("inkan user add: %w", err)
	}
	cmd := nsCommand(s.resolv, s.bin, "serve", "-config", s.cfgPath(), "-quiet")
	var err error
	if s.proc, err = startChild(s.reg, s.sys, cmd, filepath.Join(s.dir, "inkan.log")); err != nil {
		return err
	}
	alive := func() bool { return !s.proc.exited() }
	for _, p := range s.ports() {
		if err := waitListen(ctx, p, 30*time.Second, alive); err != nil {
			s.stop()
			return fmt.Errorf("inkan serve (log %s): %w", filepath.Join(s.dir, "inkan.log"), err)
		}
	}
	logf("%s started: pid %d, relay 127.0.0.1:%d, smtps 127.0.0.1:%d, log %s", s.sys, s.proc.pid(), s.port, s.smtpsPort, filepath.Join(s.dir, "inkan.log"))
	return nil
}

func (s *inkanServer) ports() []int { return []int{s.port, s.smtpsPort, s.subPort, s.httpPort} }

func (s *inkanServer) stop() {
	if s.proc != nil {
		s.proc.stop()
		if s.proc.err != nil {
			logf("%s exited: %v", s.sys, s.proc.err)
		}
		s.proc = nil
	}
}

func (s *inkanServer) mainPID() int {
	if s.proc == nil {
		return 0
	}
	return s.proc.pid()
}

func (s *inkanServer) pids() []int { return []int{s.mainPID()} }

func (s *inkanServer) cpuTicks() int64 {
	st, err := readStat(s.mainPID())
	if err != nil {
		return 0
	}
	return st.utime + st.stime + st.cutime + st.cstime
}

// health reports what is left in the queue and whether inkan is still up.
func (s *inkanServer) health() string {
	if s.proc == nil || s.proc.exited() {
		return "inkan NOT RUNNING"
	}
	out, err := runCmd(30*time.Second, "", s.bin, "queue", "-config", s.cfgPath(), "list")
	if err != nil {
		return fmt.Sprintf("queue list failed: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return fmt.Sprintf("queue list: %q (%d lines), queue dir files=%d", firstLine(out), len(lines), countFiles(filepath.Join(s.dataDir(), "queue")))
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return l
}
