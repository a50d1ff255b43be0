package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/inkan-relay/inkan/test/freeport"
)

// harness is what every scenario shares: the inkan binary, a work folder,
// the DNS server, the running processes and mounts (so that they can always
// be cleaned up), the secrets that must never be logged, and the report.
type harness struct {
	quick, verbose bool
	filters        []string
	work           string
	bin            string
	dns            *dnsServer
	started        time.Time

	mu       sync.Mutex
	rows     []*result
	procs    map[int]*inkan // running inkan servers by PID
	mounts   []string
	secrets  map[string]string // value -> label
	logFiles []string
	sinks    []*sink

	cleanOnce sync.Once
}

func newHarness(quick, verbose bool, filters []string) (*harness, error) {
	work, err := os.MkdirTemp("", "inkan-torture-")
	if err != nil {
		return nil, fmt.Errorf("create work folder: %w", err)
	}
	for _, d := range []string{"logs", "runs"} {
		if err := os.Mkdir(filepath.Join(work, d), 0o700); err != nil {
			return nil, fmt.Errorf("create work folder: %w", err)
		}
	}
	return &harness{quick: quick, verbose: verbose, filters: filters, work: work, started: time.Now(),
		procs: map[int]*inkan{}, secrets: map[string]string{}}, nil
}

// wants reports whether a scenario or row is selected by -only. "fault"
// selects every fault row; "fault/null-mx" selects that row and, to get
// there, the fault scenario.
func (h *harness) wants(name string) bool {
	if len(h.filters) == 0 {
		return true
	}
	for _, f := range h.filters {
		if f == name || strings.HasPrefix(f, name+"/") || strings.HasPrefix(name, f+"/") {
			return true
		}
	}
	return false
}

// row starts a report row; finish it with r.end().
func (h *harness) row(name string) *result {
	r := &result{Name: name, start: time.Now()}
	h.mu.Lock()
	h.rows = append(h.rows, r)
	h.mu.Unlock()
	return r
}

// dropRow removes a row that turned out to say nothing.
func (h *harness) dropRow(r *result) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, x := range h.rows {
		if x == r {
			h.rows = append(h.rows[:i], h.rows[i+1:]...)
			return
		}
	}
}

// randomToken is n random letters and digits.
func randomToken(n int) string {
	const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = chars[rand.IntN(len(chars))]
	}
	return string(b)
}

// end records how long the row took.
func (r *result) end() { r.Elapsed = time.Since(r.start) }

// skip marks a row as not run, with the reason, and prints the SKIP line.
func (h *harness) skip(r *result, format string, args ...any) {
	r.Skipped = fmt.Sprintf(format, args...)
	fmt.Fprintf(os.Stderr, "SKIP %s: %s\n", r.Name, r.Skipped)
}

func (h *harness) failed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.rows {
		if r.Skipped == "" && !r.passed() {
			return true
		}
	}
	return false
}

func (h *harness) printReport(w io.Writer, elapsed time.Duration) {
	h.mu.Lock()
	rows := append([]*result(nil), h.rows...)
	h.mu.Unlock()
	fmt.Fprintln(w)
	writeTable(w, rows, elapsed)
}

// logf prints progress to stderr; debugf only with -v.
func (h *harness) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%6.1fs %s\n", time.Since(h.started).Seconds(), fmt.Sprintf(format, args...))
}

func (h *harness) debugf(format string, args ...any) {
	if h.verbose {
		h.logf(format, args...)
	}
}

// build compiles ./cmd/inkan of the module the program runs in.
func (h *harness) build(bin string) error {
	if bin != "" {
		abs, err := filepath.Abs(bin)
		if err != nil {
			return err
		}
		h.bin = abs
		return nil
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return fmt.Errorf("find the inkan module (run from the repository): %v", err)
	}
	h.bin = filepath.Join(h.work, "inkan")
	h.logf("building inkan")
	cmd := exec.Command("go", "build", "-o", h.bin, "./cmd/inkan")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build inkan: %v\n%s", err, out)
	}
	return nil
}

func (h *harness) startDNS() error {
	d, err := startDNS()
	if err != nil {
		return fmt.Errorf("start DNS server: %w", err)
	}
	h.dns = d
	return nil
}

// dir makes a fresh folder for one run of something.
func (h *harness) dir(name string) string {
	d, err := os.MkdirTemp(filepath.Join(h.work, "runs"), sanitize(name)+"-")
	if err != nil {
		panic(err) // the work folder is ours; this cannot fail short of a full disk
	}
	return d
}

// logPath names a log file and registers it for the secrets check.
func (h *harness) logPath(name string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := filepath.Join(h.work, "logs", fmt.Sprintf("%03d-%s.log", len(h.logFiles)+1, sanitize(name)))
	h.logFiles = append(h.logFiles, p)
	return p
}

func (h *harness) allLogs() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.logFiles...)
}

// addSecret registers a string (a password, a key) that no log may contain.
func (h *harness) addSecret(label, value string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.secrets[value] = label
}

func (h *harness) secretList() (values, labels []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for v := range h.secrets {
		values = append(values, v)
	}
	sort.Strings(values)
	for _, v := range values {
		labels = append(labels, h.secrets[v])
	}
	return values, labels
}

// freePort returns a loopback port no earlier call handed out.
func (h *harness) freePort() int {
	p, err := freeport.Get()
	if err != nil {
		panic(fmt.Sprintf("no free loopback port: %v", err))
	}
	return p
}

func (h *harness) track(in *inkan) {
	h.mu.Lock()
	h.procs[in.pid()] = in
	h.mu.Unlock()
}

func (h *harness) untrack(pid int) {
	h.mu.Lock()
	delete(h.procs, pid)
	h.mu.Unlock()
}

func (h *harness) trackSink(s *sink) {
	h.mu.Lock()
	h.sinks = append(h.sinks, s)
	h.mu.Unlock()
}

func (h *harness) addMount(dir string) {
	h.mu.Lock()
	h.mounts = append(h.mounts, dir)
	h.mu.Unlock()
}

func (h *harness) removeMount(dir string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, m := range h.mounts {
		if m == dir {
			h.mounts = append(h.mounts[:i], h.mounts[i+1:]...)
			return
		}
	}
}

// stopAll stops every inkan still running, by PID: SIGTERM, then SIGKILL.
func (h *harness) stopAll() {
	h.mu.Lock()
	var list []*inkan
	for _, in := range h.procs {
		list = append(list, in)
	}
	sinks := h.sinks
	h.sinks = nil
	h.mu.Unlock()
	var wg sync.WaitGroup
	for _, in := range list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in.terminate(5 * time.Second)
		}()
	}
	wg.Wait()
	for _, s := range sinks {
		s.close()
	}
}

// cleanup stops processes, unmounts, and removes the work folder unless
// asked to keep it or something failed (then its logs are worth reading).
func (h *harness) cleanup(keep bool) {
	h.cleanOnce.Do(func() {
		h.stopAll()
		h.mu.Lock()
		mounts := append([]string(nil), h.mounts...)
		h.mu.Unlock()
		for _, m := range mounts {
			if err := unmount(m); err != nil {
				fmt.Fprintf(os.Stderr, "inkan-torture: unmount %s: %v\n", m, err)
			}
		}
		if h.dns != nil {
			h.dns.close()
		}
		if keep || h.failed() {
			fmt.Fprintf(os.Stderr, "work folder (configs, spools, logs) kept in %s\n", h.work)
			return
		}
		os.RemoveAll(h.work)
	})
}

// abort ends the run early (signal or timeout): clean up, print what is
// known, exit.
func (h *harness) abort(reason string, code int) {
	fmt.Fprintf(os.Stderr, "\ninkan-torture: %s; stopping everything\n", reason)
	h.mu.Lock()
	for _, r := range h.rows {
		if r.Elapsed == 0 && r.Skipped == "" {
			r.failf("interrupted before it finished: figures incomplete")
		}
	}
	h.rows = append(h.rows, &result{Name: "(aborted)", Failures: []string{reason}})
	h.mu.Unlock()
	h.cleanup(true)
	h.printReport(os.Stdout, time.Since(h.started))
	os.Exit(code)
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '-'
	}, s)
}
