package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// phaseResult is what one phase measured and found.
type phaseResult struct {
	spec      phaseSpec
	led       *ledger
	load      loadResult
	t         tally
	drained   time.Duration // load start -> every queue empty and every acked copy in
	lastCopy  time.Time
	kill      *killEvent
	spoolFate *spoolFate
	killNotes []string
	servers   []serverStat
	problems  []string // failures beside the ledger's
	notes     []string
	target    string
}

func (r *phaseResult) failf(format string, args ...any) {
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
}

func (r *phaseResult) notef(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// runPhase starts fresh instances (new spools), HAProxy when the phase
// wants it, runs the load (with the kill), waits for the queues to drain
// and stops everything of the phase.
func (h *harness) runPhase(ctx context.Context, spec phaseSpec) *phaseResult {
	r := &phaseResult{spec: spec, led: newLedger(spec.key+"-"+h.runID, clientIP)}
	logf("phase %s: %s", spec.key, spec.title)
	dir := filepath.Join(h.work, spec.key)
	var ins []*instance
	stopAll := func() {
		for _, in := range ins {
			// in.proc is the latest process (the kill's restart replaced
			// the killed one): it must still run.
			if in.proc != nil && in.proc.exited() {
				r.failf("%s exited unasked (status %d); log %s:\n%s", in.name, in.proc.exitCode(), in.logPath(), tail(in.logPath(), 10))
				continue
			}
			if p := in.stop(); p != "" {
				r.failf("%s", p)
			}
		}
		for _, in := range ins {
			w, e, panics, samples := in.logProblems()
			if panics {
				r.failf("%s log shows a panic: %s", in.name, in.logPath())
			}
			if w+e > 0 {
				r.notef("%s log: %d WARN, %d ERROR lines, e.g. %s", in.name, w, e, strings.Join(samples, " | "))
			}
		}
	}
	for i := range spec.instances {
		in, err := newInstance(ctx, h.reg, h.bin, filepath.Join(dir, fmt.Sprintf("inkan%d", i+1)), i+1, h.keyFile, h.sink.addr)
		if err != nil {
			r.failf("%v", err)
			stopAll()
			return r
		}
		ins = append(ins, in)
		if err := in.start(ctx); err != nil {
			r.failf("%v", err)
			stopAll()
			return r
		}
	}
	defer stopAll()
	r.target = ins[0].relay
	var hp *haproxy
	if spec.viaProxy {
		var err error
		if hp, err = startHAProxy(ctx, h.reg, h.opt.haproxyBin, dir, ins); err != nil {
			r.failf("%v", err)
			return r
		}
		defer hp.proc.stop()
		r.target = hp.front
	}
	h.sink.attach(r.led)

	killDone := make(chan struct{})
	loadDone := make(chan struct{})
	start := time.Now()
	if spec.kill {
		go func() {
			defer close(killDone)
			h.killAndRestart(ctx, r, ins[1], hp, start, loadDone)
		}()
	} else {
		close(killDone)
	}
	r.load = runLoad(ctx, loadConfig{addr: r.target, sessions: h.opt.sessions, perSession: h.opt.perSession,
		n: h.opt.n, size: h.opt.size, duration: h.opt.duration, led: r.led})
	close(loadDone)
	<-killDone
	logf("phase %s: load done in %s: %d acked; waiting for the queues to drain", spec.key, r.load.end.Sub(r.load.start).Round(time.Millisecond), r.led.acked())

	// Drained: every queue empty (`inkan queue list`) and every acked
	// message at the sink.
	deadline := time.Now().Add(h.opt.drainLimit)
	for {
		counts, total, qerr := queuedAll(ctx, ins)
		missing := r.led.ackedMissing()
		if qerr == nil && total == 0 && missing == 0 {
			r.drained = time.Since(start)
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			r.failf("not drained %s after the load: queues %v (%v), %d acknowledged messages not at the sink", h.opt.drainLimit, counts, qerr, missing)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	// A last look for late copies (a duplicate would arrive right after).
	time.Sleep(300 * time.Millisecond)
	if hp != nil {
		if st, err := hp.servers(); err == nil {
			r.servers = st
		}
	}
	r.led.mu.Lock()
	r.lastCopy = r.led.lastArrive
	r.led.mu.Unlock()
	r.t = r.led.tally(r.kill)
	if r.kill != nil {
		k := r.kill
		if k.spool != nil || !k.restarted.IsZero() {
			f := r.led.spoolFate(k.instance, k.spool, k.restarted)
			r.spoolFate = &f
			if len(f.missing) > 0 {
				r.failf("%d messages that were in %s's spool while it was down never reached the sink: %s", len(f.missing), k.instance, strings.Join(f.missing[:min(10, len(f.missing))], " "))
			}
		}
		if f, ok := r.led.firstCopyBy(k.instance, k.restarted); ok {
			r.killNotes = append(r.killNotes, fmt.Sprintf("first delivery by %s after the restart: %s after the restart", k.instance, f.Sub(k.restarted).Round(time.Millisecond)))
		}
	}
	logf("phase %s: done: %d acked, %d delivered, %d lost, %d duplicated", spec.key, r.t.acked, r.t.delivered, len(r.t.lost), r.t.dupMsgs)
	return r
}

// killAndRestart SIGKILLs in mid-load (after a third of -n is acked or a
// third of -duration has passed), lists its spool while it is down,
// restarts it on the same spool after -restart-after, and follows HAProxy
// taking it out and back in.
func (h *harness) killAndRestart(ctx context.Context, r *phaseResult, in *instance, hp *haproxy, start time.Time, loadDone chan struct{}) {
	for r.led.acked() < h.opt.n/3 && time.Since(start) < h.opt.duration/3 {
		select {
		case <-loadDone:
			r.failf("the load ended before the kill")
			return
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
	k := &killEvent{instance: in.name, at: time.Now()}
	pid := in.proc.pid()
	in.kill()
	r.kill = k
	logf("SIGKILL %s (pid %d) at %s into the load, %d acked so far", in.name, pid, k.at.Sub(start).Round(time.Millisecond), r.led.acked())
	r.killNotes = append(r.killNotes, fmt.Sprintf("SIGKILL %s (pid %d) %s into the load, after %d acknowledgements", in.name, pid, k.at.Sub(start).Round(time.Millisecond), r.led.acked()))
	var wg sync.WaitGroup
	var downAt time.Time
	var downErr error
	if hp != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			downAt, downErr = hp.waitStatus(ctx, "inkan2", "DOWN", 10*time.Second)
		}()
	}
	ids, qerr := in.queued(ctx)
	wg.Wait()
	if hp != nil {
		if downErr != nil {
			r.failf("%v", downErr)
		} else {
			r.killNotes = append(r.killNotes, fmt.Sprintf("HAProxy marked it DOWN %s after the kill", downAt.Sub(k.at).Round(time.Millisecond)))
		}
	}
	if qerr != nil {
		r.failf("inkan queue list on the killed instance's spool: %v", qerr)
	} else {
		k.spool = ids
	}
	if rest := h.opt.restart - time.Since(k.at); rest > 0 {
		select {
		case <-time.After(rest):
		case <-ctx.Done():
			return
		}
	}
	k.restarted = time.Now()
	in.restarts++
	if err := in.start(ctx); err != nil {
		r.failf("restart of %s on its spool failed: %v", in.name, err)
		return
	}
	ready := time.Now()
	r.killNotes = append(r.killNotes, fmt.Sprintf("restarted on the same data_dir %s after the kill; /readyz answered 200 %s after the start", k.restarted.Sub(k.at).Round(time.Millisecond), ready.Sub(k.restarted).Round(time.Millisecond)))
	logf("%s restarted (pid %d), ready in %s", in.name, in.proc.pid(), ready.Sub(k.restarted).Round(time.Millisecond))
	if hp != nil {
		if at, err := hp.waitStatus(ctx, "inkan2", "UP", 15*time.Second); err != nil {
			r.failf("%v", err)
		} else {
			r.killNotes = append(r.killNotes, fmt.Sprintf("HAProxy marked it UP again %s after the restart", at.Sub(k.restarted).Round(time.Millisecond)))
		}
	}
}

// queuedAll counts every instance's queue.
func queuedAll(ctx context.Context, ins []*instance) (map[string]int, int, error) {
	counts := map[string]int{}
	total := 0
	for _, in := range ins {
		ids, err := in.queued(ctx)
		if err != nil {
			return counts, -1, fmt.Errorf("%s: %w", in.name, err)
		}
		counts[in.name] = len(ids)
		total += len(ids)
	}
	return counts, total, nil
}

// report prints the settings, the table and every finding; it returns
// whether every check passed.
func (h *harness) report(out io.Writer, results []*phaseResult) bool {
	ok := true
	w := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }
	w("")
	w("inkan scale-out: three instances behind HAProxy")
	w("date %s, commit %s, %s", time.Now().UTC().Format("2006-01-02 15:04 MST"), h.commit, h.version)
	w("machine: %d CPUs, load average at the end %s (other work on the machine shares them)", cpus(), loadAvg())
	w("load: %d sessions x %d messages per session, %d-byte bodies, each phase up to %d messages or %s; one RSA-2048 DKIM signature per message",
		h.opt.sessions, h.opt.perSession, h.opt.size, h.opt.n, h.opt.duration)
	w("")
	w("inkan settings beyond the defaults (every instance):")
	for _, o := range overrides(h.keyFile, h.sink.addr) {
		w("  %-62s %s", o[0], o[1])
	}
	w("HAProxy: mode tcp, balance leastconn, send-proxy-v2 from %s, option smtpchk every 500 ms (fall 2, rise 2), retries 3 with redispatch", proxyIP)
	w("")
	w("| setup | acked | acked msgs/s | end-to-end msgs/s | 250 latency p50 / p99 | 250 to sink p50 / p99 / max | unsure | refused | cut | lost | duplicated |")
	w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range results {
		el := r.load.end.Sub(r.load.start).Seconds()
		e2e := 0.0
		if !r.lastCopy.IsZero() {
			e2e = float64(r.t.delivered) / r.lastCopy.Sub(r.load.start).Seconds()
		}
		acc := 0.0
		if el > 0 {
			acc = float64(r.t.acked) / el
		}
		dup := fmt.Sprint(r.t.dupMsgs)
		if r.t.dupMsgs > 0 {
			dup = fmt.Sprintf("%d (%d at the kill)", r.t.dupMsgs, r.t.dupAtKill)
		}
		d := r.led.delays()
		rd := func(x time.Duration) time.Duration {
			if x >= time.Second {
				return x.Round(100 * time.Millisecond)
			}
			return x.Round(100 * time.Microsecond)
		}
		w("| %s | %d | %.0f | %.0f | %s / %s | %s / %s / %s | %d | %d | %d | %d | %s |", r.spec.title, r.t.acked, acc, e2e,
			rd(r.load.pct(0.50)), rd(r.load.pct(0.99)), rd(percentile(d, 0.5)), rd(percentile(d, 0.99)), rd(percentile(d, 1)),
			r.t.unsure, r.t.refused, r.t.cut, len(r.t.lost), dup)
	}
	for _, r := range results {
		w("")
		w("%s (%s):", r.spec.title, r.spec.key)
		w("  clients -> %s; load %s, %d messages tried in %d sessions; %d sessions failed before MAIL%s",
			r.target, r.load.end.Sub(r.load.start).Round(time.Millisecond), r.t.attempted, r.load.sessions, r.load.sessionFails, firstFail(r.load))
		w("  sink: %d copies of %d messages; last copy %s after the load began; all queues empty %s after it",
			r.t.copies, r.t.delivered, durSince(r.lastCopy, r.load.start), r.drained.Round(time.Millisecond))
		w("  copies per instance: %s", perInstance(r.t.byInstance))
		var tl []string
		for i, n := range r.led.timeline(r.load.start, 5*time.Second) {
			tl = append(tl, fmt.Sprintf("%d-%ds %d", 5*i, 5*i+5, n))
		}
		if d := r.led.delays(); len(d) > 0 && d[len(d)-1] > 10*time.Second {
			n := len(d) - sort.Search(len(d), func(i int) bool { return d[i] > 10*time.Second })
			w("  slow: %d acknowledged messages reached the sink more than 10 s after their 250 (longest %s); end-to-end msgs/s counts up to the last copy", n, d[len(d)-1].Round(100*time.Millisecond))
		}
		w("  delivered per 5 s from the load's start (acked during the load: %.0f/s): %s", float64(r.t.acked)/r.load.end.Sub(r.load.start).Seconds(), strings.Join(tl, ", "))
		if len(r.servers) > 0 {
			var s []string
			for _, st := range r.servers {
				s = append(s, fmt.Sprintf("%s %d sessions (%s, %d down transitions)", st.name, st.sessions, st.status, st.downs))
			}
			w("  HAProxy: %s", strings.Join(s, ", "))
		}
		for _, n := range r.killNotes {
			w("  kill: %s", n)
		}
		if r.kill != nil {
			if r.spoolFate != nil {
				f := r.spoolFate
				w("  kill: `inkan queue list -json` on its spool while it was down: %d messages; of them at the sink in the end: %d (their clients were told: %d acked, %d unsure (no reply to the dot), %d other); %d of them had reached the sink already before the kill",
					len(r.kill.spool), f.arrived, f.byOut[outAcked], f.byOut[outUnsure], f.arrived-f.byOut[outAcked]-f.byOut[outUnsure], f.before)
			}
			w("  kill: unsure (final dot sent, no reply: sessions cut by the kill) %d, of which delivered %d; duplicated %d messages (%d extra copies), %d of them in flight at the kill (first copy accepted by the sink before the kill, again after the restart)",
				r.t.unsure, r.t.unsureArrived, r.t.dupMsgs, r.t.dupCopies, r.t.dupAtKill)
		} else if r.t.unsure > 0 {
			w("  unsure (final dot sent, no reply): %d, of which delivered %d", r.t.unsure, r.t.unsureArrived)
		}
		for _, n := range r.notes {
			w("  note: %s", n)
		}
		fails := append(r.t.failures(), r.problems...)
		for _, f := range fails {
			w("  FAIL: %s", f)
		}
		if len(fails) > 0 {
			ok = false
		} else {
			w("  ok: no acknowledged message lost, no duplicate beyond the kill's window, every copy signed and from the client's address %s", clientIP)
		}
	}
	if n := h.sink.strays(); n > 0 {
		w("")
		w("FAIL: the sink got %d messages of no phase", n)
		ok = false
	}
	w("")
	if ok {
		w("PASS")
	} else {
		w("FAIL")
	}
	return ok
}

func firstFail(l loadResult) string {
	if l.firstFail == "" {
		return ""
	}
	return " (first: " + l.firstFail + ")"
}

func durSince(t, start time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Sub(start).Round(time.Millisecond).String()
}

func perInstance(m map[string]int) string {
	var k []string
	for name := range m {
		k = append(k, name)
	}
	sort.Strings(k)
	var s []string
	for _, name := range k {
		s = append(s, fmt.Sprintf("%s %d", name, m[name]))
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
