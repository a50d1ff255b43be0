package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

// summary is one system's figures over its successful runs (medians).
type summary struct {
	sys                  string
	runs, okRuns         int
	accept, e2e, cpuMs   float64 // msgs/s, msgs/s, ms per message
	acceptMin, acceptMax float64
	e2eMin, e2eMax       float64
	p50, p99             float64 // ms, pooled over runs
	rssMB, pssMB, hwmMB  float64
	loadMs, busyPct      float64 // smtp-source+sink CPU ms/msg; system busy %
	verified             bool
	problems             []string
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func minMax(v []float64) (float64, float64) {
	if len(v) == 0 {
		return 0, 0
	}
	lo, hi := v[0], v[0]
	for _, x := range v {
		lo, hi = min(lo, x), max(hi, x)
	}
	return lo, hi
}

func (b *bench) summarize(sys string) *summary {
	s := &summary{sys: sys, verified: true}
	var acc, e2e, cpu, rss, pss, hwm, load, busy []float64
	var lat []time.Duration
	for _, r := range b.results[sys] {
		s.runs++
		if !r.ok() {
			s.verified = false
			s.problems = append(s.problems, fmt.Sprintf("run failed: %v", r.err))
			continue
		}
		s.okRuns++
		acc = append(acc, float64(r.n)/r.accept.Seconds())
		e2e = append(e2e, float64(r.n)/r.e2e.Seconds())
		cpu = append(cpu, b.cpuMsPerMsg(r))
		rss = append(rss, float64(r.rssKB)/1024)
		pss = append(pss, float64(r.pssKB)/1024)
		hwm = append(hwm, float64(r.hwmKB)/1024)
		load = append(load, ms(r.loadCPU)/float64(r.n))
		busy = append(busy, r.busyPct)
		lat = append(lat, r.client.lat...)
		if !r.check.ok() {
			s.verified = false
			s.problems = append(s.problems, r.check.problems...)
		}
	}
	if s.okRuns == 0 {
		s.verified = false
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	s.accept, s.e2e, s.cpuMs = median(acc), median(e2e), median(cpu)
	s.acceptMin, s.acceptMax = minMax(acc)
	s.e2eMin, s.e2eMax = minMax(e2e)
	s.p50, s.p99 = ms(percentile(lat, 0.50)), ms(percentile(lat, 0.99))
	s.rssMB, s.pssMB, s.hwmMB = median(rss), median(pss), median(hwm)
	s.loadMs, s.busyPct = median(load), median(busy)
	return s
}

func ratio(a, b float64) string {
	if a == 0 || b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func verdict(ok bool) string {
	if ok {
		return "MET "
	}
	return "MISS"
}

// report prints the table, ratios, targets and machine-readable lines, and
// saves the same text in the results directory.
func (b *bench) report(stdout io.Writer) {
	var w bytes.Buffer
	o := b.opt
	fmt.Fprintf(&w, "\ninkan-bench %s: N=%d sessions=%d size=%d runs=%d warmup=%d; %d cores (%s); %s; fsync on (every system)\n",
		b.stamp, o.n, o.sessions, o.size, o.runs, o.warmup, runtime.NumCPU(), cpuModel(), runtime.Version())
	if b.bin != "" {
		how := "prebuilt (-bin)"
		if b.built {
			how = "built by deploy/build.sh from " + b.commit
		}
		fmt.Fprintf(&w, "inkan binary %s, %s: `inkan version`: %s\n", b.bin, how, b.version)
	}
	b.signText(&w)
	fmt.Fprintf(&w, "load average at the end: %s\n", loadAvg())
	if b.resolv != "" {
		fmt.Fprintf(&w, "every system ran in a private mount namespace with a loopback-only resolv.conf (%s)\n", b.resolv)
		if peersBatch {
			fmt.Fprintf(&w, "-peers-batch: Postfix, OpenDKIM and rspamd ran under SCHED_BATCH (chrt -b 0), like inkan's default cpu_scheduling\n")
		}
	} else {
		fmt.Fprintf(&w, "WARNING: no private mount namespace could be made: the systems used the machine's resolv.conf\n")
	}
	if b.hasInkan() {
		fmt.Fprintf(&w, "inkan runs its shipped defaults (inkan check -print) plus only, in the timed runs:\n")
		for _, s := range timedSettings(o) {
			fmt.Fprintf(&w, "  - %s\n", s)
		}
		fmt.Fprintf(&w, "  left at the defaults: %s\n", strings.Join(notOverridden, "; "))
		if peersBatch {
			fmt.Fprintf(&w, "  cpu_scheduling: default batch (SCHED_BATCH); the peers too in this run (-peers-batch)\n")
		} else {
			fmt.Fprintf(&w, "  cpu_scheduling: default batch (SCHED_BATCH), a default the peers do not share: they run with the harness's policy (normal); -peers-batch runs them under SCHED_BATCH too\n")
		}
		if b.idle != nil {
			fmt.Fprintf(&w, "  - "+idleOverride+"\n", b.idleLimit(), o.idleConns)
		}
		if b.profile != nil {
			fmt.Fprintf(&w, "  - %s\n", profileOverride)
		}
	}
	fmt.Fprintln(&w)
	sums := map[string]*summary{}
	fmt.Fprintf(&w, "%-17s %9s %9s %11s %8s %8s %12s %12s  %s\n", "system", "accept/s", "e2e/s", "CPU ms/msg", "p50 ms", "p99 ms", "peak RSS MB", "peak PSS MB", "checks")
	for _, sys := range o.systems {
		s := b.summarize(sys)
		sums[sys] = s
		chk := "ok"
		if !s.verified {
			chk = "FAILED: " + strings.Join(s.problems, "; ")
		}
		if s.okRuns == 0 {
			fmt.Fprintf(&w, "%-17s %s\n", sys, chk)
			continue
		}
		fmt.Fprintf(&w, "%-17s %9.1f %9.1f %11.2f %8.1f %8.1f %12.1f %12.1f  %s\n", sys, s.accept, s.e2e, s.cpuMs, s.p50, s.p99, s.rssMB, s.pssMB, chk)
	}
	fmt.Fprintf(&w, "(accept: smtp-source exit; e2e: sink has all N; CPU: utime+stime of all the system's processes incl. reaped children;\n"+
		" latency: Go client, DATA sent -> 250 after the final dot; peak RSS/PSS: sampled every 100 ms, summed over the system's processes;\n"+
		" RSS double-counts shared pages of Postfix's many processes, so ratios use PSS")
	if o.runs > 1 {
		fmt.Fprintf(&w, "; medians of %d runs, latency percentiles pooled", o.runs)
	}
	fmt.Fprintf(&w, ")\n")
	fmt.Fprintf(&w, "during the smtp-source runs: load generators' CPU (smtp-source + smtp-sink) ms/msg, and whole-machine busy %%:\n")
	for _, sys := range o.systems {
		if s := sums[sys]; s.okRuns > 0 {
			fmt.Fprintf(&w, "  %-17s %5.2f ms/msg, busy %3.0f%%\n", sys, s.loadMs, s.busyPct)
		}
	}
	for _, base := range []string{"postfix-opendkim", "postfix-rspamd", "postfix"} {
		p, ok := sums[base]
		if !ok || p.okRuns == 0 || !b.hasInkan() {
			continue
		}
		fmt.Fprintf(&w, "\nratios inkan/%s: %-8s %-8s %-8s %-8s %-8s\n", base, "accept", "e2e", "CPU/msg", "p99", "peakPSS")
		for _, sys := range o.systems {
			s := sums[sys]
			if !strings.HasPrefix(sys, "inkan") || s.okRuns == 0 {
				continue
			}
			fmt.Fprintf(&w, "  %-*s %-8s %-8s %-8s %-8s %-8s\n", len(base)+13, sys, ratio(s.accept, p.accept), ratio(s.e2e, p.e2e),
				ratio(s.cpuMs, p.cpuMs), ratio(s.p99, p.p99), ratio(s.pssMB, p.pssMB))
		}
	}
	b.targets(&w, sums)
	b.profileText(&w)
	fmt.Fprintln(&w)
	var sum bytes.Buffer
	for _, sys := range o.systems {
		s := sums[sys]
		fmt.Fprintf(&sum, "inkan-bench system=%s accept_msgs_per_s=%.1f e2e_msgs_per_s=%.1f cpu_ms_per_msg=%.3f p50_ms=%.2f p99_ms=%.2f peak_rss_mb=%.1f peak_pss_mb=%.1f vmhwm_mb=%.1f loadgen_cpu_ms_per_msg=%.3f sys_busy_pct=%.0f accept[min,max]=[%.1f,%.1f] e2e[min,max]=[%.1f,%.1f] verified=%t runs=%d ok_runs=%d N=%d sessions=%d size=%d\n",
			sys, s.accept, s.e2e, s.cpuMs, s.p50, s.p99, s.rssMB, s.pssMB, s.hwmMB, s.loadMs, s.busyPct, s.acceptMin, s.acceptMax, s.e2eMin, s.e2eMax, s.verified, s.runs, s.okRuns, o.n, o.sessions, o.size)
	}
	if b.signHelper != "" {
		fmt.Fprintf(&sum, "inkan-bench sign_backend=%s rsa2048_cpu_ms_per_sign=%.3f rsa2048_2goroutines_signs_per_s=%.0f ed25519_cpu_ms_per_sign=%.4f inkan_version=%q\n",
			b.signPre.rsa1.backend, b.rsaSignMs(), b.rsaRate2(), b.edSignMs(), b.version)
	}
	if b.idle != nil {
		fmt.Fprintf(&sum, "inkan-bench idle_rss_mb=%.1f conns=%d conns_rss_mb=%.1f conns_vmhwm_mb=%.1f auth_454_refusals=%d ok=%t\n",
			float64(b.idle.rssKB)/1024, b.idle.conns, float64(b.idle.connRSSKB)/1024, float64(b.idle.connHWMKB)/1024, b.idle.refused, b.idle.err == nil)
	}
	w.Write(sum.Bytes())
	stdout.Write(w.Bytes())
	base := filepath.Join(o.results, "inkan-bench-"+b.stamp)
	_ = os.WriteFile(base+".report", w.Bytes(), 0o644)
	_ = os.WriteFile(base+".summary", sum.Bytes(), 0o644)
	fmt.Fprintf(stdout, "saved: %s.{report,summary,log}\n", base)
}

// signText prints the per-signature cost the targets use.
func (b *bench) signText(w io.Writer) {
	if b.signHelper == "" {
		return
	}
	line := func(c signCost) string {
		if c.rsa1.perSec == 0 {
			return "not measured"
		}
		return fmt.Sprintf("RSA-2048 %.0f µs CPU/signature (%.0f/s on 1 goroutine, %.0f/s on 2), Ed25519 %.0f µs",
			c.rsa1.cpuUsPerSign, c.rsa1.perSec, c.rsa2.perSec, c.ed1.cpuUsPerSign)
	}
	fmt.Fprintf(w, "signing cost on the binary's backend (%s; test/bench/signrate built with the same crypto settings, crypto/rsa as inkan calls it):\n"+
		"  before the runs: %s\n  after the runs:  %s\n  targets use the cheaper: RSA-2048 %.3f ms, Ed25519 %.3f ms per signature\n",
		b.signPre.rsa1.backend, line(b.signPre), line(b.signPost), b.rsaSignMs(), b.edSignMs())
}

// targets checks the goals against the same-run figures.
func (b *bench) targets(w io.Writer, sums map[string]*summary) {
	fmt.Fprintf(w, "\ntargets (same run):\n")
	get := func(sys string) *summary {
		if s, ok := sums[sys]; ok && s.okRuns > 0 {
			return s
		}
		return nil
	}
	anchor, rspamd, rsa, dual := get("postfix-opendkim"), get("postfix-rspamd"), get("inkan-rsa"), get("inkan-dual")
	if rsa != nil && anchor != nil {
		fmt.Fprintf(w, "  [%s] inkan-rsa e2e >= 5x Postfix+OpenDKIM: %.2fx (%.0f vs %.0f msgs/s)\n", verdict(rsa.e2e >= 5*anchor.e2e), rsa.e2e/anchor.e2e, rsa.e2e, anchor.e2e)
		fmt.Fprintf(w, "  [%s] inkan-rsa CPU/msg <= 0.25x Postfix+OpenDKIM: %.2fx (%.2f vs %.2f ms)\n", verdict(rsa.cpuMs <= 0.25*anchor.cpuMs), rsa.cpuMs/anchor.cpuMs, rsa.cpuMs, anchor.cpuMs)
	}
	if dual != nil && anchor != nil {
		fmt.Fprintf(w, "  [%s] inkan-dual e2e >= 4.5x Postfix+OpenDKIM: %.2fx (%.0f vs %.0f msgs/s)\n", verdict(dual.e2e >= 4.5*anchor.e2e), dual.e2e/anchor.e2e, dual.e2e, anchor.e2e)
	}
	if rsa != nil && b.rsaSignMs() > 0 {
		rest := rsa.cpuMs - b.rsaSignMs()
		fmt.Fprintf(w, "  [%s] inkan-rsa CPU/msg minus one RSA-2048 signature (%s) <= 0.5 ms: %.2f ms (%.2f - %.2f)\n",
			verdict(rest <= 0.5), b.signPre.rsa1.backend, rest, rsa.cpuMs, b.rsaSignMs())
	}
	if dual != nil && b.rsaSignMs() > 0 {
		fmt.Fprintf(w, "  [info] inkan-dual CPU/msg minus its two signatures: %.2f ms (%.2f - %.2f - %.3f)\n",
			dual.cpuMs-b.rsaSignMs()-b.edSignMs(), dual.cpuMs, b.rsaSignMs(), b.edSignMs())
	}
	for _, s := range []*summary{rsa, dual} {
		if s == nil {
			continue
		}
		if anchor != nil {
			fmt.Fprintf(w, "  [%s] %s p99 DATA-to-250 below Postfix+OpenDKIM's: %.1f vs %.1f ms\n", verdict(s.p99 < anchor.p99), s.sys, s.p99, anchor.p99)
		}
		if rspamd != nil {
			fmt.Fprintf(w, "  [info] %s p99 DATA-to-250 vs Postfix+rspamd's: %.1f vs %.1f ms\n", s.sys, s.p99, rspamd.p99)
		}
	}
	if rspamd != nil {
		for _, s := range []*summary{rsa, dual} {
			if s != nil {
				fmt.Fprintf(w, "  [info] %s vs Postfix+rspamd (the fastest peer): e2e %.2fx, CPU/msg %.2fx\n", s.sys, s.e2e/rspamd.e2e, s.cpuMs/rspamd.cpuMs)
			}
		}
	}
	if r2 := b.rsaRate2(); r2 > 0 {
		for _, s := range []*summary{rsa, dual} {
			if s != nil {
				fmt.Fprintf(w, "  [info] %s e2e is %.0f%% of the backend's 2-goroutine RSA-2048 signing rate (%.0f of %.0f/s)\n", s.sys, 100*s.e2e/r2, s.e2e, r2)
			}
		}
	}
	if b.idle != nil {
		i := b.idle
		fmt.Fprintf(w, "  [%s] idle RSS < 30 MB: %.1f MB\n", verdict(i.rssKB > 0 && i.rssKB < 30*1024), float64(i.rssKB)/1024)
		full := i.err == nil && i.conns == b.opt.idleConns
		v, note := verdict(full && i.connRSSKB < 100*1024), ""
		if b.opt.idleConns < 1000 {
			v, note = "n/a ", " (the target is for 1,000: -idle-conns 1000)"
		}
		fmt.Fprintf(w, "  [%s] %d idle authenticated TLS connections < 100 MB: %.1f MB VmRSS (%d open%s)%s\n",
			v, b.opt.idleConns, float64(i.connRSSKB)/1024, i.conns, errSuffix(i.err), note)
		if i.refused > 0 {
			fmt.Fprintf(w, "  [FINDING] inkan refused %d correct logins with 454 while opening them (%d in parallel, one user from 127.0.0.1, no failed login; each was repeated): %s\n",
				i.refused, i.workers, i.firstRef)
		}
	}
}

func (b *bench) profileText(w io.Writer) {
	p := b.profile
	if p == nil {
		return
	}
	fmt.Fprintf(w, "\nprofile of %s (perf record -F 999 -g and /debug/pprof, one extra unmeasured run of %d messages", p.sys, p.n)
	if p.bin != "" {
		fmt.Fprintf(w, " of %s, the same build with symbols", p.bin)
	}
	if p.e2e > 0 {
		fmt.Fprintf(w, ", e2e %.0f msgs/s under the profilers", float64(p.n)/p.e2e.Seconds())
	}
	fmt.Fprintf(w, "):\n")
	if p.err != nil {
		fmt.Fprintf(w, "  perf: not available: %v\n", p.err)
	} else {
		b.perfText(w, p)
	}
	if p.pprofErr != nil {
		fmt.Fprintf(w, "  pprof: not available: %v\n", p.pprofErr)
		return
	}
	fmt.Fprintf(w, "  pprof (Go code only, from /debug/pprof/profile), top flat:\n")
	for _, l := range p.pprofFlat[:min(12, len(p.pprofFlat))] {
		fmt.Fprintf(w, "    %5.1f%%  %s\n", l.pct, l.sym)
	}
	fmt.Fprintf(w, "  pprof top cumulative:\n")
	for _, l := range p.pprofCum[:min(25, len(p.pprofCum))] {
		fmt.Fprintf(w, "    %5.1f%%  %s\n", l.pct, l.sym)
	}
	bin := b.bin
	if p.bin != "" {
		bin = p.bin
	}
	fmt.Fprintf(w, "  pprof profile: %s (browse: go tool pprof -http=127.0.0.1:0 %s %s)\n", p.pprofFile, bin, p.pprofFile)
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

func (b *bench) perfText(w io.Writer, p *profileResult) {
	fmt.Fprintf(w, "  by area (self time, %% of inkan's samples):\n")
	for _, g := range p.groups {
		fmt.Fprintf(w, "    %5.1f%%  %s\n", g.pct, g.name)
	}
	fmt.Fprintf(w, "  top functions (self):\n")
	for _, l := range p.flat[:min(15, len(p.flat))] {
		fmt.Fprintf(w, "    %5.1f%%  %s\n", l.pct, l.sym)
	}
	fmt.Fprintf(w, "  key frames (inclusive: the frame and everything it calls):\n")
	for _, g := range p.frames {
		fmt.Fprintf(w, "    %5.1f%%  %s\n", g.pct, g.name)
	}
	fmt.Fprintf(w, "  full reports: %s, %s (data %s)\n", p.flatFile, p.childFile, p.data)
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			if _, v, ok := strings.Cut(l, ":"); ok {
				return strings.TrimSpace(v)
			}
		}
	}
	return "unknown CPU"
}
