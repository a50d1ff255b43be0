package config

import (
	"fmt"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// Environment variables
//
// Every setting has a variable named INKAN_ plus its key path upper-cased with
// "_" for ".": hostname -> INKAN_HOSTNAME, delivery.smarthost.address ->
// INKAN_DELIVERY_SMARTHOST_ADDRESS. Values are written as in YAML, plus:
//
//   - lists: comma-separated, "10.0.0.0/8, 192.168.0.0/16"; "" is the empty list
//   - booleans: true/false (also yes/no, on/off, 1/0)
//   - string maps (delivery.transport, delivery.tls_policy): "key=value" pairs
//     separated by "," or ";": "example.net=[127.0.0.1]:2526,other.org=relay.example.com"
//   - auth.senders: "user=addr,addr" entries separated by ";", where an addr is
//     "alice@example.com" or "@example.com"; "|" also separates addrs:
//     "alice=alice@example.com|@example.org;bob=bob@example.net"
//
// Setting a key inside an optional section (tls.acme, delivery.smarthost)
// creates the section, unless the value is "".
//
// INKAN_<X>_FILE=/path sets X to the file's content without trailing newlines,
// for container secrets; setting both INKAN_<X> and INKAN_<X>_FILE is an error.
// (INKAN_DELIVERY_SMARTHOST_PASSWORD_FILE is the password_file setting itself:
// the path is kept and read at delivery time.)
//
// Lists of sections (auth.networks, dkim.keys, quotas.overrides), delivery.sender_relay and delivery.pacing have
// no variable of their own; set them, or anything else, in INKAN_CONFIG_YAML
// (or INKAN_CONFIG_YAML_FILE): a YAML document applied after the config file
// and before the per-setting variables. INKAN_CONFIG names the config file
// when Load is given "".
//
// Any other INKAN_* variable is an error, so a typo cannot go unnoticed.
//
// The constants name the reserved variables that are not settings.
const (
	EnvConfig         = "INKAN_CONFIG"           // config file path when none is given
	EnvConfigYAML     = "INKAN_CONFIG_YAML"      // inline YAML document
	EnvConfigYAMLFile = "INKAN_CONFIG_YAML_FILE" // file holding such a document
	EnvSendmailServer = "INKAN_SENDMAIL_SERVER"  // host:port `inkan sendmail` submits to
)

const envPrefix = "INKAN_"

// applyEnv applies INKAN_CONFIG_YAML and the per-setting variables to c.
func applyEnv(c *Config, src *sources, env func(string) (string, bool)) []error {
	var errs []error
	doc, name, ok, err := envValue(env, EnvConfigYAML)
	if err != nil {
		errs = append(errs, err)
	} else if ok {
		if name == EnvConfigYAMLFile {
			name, _ = env(EnvConfigYAMLFile) // errors then name the file and its lines
		}
		errs = append(errs, decodeYAML(name, []byte(doc), c, src)...)
	}
	root := reflect.ValueOf(c).Elem()
	for i := range schema.settings {
		st := &schema.settings[i]
		if _, clash := schema.byEnv[st.env+"_FILE"]; clash {
			// X_FILE is a setting of its own (smarthost password_file), so it
			// keeps that meaning and X is read only directly.
			if s, ok := env(st.env); ok {
				errs = append(errs, st.set(root, src, st.env, s)...)
			}
			continue
		}
		s, name, ok, err := envValue(env, st.env)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ok {
			errs = append(errs, st.set(root, src, name, s)...)
		}
	}
	return errs
}

// envValue looks up name and name_FILE. For the file form it returns the
// file's content and the _FILE variable's name.
func envValue(env func(string) (string, bool), name string) (val, from string, ok bool, err error) {
	v, ok := env(name)
	path, fok := env(name + "_FILE")
	switch {
	case ok && fok:
		return "", "", false, &Error{Env: name + "_FILE", Msg: "both " + name + " and " + name + "_FILE are set", Fix: "unset one of them"}
	case fok:
		b, rerr := os.ReadFile(path)
		if rerr != nil {
			return "", "", false, &Error{Env: name + "_FILE", Msg: "cannot read: " + rerr.Error(), Fix: "point it at a readable file"}
		}
		return strings.TrimRight(string(b), "\r\n"), name + "_FILE", true, nil
	}
	return v, name, ok, nil
}

// set parses s for st and stores it in root, recording env var from as its origin.
func (st *setting) set(root reflect.Value, src *sources, from, s string) []error {
	val, msg, fix := parseEnv(st.typ, s)
	if msg != "" {
		return []error{&Error{Env: from, Key: st.path, Msg: msg, Fix: fix}}
	}
	f, created, ok := st.leaf(root, s != "")
	if !ok {
		return nil // "" for a setting in an absent optional section: nothing to do
	}
	f.Set(val)
	if created != "" {
		src.set(created, origin{env: from}) // problems with the new section point here
	}
	src.set(st.path, origin{env: from})
	return nil
}

// parseEnv converts an environment value to type t. On failure it returns a
// problem and a fix instead.
func parseEnv(t reflect.Type, s string) (v reflect.Value, msg, fix string) {
	switch {
	case t == durationType:
		d, err := parseDuration(s)
		if err != nil {
			return v, fmt.Sprintf("invalid duration %q", s), durationFix
		}
		return reflect.ValueOf(d), "", ""
	case t == sizeType:
		n, err := ParseSize(s)
		if err != nil {
			return v, fmt.Sprintf("invalid size %q", s), sizeFix
		}
		return reflect.ValueOf(n), "", ""
	}
	switch t.Kind() {
	case reflect.String:
		return reflect.ValueOf(s).Convert(t), "", ""
	case reflect.Int:
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return v, fmt.Sprintf("invalid number %q", s), "write a whole number, e.g. 20"
		}
		return reflect.ValueOf(n), "", ""
	case reflect.Bool:
		b, ok := parseBool(s)
		if !ok {
			return v, fmt.Sprintf("invalid boolean %q", s), "write true or false"
		}
		return reflect.ValueOf(b), "", ""
	case reflect.Pointer:
		e, msg, fix := parseEnv(t.Elem(), s)
		if msg != "" {
			return v, msg, fix
		}
		p := reflect.New(t.Elem())
		p.Elem().Set(e)
		return p, "", ""
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return reflect.ValueOf(splitList(s, ",")), "", ""
		}
	case reflect.Map:
		return parseEnvMap(t, s)
	}
	panic("config: no environment form for " + t.String()) // a new Config field needs env support
}

func parseEnvMap(t reflect.Type, s string) (v reflect.Value, msg, fix string) {
	lists := t.Elem().Kind() == reflect.Slice
	entrySep, fix := ",;", `write key=value pairs separated by ",", e.g. "example.net=[10.0.0.1]:25,example.org=relay.example.com"`
	if lists {
		entrySep, fix = ";", `write "user=addr,addr;user2=addr", e.g. "alice=alice@example.com,@example.org;bob=bob@example.net"`
	}
	m := reflect.MakeMap(t)
	for _, entry := range strings.FieldsFunc(s, func(r rune) bool { return strings.ContainsRune(entrySep, r) }) {
		k, val, ok := strings.Cut(entry, "=")
		k = strings.TrimSpace(k)
		if strings.TrimSpace(entry) == "" {
			continue
		}
		if !ok || k == "" {
			return v, fmt.Sprintf("invalid entry %q", strings.TrimSpace(entry)), fix
		}
		if lists {
			m.SetMapIndex(reflect.ValueOf(k), reflect.ValueOf(splitList(val, ",|")))
		} else {
			m.SetMapIndex(reflect.ValueOf(k), reflect.ValueOf(strings.TrimSpace(val)))
		}
	}
	if m.Len() == 0 {
		return reflect.Zero(t), "", ""
	}
	return m, "", ""
}

// splitList splits s at any of seps, trims spaces and drops empty items.
func splitList(s, seps string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return strings.ContainsRune(seps, r) }) {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// unknownEnv reports INKAN_* variables in environ ("NAME=value" strings) that
// name no setting.
func unknownEnv(environ []string) []error {
	var errs []error
	var names []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, envPrefix) && !knownEnv(name) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		errs = append(errs, &Error{Env: name, Msg: "unknown setting", Fix: unknownEnvFix(name)})
	}
	return errs
}

func knownEnv(name string) bool {
	switch name {
	case EnvConfig, EnvConfigYAML, EnvConfigYAMLFile, EnvSendmailServer:
		return true
	}
	if _, ok := schema.byEnv[name]; ok {
		return true
	}
	_, ok := schema.byEnv[strings.TrimSuffix(name, "_FILE")]
	return ok && strings.HasSuffix(name, "_FILE")
}

func unknownEnvFix(name string) string {
	base := strings.TrimSuffix(name, "_FILE")
	for _, p := range schema.yamlOnly {
		if e := EnvName(p); base == e || strings.HasPrefix(base, e+"_") {
			return p + " has no variable of its own; set it in " + EnvConfigYAML
		}
	}
	names := []string{EnvConfig, EnvConfigYAML}
	for _, st := range schema.settings {
		names = append(names, st.env)
	}
	if s := suggest(base, names); s != "" {
		if base != name && s != base {
			s += "_FILE"
		}
		return "did you mean " + s + "?"
	}
	return "see deploy/inkan.example.yaml for the settings; each is INKAN_ plus its key path in capitals"
}
