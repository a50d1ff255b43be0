// Command inkan-torture is inkan's reliability and security proof. It builds
// the inkan binary, runs it over loopback (127.0.0.0/8 only) through crash,
// full-disk, delivery-fault, load, abuse, attack and secrets scenarios, and
// ends with a table of figures per scenario: attempts, accepted, delivered,
// bounced, lost, duplicated, crashes.
//
// Usage:
//
//	go run ./test/torture [-quick] [-only SCENARIO[,SCENARIO]] [-keep] [-v] [-bin INKAN] [-timeout D]
//
// A scenario is crash, disk, fault, load, abuse, attack (the attacks of
// issue 11) or secrets; a single row of one can be named too:
// fault/null-mx, abuse/smuggling, secrets/logs, attack/foreign-seal.
//
// Promises: every message that got "250 ... queued as ID" is counted as lost
// unless it reached a sink (or came back as a bounce); every process the
// program starts is stopped by PID when it ends, on Ctrl-C, and on its own
// timeout; the tmpfs it mounts is unmounted. The exit status is 1 when a
// scenario failed, lost a message or saw inkan crash, 2 on a usage or setup
// error, 0 otherwise. Skipped scenarios (say, no permission to mount a
// tmpfs) print a SKIP line and are not counted as passed.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

// scenario is one family of tests; it adds one or more rows to the report.
type scenario struct {
	name string
	what string
	run  func(h *harness)
}

var scenarios = []scenario{
	{"crash", "SIGKILL at chosen moments and restart: nothing acknowledged is lost", runCrash},
	{"disk", "spool on a full tmpfs: 452 4.3.1, then recovery", runDisk},
	{"fault", "misbehaving next hops and DNS: deferred, delivered or bounced as due", runFaults},
	{"load", "hundreds of concurrent clients: bounded memory, goroutines return", runLoad},
	{"abuse", "open relay tricks, AUTH brute force, injection, smuggling, huge input", runAbuse},
	{"attack", "issue 11: another domain's seal, lockout bypass, unverifiable bytes, loops, quotas", runAttack},
	{"secrets", "readable secrets refused at start; no password or key in any log", runSecrets},
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("inkan-torture", flag.ContinueOnError)
	quick := fs.Bool("quick", false, "bounded run for CI (fewer crash cycles, shorter load)")
	only := fs.String("only", "", "run only these scenarios or rows, comma-separated (crash, fault, fault/null-mx...)")
	keep := fs.Bool("keep", false, "keep the work folder (configs, spools, logs) for inspection")
	verbose := fs.Bool("v", false, "log progress in detail")
	bin := fs.String("bin", "", "use this inkan binary instead of building ./cmd/inkan")
	timeout := fs.Duration("timeout", 0, "stop everything after this long (default 4m with -quick, 20m without)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: inkan-torture [flags]\n\nScenarios:\n")
		for _, s := range scenarios {
			fmt.Fprintf(fs.Output(), "  %-8s %s\n", s.name, s.what)
		}
		fmt.Fprintf(fs.Output(), "\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	filters := splitList(*only)
	for _, f := range filters {
		if !knownScenario(f) {
			fmt.Fprintf(os.Stderr, "inkan-torture: unknown scenario %q\n", f)
			fs.Usage()
			return 2
		}
	}
	if *timeout == 0 {
		*timeout = 20 * time.Minute
		if *quick {
			*timeout = 4 * time.Minute
		}
	}

	h, err := newHarness(*quick, *verbose, filters)
	if err != nil {
		fmt.Fprintln(os.Stderr, "inkan-torture:", err)
		return 2
	}
	// Whatever happens next, stop what was started and unmount what was
	// mounted; Ctrl-C and the timeout take the same path.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	watchDone := make(chan struct{})
	defer close(watchDone)
	go func() {
		select {
		case s := <-sigs:
			h.abort(fmt.Sprintf("interrupted by %s", s), 130)
		case <-time.After(*timeout):
			h.abort(fmt.Sprintf("timed out after %s", *timeout), 2)
		case <-watchDone:
		}
	}()
	defer h.cleanup(*keep)

	start := time.Now()
	if err := h.build(*bin); err != nil {
		fmt.Fprintln(os.Stderr, "inkan-torture:", err)
		return 2
	}
	if err := h.startDNS(); err != nil {
		fmt.Fprintln(os.Stderr, "inkan-torture:", err)
		return 2
	}
	for _, s := range scenarios {
		if !h.wants(s.name) {
			continue
		}
		h.logf("=== %s: %s", s.name, s.what)
		t := time.Now()
		s.run(h)
		h.logf("=== %s done in %s", s.name, time.Since(t).Round(time.Millisecond))
	}
	// Clean up first, so that the summary is the last line of the output.
	h.cleanup(*keep)
	h.printReport(os.Stdout, time.Since(start))
	if h.failed() {
		return 1
	}
	return 0
}

func knownScenario(f string) bool {
	name, row, sub := strings.Cut(f, "/")
	if sub {
		return slices.Contains(rowNames(name), row)
	}
	for _, s := range scenarios {
		if s.name == name {
			return true
		}
	}
	return false
}

// rowNames lists the rows of a scenario that has several.
func rowNames(scenario string) []string {
	var out []string
	switch scenario {
	case "fault":
		for _, c := range faultCases {
			out = append(out, c.name)
		}
	case "abuse":
		for _, r := range abuseRows {
			out = append(out, r.name)
		}
	case "secrets":
		out = []string{"modes", "logs"}
	case "attack":
		for _, r := range attackRows {
			out = append(out, r.name)
		}
	}
	return out
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
