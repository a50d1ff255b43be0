package deploy_test

import (
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/inkan-relay/inkan/config"
)

// fsView is what a container sees of the files a deployment gives it.
type fsView struct {
	content  map[string]string // files whose content the manifest holds (ConfigMaps, Secrets)
	exists   map[string]bool   // files that exist, content known or not
	opaque   []string          // directories whose files the manifest cannot list
	writable []string          // volumes inkan may write (data_dir)
}

func newFSView() *fsView {
	return &fsView{content: make(map[string]string), exists: make(map[string]bool)}
}

func under(p, dir string) bool {
	dir = strings.TrimSuffix(dir, "/")
	return p == dir || strings.HasPrefix(p, dir+"/")
}

func (v *fsView) addFile(p, content string, known bool) {
	p = path.Clean(p)
	v.exists[p] = true
	if known {
		v.content[p] = content
	}
}

func (v *fsView) provides(p string) bool {
	p = path.Clean(p)
	if v.exists[p] {
		return true
	}
	inDir := func(d string) bool { return under(p, d) }
	return slices.ContainsFunc(v.opaque, inDir) || slices.ContainsFunc(v.writable, inDir)
}

// checkConfigFiles reports files the configuration reads that no volume
// provides, and a data_dir that inkan could not write (the root filesystem
// is read-only in every manifest).
func checkConfigFiles(t *testing.T, where string, cfg *config.Config, v *fsView) {
	t.Helper()
	for key, p := range configFiles(cfg) {
		if !path.IsAbs(p) {
			t.Errorf("%s: %s=%s is not an absolute path", where, key, p)
		} else if !v.provides(p) {
			t.Errorf("%s: %s=%s, but no mounted volume provides that file", where, key, p)
		}
	}
	if !slices.ContainsFunc(v.writable, func(d string) bool { return under(cfg.DataDir, d) }) {
		t.Errorf("%s: data_dir %s is not on a writable volume", where, cfg.DataDir)
	}
}

// listenPorts maps a listener kind to its ports.
func listenPorts(ls []listener) map[string][]string {
	m := make(map[string][]string)
	for _, l := range ls {
		m[l.kind] = append(m[l.kind], l.port)
	}
	return m
}

// standardPorts are the well-known ports and the listener each belongs on.
var standardPorts = map[int]string{465: "smtps", 587: "submission", 25: "relay"}
