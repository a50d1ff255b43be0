package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/inkan-relay/inkan/test/freeport"
)

// proxyIP is the address HAProxy connects to the inkans from (its servers'
// "source"): the only address listed in proxy_protocol_from, and not a
// trusted one, so that relaying through HAProxy works only when inkan
// takes the client's address from the PROXY header.
const (
	proxyIP  = "127.0.0.2"
	clientIP = "127.0.0.1" // the load's address, the only trusted one
)

// instance is one inkan with its own spool (data_dir), like one pod of the
// StatefulSet with its own volume.
type instance struct {
	name     string // hostname: inkanN.scale.test
	bin      string
	dir      string
	relay    string // host:port of the relay listener (port 25's role)
	http     string
	reg      *registry
	proc     *child
	restarts int
}

func (in *instance) cfgPath() string { return filepath.Join(in.dir, "inkan.yaml") }
func (in *instance) dataDir() string { return filepath.Join(in.dir, "data") }
func (in *instance) logPath() string { return filepath.Join(in.dir, "inkan.log") }

// overrides lists every setting the harness sets beyond inkan's defaults,
// with the reason; config writes exactly these.
func overrides(keyFile, sinkAddr string) [][2]string {
	_, port, _ := strings.Cut(sinkAddr, ":")
	return [][2]string{
		{"hostname: inkanN.scale.test", "one name per instance: the Received field's \"by\" tells which instance accepted a copy"},
		{"data_dir: WORK/PHASE/inkanN/data", "each instance its own spool, like one PersistentVolumeClaim per StatefulSet pod"},
		{"listen.relay: 127.0.0.1:PORT (one per instance)", "the port-25 role, on distinct loopback ports; the load (trusted network) relays here without AUTH"},
		{"listen.smtps: \"\", listen.submission: \"\"", "not used; their default ports (2465/2587) would clash between three instances"},
		{"listen.http: 127.0.0.1:PORT (one per instance)", "/readyz for the harness (the default 127.0.0.1:8025 would clash)"},
		{"auth.trusted_networks: [" + clientIP + "/32]", "only the load's address (default 127.0.0.0/8 would also trust HAProxy's " + proxyIP + ", hiding a broken PROXY header)"},
		{"listeners.relay.proxy_protocol_from: [" + proxyIP + "/32]", "HAProxy's source address; its PROXY v2 header carries the client's " + clientIP},
		{"dkim.keys: [{domain: " + signDomain + ", selector: s1, key_file: " + keyFile + "}]", "one RSA-2048 key from `inkan dkim keygen`, shared by all instances (one Secret)"},
		{"delivery.transport: {" + rcptDomain + ": \"[127.0.0.1]:" + port + "\"}", "every message goes to the one shared sink (in-process, " + sinkAddr + ")"},
	}
}

func (in *instance) config(keyFile, sinkAddr string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "hostname: %s\ndata_dir: %s\n", in.name, in.dataDir())
	fmt.Fprintf(&b, "listen:\n  smtps: \"\"\n  submission: \"\"\n  relay: %q\n  http: %q\n", in.relay, in.http)
	fmt.Fprintf(&b, "auth:\n  trusted_networks: [%s/32]\n", clientIP)
	fmt.Fprintf(&b, "listeners:\n  relay:\n    proxy_protocol_from: [%s/32]\n", proxyIP)
	fmt.Fprintf(&b, "dkim:\n  keys:\n    - {domain: %s, selector: s1, key_file: %s}\n", signDomain, keyFile)
	host, port, _ := strings.Cut(sinkAddr, ":")
	fmt.Fprintf(&b, "delivery:\n  transport:\n    %s: \"[%s]:%s\"\n", rcptDomain, host, port)
	return b.String()
}

// newInstance writes the config of instance n under dir and checks it with
// `inkan check`.
func newInstance(ctx context.Context, reg *registry, bin, dir string, n int, keyFile, sinkAddr string) (*instance, error) {
	in := &instance{name: fmt.Sprintf("inkan%d.scale.test", n), bin: bin, dir: dir, reg: reg}
	p1, err := freeport.Get()
	if err != nil {
		return nil, err
	}
	p2, err := freeport.Get()
	if err != nil {
		return nil, err
	}
	in.relay, in.http = fmt.Sprintf("127.0.0.1:%d", p1), fmt.Sprintf("127.0.0.1:%d", p2)
	if err := os.MkdirAll(in.dataDir(), 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(in.cfgPath(), []byte(in.config(keyFile, sinkAddr)), 0o600); err != nil {
		return nil, err
	}
	if out, err := runCmd(ctx, 30*time.Second, bin, "check", "-config", in.cfgPath()); err != nil {
		return nil, fmt.Errorf("inkan check rejected %s: %w\n%s", in.cfgPath(), err, out)
	}
	return in, nil
}

// start runs `inkan serve` on the instance's config (and spool) and waits
// for /readyz.
func (in *instance) start(ctx context.Context) error {
	cmd := exec.Command(in.bin, "serve", "-config", in.cfgPath(), "-quiet")
	p, err := startChild(in.reg, in.name, cmd, in.logPath())
	if err != nil {
		return err
	}
	in.proc = p
	return in.waitReady(ctx, 30*time.Second)
}

func (in *instance) waitReady(ctx context.Context, limit time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if in.proc.exited() {
			return fmt.Errorf("%s exited during start; log %s:\n%s", in.name, in.logPath(), tail(in.logPath(), 15))
		}
		if resp, err := client.Get("http://" + in.http + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after %s; log %s:\n%s", in.name, limit, in.logPath(), tail(in.logPath(), 15))
}

// kill sends SIGKILL to the instance's process and waits until reaped.
func (in *instance) kill() { in.proc.kill() }

// stop ends the instance with SIGTERM and returns a problem, if any.
func (in *instance) stop() string {
	if in.proc == nil || in.proc.exited() {
		return ""
	}
	in.proc.reg.forget(in.proc.id)
	if in.proc.terminate(30 * time.Second) {
		return fmt.Sprintf("%s did not stop within 30 s of SIGTERM (killed)", in.name)
	}
	if code := in.proc.exitCode(); code != 0 {
		return fmt.Sprintf("%s exited with status %d after SIGTERM", in.name, code)
	}
	return ""
}

// queued lists the queue IDs in the instance's queue with `inkan queue
// list -json` (one JSON object per message; nothing when empty). It works
// on a running instance (control socket) and on a stopped one's spool.
func (in *instance) queued(ctx context.Context) ([]string, error) {
	out, err := runCmd(ctx, 30*time.Second, in.bin, "queue", "-config", in.cfgPath(), "list", "-json")
	if err != nil {
		return nil, fmt.Errorf("%w: %s", err, strings.TrimSpace(out))
	}
	return parseQueueJSON(out)
}

func parseQueueJSON(out string) ([]string, error) {
	var ids []string
	for _, l := range strings.Split(out, "\n") {
		if strings.TrimSpace(l) == "" {
			continue
		}
		var m struct {
			QueueID string `json:"queue_id"`
		}
		if err := json.Unmarshal([]byte(l), &m); err != nil || m.QueueID == "" {
			return ids, fmt.Errorf("queue list -json: unexpected line %q", l)
		}
		ids = append(ids, m.QueueID)
	}
	return ids, nil
}

var logLevelRE = regexp.MustCompile(`level=(WARN|ERROR)\b`)

// logProblems counts WARN and ERROR lines and panics in the log and returns
// the first few distinct messages.
func (in *instance) logProblems() (warn, errs int, panics bool, samples []string) {
	b, _ := os.ReadFile(in.logPath())
	seen := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "panic: ") || strings.HasPrefix(l, "fatal error: ") {
			panics = true
		}
		m := logLevelRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		if m[1] == "WARN" {
			warn++
		} else {
			errs++
		}
		msg := l
		if i := strings.Index(l, "msg="); i >= 0 {
			msg = l[i:]
			if j := strings.Index(msg, " queue_id="); j > 0 {
				msg = msg[:j]
			}
		}
		msg = m[1] + " " + msg
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
		if !seen[msg] && len(samples) < 4 {
			seen[msg] = true
			samples = append(samples, msg)
		}
	}
	return
}

// tail returns the last n lines of a file, indented.
func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + strings.Join(lines, "\n    ")
}
