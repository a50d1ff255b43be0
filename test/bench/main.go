// Command inkan-bench runs inkan as shipped (deploy/build.sh, default
// configuration), Postfix + OpenDKIM and Postfix + rspamd in the same run
// under the same load and prints, per system, accept and end-to-end msgs/s,
// p50/p99 DATA-to-250 latency, CPU ms per message, peak RSS, and inkan/peer
// ratios against the project's targets.
//
// Every system is driven by Postfix's smtp-source (N messages, S parallel
// sessions, B bytes) into one smtp-sink that runs for the whole benchmark;
// then a Go client of the same shape measures latency and marks each message
// with a sequence header. At the sink it checks that every message arrived
// once and carries valid DKIM signatures (shared/bench/dkim_verify.py plus a
// check of every signature). It needs root (Postfix, OpenDKIM and rspamd
// run as their users; Postfix is a private instance under the work
// directory, so /etc/postfix is left alone; every system runs in a private
// mount namespace with a loopback-only resolv.conf). It stops every process
// it started, also on Ctrl-C.
//
// Usage (from the repository root):
//
//	go run ./test/bench [-n 3000] [-sessions 20] [-size 4096] [-runs 1]
//	    [-systems inkan-rsa,inkan-dual,postfix-opendkim,postfix-rspamd] [-quick]
//	    [-bin PREBUILT-INKAN] [-peers-batch]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

type options struct {
	n, sessions, size, runs, warmup int
	systems                         []string
	quick                           bool
	work, results                   string
	repo, inkanBin, sharedBench     string
	verifySample                    int
	idleConns                       int
	profile                         bool
	profileSecs                     time.Duration
	install                         bool
	logLevel                        string
	peersBatch                      bool
	timeout                         time.Duration
	sinkPort, postfixPort           int
	milterPort, relayPort           int
	smtpsPort, httpPort             int
	subPort, rspamdPort             int
}

var allSystems = []string{"inkan-rsa", "inkan-dual", "inkan-ed25519", "inkan-nodkim", "postfix-opendkim", "postfix-rspamd", "postfix"}

const defaultSystems = "inkan-rsa,inkan-dual,postfix-opendkim,postfix-rspamd"

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("inkan-bench", flag.ContinueOnError)
	fs.IntVar(&o.n, "n", 3000, "messages per measured run")
	fs.IntVar(&o.sessions, "sessions", 20, "parallel SMTP sessions")
	fs.IntVar(&o.size, "size", 4096, "message size in bytes (smtp-source -l)")
	fs.IntVar(&o.runs, "runs", 1, "measured runs per system (interleaved; medians are reported)")
	fs.IntVar(&o.warmup, "warmup", 200, "unmeasured warm-up messages before each measured run")
	systems := fs.String("systems", defaultSystems, "comma-separated systems: "+strings.Join(allSystems, ","))
	fs.BoolVar(&o.quick, "quick", false, "quick look: -n 500 -warmup 100 -verify-sample 50 -idle-conns 200 -profile=false (explicit flags win)")
	fs.StringVar(&o.work, "work", "/var/lib/inkan-bench/harness", "work directory (not under /tmp: opendkim refuses it)")
	fs.StringVar(&o.results, "results", "/var/lib/inkan-bench/results", "where the log, summary and profiles go")
	fs.StringVar(&o.repo, "repo", "", "inkan repository root (default: found from the working directory)")
	fs.StringVar(&o.inkanBin, "bin", "", "use this prebuilt inkan binary instead of building it with deploy/build.sh")
	fs.StringVar(&o.inkanBin, "inkan", "", "same as -bin (older name)")
	fs.StringVar(&o.sharedBench, "shared-bench", "", "shared/bench directory with dkim_verify.py (default: REPO/../shared/bench)")
	fs.IntVar(&o.verifySample, "verify-sample", 200, "messages per system whose signatures are verified (0 = all)")
	fs.IntVar(&o.idleConns, "idle-conns", 1000, "authenticated idle connections for the memory test (0 = skip)")
	fs.BoolVar(&o.profile, "profile", true, "after measuring, profile one extra inkan-rsa run with perf (if installed) and inkan's pprof")
	fs.DurationVar(&o.profileSecs, "profile-max", 60*time.Second, "longest perf recording")
	fs.BoolVar(&o.install, "install", true, "apt-get install postfix/opendkim/python3-dkim (and rspamd for postfix-rspamd) when missing")
	fs.StringVar(&o.logLevel, "inkan-log-level", "", "set inkan's log.level (default: not set, i.e. inkan's default, info); a value is an override the report lists")
	fs.BoolVar(&o.peersBatch, "peers-batch", false, "run Postfix, OpenDKIM and rspamd under SCHED_BATCH too (chrt -b 0), the policy inkan takes by default: shows how much of a ratio is the policy")
	fs.DurationVar(&o.timeout, "timeout", 60*time.Minute, "hard limit for the whole benchmark")
	fs.IntVar(&o.sinkPort, "sink-port", 2526, "smtp-sink port")
	fs.IntVar(&o.postfixPort, "postfix-port", 10587, "Postfix smtpd port")
	fs.IntVar(&o.milterPort, "milter-port", 8891, "OpenDKIM milter port")
	fs.IntVar(&o.relayPort, "inkan-port", 10525, "inkan plain relay port (load)")
	fs.IntVar(&o.smtpsPort, "inkan-smtps-port", 10465, "inkan implicit-TLS port (idle connections)")
	fs.IntVar(&o.subPort, "inkan-submission-port", 10589, "inkan submission port (on, as by default; unused by the load)")
	fs.IntVar(&o.httpPort, "inkan-http-port", 10880, "inkan HTTP port (on, as by default; pprof in the profile run only)")
	fs.IntVar(&o.rspamdPort, "rspamd-port", 11332, "rspamd proxy worker (milter) port")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.quick {
		quick := map[string]func(){
			"n": func() { o.n = 500 }, "warmup": func() { o.warmup = 100 }, "verify-sample": func() { o.verifySample = 50 },
			"idle-conns": func() { o.idleConns = 200 }, "profile": func() { o.profile = false },
		}
		for name, f := range quick {
			if !set[name] {
				f()
			}
		}
	}
	for _, s := range strings.Split(*systems, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if !contains(allSystems, s) {
			return nil, fmt.Errorf("unknown system %q (known: %s)", s, strings.Join(allSystems, ","))
		}
		o.systems = append(o.systems, s)
	}
	if len(o.systems) == 0 || o.n < 1 || o.sessions < 1 || o.size < 100 || o.runs < 1 {
		return nil, errors.New("need at least one system, -n >= 1, -sessions >= 1, -size >= 100, -runs >= 1")
	}
	return o, nil
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	opt, err := parseFlags(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "inkan-bench:", err)
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "inkan-bench: run as root (it runs a private Postfix instance, OpenDKIM and rspamd, like shared/bench/anchor-postfix.sh and peers.sh)")
		return 2
	}
	peersBatch = opt.peersBatch
	ctx, cancel := context.WithTimeout(context.Background(), opt.timeout)
	defer cancel()
	reg := &registry{}
	defer reg.stopAll()

	// First signal: cancel, and the deferred stopAll cleans up. Second: clean
	// up now and leave.
	sigc := make(chan os.Signal, 2)
	signal.Notify(sigc, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigc)
	go func() {
		if _, ok := <-sigc; !ok {
			return
		}
		logf("interrupted: stopping every process the bench started")
		cancel()
		if _, ok := <-sigc; ok {
			reg.stopAll()
			os.Exit(130)
		}
	}()

	b, err := newBench(opt, reg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "inkan-bench:", err)
		return 1
	}
	defer b.close()
	if err := b.setup(ctx); err != nil {
		logf("setup failed: %v", err)
		return 1
	}
	b.measure(ctx)
	if ctx.Err() != nil {
		logf("stopped early: %v", ctx.Err())
	}
	b.report(os.Stdout)
	if !b.allVerified() || ctx.Err() != nil {
		return 1
	}
	return 0
}

// findRepo walks up from the working directory to the inkan go.mod.
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
			return "", errors.New("not inside the inkan repository (use -repo)")
		}
		dir = parent
	}
}
