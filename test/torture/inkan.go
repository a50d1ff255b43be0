package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"
)

// inkan is one inkan server under test: its config, data folder and log,
// and the process while it runs. It may be started, killed and restarted on
// the same data folder any number of times.
type inkan struct {
	h       *harness
	name    string
	dir     string
	dataDir string
	cfgPath string
	cfg     map[string]any
	logPath string
	cliLog  string

	smtps, sub, relay, http string // host:port of the listeners

	mu         sync.Mutex
	cmd        *exec.Cmd
	done       chan struct{}
	expectExit bool
	exitCode   int      // of the last exit; -1 when killed by a signal
	unexpected []string // exits nobody asked for, not yet reported
	logOffset  int64    // of the log, up to where panics were looked for
}

// newInkan prepares (does not start) an inkan with the base config, changed
// by mutate. Every address is on 127.0.0.1; only 127.0.0.1/32 is trusted.
func (h *harness) newInkan(name string, mutate func(cfg map[string]any)) (*inkan, error) {
	dir := h.dir(name)
	in := &inkan{h: h, name: name, dir: dir, dataDir: filepath.Join(dir, "data"),
		cfgPath: filepath.Join(dir, "inkan.yaml"),
		logPath: h.logPath(name), cliLog: h.logPath(name + "-cli"),
		smtps: fmt.Sprintf("127.0.0.1:%d", h.freePort()),
		sub:   fmt.Sprintf("127.0.0.1:%d", h.freePort()),
		relay: fmt.Sprintf("127.0.0.1:%d", h.freePort()),
		http:  fmt.Sprintf("127.0.0.1:%d", h.freePort()),
	}
	in.cfg = map[string]any{
		"hostname": "relay.torture.test",
		"data_dir": in.dataDir,
		"listen":   map[string]any{"smtps": in.smtps, "submission": in.sub, "relay": in.relay, "http": in.http},
		"http":     map[string]any{"metrics": true},
		"auth":     map[string]any{"trusted_networks": []string{"127.0.0.1/32"}},
		"delivery": map[string]any{
			// Never the system resolver: all DNS goes to the harness.
			"resolver":        h.dns.addr,
			"connect_timeout": "2s",
			"command_timeout": "5s",
			"data_timeout":    "10s",
		},
		"queue": map[string]any{"retry_min": "1s", "retry_max": "2s"},
		// Debug, because go-smtp's "panic serving" (a session panic it
		// recovered from) reaches inkan's log only at that level.
		"log": map[string]any{"level": "debug"},
	}
	if mutate != nil {
		mutate(in.cfg)
	}
	if err := in.writeConfig(); err != nil {
		return nil, err
	}
	return in, nil
}

// set puts v at a dotted path ("limits.max_connections") of a config map.
func set(cfg map[string]any, path string, v any) {
	keys := strings.Split(path, ".")
	m := cfg
	for _, k := range keys[:len(keys)-1] {
		sub, ok := m[k].(map[string]any)
		if !ok {
			sub = map[string]any{}
			m[k] = sub
		}
		m = sub
	}
	m[keys[len(keys)-1]] = v
}

// routeAllTo sends every recipient domain to one loopback SMTP server.
func routeAllTo(cfg map[string]any, addr string) {
	set(cfg, "delivery.smarthost", map[string]any{"address": "[127.0.0.1]:" + portOf(addr), "tls": "may"})
}

func (in *inkan) writeConfig() error {
	b, err := yaml.Marshal(in.cfg)
	if err != nil {
		return fmt.Errorf("encode config: %w", err)
	}
	if err := os.WriteFile(in.cfgPath, b, 0o600); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

// start runs `inkan serve` and waits until /readyz answers 200 (or only
// /healthz, when ready is "healthz").
func (in *inkan) start() error { return in.startWait("/readyz") }

func (in *inkan) startWait(probe string) error {
	in.mu.Lock()
	if in.cmd != nil && !in.exited() {
		in.mu.Unlock()
		return errors.New("already running")
	}
	logf, err := os.OpenFile(in.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		in.mu.Unlock()
		return err
	}
	fmt.Fprintf(logf, "---- %s: inkan serve -config %s\n", time.Now().Format(time.RFC3339Nano), in.cfgPath)
	cmd := exec.Command(in.h.bin, "serve", "-config", in.cfgPath, "-quiet")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = childAttr()
	err = cmd.Start()
	logf.Close() // the child has its own descriptor
	if err != nil {
		in.mu.Unlock()
		return fmt.Errorf("start inkan: %w", err)
	}
	in.cmd, in.done, in.expectExit = cmd, make(chan struct{}), false
	done := in.done
	in.mu.Unlock()
	in.h.track(in)
	go in.reap(cmd, done)
	return in.waitReady(probe, 30*time.Second)
}

// reap owns cmd.Wait for one process and records how it ended.
func (in *inkan) reap(cmd *exec.Cmd, done chan struct{}) {
	err := cmd.Wait()
	pid := cmd.Process.Pid
	in.h.untrack(pid)
	in.mu.Lock()
	in.exitCode = cmd.ProcessState.ExitCode()
	if !in.expectExit {
		in.unexpected = append(in.unexpected, fmt.Sprintf("%s (pid %d) exited unasked: %v; log tail:\n%s", in.name, pid, err, in.tail(15)))
	}
	in.mu.Unlock()
	close(done)
}

func (in *inkan) waitReady(probe string, limit time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if in.exited() {
			return fmt.Errorf("inkan exited during start (code %d); log tail:\n%s", in.exitCode, in.tail(20))
		}
		if resp, err := client.Get("http://" + in.http + probe); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("inkan not ready after %s; log tail:\n%s", limit, in.tail(20))
}

func (in *inkan) exited() bool {
	if in.done == nil {
		return true
	}
	select {
	case <-in.done:
		return true
	default:
		return false
	}
}

func (in *inkan) pid() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.cmd == nil || in.cmd.Process == nil {
		return 0
	}
	return in.cmd.Process.Pid
}

// alive: the process runs and answers signal 0.
func (in *inkan) alive() bool {
	in.mu.Lock()
	running := in.cmd != nil && !in.exited()
	in.mu.Unlock()
	return running && syscall.Kill(in.pid(), 0) == nil
}

// kill sends SIGKILL and waits for the process to be reaped.
func (in *inkan) kill() {
	in.mu.Lock()
	if in.cmd == nil || in.exited() {
		in.mu.Unlock()
		return
	}
	in.expectExit = true
	in.cmd.Process.Signal(syscall.SIGKILL)
	done := in.done
	in.mu.Unlock()
	<-done
}

// terminate sends SIGTERM, waits up to grace, then SIGKILL. It returns the
// exit code and whether the process had to be killed.
func (in *inkan) terminate(grace time.Duration) (code int, hung bool) {
	in.mu.Lock()
	if in.cmd == nil || in.exited() {
		in.mu.Unlock()
		return in.exitCode, false
	}
	in.expectExit = true
	in.cmd.Process.Signal(syscall.SIGTERM)
	done := in.done
	in.mu.Unlock()
	select {
	case <-done:
	case <-time.After(grace):
		hung = true
		in.kill()
	}
	return in.exitCode, hung
}

// stop ends the server gracefully and reports to r what went wrong: a hang,
// a non-zero exit, an unasked exit or a panic in the log.
func (in *inkan) stop(r *result) {
	wasRunning := in.alive()
	code, hung := in.terminate(20 * time.Second)
	switch {
	case hung:
		r.failf("%s did not stop within 20s of SIGTERM (killed)", in.name)
	case wasRunning && code != 0:
		r.failf("%s exited with status %d after SIGTERM", in.name, code)
	}
	in.collect(r)
}

// collect moves unasked exits and panics seen in the log into r as crashes.
func (in *inkan) collect(r *result) {
	in.mu.Lock()
	unexpected := in.unexpected
	in.unexpected = nil
	in.mu.Unlock()
	for _, u := range unexpected {
		r.crashed("%s", u)
	}
	f, err := os.Open(in.logPath)
	if err != nil {
		return
	}
	defer f.Close()
	f.Seek(in.logOffset, io.SeekStart)
	b, _ := io.ReadAll(f)
	in.logOffset += int64(len(b))
	for _, marker := range []string{"panic: ", "panic serving", "fatal error: ", "WARNING: DATA RACE"} {
		if i := bytes.Index(b, []byte(marker)); i >= 0 {
			end := min(len(b), i+1500)
			r.crashed("%s log shows %q:\n%s", in.name, strings.TrimSpace(marker), b[i:end])
			break
		}
	}
}

// tail returns the last n lines of the log.
func (in *inkan) tail(n int) string {
	b, _ := os.ReadFile(in.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + strings.Join(lines, "\n    ")
}

// logContains reports whether the server log has s.
func (in *inkan) logContains(s string) bool {
	b, _ := os.ReadFile(in.logPath)
	return bytes.Contains(b, []byte(s))
}

// cli runs an inkan subcommand with this config; output is also logged.
func (in *inkan) cli(args ...string) (string, int) { return in.cliInput("", args...) }

// cliInput is cli with standard input (a password for `inkan user add`).
func (in *inkan) cliInput(stdin string, args ...string) (string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, in.h.bin, args...)
	cmd.Env = append(os.Environ(), "INKAN_CONFIG="+in.cfgPath)
	cmd.SysProcAttr = childAttr()
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
		out = append(out, []byte(err.Error())...)
	}
	if f, err := os.OpenFile(in.cliLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err == nil {
		fmt.Fprintf(f, "$ inkan %s  (exit %d)\n%s\n", strings.Join(args, " "), code, out)
		f.Close()
	}
	return string(out), code
}

// queueIDs runs `inkan queue list` (through the control socket when the
// server runs, on the spool itself when it does not).
func (in *inkan) queueIDs() ([]string, error) {
	entries, err := in.queueList()
	var ids []string
	for _, e := range entries {
		ids = append(ids, e.id)
	}
	return ids, err
}

// queueEntry is one message of `inkan queue list`.
type queueEntry struct {
	id, from string
	rcpts    []string // those still pending
}

func (in *inkan) queueList() ([]queueEntry, error) {
	out, code := in.cli("queue", "list")
	if code != 0 {
		return nil, fmt.Errorf("inkan queue list: exit %d: %s", code, strings.TrimSpace(out))
	}
	entries, err := parseQueueList(out)
	if err != nil {
		return nil, fmt.Errorf("inkan queue list: %w", err)
	}
	return entries, nil
}

var queueLineRE = regexp.MustCompile(`^([0-9A-V]{16})!?\s+\d+\s+.{19}\s+(\S+)`)

// parseQueueList reads `inkan queue list` output: a line per message (ID,
// size, arrival, sender), then its pending recipients, indented, each
// maybe after its last reply in parentheses.
func parseQueueList(out string) ([]queueEntry, error) {
	if strings.Contains(out, "Mail queue is empty") {
		return nil, nil
	}
	var entries []queueEntry
	for _, line := range strings.Split(out, "\n") {
		if m := queueLineRE.FindStringSubmatch(line); m != nil {
			entries = append(entries, queueEntry{id: m[1], from: m[2]})
			continue
		}
		t := strings.TrimSpace(line)
		if len(entries) > 0 && strings.HasPrefix(line, " ") && t != "" && !strings.HasPrefix(t, "(") {
			e := &entries[len(entries)-1]
			e.rcpts = append(e.rcpts, t)
		}
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("neither messages nor \"Mail queue is empty\" in %q", out)
	}
	return entries, nil
}

// waitQueueEmpty polls `inkan queue list` until the queue is empty.
func (in *inkan) waitQueueEmpty(limit time.Duration) ([]string, error) {
	deadline := time.Now().Add(limit)
	var ids []string
	var err error
	for {
		ids, err = in.queueIDs()
		if err == nil && len(ids) == 0 {
			return nil, nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return nil, err
			}
			return ids, fmt.Errorf("%d messages still queued after %s", len(ids), limit)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// queueShow returns `inkan queue show ID`, or "" if the message is gone.
func (in *inkan) queueShow(id string) string {
	out, code := in.cli("queue", "show", id)
	if code != 0 {
		return ""
	}
	return out
}

var attemptsRE = regexp.MustCompile(`(?m)^Attempts:\s+(\d+)`)

// attempts parses "Attempts: N" from `inkan queue show`.
func attempts(show string) int {
	m := attemptsRE.FindStringSubmatch(show)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// metric scrapes one value from /metrics (first sample of that name).
func (in *inkan) metric(name string) (float64, error) {
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + in.http + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return parseMetric(resp.Body, name)
}

func parseMetric(r io.Reader, name string) (float64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		f := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
		if len(f) == 0 {
			continue
		}
		return strconv.ParseFloat(f[0], 64)
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("metric %s not found", name)
}

// procStatus reads VmRSS (kB) and Threads from /proc/PID/status.
func procStatus(pid int) (rssKB, threads int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	return parseProcStatus(b)
}

func parseProcStatus(b []byte) (rssKB, threads int64, err error) {
	var haveRSS, haveThreads bool
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		switch k {
		case "VmRSS":
			rssKB, err = strconv.ParseInt(f[0], 10, 64)
			haveRSS = err == nil
		case "Threads":
			threads, err = strconv.ParseInt(f[0], 10, 64)
			haveThreads = err == nil
		}
	}
	if !haveRSS || !haveThreads {
		return 0, 0, errors.New("VmRSS or Threads missing from status")
	}
	return rssKB, threads, nil
}
