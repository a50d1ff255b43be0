package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// registry remembers how to stop everything the harness started, so that a
// failed phase, a timeout or Ctrl-C never leaves a server running. Stoppers
// run last-in first-out; each runs at most once.
type registry struct {
	mu    sync.Mutex
	next  int
	items []stopper
}

type stopper struct {
	id   int
	name string
	stop func()
}

// add registers stop and returns the handle that runs it early.
func (r *registry) add(name string, stop func()) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next++
	r.items = append(r.items, stopper{id: r.next, name: name, stop: stop})
	return r.next
}

// run runs and forgets the stopper id; unknown ids are ignored.
func (r *registry) run(id int) {
	r.mu.Lock()
	var s *stopper
	for i := range r.items {
		if r.items[i].id == id {
			it := r.items[i]
			s = &it
			r.items = append(r.items[:i], r.items[i+1:]...)
			break
		}
	}
	r.mu.Unlock()
	if s != nil {
		s.stop()
	}
}

// stopAll runs every remaining stopper, newest first.
func (r *registry) stopAll() {
	for {
		r.mu.Lock()
		if len(r.items) == 0 {
			r.mu.Unlock()
			return
		}
		s := r.items[len(r.items)-1]
		r.items = r.items[:len(r.items)-1]
		r.mu.Unlock()
		logf("stopping %s", s.name)
		s.stop()
	}
}

// child is a process started by the harness. Its waiter goroutine is owned by
// the child: done closes when the process has been reaped.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // valid after done
	reg  *registry
	id   int
}

// startChild starts cmd and registers it for stopping. Output goes to logFile
// (appended) unless the command already has Stdout/Stderr set.
func startChild(reg *registry, name string, cmd *exec.Cmd, logFile string) (*child, error) {
	if logFile != "" && cmd.Stdout == nil && cmd.Stderr == nil {
		f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("open %s log: %w", name, err)
		}
		defer f.Close() // the child holds its own descriptor
		cmd.Stdout, cmd.Stderr = f, f
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{}), reg: reg}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	c.id = reg.add(fmt.Sprintf("%s (pid %d)", name, cmd.Process.Pid), c.terminate)
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop terminates the process (SIGTERM, then SIGKILL after a grace period)
// and waits for it.
func (c *child) stop() { c.reg.run(c.id) }

func (c *child) terminate() {
	if c.exited() {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return
	case <-time.After(10 * time.Second):
	}
	logf("%s (pid %d) ignored SIGTERM for 10s; killing it", c.name, c.pid())
	_ = c.cmd.Process.Kill()
	<-c.done
}

// procStat is the part of /proc/PID/stat the harness uses; times are in
// clock ticks.
type procStat struct {
	ppid                         int
	utime, stime, cutime, cstime int64
}

// parseStat parses the contents of /proc/PID/stat. The command name may hold
// spaces and parentheses, so fields are counted from the last ')'.
func parseStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 > len(b) {
		return procStat{}, errors.New("malformed stat: no ')'")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0]=state f[1]=ppid ... f[11]=utime f[12]=stime f[13]=cutime f[14]=cstime
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("malformed stat: %d fields after comm", len(f))
	}
	var st procStat
	var err error
	if st.ppid, err = strconv.Atoi(f[1]); err != nil {
		return procStat{}, fmt.Errorf("malformed stat ppid: %w", err)
	}
	for j, p := range []*int64{&st.utime, &st.stime, &st.cutime, &st.cstime} {
		if *p, err = strconv.ParseInt(f[11+j], 10, 64); err != nil {
			return procStat{}, fmt.Errorf("malformed stat time field %d: %w", 11+j, err)
		}
	}
	return st, nil
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	return parseStat(b)
}

// statusKB returns the given fields (e.g. "VmRSS", "VmHWM") of
// /proc/PID/status in kB; missing fields are absent from the map.
func statusKB(pid int, fields ...string) (map[string]int64, error) {
	return readKBFields(fmt.Sprintf("/proc/%d/status", pid), fields...)
}

func readKBFields(path string, fields ...string) (map[string]int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseKBFields(b, fields...), nil
}

// parseKBFields reads "Name:   123 kB" lines.
func parseKBFields(b []byte, fields ...string) map[string]int64 {
	want := make(map[string]bool, len(fields))
	for _, f := range fields {
		want[f] = true
	}
	out := make(map[string]int64, len(fields))
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || !want[name] {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		if v, err := strconv.ParseInt(f[0], 10, 64); err == nil {
			out[name] = v
		}
	}
	return out
}

// procTable reads /proc/*/stat: every live process by PID.
func procTable() map[int]procStat {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	t := make(map[int]procStat, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(pid); err == nil {
			t[pid] = st
		}
	}
	return t
}

// treesOf returns the live processes of the trees rooted at roots (each
// root and its descendants), from table.
func treesOf(table map[int]procStat, roots []int) []int {
	isRoot := make(map[int]bool, len(roots))
	for _, r := range roots {
		if r > 0 {
			isRoot[r] = true
		}
	}
	var out []int
	for pid := range table {
		for q, hops := pid, 0; q > 1 && hops < 64; hops++ {
			if isRoot[q] {
				out = append(out, pid)
				break
			}
			st, ok := table[q]
			if !ok {
				break
			}
			q = st.ppid
		}
	}
	return out
}

// treePIDs is treesOf on the live process table.
func treePIDs(roots ...int) []int { return treesOf(procTable(), roots) }

// treeTicks is the CPU time of the trees rooted at roots: utime+stime of
// every live process in them plus cutime+cstime (children each reaped),
// which is shared/bench/peers.sh's accounting. A process that exits between
// two readings moves its time into its parent's cutime, so differences
// count it once.
func treeTicks(roots ...int) int64 {
	table := procTable()
	var t int64
	for _, pid := range treesOf(table, roots) {
		st := table[pid]
		t += st.utime + st.stime + st.cutime + st.cstime
	}
	return t
}

func pidAlive(pid int) bool {
	return pid > 0 && syscall.Kill(pid, 0) == nil
}

// sysBusy returns system-wide busy and idle(+iowait) ticks from /proc/stat.
func sysBusy() (busy, idle int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0
	}
	v := make([]int64, 8)
	for i := range v {
		v[i], _ = strconv.ParseInt(f[i+1], 10, 64)
	}
	// user nice system idle iowait irq softirq steal
	return v[0] + v[1] + v[2] + v[5] + v[6] + v[7], v[3] + v[4]
}

// listening reports whether 127.0.0.1:port is in LISTEN state, read from
// /proc/net/tcp so that checking never opens an SMTP session.
func listening(port int) bool {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return false
	}
	return tcpTableListens(b, port)
}

func tcpTableListens(b []byte, port int) bool {
	want := fmt.Sprintf("0100007F:%04X", port)
	wild := fmt.Sprintf("00000000:%04X", port)
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 3 && (f[1] == want || f[1] == wild) && f[3] == "0A" {
			return true
		}
	}
	return false
}

// waitListen waits until port listens; alive, when set, reports a server
// that died before listening.
func waitListen(ctx context.Context, port int, timeout time.Duration, alive func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for !listening(port) {
		if alive != nil && !alive() {
			return fmt.Errorf("process exited before listening on 127.0.0.1:%d", port)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nothing listening on 127.0.0.1:%d after %s: %w", port, timeout, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// memSampler samples the summed VmRSS and Pss of a set of processes until
// stopped, and keeps the peaks. pids is called at each sample, so processes
// forked during the run (Postfix's) are included.
type memSampler struct {
	pids     func() []int
	stopc    chan struct{}
	done     chan struct{}
	peakRSS  int64 // kB
	peakPSS  int64 // kB
	samples  int
	interval time.Duration
}

func startMemSampler(pids func() []int, interval time.Duration) *memSampler {
	m := &memSampler{pids: pids, stopc: make(chan struct{}), done: make(chan struct{}), interval: interval}
	go m.loop()
	return m
}

func (m *memSampler) loop() {
	defer close(m.done)
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		m.sample()
		select {
		case <-m.stopc:
			m.sample()
			return
		case <-t.C:
		}
	}
}

func (m *memSampler) sample() {
	var rss, pss int64
	for _, pid := range m.pids() {
		if v, err := statusKB(pid, "VmRSS"); err == nil {
			rss += v["VmRSS"]
		}
		if v, err := readKBFields(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss"); err == nil {
			pss += v["Pss"]
		}
	}
	m.samples++
	m.peakRSS = max(m.peakRSS, rss)
	m.peakPSS = max(m.peakPSS, pss)
}

// stop ends sampling and returns the peaks in kB.
func (m *memSampler) stop() (rssKB, pssKB int64) {
	close(m.stopc)
	<-m.done
	return m.peakRSS, m.peakPSS
}
