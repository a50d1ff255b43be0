package config

import (
	"errors"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// walkKeys lists Config's yaml key paths independently of schema.go: list
// items and map values appear as "*", and leaves report their type.
func walkKeys(t reflect.Type, prefix string, fn func(path string, ft reflect.Type, inList bool), inList bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if !f.IsExported() || name == "-" {
			continue
		}
		path := name
		if prefix != "" {
			path = prefix + "." + name
		}
		fn(path, f.Type, inList)
		ft := f.Type
		if ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.Struct {
			ft = ft.Elem()
		}
		switch {
		case ft.Kind() == reflect.Struct:
			walkKeys(ft, path, fn, inList)
		case (ft.Kind() == reflect.Slice || ft.Kind() == reflect.Map) && ft.Elem().Kind() == reflect.Struct:
			walkKeys(ft.Elem(), path+".*", fn, true)
		}
	}
}

func isStructy(t reflect.Type) bool {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Kind() == reflect.Struct && t != durationType && t != sizeType ||
		(t.Kind() == reflect.Slice || t.Kind() == reflect.Map) && t.Elem().Kind() == reflect.Struct
}

// sampleEnv returns an env value for a leaf of type t that differs from the default.
func sampleEnv(t reflect.Type) string {
	switch {
	case t == durationType:
		return "7m"
	case t == sizeType:
		return "7KB"
	case t.Kind() == reflect.Pointer: // *bool, default true
		return "false"
	case t.Kind() == reflect.Bool:
		return "true"
	case t.Kind() == reflect.Int:
		return "7"
	case t.Kind() == reflect.String:
		return "sample"
	case t.Kind() == reflect.Slice:
		return "a, b"
	case t.Kind() == reflect.Map && t.Elem().Kind() == reflect.Slice:
		return "u=a@example.com|@example.org"
	case t.Kind() == reflect.Map:
		return "k=v"
	}
	return ""
}

// TestEveryKeyHasEnv sets each leaf through its INKAN_ variable and checks
// the field changed; lists and maps of sections must be settable through
// INKAN_CONFIG_YAML instead.
func TestEveryKeyHasEnv(t *testing.T) {
	names := make(map[string]string)
	walkKeys(configType, "", func(path string, ft reflect.Type, inList bool) {
		if inList || isStructy(ft) {
			return
		}
		env := "INKAN_" + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
		if other, dup := names[env]; dup {
			t.Errorf("%s and %s share %s", path, other, env)
		}
		names[env] = path
		val := sampleEnv(ft)
		if val == "" {
			t.Errorf("%s: no sample for %v", path, ft)
			return
		}
		c := defaults(1000, func() (string, error) { return "h.example.com", nil }, func(string) (string, bool) { return "", false })
		before, _ := c.Dump()
		errs := applyEnv(c, newSources(), func(k string) (string, bool) { return val, k == env })
		if len(errs) > 0 {
			t.Errorf("%s=%q: %v", env, val, errors.Join(errs...))
			return
		}
		if after, _ := c.Dump(); string(after) == string(before) {
			t.Errorf("%s=%q did not change %s", env, val, path)
		}
		if !knownEnv(env) || !knownEnv(env+"_FILE") {
			t.Errorf("%s is not a known variable", env)
		}
	}, false)
	if len(names) != len(schema.settings) {
		t.Errorf("walk found %d settings, schema %d", len(names), len(schema.settings))
	}
	// Sections in lists and maps are reachable through INKAN_CONFIG_YAML.
	c := defaults(1000, os.Hostname, func(string) (string, bool) { return "", false })
	doc := "auth:\n  networks: [{name: n, cidrs: [10.0.0.0/8]}]\ndkim:\n  keys: [{domain: example.com, selector: s, key_file: /k}]\n" +
		"delivery:\n  sender_relay:\n    \"@example.com\": {address: x.example.net}\n"
	if errs := applyEnv(c, newSources(), func(k string) (string, bool) { return doc, k == EnvConfigYAML }); len(errs) > 0 {
		t.Fatal(errors.Join(errs...))
	}
	if len(c.Auth.Networks) != 1 || len(c.DKIM.Keys) != 1 || len(c.Delivery.SenderRelay) != 1 {
		t.Errorf("INKAN_CONFIG_YAML did not set the list sections")
	}
	if !slices.Equal(schema.yamlOnly, []string{"auth.networks", "dkim.keys", "delivery.sender_relay", "delivery.pacing", "quotas.overrides", "rewrite.senders"}) {
		t.Errorf("yaml-only settings changed: %q; document them", schema.yamlOnly)
	}
}

// TestEnvFileNamesDoNotClash checks that X_FILE never names a different setting,
// except x_file settings such as smarthost.password_file (the file holding
// x), which mean the same thing.
func TestEnvFileNamesDoNotClash(t *testing.T) {
	for _, st := range schema.settings {
		if other, ok := schema.byEnv[st.env+"_FILE"]; ok && other.path != st.path+"_file" {
			t.Errorf("%s_FILE is also the variable of %s", st.env, other.path)
		}
	}
}

func TestDefaultsByUser(t *testing.T) {
	env := func(m map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}
	host := func(h string) func() (string, error) { return func() (string, error) { return h, nil } }
	for _, tc := range []struct {
		euid     int
		env      map[string]string
		host     string
		wantDir  string
		wantHost string
	}{
		{0, map[string]string{"HOME": "/root"}, "Mail.Example.COM.", "/var/lib/inkan", "mail.example.com"},
		{1000, map[string]string{"HOME": "/home/a"}, "box", "/home/a/.local/state/inkan", "box"},
		{1000, map[string]string{"HOME": "/home/a", "XDG_STATE_HOME": "/xdg"}, "my_box", "/xdg/inkan", "localhost"},
		{1000, map[string]string{"HOME": "/home/b", "XDG_STATE_HOME": "rel"}, "", "/home/b/.local/state/inkan", "localhost"},
		// No usable variable at all: no default (TestAttackNoPredictableTmpDataDir).
	} {
		c := defaults(tc.euid, host(tc.host), env(tc.env))
		if tc.wantDir != "" && c.DataDir != tc.wantDir || c.Hostname != tc.wantHost || c.DataDir == "" {
			t.Errorf("euid %d env %v host %q: data_dir %q hostname %q", tc.euid, tc.env, tc.host, c.DataDir, c.Hostname)
		}
		if err := c.Validate(); err != nil {
			t.Errorf("defaults do not validate: %v", err)
		}
	}
}

const examplePath = "../deploy/inkan.example.yaml"

func TestExampleLoadsAndValidates(t *testing.T) {
	c, err := LoadEnv(examplePath, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("example does not load:\n%v", err)
	}
	if w := c.Warnings(); len(w) > 0 {
		t.Errorf("example has warnings: %q", w)
	}
}

// disabledRE matches commented-out settings in the example: "# key: value",
// "#   - item"; prose comments start with a capital letter or a symbol.
var disabledRE = regexp.MustCompile(`^(\s*)# ( *)((- )?[a-z0-9_"@][a-z0-9_.@"-]*:( |$)|- )`)

// uncomment turns the example's commented-out settings into YAML.
func uncomment(text string) string {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if m := disabledRE.FindStringSubmatchIndex(l); m != nil {
			lines[i] = l[m[2]:m[3]] + l[m[4]:]
		}
	}
	return strings.Join(lines, "\n")
}

// TestExampleCoversEveryKey fails when a Config key is missing from the
// example (commented-out or not), so the documentation cannot drift.
func TestExampleCoversEveryKey(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	full := uncomment(string(data))
	c := defaults(1000, os.Hostname, func(string) (string, bool) { return "", false })
	src := newSources()
	if errs := decodeYAML("example (uncommented)", []byte(full), c, src); len(errs) > 0 {
		t.Fatalf("the commented-out parts of the example are not valid:\n%v\n\n%s", errors.Join(errs...), full)
	}
	seen := make(map[string]bool)
	mapRE := regexp.MustCompile(`\[\d+\]`)
	for p := range src.m {
		p = mapRE.ReplaceAllString(p, ".*")
		seen[p] = true
		// Map keys are data, not settings: "delivery.transport.example.net";
		// the settings inside map values are "delivery.pacing.*.messages".
		for _, m := range []string{"delivery.sender_relay.", "auth.senders.", "delivery.transport.", "delivery.tls_policy.", "delivery.pacing."} {
			if rest, ok := strings.CutPrefix(p, m); ok {
				for _, k := range Keys() {
					if sub, ok := strings.CutPrefix(k, m+"*."); ok && strings.HasSuffix(rest, "."+sub) {
						seen[k] = true
					}
				}
			}
		}
	}
	walkKeys(configType, "", func(path string, _ reflect.Type, _ bool) {
		if !seen[path] {
			t.Errorf("deploy/inkan.example.yaml does not document %s", path)
		}
	}, false)
}
