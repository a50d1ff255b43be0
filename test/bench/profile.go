package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// profileResult is what perf and Go's pprof saw of inkan during one extra,
// unmeasured smtp-source run (profilers cost CPU, so they never run during
// the measured ones). perf samples from outside with frame-pointer call
// graphs (Go keeps them on amd64) and sees the kernel; pprof, from inkan's
// /debug/pprof (http.pprof), sees Go code without the VM's sampling
// artefacts.
type profileResult struct {
	sys                       string
	bin                       string // the binary profiled, if not the shipped one
	data, flatFile, childFile string
	e2e                       time.Duration
	n                         int
	flat                      []perfLine // self time, highest first
	children                  []perfLine // inclusive time
	pprofFile, pprofTop       string     // raw profile, `go tool pprof -top` text
	pprofFlat, pprofCum       []perfLine
	pprofErr                  error
	groups                    []groupShare
	frames                    []groupShare
	err                       error
}

type perfLine struct {
	pct    float64
	kernel bool
	sym    string
}

// keyFrames are inclusive frames worth reading first: what the time under
// them buys. The largest matching line of the children report is shown.
var keyFrames = []struct {
	name string
	re   *regexp.Regexp
}{
	{"DKIM signing goroutine (canonicalize, hash, sign)", regexp.MustCompile(`go-msgauth/dkim\.NewSigner\.func`)},
	{"RSA private-key operation", regexp.MustCompile(`^crypto/rsa\.SignPKCS1v15$|^crypto/rsa\.\(\*PrivateKey\)\.Sign$`)},
	{"Ed25519 signing", regexp.MustCompile(`^crypto/ed25519\.`)},
	{"inbound SMTP connections (go-smtp handleConn)", regexp.MustCompile(`go-smtp\.\(\*Server\)\.handleConn$`)},
	{"DATA handling (relay session.Data)", regexp.MustCompile(`relay\.\(\*session\)\.Data$`)},
	{"queue commit (Draft.Commit)", regexp.MustCompile(`queue\.\(\*Draft\)\.Commit$`)},
	{"queue committer goroutine (batched dir fsync)", regexp.MustCompile(`queue\.\(\*Queue\)\.committer$`)},
	{"outbound delivery (queue attempt)", regexp.MustCompile(`queue\.\(\*Queue\)\.attempt$`)},
	{"fsync (os.File.Sync)", regexp.MustCompile(`^os\.\(\*File\)\.Sync$`)},
	{"file create/open (os.OpenFile)", regexp.MustCompile(`^os\.OpenFile$`)},
	{"rename (os.Rename)", regexp.MustCompile(`^os\.Rename$`)},
	{"socket writes (net.conn.Write)", regexp.MustCompile(`^net\.\(\*conn\)\.Write$`)},
	{"socket reads (net.conn.Read)", regexp.MustCompile(`^net\.\(\*conn\)\.Read$`)},
	{"GC background marking", regexp.MustCompile(`^runtime\.gcBgMarkWorker$`)},
	{"allocation (mallocgc)", regexp.MustCompile(`^runtime\.mallocgc$`)},
	{"scheduler (runtime.schedule)", regexp.MustCompile(`^runtime\.schedule$`)},
	{"all system calls (entry_SYSCALL_64)", regexp.MustCompile(`^entry_SYSCALL_64`)},
}

func keyFrameShares(children []perfLine) []groupShare {
	var out []groupShare
	for _, k := range keyFrames {
		best := 0.0
		for _, l := range children {
			if k.re.MatchString(l.sym) {
				best = max(best, l.pct)
			}
		}
		if best > 0 {
			out = append(out, groupShare{k.name, best})
		}
	}
	return out
}

type groupShare struct {
	name string
	pct  float64
}

func (b *bench) profileRun(ctx context.Context, srv *inkanServer) *profileResult {
	res := &profileResult{sys: srv.name(), n: b.opt.n}
	srv.dir = filepath.Join(b.opt.work, "inkan-profile")
	srv.pprof = true
	// The shipped binary is stripped (deploy/build.sh: -s -w), so perf could
	// not name its functions: profile the same build with symbols.
	if b.opt.repo != "" {
		bin := filepath.Join(b.opt.work, "bin", "inkan-symbols")
		if err := buildLike(b.opt.repo, bin, "./cmd/inkan", b.signPre.rsa1.backend, "inkan with symbols for the profile"); err != nil {
			logf("profile: %v; profiling the stripped binary", err)
		} else {
			srv.bin, res.bin = bin, bin
		}
	}
	logf("== profile: %s under perf record and pprof (unmeasured run)", srv.name())
	if err := srv.start(ctx); err != nil {
		res.err, res.pprofErr = err, err
		return res
	}
	defer srv.stop()
	dump := filepath.Join(b.opt.work, "dumps", "profile")
	if b.opt.warmup > 0 {
		if _, err := b.sourcePhase(ctx, srv, b.opt.warmup, filepath.Join(b.opt.work, "source-warmup.out"), dump); err != nil {
			res.err = fmt.Errorf("warm-up: %w", err)
			res.pprofErr = res.err
			return res
		}
	}
	// perf is optional (pprof alone still profiles the Go code).
	perf, err := exec.LookPath("perf")
	var p *child
	if err != nil {
		res.err = fmt.Errorf("perf not installed (apt-get install linux-perf)")
	} else {
		res.data = filepath.Join(b.opt.results, fmt.Sprintf("perf-%s-%s.data", srv.name(), b.stamp))
		cmd := exec.Command(perf, "record", "-F", "999", "-g", "-p", strconv.Itoa(srv.mainPID()), "-o", res.data)
		if p, res.err = startChild(b.reg, "perf record", cmd, filepath.Join(b.opt.work, "perf.out")); res.err == nil {
			time.Sleep(500 * time.Millisecond) // let perf attach to every thread
		}
	}
	pctx, cancel := context.WithTimeout(ctx, b.opt.profileSecs)
	res.pprofFile = filepath.Join(b.opt.results, fmt.Sprintf("pprof-%s-%s.pb.gz", srv.name(), b.stamp))
	pprofDone := make(chan error, 1)
	go func() { pprofDone <- fetchPprof(pctx, srv.httpPort, b.pprofSeconds(), res.pprofFile) }()
	ph, err := b.sourcePhase(pctx, srv, b.opt.n, filepath.Join(b.opt.work, "source-profile.out"), dump)
	res.e2e = ph.e2e
	res.pprofErr = <-pprofDone
	cancel()
	if err != nil {
		logf("profile run: %v (the profiles still cover what ran)", err)
	}
	if res.pprofErr == nil {
		res.pprofTop, res.pprofFlat, res.pprofCum, res.pprofErr = pprofTop(srv.bin, res.pprofFile)
	}
	if p == nil {
		return res
	}
	_ = p.cmd.Process.Signal(syscall.SIGINT) // perf writes its data on SIGINT
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
	}
	p.stop()
	res.flatFile = strings.TrimSuffix(res.data, ".data") + "-self.txt"
	res.childFile = strings.TrimSuffix(res.data, ".data") + "-children.txt"
	if res.flat, res.err = perfReport(perf, res.data, res.flatFile, "--no-children", "0.01"); res.err != nil {
		return res
	}
	res.children, res.err = perfReport(perf, res.data, res.childFile, "--children", "1")
	res.groups = groupProfile(res.flat)
	res.frames = keyFrameShares(res.children)
	return res
}

// pprofSeconds covers the measured run's length of an inkan-rsa run (from
// this benchmark's results, when there are some) plus a margin.
func (b *bench) pprofSeconds() int {
	secs := 15
	if rs := b.results["inkan-rsa"]; len(rs) > 0 {
		var e []float64
		for _, r := range rs {
			if r.ok() {
				e = append(e, r.e2e.Seconds())
			}
		}
		if len(e) > 0 {
			secs = int(median(e)) + 2
		}
	}
	return min(secs, int(b.opt.profileSecs.Seconds()))
}

// fetchPprof saves a CPU profile of secs seconds from inkan's pprof handler.
func fetchPprof(ctx context.Context, port, secs int, out string) error {
	url := fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", port, secs)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("pprof request: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch %s: %s", url, resp.Status)
	}
	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("save pprof profile: %w", err)
	}
	defer f.Close()
	if _, err := io.Copy(f, resp.Body); err != nil {
		return fmt.Errorf("save pprof profile: %w", err)
	}
	return f.Close()
}

// pprofTop runs `go tool pprof -top` (flat and cumulative) on the profile.
func pprofTop(bin, file string) (string, []perfLine, []perfLine, error) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "", nil, nil, fmt.Errorf("go tool pprof: %w", err)
	}
	flat, err := runCmd(2*time.Minute, "", gobin, "tool", "pprof", "-top", "-nodecount=40", bin, file)
	if err != nil {
		return "", nil, nil, err
	}
	cum, err := runCmd(2*time.Minute, "", gobin, "tool", "pprof", "-top", "-cum", "-nodecount=60", bin, file)
	if err != nil {
		return "", nil, nil, err
	}
	txt := flat + "\n" + cum
	_ = os.WriteFile(strings.TrimSuffix(file, ".pb.gz")+"-top.txt", []byte(txt), 0o644)
	return txt, parsePprofTop(flat, false), parsePprofTop(cum, true), nil
}

// pprofRowRE matches a -top row: "flat flat% sum% cum cum% name".
var pprofRowRE = regexp.MustCompile(`^\s*[\d.]+\w*\s+([\d.]+)%\s+[\d.]+%\s+[\d.]+\w*\s+([\d.]+)%\s+(.+?)\s*$`)

func parsePprofTop(txt string, cum bool) []perfLine {
	var out []perfLine
	for _, l := range strings.Split(txt, "\n") {
		m := pprofRowRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		v := m[1]
		if cum {
			v = m[2]
		}
		pct, err := strconv.ParseFloat(v, 64)
		if err != nil {
			continue
		}
		out = append(out, perfLine{pct: pct, sym: m[3]})
	}
	return out
}

// perfReport runs perf report by symbol, saves its text and parses it.
func perfReport(perf, data, out, mode, limit string) ([]perfLine, error) {
	txt, err := runCmd(5*time.Minute, "", perf, "report", "-i", data, "--stdio", mode, "--sort", "symbol", "-g", "none", "--percent-limit", limit)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(out, []byte(txt), 0o644); err != nil {
		return nil, fmt.Errorf("save perf report: %w", err)
	}
	return parsePerf(txt), nil
}

// perfLineRE matches "  12.34%  [.] sym" and, with --children,
// "  45.00%   0.10%  [k] sym" (the first figure is the inclusive one).
// perf 6.x appends IPC columns ("-      -") where the VM has no PMU.
var perfLineRE = regexp.MustCompile(`^\s*([\d.]+)%\s+(?:[\d.]+%\s+)?\[(.)\]\s+(.+?)(?:\s+-\s+-)?\s*$`)

func parsePerf(txt string) []perfLine {
	var out []perfLine
	sc := bufio.NewScanner(strings.NewReader(txt))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		m := perfLineRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		pct, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			continue
		}
		out = append(out, perfLine{pct: pct, kernel: m[2] == "k", sym: m[3]})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].pct > out[j].pct })
	return out
}

// profileGroups sort self time into what a reader acts on; the first match
// wins.
var profileGroups = []struct {
	name   string
	kernel bool
	re     *regexp.Regexp
}{
	{"RSA signing (bigmod/rsa; BoringSSL bn/rsa)", false, regexp.MustCompile(`bigmod|math/big|crypto/rsa|fips140/rsa|goboringcrypto_(bn|BN|rsa|RSA)|^(bn|BN|rsaz|RSA)_`)},
	{"Ed25519", false, regexp.MustCompile(`edwards25519|ed25519`)},
	{"SHA-256 hashing", false, regexp.MustCompile(`(?i)sha256|sha2`)},
	{"Go GC and allocation", false, regexp.MustCompile(`^runtime\.(gc|scan|mallocgc|memclr|greyobject|findObject|markBits|heapBits|wbBuf|bulkBarrier|sweep|mspan|mcache|mcentral|mheap|nextFreeFast|spanOf|typePointers|memmove)|^runtime\.\(\*(mspan|mheap|gcWork|mcache|mcentral)`)},
	{"Go scheduler and other runtime", false, regexp.MustCompile(`^runtime\.|^internal/runtime`)},
	{"other crypto (TLS, hashing)", false, regexp.MustCompile(`^crypto/|^vendor/golang.org/x/crypto|golang.org/x/crypto`)},
	{"SMTP/MIME parsing and I/O buffers", false, regexp.MustCompile(`go-smtp|go-message|go-msgauth|textproto|bufio|^bytes\.|^strings\.|^regexp`)},
	{"inkan code", false, regexp.MustCompile(`inkan`)},
	{"kernel: disk, fsync, ext4/jbd2", true, regexp.MustCompile(`ext4|jbd2|fsync|blk_|bio|nvme|virtio|iowrite|writeback|filemap|page_cache|iomap|xas_|folio|find_get_block|d_lookup|dentry|inode`)},
	{"kernel: TCP over loopback", true, regexp.MustCompile(`tcp|skb|sock|net_|ip_|inet|loopback|dev_|napi|nf_`)},
	// In a VM without a PMU, samples taken while interrupts were off land on
	// the instruction that re-enables them.
	{"kernel: irq re-enable (VM sampling artefact; see the inclusive view)", true, regexp.MustCompile(`irq_enable|irq_restore|pvm_`)},
	{"kernel: syscalls, scheduling, other", true, regexp.MustCompile(`.`)},
	{"other user-space", false, regexp.MustCompile(`.`)},
}

func groupProfile(flat []perfLine) []groupShare {
	sum := make(map[string]float64)
	for _, l := range flat {
		for _, g := range profileGroups {
			if g.kernel == l.kernel && g.re.MatchString(l.sym) {
				sum[g.name] += l.pct
				break
			}
		}
	}
	var out []groupShare
	for _, g := range profileGroups {
		if v := sum[g.name]; v > 0 {
			out = append(out, groupShare{g.name, v})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].pct > out[j].pct })
	return out
}
