package deploy_test

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The subset of the Compose file format docker-compose.yml uses, decoded
// strictly (Compose rejects unknown keys too).

type composeFile struct {
	Name     string
	Services map[string]composeService
	Secrets  map[string]struct{ File string }
	Volumes  map[string]struct{}
}

type composeService struct {
	Image           string
	Build           *struct{ Context, Dockerfile string }
	Command         []string
	Restart         string
	Environment     composeEnv
	Secrets         []string
	Volumes         []string
	Ports           []string
	ReadOnly        bool                                  `yaml:"read_only"`
	CapDrop         []string                              `yaml:"cap_drop"`
	SecurityOpt     []string                              `yaml:"security_opt"`
	StopGracePeriod string                                `yaml:"stop_grace_period"`
	NetworkMode     string                                `yaml:"network_mode"`
	DependsOn       map[string]struct{ Condition string } `yaml:"depends_on"`
}

// composeEnv accepts both forms of environment: a mapping or "K=V" items.
type composeEnv map[string]string

func (e *composeEnv) UnmarshalYAML(n *yaml.Node) error {
	m := make(map[string]string)
	switch n.Kind {
	case yaml.MappingNode:
		if err := n.Decode(&m); err != nil {
			return err
		}
	case yaml.SequenceNode:
		var items []string
		if err := n.Decode(&items); err != nil {
			return err
		}
		for _, it := range items {
			k, v, _ := strings.Cut(it, "=")
			m[k] = v
		}
	default:
		return fmt.Errorf("line %d: environment must be a mapping or a list", n.Line)
	}
	*e = m
	return nil
}

func TestCompose(t *testing.T) {
	const rel = "deploy/docker-compose.yml"
	dec := yaml.NewDecoder(bytes.NewReader(readFile(t, rel)))
	dec.KnownFields(true)
	var f composeFile
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	img := dockerImage(t)
	var inkanName string
	for name, s := range f.Services {
		if s.Build != nil {
			df := filepath.Join(root, "deploy", s.Build.Context, s.Build.Dockerfile)
			if _, err := os.Stat(df); err != nil {
				t.Errorf("service %s builds from %s: %v", name, df, err)
			}
		}
		if strings.Contains(s.Image, "inkan") {
			inkanName = name
		}
	}
	ink, ok := f.Services[inkanName]
	if !ok {
		t.Fatal("no service runs the inkan image")
	}
	where := "service " + inkanName
	if !slices.Equal(ink.Command, []string{"serve"}) {
		t.Errorf("%s: command %q, want [serve]", where, ink.Command)
	}
	if !ink.ReadOnly || !slices.Equal(ink.CapDrop, []string{"ALL"}) {
		t.Errorf("%s: want read_only: true and cap_drop: [ALL]", where)
	}

	view := newFSView()
	for _, s := range ink.Secrets {
		if _, ok := f.Secrets[s]; !ok {
			t.Errorf("%s: secret %s is not declared", where, s)
		}
		view.addFile(path.Join("/run/secrets", s), "", false)
	}
	for _, v := range ink.Volumes {
		src, dst, ok := strings.Cut(v, ":")
		if !ok {
			t.Errorf("%s: volume %q has no target", where, v)
			continue
		}
		if _, named := f.Volumes[src]; !named && !strings.HasPrefix(src, ".") && !strings.HasPrefix(src, "/") {
			t.Errorf("%s: volume %s is not declared", where, src)
		}
		dst, ro := strings.CutSuffix(dst, ":ro")
		if ro {
			view.opaque = append(view.opaque, dst)
		} else {
			view.writable = append(view.writable, dst)
		}
	}
	env := maps.Clone(img.env)
	maps.Copy(env, ink.Environment)
	cfg, err := loadConfig(t, env, view.content)
	if err != nil {
		t.Fatalf("%s: the configuration does not load: %v", where, err)
	}
	checkConfigFiles(t, where, cfg, view)
	for _, w := range cfg.Warnings() {
		t.Errorf("%s: inkan check warns: %s", where, w)
	}
	listen := listenPorts(listeners(t, cfg))
	all := slices.Concat(slices.Collect(maps.Values(listen))...)
	for _, p := range ink.Ports {
		parts := strings.Split(p, ":")
		if c := parts[len(parts)-1]; !slices.Contains(all, c) {
			t.Errorf("%s: publishes container port %s, inkan listens on %v", where, c, listen)
		}
	}

	for name, s := range f.Services {
		if name == inkanName {
			continue
		}
		if s.NetworkMode != "service:"+inkanName {
			t.Errorf("service %s: network_mode %q, want service:%s (the app reaches inkan on loopback)", name, s.NetworkMode, inkanName)
		}
		if d := s.DependsOn[inkanName]; d.Condition != "service_healthy" || img.healthcheck == nil {
			t.Errorf("service %s: depends_on %s should wait for service_healthy (the image's HEALTHCHECK)", name, inkanName)
		}
		if p, ok := s.Environment["SMTP_PORT"]; ok && !slices.Contains(listen["relay"], p) {
			t.Errorf("service %s: sends to port %s, inkan relays on %v", name, p, listen["relay"])
		}
	}
}
