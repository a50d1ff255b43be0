package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// server is one system under test.
type server interface {
	name() string
	loadPort() int
	start(ctx context.Context) error
	stop()
	cpuTicks() int64 // cumulative CPU ticks of all its processes
	pids() []int     // processes whose memory counts
	mainPID() int
	expectAlgs() []string // DKIM a= values every message must carry
	health() string
}

// runResult is one measured run of one system.
type runResult struct {
	sys, tag     string
	n            int
	accept, e2e  time.Duration // smtp-source exit; sink has all N
	cpuTicks     int64
	rssKB, pssKB int64 // sampled peak of the sum over the system's processes
	hwmKB        int64 // VmHWM of the main process
	busyPct      float64
	loadCPU      time.Duration // smtp-source + smtp-sink
	client       clientResult
	check        check
	health       string
	err          error
}

func (r *runResult) ok() bool { return r.err == nil && r.e2e > 0 }

type idleResult struct {
	rssKB, connRSSKB, connHWMKB int64
	conns                       int
	workers                     int
	refused                     int    // 454 to a correct AUTH (then repeated)
	firstRef                    string // the first such reply
	err                         error
}

type bench struct {
	opt        *options
	reg        *registry
	stamp      string
	logFile    *os.File
	bin        string
	rsaKey     dkimKey
	edKey      dkimKey
	pf         *postfixEnv
	dnsMap     string
	ownVerify  string
	shared     string
	sink       *sink
	signHelper string   // test/bench/signrate built for the binary's crypto backend
	signPre    signCost // before the runs
	signPost   signCost // after them
	idle       *idleResult
	results    map[string][]*runResult
	profile    *profileResult
	hz         int64
	commit     string // inkan source the binary was built from
	built      bool   // by deploy/build.sh here (else -bin)
	version    string // `inkan version`, one line
	resolv     string // the systems' private resolv.conf ("" = none could be made)
}

func newBench(opt *options, reg *registry) (*bench, error) {
	b := &bench{opt: opt, reg: reg, stamp: time.Now().Format("20060102-150405"), results: map[string][]*runResult{}, hz: 100}
	for _, d := range []string{opt.work, opt.results} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	f, err := os.Create(filepath.Join(opt.results, "inkan-bench-"+b.stamp+".log"))
	if err != nil {
		return nil, fmt.Errorf("create log: %w", err)
	}
	b.logFile = f
	setLogOutput(f)
	if opt.repo == "" {
		if opt.repo, err = findRepo(); err != nil && opt.inkanBin == "" {
			return nil, err
		}
	}
	b.shared = opt.sharedBench
	if b.shared == "" {
		b.shared = filepath.Join(opt.repo, "..", "shared", "bench")
		if _, err := os.Stat(filepath.Join(b.shared, "dkim_verify.py")); err != nil {
			b.shared = "/work/shared/bench"
		}
	}
	return b, nil
}

func (b *bench) close() {
	if b.logFile != nil {
		b.logFile.Close()
	}
}

func (b *bench) hasInkan() bool {
	for _, s := range b.opt.systems {
		if strings.HasPrefix(s, "inkan") {
			return true
		}
	}
	return false
}

func (b *bench) hasPostfix() bool {
	for _, s := range b.opt.systems {
		if strings.HasPrefix(s, "postfix") {
			return true
		}
	}
	return false
}

// setup builds inkan, makes keys and configs, measures Go's signing rate and
// starts the sink.
func (b *bench) setup(ctx context.Context) error {
	o := b.opt
	logf("inkan-bench: N=%d sessions=%d size=%d runs=%d systems=%s cores=%d go=%s work=%s", o.n, o.sessions, o.size, o.runs,
		strings.Join(o.systems, ","), runtime.NumCPU(), runtime.Version(), o.work)
	if _, err := os.Stat(filepath.Join(b.shared, "dkim_verify.py")); err != nil {
		return fmt.Errorf("shared bench scripts not found (use -shared-bench): %w", err)
	}
	for _, kv := range os.Environ() {
		// INKAN_* variables apply on top of a config file: the systems run
		// the file and the defaults only.
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "INKAN_") {
			logf("unsetting %s for the inkan processes", k)
			_ = os.Unsetenv(k)
		}
	}
	if err := ensurePackages(o.install, contains(o.systems, "postfix-rspamd")); err != nil {
		return err
	}
	b.resolv = privateResolv(o.work)
	var dns []string
	if b.hasInkan() {
		b.bin = o.inkanBin
		if b.bin == "" {
			b.bin = filepath.Join(o.work, "bin", "inkan")
			if err := buildInkan(o.repo, b.bin); err != nil {
				return err
			}
			b.built = true
			b.commit = gitDescribe(o.repo)
			logf("inkan built from %s", b.commit)
		}
		var err error
		if b.version, err = inkanVersion(b.bin); err != nil {
			return fmt.Errorf("inkan version: %w", err)
		}
		logf("%s version: %s", b.bin, b.version)
		if err := b.setupSignCost(); err != nil {
			return err
		}
		if b.rsaKey, b.edKey, err = inkanKeys(b.bin, filepath.Join(o.work, "inkan-keys")); err != nil {
			return err
		}
		dns = append(dns, b.rsaKey.dnsLine(), b.edKey.dnsLine())
	}
	if b.hasPostfix() {
		b.pf = &postfixEnv{dir: filepath.Join(o.work, "postfix"), smtpdPort: o.postfixPort, milter: o.milterPort,
			rspamdPort: o.rspamdPort, sinkPort: o.sinkPort, resolv: b.resolv}
		if err := os.MkdirAll(b.pf.dir, 0o755); err != nil {
			return fmt.Errorf("create postfix work dir: %w", err)
		}
		if err := b.pf.prepare(contains(o.systems, "postfix-rspamd")); err != nil {
			return err
		}
		dns = append(dns, b.pf.key.dnsLine())
	}
	b.dnsMap = filepath.Join(o.work, "dns.txt")
	if err := os.WriteFile(b.dnsMap, []byte(strings.Join(dns, "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("write dns map: %w", err)
	}
	b.ownVerify = filepath.Join(o.work, "verify_sigs.py")
	if err := os.WriteFile(b.ownVerify, verifySigsPy, 0o755); err != nil {
		return fmt.Errorf("write verify_sigs.py: %w", err)
	}
	if err := os.RemoveAll(filepath.Join(o.work, "dumps")); err != nil {
		return fmt.Errorf("clear old dumps: %w", err)
	}
	var err error
	b.sink, err = startSink(ctx, b.reg, o.work, o.sinkPort)
	return err
}

func (b *bench) newServer(sys string) server {
	o := b.opt
	switch sys {
	case "postfix-opendkim":
		return &postfixServer{sys: sys, env: b.pf, milter: milterOpenDKIM, reg: b.reg}
	case "postfix-rspamd":
		return &postfixServer{sys: sys, env: b.pf, milter: milterRspamd, reg: b.reg}
	case "postfix":
		return &postfixServer{sys: sys, env: b.pf, milter: milterNone, reg: b.reg}
	}
	s := &inkanServer{sys: sys, bin: b.bin, dir: filepath.Join(o.work, sys), port: o.relayPort, smtpsPort: o.smtpsPort,
		subPort: o.subPort, httpPort: o.httpPort, sinkPort: o.sinkPort, logLevel: o.logLevel, resolv: b.resolv, reg: b.reg}
	switch sys {
	case "inkan-rsa":
		s.keys = []dkimKey{b.rsaKey}
	case "inkan-dual":
		s.keys = []dkimKey{b.rsaKey, b.edKey}
	case "inkan-ed25519":
		s.keys = []dkimKey{b.edKey}
	}
	return s
}

// measure runs the idle-memory test, then every system runs times
// (interleaved, so drift on a shared machine spreads over all systems), then
// the profile run.
func (b *bench) measure(ctx context.Context) {
	if b.hasInkan() && b.opt.idleConns > 0 {
		b.idle = b.idleTest(ctx)
	}
	for r := 1; r <= b.opt.runs && ctx.Err() == nil; r++ {
		for _, sys := range b.opt.systems {
			if ctx.Err() != nil {
				break
			}
			res := b.runSystem(ctx, b.newServer(sys), r)
			b.results[sys] = append(b.results[sys], res)
		}
	}
	// The machine may be busier at one end of the run than the other: the
	// targets use the cheaper of the two signing costs, the harder bar.
	if ctx.Err() == nil && b.signHelper != "" {
		if c, err := measureSignCost(b.signHelper); err != nil {
			logf("signing cost after the runs: %v", err)
		} else {
			b.signPost = c
			logf("signing cost after the runs (%s): RSA-2048 %.0f µs CPU/signature, %.0f/s on 1 goroutine, %.0f/s on 2; Ed25519 %.0f µs",
				c.rsa1.backend, c.rsa1.cpuUsPerSign, c.rsa1.perSec, c.rsa2.perSec, c.ed1.cpuUsPerSign)
		}
	}
	if b.opt.profile && b.hasInkan() && ctx.Err() == nil {
		b.profile = b.profileRun(ctx, b.newServer("inkan-rsa").(*inkanServer))
	}
}

func (b *bench) phaseTimeout(n int) time.Duration {
	return 2*time.Minute + time.Duration(n)*40*time.Millisecond
}

// phase is what one smtp-source run took.
type phase struct {
	accept, e2e time.Duration // smtp-source exit; sink has all n
	loadCPU     time.Duration // smtp-source and smtp-sink CPU time
}

// sourcePhase runs smtp-source with n messages and waits until the sink has
// them all.
func (b *bench) sourcePhase(ctx context.Context, srv server, n int, out, dump string) (ph phase, err error) {
	base, err := b.sink.count()
	if err != nil {
		return ph, err
	}
	sink0 := b.sink.cpuTicks()
	t0 := time.Now()
	var srcCPU time.Duration
	ph.accept, srcCPU, err = runSource(ctx, srv.loadPort(), n, b.opt.sessions, b.opt.size, out, b.phaseTimeout(n))
	if err != nil {
		return ph, err
	}
	at, got, err := b.sink.waitCount(ctx, base+n, b.phaseTimeout(n)-time.Since(t0))
	if err != nil {
		return ph, fmt.Errorf("end-to-end: %w; %s", err, srv.health())
	}
	ph.e2e = at.Sub(t0)
	ph.loadCPU = srcCPU + time.Duration(b.sink.cpuTicks()-sink0)*time.Second/time.Duration(b.hz)
	// A duplicate delivery shows as a counter above base+n shortly after.
	time.Sleep(300 * time.Millisecond)
	if now, _ := b.sink.count(); now != base+n {
		err = fmt.Errorf("sink got %d messages for %d sent (got %d at first)", now-base, n, got-base)
	}
	if derr := b.sink.takeDump(dump); derr != nil && err == nil {
		err = derr
	}
	return ph, err
}

// runSystem starts srv fresh, warms it up, measures one smtp-source run and
// one Go client run, checks what reached the sink and stops srv.
func (b *bench) runSystem(ctx context.Context, srv server, r int) *runResult {
	o := b.opt
	res := &runResult{sys: srv.name(), n: o.n, tag: fmt.Sprintf("%s-r%d-%s", srv.name(), r, b.stamp)}
	dir := filepath.Join(o.work, "dumps", fmt.Sprintf("%s-r%d", srv.name(), r))
	logf("== %s run %d: start", srv.name(), r)
	if err := srv.start(ctx); err != nil {
		res.err = err
		logf("%s: %v", srv.name(), err)
		return res
	}
	defer srv.stop()
	if o.warmup > 0 {
		if _, err := b.sourcePhase(ctx, srv, o.warmup, filepath.Join(o.work, "source-warmup.out"), filepath.Join(dir, "warmup")); err != nil {
			res.err = fmt.Errorf("warm-up: %w", err)
			logf("%s: %v", srv.name(), res.err)
			return res
		}
	}
	cpu0 := srv.cpuTicks()
	busy0, idle0 := sysBusy()
	mem := startMemSampler(srv.pids, 100*time.Millisecond)
	ph, err := b.sourcePhase(ctx, srv, o.n, filepath.Join(o.work, "source-"+srv.name()+".out"), filepath.Join(dir, "source"))
	cpu1 := srv.cpuTicks()
	busy1, idle1 := sysBusy()
	res.rssKB, res.pssKB = mem.stop()
	if v, err := statusKB(srv.mainPID(), "VmHWM"); err == nil {
		res.hwmKB = v["VmHWM"]
	}
	res.accept, res.e2e, res.cpuTicks, res.loadCPU = ph.accept, ph.e2e, cpu1-cpu0, ph.loadCPU
	if db, di := busy1-busy0, idle1-idle0; db+di > 0 {
		res.busyPct = 100 * float64(db) / float64(db+di)
	}
	if err != nil {
		res.err = err
		res.e2e = 0
		logf("%s: %v", srv.name(), err)
		return res
	}
	logf("%s run %d: accept %.2fs (%.0f msgs/s) e2e %.2fs (%.0f msgs/s) cpu %.2fs (%.2f ms/msg) peak rss %.1f MB pss %.1f MB, system busy %.0f%%, smtp-source+sink cpu %.2f ms/msg",
		srv.name(), r, ph.accept.Seconds(), float64(o.n)/ph.accept.Seconds(), ph.e2e.Seconds(), float64(o.n)/ph.e2e.Seconds(),
		float64(res.cpuTicks)/float64(b.hz), b.cpuMsPerMsg(res), float64(res.rssKB)/1024, float64(res.pssKB)/1024, res.busyPct,
		ms(res.loadCPU)/float64(o.n))

	// Latency: the Go client, after the smtp-source run, same shape.
	base, _ := b.sink.count()
	res.client = runClient(ctx, srv.loadPort(), o.n, o.sessions, o.size, res.tag, b.phaseTimeout(o.n))
	if res.client.failed > 0 {
		res.check.problem("client: %d of %d failed (first: %s)", res.client.failed, o.n, res.client.firstErr)
	}
	if _, _, err := b.sink.waitCount(ctx, base+res.client.ok, b.phaseTimeout(o.n)); err != nil {
		res.check.problem("client run end-to-end: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	if err := b.sink.takeDump(filepath.Join(dir, "client")); err != nil {
		res.check.problem("%v", err)
	}
	logf("%s run %d: client %d ok %d failed in %.2fs, DATA-to-250 p50 %.1f ms p99 %.1f ms", srv.name(), r, res.client.ok, res.client.failed,
		res.client.elapsed.Seconds(), ms(res.client.pct(0.50)), ms(res.client.pct(0.99)))
	res.health = srv.health()
	logf("%s run %d: %s", srv.name(), r, res.health)
	b.verify(ctx, srv, res, dir)
	logf("%s run %d: check: %s", srv.name(), r, res.check.String())
	return res
}

func (b *bench) verify(ctx context.Context, srv server, res *runResult, dir string) {
	c := &res.check
	c.wantFiles = b.opt.n
	c.files = countFiles(filepath.Join(dir, "source"))
	if c.files != c.wantFiles {
		c.problem("smtp-source run: %d files at the sink for %d messages", c.files, c.wantFiles)
	}
	seen, err := countSeqs(filepath.Join(dir, "client"), res.tag)
	if err != nil {
		c.problem("%v", err)
	} else {
		c.checkSeqs(seen, b.opt.n)
	}
	files := sample(b.opt.verifySample, filepath.Join(dir, "source"), filepath.Join(dir, "client"))
	vctx, cancel := context.WithTimeout(ctx, verifyTimeout(len(files)))
	defer cancel()
	c.verifySignatures(vctx, filepath.Join(b.shared, "dkim_verify.py"), b.ownVerify, b.dnsMap, files, srv.expectAlgs())
}

func (b *bench) cpuMsPerMsg(r *runResult) float64 {
	return float64(r.cpuTicks) * 1000 / float64(b.hz) / float64(r.n)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// idleTest measures inkan's RSS idle, then with idleConns authenticated
// implicit-TLS connections open.
func (b *bench) idleTest(ctx context.Context) *idleResult {
	res := &idleResult{}
	srv := b.newServer("inkan-rsa").(*inkanServer)
	srv.dir = filepath.Join(b.opt.work, "inkan-idle")
	srv.idleLimits = b.idleLimit()
	logf("== idle memory: inkan-rsa with %d authenticated connections (its own instance; connection limits %d)", b.opt.idleConns, srv.idleLimits)
	if res.err = srv.start(ctx); res.err != nil {
		return res
	}
	defer srv.stop()
	time.Sleep(2 * time.Second)
	if v, err := statusKB(srv.mainPID(), "VmRSS"); err == nil {
		res.rssKB = v["VmRSS"]
	}
	res.workers = 8
	ic, err := idleConns(ctx, fmt.Sprintf("127.0.0.1:%d", b.opt.smtpsPort), benchUser, srv.password, b.opt.idleConns, res.workers, 5*time.Minute)
	clients := ic.clients
	res.conns, res.refused, res.firstRef, res.err = len(clients), ic.refused, ic.firstRef, err
	if res.refused > 0 {
		logf("idle memory: inkan answered 454 to %d correct logins (%d logins in parallel, one user, one address; repeated each time): %s",
			res.refused, res.workers, res.firstRef)
	}
	time.Sleep(2 * time.Second)
	if v, err := statusKB(srv.mainPID(), "VmRSS", "VmHWM"); err == nil {
		res.connRSSKB, res.connHWMKB = v["VmRSS"], v["VmHWM"]
	}
	for _, c := range clients {
		_ = c.Close()
	}
	logf("idle memory: idle VmRSS %.1f MB; with %d authenticated connections VmRSS %.1f MB (VmHWM %.1f MB)%s",
		float64(res.rssKB)/1024, res.conns, float64(res.connRSSKB)/1024, float64(res.connHWMKB)/1024, errSuffix(res.err))
	return res
}

// idleLimit is the connection limit of the idle-memory instance.
func (b *bench) idleLimit() int { return max(2000, b.opt.idleConns+100) }

func errSuffix(err error) string {
	if err == nil {
		return ""
	}
	return "; error: " + err.Error()
}

func (b *bench) allVerified() bool {
	for _, rs := range b.results {
		for _, r := range rs {
			if !r.ok() || !r.check.ok() {
				return false
			}
		}
	}
	return true
}
