// Command scale proves inkan's scale-out topology: several instances, each
// with its own spool, behind HAProxy in TCP mode with the PROXY protocol,
// all delivering to one sink. In one run it measures 1 instance (directly
// and behind HAProxy) and 3 instances behind HAProxy, then repeats the
// 3-instance load while one instance is SIGKILLed and restarted on its
// spool, and checks at the sink that no acknowledged message was lost and
// that every duplicate is one the kill explains (SMTP's at-least-once
// window: a copy the sink had accepted when inkan died before booking it).
//
// Usage (from the repository root; root is not needed):
//
//	go run ./test/scale [-n 20000] [-sessions 20] [-duration 20s] [-bin PATH] [-keep]
//
// It needs haproxy (Debian: apt-get install haproxy). Without -bin it builds
// inkan as shipped, with deploy/build.sh. Exit status: 0 when every check
// passed, 1 when one failed, 2 for bad flags or a missing tool.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

type options struct {
	n, sessions, perSession, size int
	duration, timeout, restart    time.Duration
	drainLimit                    time.Duration
	bin, haproxyBin, work         string
	keep                          bool
	phases                        []phaseSpec
}

// phaseSpec is one measured setup.
type phaseSpec struct {
	key, title string
	instances  int
	viaProxy   bool
	kill       bool
}

var allPhases = []phaseSpec{
	{"direct1", "1 instance, direct", 1, false, false},
	{"proxy1", "1 instance behind HAProxy", 1, true, false},
	{"proxy3", "3 instances behind HAProxy", 3, true, false},
	{"kill3", "3 instances behind HAProxy, one SIGKILLed and restarted", 3, true, true},
}

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("scale", flag.ContinueOnError)
	fs.IntVar(&o.n, "n", 20000, "most messages per phase (the phase's load ends at -n or -duration, whichever first)")
	fs.IntVar(&o.sessions, "sessions", 20, "parallel SMTP sessions")
	fs.IntVar(&o.perSession, "per-session", 10, "messages per SMTP session before QUIT and a new session")
	fs.IntVar(&o.size, "size", 4096, "message body size in bytes")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "longest load per phase")
	fs.DurationVar(&o.restart, "restart-after", 2*time.Second, "kill phase: pause between the SIGKILL and the restart")
	fs.DurationVar(&o.drainLimit, "drain", 90*time.Second, "longest wait per phase for the queues to empty after the load")
	fs.DurationVar(&o.timeout, "timeout", 8*time.Minute, "hard limit for the whole run (a phase can take -duration plus a minute: see README)")
	fs.StringVar(&o.bin, "bin", "", "prebuilt inkan binary (default: build one with deploy/build.sh)")
	fs.StringVar(&o.haproxyBin, "haproxy", "haproxy", "haproxy binary")
	fs.StringVar(&o.work, "work", "", "work directory (default: a new one under $TMPDIR)")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (configs, spools, logs); it is also kept when a check fails")
	var keys []string
	for _, p := range allPhases {
		keys = append(keys, p.key)
	}
	phases := fs.String("phases", strings.Join(keys, ","), "phases to run, in order: "+strings.Join(keys, ","))
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for _, k := range strings.Split(*phases, ",") {
		found := false
		for _, p := range allPhases {
			if p.key == strings.TrimSpace(k) {
				o.phases, found = append(o.phases, p), true
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown phase %q (known: %s)", k, strings.Join(keys, ","))
		}
	}
	if o.n < 1 || o.sessions < 1 || o.perSession < 1 || o.size < 1 || o.duration <= 0 {
		return nil, errors.New("-n, -sessions, -per-session, -size and -duration must be positive")
	}
	return o, nil
}

var logStart = time.Now()

// logf prints progress to stderr.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(logStart).Seconds(), fmt.Sprintf(format, args...))
}

func main() { os.Exit(run(os.Args[1:], os.Stdout)) }

func run(args []string, out io.Writer) int {
	opt, err := parseFlags(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "scale:", err)
		return 2
	}
	hp, err := exec.LookPath(opt.haproxyBin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale: haproxy not found (Debian: apt-get install haproxy):", err)
		return 2
	}
	opt.haproxyBin = hp

	ctx, cancel := context.WithTimeout(context.Background(), opt.timeout)
	defer cancel()
	reg := &registry{}
	defer reg.stopAll()
	sigc := make(chan os.Signal, 2)
	signal.Notify(sigc, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigc)
	go func() {
		if _, ok := <-sigc; !ok {
			return
		}
		logf("interrupted: stopping every process the harness started")
		cancel()
		if _, ok := <-sigc; ok {
			reg.stopAll()
			os.Exit(130)
		}
	}()

	h, err := setup(ctx, opt, reg)
	if err != nil {
		logf("setup failed: %v", err)
		if h != nil {
			h.cleanup(false)
		}
		return 1
	}
	defer h.sink.close()
	var results []*phaseResult
	for _, p := range opt.phases {
		if ctx.Err() != nil {
			break
		}
		results = append(results, h.runPhase(ctx, p))
	}
	ok := h.report(out, results)
	if ctx.Err() != nil {
		fmt.Fprintf(out, "\nFAIL: stopped early: %v\n", context.Cause(ctx))
		ok = false
	}
	reg.stopAll()
	h.cleanup(ok)
	if !ok {
		return 1
	}
	return 0
}

// harness is what the phases share: the binary, the key, the sink.
type harness struct {
	opt     *options
	reg     *registry
	work    string
	ownWork bool
	repo    string
	bin     string
	version string
	commit  string // of the repository when the run began
	keyFile string
	sink    *sink
	runID   string
}

func setup(ctx context.Context, opt *options, reg *registry) (*harness, error) {
	h := &harness{opt: opt, reg: reg, work: opt.work}
	if h.work == "" {
		d, err := os.MkdirTemp("", "inkan-scale-")
		if err != nil {
			return nil, err
		}
		h.work, h.ownWork = d, true
	} else if err := os.MkdirAll(h.work, 0o700); err != nil {
		return nil, err
	}
	b := make([]byte, 3)
	rand.Read(b)
	h.runID = hex.EncodeToString(b)
	h.repo, _ = findRepo()
	h.bin = opt.bin
	if h.bin == "" {
		if h.repo == "" {
			return h, errors.New("not inside the inkan repository: pass -bin")
		}
		h.bin = filepath.Join(h.work, "inkan")
		logf("building inkan as shipped: deploy/build.sh %s", h.bin)
		if out, err := runCmd(ctx, 10*time.Minute, filepath.Join(h.repo, "deploy", "build.sh"), h.bin); err != nil {
			return h, fmt.Errorf("deploy/build.sh: %w\n%s", err, out)
		}
	}
	v, err := runCmd(ctx, 30*time.Second, h.bin, "version")
	if err != nil {
		return h, fmt.Errorf("inkan version: %w", err)
	}
	h.version = strings.TrimSuffix(strings.Join(strings.Fields(strings.ReplaceAll(strings.TrimSpace(v), "\n", "; ")), " "), ";")
	h.commit = gitDescribe(h.repo)
	keys := filepath.Join(h.work, "keys")
	if err := os.MkdirAll(keys, 0o700); err != nil {
		return h, err
	}
	if out, err := runCmd(ctx, time.Minute, h.bin, "dkim", "keygen", "-d", signDomain, "-s", "s1", "-a", "rsa", "-b", "2048", "-o", keys); err != nil {
		return h, fmt.Errorf("inkan dkim keygen: %w\n%s", err, out)
	}
	h.keyFile = filepath.Join(keys, signDomain+".s1.key")
	if h.sink, err = startSink(opt.size); err != nil {
		return h, err
	}
	logf("work directory %s; inkan: %s; sink %s", h.work, h.version, h.sink.addr)
	return h, nil
}

func (h *harness) cleanup(ok bool) {
	if h.opt.keep || !ok {
		fmt.Fprintf(os.Stderr, "work directory kept: %s\n", h.work)
		return
	}
	if h.ownWork {
		os.RemoveAll(h.work)
	}
}

// findRepo walks up from the working directory to inkan's go.mod.
func findRepo() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/inkan-relay/inkan") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the inkan repository")
		}
		dir = parent
	}
}

// gitDescribe names the commit of the repository, "+dirty" when tracked
// files have uncommitted changes.
func gitDescribe(repo string) string {
	if repo == "" {
		return "unknown"
	}
	out, err := runCmd(context.Background(), 30*time.Second, "git", "-C", repo, "rev-parse", "--short", "HEAD")
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(out)
	if st, err := runCmd(context.Background(), 30*time.Second, "git", "-C", repo, "status", "--porcelain", "--untracked-files=no"); err == nil && strings.TrimSpace(st) != "" {
		c += "+dirty"
	}
	return c
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func cpus() int { return runtime.NumCPU() }
