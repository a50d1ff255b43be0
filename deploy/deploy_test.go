package deploy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/deploy/internal/dockerignore"
)

// The tests run in deploy/; the repository root is one up.
const root = ".."

func readFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// settingEnv returns the INKAN_* names that set one setting: INKAN_ plus the
// key path of each leaf of config.Keys() (sections and lists of sections have
// no variable of their own).
func settingEnv() map[string]bool {
	keys := config.Keys()
	names := make(map[string]bool)
	for _, k := range keys {
		if strings.Contains(k, "*") {
			continue
		}
		leaf := !slices.ContainsFunc(keys, func(o string) bool { return strings.HasPrefix(o, k+".") })
		if leaf {
			names[config.EnvName(k)] = true
		}
	}
	return names
}

// checkEnvName reports an INKAN_* variable that inkan would refuse as unknown.
func checkEnvName(name string, settings map[string]bool) error {
	switch {
	case !strings.HasPrefix(name, "INKAN_"):
		return nil
	case name == "INKAN_CONFIG" || name == "INKAN_CONFIG_YAML" || name == "INKAN_CONFIG_YAML_FILE":
		return nil
	case settings[name]:
		return nil
	case strings.HasSuffix(name, "_FILE") && settings[strings.TrimSuffix(name, "_FILE")]:
		return nil
	}
	return fmt.Errorf("%s is not an inkan setting (INKAN_ plus a key path of config.Keys())", name)
}

func TestSettingEnvNames(t *testing.T) {
	s := settingEnv()
	for _, ok := range []string{"INKAN_HOSTNAME", "INKAN_LISTEN_SUBMISSION", "INKAN_DELIVERY_SMARTHOST_ADDRESS",
		"INKAN_DELIVERY_SMARTHOST_PASSWORD_FILE", "INKAN_HOSTNAME_FILE", "INKAN_CONFIG_YAML", "INKAN_AUTH_SENDERS"} {
		if err := checkEnvName(ok, s); err != nil {
			t.Error(err)
		}
	}
	for _, bad := range []string{"INKAN_LISTEN", "INKAN_DKIM_KEYS", "INKAN_HOSTNAM", "INKAN_DELIVERY_SENDER_RELAY", "INKAN_LISTEN_FILE"} {
		if checkEnvName(bad, s) == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// loadConfig builds the configuration inkan would run with given its
// environment (image ENV merged with the deployment's). files maps absolute
// paths inside the container to their content, for INKAN_CONFIG and other
// *_FILE variables that point at mounted ConfigMaps or Secrets.
func loadConfig(t *testing.T, env, files map[string]string) (*config.Config, error) {
	t.Helper()
	settings := settingEnv()
	dir := t.TempDir()
	local := make(map[string]string, len(env))
	for k, v := range env {
		if err := checkEnvName(k, settings); err != nil {
			return nil, err
		}
		local[k] = v
		// A _FILE variable that is not itself a setting (the smarthost
		// password_file is) is read by Load: give it the mounted content.
		if (k == "INKAN_CONFIG" || strings.HasSuffix(k, "_FILE")) && !settings[k] {
			content, ok := files[v]
			if !ok {
				return nil, fmt.Errorf("%s=%s: no ConfigMap or Secret in the manifest provides that file", k, v)
			}
			p := filepath.Join(dir, strings.ReplaceAll(strings.TrimPrefix(v, "/"), "/", "_"))
			if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			local[k] = p
		}
	}
	return config.LoadEnv("", func(k string) (string, bool) { v, ok := local[k]; return v, ok })
}

// configFiles lists the files a configuration reads, by setting.
func configFiles(c *config.Config) map[string]string {
	m := make(map[string]string)
	add := func(key, path string) {
		path = strings.TrimPrefix(strings.TrimPrefix(path, "refile:"), "file:")
		if path != "" {
			m[key] = path
		}
	}
	add("tls.cert_file", c.TLS.CertFile)
	add("tls.key_file", c.TLS.KeyFile)
	add("auth.users_file", c.Auth.UsersFile)
	add("dkim.opendkim_conf", c.DKIM.OpenDKIMConf)
	add("dkim.key_table", c.DKIM.KeyTable)
	add("dkim.signing_table", c.DKIM.SigningTable)
	for i, k := range c.DKIM.Keys {
		add(fmt.Sprintf("dkim.keys[%d].key_file", i), k.KeyFile)
	}
	if s := c.Delivery.Smarthost; s != nil {
		add("delivery.smarthost.password_file", s.PasswordFile)
	}
	for name, s := range c.Delivery.SenderRelay {
		add("delivery.sender_relay."+name+".password_file", s.PasswordFile)
	}
	return m
}

// listener is one address inkan listens on.
type listener struct {
	kind     string // smtps, submission, relay, http
	port     string
	loopback bool
}

func listeners(t *testing.T, c *config.Config) []listener {
	t.Helper()
	var out []listener
	for _, l := range []struct{ kind, v string }{
		{"smtps", c.Listen.SMTPS}, {"submission", c.Listen.Submission}, {"relay", c.Listen.Relay}, {"http", c.Listen.HTTP},
	} {
		for _, a := range config.SplitAddrs(l.v) {
			host, port, err := net.SplitHostPort(a)
			if err != nil {
				t.Errorf("listen.%s: %v", l.kind, err)
				continue
			}
			ip := net.ParseIP(host)
			out = append(out, listener{l.kind, port, host == "localhost" || (ip != nil && ip.IsLoopback())})
		}
	}
	return out
}

// Dockerfile

type instruction struct {
	cmd  string // upper-case keyword
	args string
	line int
}

// parseDockerfile returns the instructions of each stage, continuation lines
// joined and comments dropped.
func parseDockerfile(t *testing.T) [][]instruction {
	t.Helper()
	var stages [][]instruction
	var cur strings.Builder
	start := 0
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, "Dockerfile")))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		if s, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		cur.Reset()
		in := instruction{strings.ToUpper(cmd), strings.TrimSpace(args), start}
		if in.cmd == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			t.Fatalf("Dockerfile:%d: %s before FROM", in.line, in.cmd)
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	if cur.Len() > 0 {
		t.Fatal("Dockerfile ends inside a continued line")
	}
	return stages
}

// image is what the final stage of the Dockerfile declares.
type image struct {
	env         map[string]string
	expose      []string
	user        string
	healthcheck []string
	entrypoint  []string
	cmd         []string
	runs        []string // RUN lines of every stage
}

func dockerImage(t *testing.T) image {
	t.Helper()
	stages := parseDockerfile(t)
	img := image{env: make(map[string]string)}
	for _, st := range stages {
		for _, in := range st {
			if in.cmd == "RUN" {
				img.runs = append(img.runs, in.args)
			}
		}
	}
	execForm := func(in instruction, s string) []string {
		var v []string
		if err := json.Unmarshal([]byte(s), &v); err != nil {
			t.Errorf("Dockerfile:%d: %s must use the exec form [\"...\"] (the image has no shell): %v", in.line, in.cmd, err)
		}
		return v
	}
	for _, in := range stages[len(stages)-1] {
		switch in.cmd {
		case "ENV":
			for _, kv := range strings.Fields(in.args) {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || strings.ContainsAny(v, `"'$`) {
					t.Errorf("Dockerfile:%d: write ENV as KEY=value pairs without quotes (test parser): %q", in.line, kv)
				}
				img.env[k] = v
			}
		case "EXPOSE":
			for _, p := range strings.Fields(in.args) {
				img.expose = append(img.expose, strings.TrimSuffix(p, "/tcp"))
			}
		case "USER":
			img.user = in.args
		case "HEALTHCHECK":
			_, c, ok := strings.Cut(in.args, "CMD ")
			if !ok {
				t.Errorf("Dockerfile:%d: HEALTHCHECK without CMD", in.line)
			}
			img.healthcheck = execForm(in, c)
		case "ENTRYPOINT":
			img.entrypoint = execForm(in, in.args)
		case "CMD":
			img.cmd = execForm(in, in.args)
		}
	}
	return img
}

func TestDockerfile(t *testing.T) {
	img := dockerImage(t)
	if img.user != "65532:65532" {
		t.Errorf("USER %q, want 65532:65532 (numeric, so runAsNonRoot can verify it)", img.user)
	}
	if !slices.Equal(img.healthcheck, []string{"/inkan", "health"}) {
		t.Errorf("HEALTHCHECK CMD %q, want [/inkan health]", img.healthcheck)
	}
	if !slices.Equal(img.entrypoint, []string{"/inkan"}) || !slices.Equal(img.cmd, []string{"serve"}) {
		t.Errorf("ENTRYPOINT %q CMD %q, want [/inkan] [serve]", img.entrypoint, img.cmd)
	}
	if !slices.ContainsFunc(img.runs, func(r string) bool { return strings.Contains(r, "deploy/build.sh /out/inkan") }) {
		t.Error("no RUN builds with deploy/build.sh, the build command CI also uses")
	}
	if img.env["INKAN_DATA_DIR"] != "/var/lib/inkan" {
		t.Errorf("INKAN_DATA_DIR=%q, want /var/lib/inkan (the VOLUME)", img.env["INKAN_DATA_DIR"])
	}
	cfg, err := loadConfig(t, img.env, nil)
	if err != nil {
		t.Fatalf("the image's ENV does not load: %v", err)
	}
	var ports []string
	for _, l := range listeners(t, cfg) {
		if l.loopback {
			t.Errorf("listen.%s on loopback: unreachable from outside the container", l.kind)
		}
		if p, err := strconv.Atoi(l.port); err != nil || p < 1024 {
			t.Errorf("listen.%s port %s needs CAP_NET_BIND_SERVICE; the image runs without it", l.kind, l.port)
		}
		ports = append(ports, l.port)
	}
	slices.Sort(ports)
	expose := slices.Sorted(slices.Values(img.expose))
	if !slices.Equal(ports, expose) {
		t.Errorf("EXPOSE %v, but the image listens on %v", expose, ports)
	}
}

// .dockerignore

// buildInputs lists, relative to the root, the files `go build ./cmd/inkan`
// reads from this module, using go list.
func buildInputs(t *testing.T) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-e", "-json=ImportPath,Dir,GoFiles,CgoFiles,SFiles,HFiles,EmbedFiles,Module,Error", "./cmd/inkan")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	files := []string{"go.mod", "go.sum", "deploy/build.sh"}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			ImportPath, Dir                               string
			GoFiles, CgoFiles, SFiles, HFiles, EmbedFiles []string
			Module                                        *struct{ Main bool }
			Error                                         *struct{ Err string }
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if p.Error != nil {
			t.Errorf("go list %s: %s", p.ImportPath, p.Error.Err)
		}
		if p.Module == nil || !p.Module.Main {
			continue
		}
		rel, err := filepath.Rel(abs, p.Dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range slices.Concat(p.GoFiles, p.CgoFiles, p.SFiles, p.HFiles, p.EmbedFiles) {
			files = append(files, filepath.ToSlash(filepath.Join(rel, f)))
		}
	}
	return files
}

func TestDockerignore(t *testing.T) {
	m, err := dockerignore.Parse(readFile(t, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]bool{
		".git/config": true, "relay/signing/testdata/k.pem": true, "queue/spool_test.go": true,
		"deploy/kubernetes/sidecar.yaml": true, "deploy/build.sh": false, "cmd/inkan/main.go": false,
	} {
		if got := m.Ignored(path); got != want {
			t.Errorf("Ignored(%s) = %v, want %v", path, got, want)
		}
	}
	inputs := buildInputs(t)
	if len(inputs) < 10 {
		t.Fatalf("go list found only %v", inputs)
	}
	for _, f := range inputs {
		if m.Ignored(f) {
			t.Errorf("%s is needed by the build but .dockerignore leaves it out of the context", f)
		}
	}
}

// systemd

func unitFile(t *testing.T, rel string) map[string][]string {
	t.Helper()
	m := make(map[string][]string)
	section := ""
	for _, line := range strings.Split(string(readFile(t, rel)), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Errorf("%s: line %q is not key=value", rel, line)
			}
			m[section+"."+k] = append(m[section+"."+k], v)
		}
	}
	return m
}

func TestSystemdUnit(t *testing.T) {
	u := unitFile(t, "deploy/systemd/inkan.service")
	want := map[string]string{
		"Service.ExecStart":               "/usr/local/bin/inkan serve -config /etc/inkan/inkan.yaml",
		"Service.StateDirectory":          "inkan",
		"Service.ConfigurationDirectory":  "inkan",
		"Service.User":                    "inkan",
		"Service.CapabilityBoundingSet":   "CAP_NET_BIND_SERVICE",
		"Service.AmbientCapabilities":     "CAP_NET_BIND_SERVICE",
		"Service.RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", // AF_UNIX: the queue control socket
		"Service.ProtectSystem":           "strict",
		"Service.NoNewPrivileges":         "yes",
		"Service.Restart":                 "on-failure",
		// The syscall filter forbids sched_setattr (@resources): the unit
		// gives cpu_scheduling's default itself.
		"Service.CPUSchedulingPolicy": "batch",
	}
	for k, v := range want {
		if got := u[k]; len(got) != 1 || got[0] != v {
			t.Errorf("%s=%q, want %q", k, got, v)
		}
	}
	if !slices.Contains(u["Service.ExecReload"], "/bin/kill -HUP $MAINPID") {
		t.Errorf("ExecReload %q does not send SIGHUP", u["Service.ExecReload"])
	}
	d := unitFile(t, "deploy/systemd/opendkim-keys.conf")
	if got := d["Service.SupplementaryGroups"]; !slices.Equal(got, []string{"opendkim"}) {
		t.Errorf("opendkim-keys.conf SupplementaryGroups=%q", got)
	}
}

// TestDocsEnvNames checks every INKAN_* name the docs and deployment files
// mention, so that an example cannot teach a variable inkan refuses.
func TestDocsEnvNames(t *testing.T) {
	// Variables read by subcommands, not settings.
	other := map[string]bool{"INKAN_SENDMAIL_SERVER": true}
	settings := settingEnv()
	re := regexp.MustCompile(`INKAN_[A-Z0-9_]+`)
	files := []string{"README.md", "Dockerfile"}
	err := filepath.WalkDir(".", func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() && !strings.HasSuffix(p, ".go") {
			files = append(files, filepath.Join("deploy", p))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		text := string(readFile(t, f))
		for _, m := range re.FindAllStringIndex(text, -1) {
			name := text[m[0]:m[1]]
			if m[1] < len(text) && strings.ContainsRune("*<", rune(text[m[1]])) || strings.HasSuffix(name, "_") || other[name] {
				continue // a pattern such as INKAN_LISTEN_* or INKAN_<X>_FILE
			}
			if err := checkEnvName(name, settings); err != nil {
				t.Errorf("%s: %v", f, err)
			}
		}
	}
}
