package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Decoding walks a yaml.Node tree instead of calling yaml.Unmarshal so that
// every key is checked against Config (unknown keys name the line and the
// closest valid key) and every value's line is kept for Validate.
//
// Merge rules: mappings merge into the current value key by key (so a file
// only lists what it changes); lists replace; an empty value (`key:` or ~)
// leaves scalars and sections as they were and empties lists, maps and
// optional sections (acme, smarthost).

// maxNodes bounds the work one document may cause, aliases included.
const maxNodes = 1 << 20

type decoder struct {
	file   string
	src    *sources
	errs   []error
	budget int
	active map[*yaml.Node]bool // aliases being expanded, to stop self-reference
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// decodeYAML merges the YAML document in data into c, recording origins in src.
func decodeYAML(file string, data []byte, c *Config, src *sources) []error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // empty document
		}
		return []error{syntaxError(file, data, err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return []error{syntaxError(file, data, err)}
		}
		return []error{&Error{File: file, Line: extra.Line, Msg: "a second YAML document follows the first",
			Fix: "keep the whole configuration in one document (remove the '---' line)"}}
	}
	d := &decoder{file: file, src: src, budget: maxNodes, active: make(map[*yaml.Node]bool)}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil
		}
		root = root.Content[0]
	}
	if isNull(root) {
		return nil // only comments
	}
	if d.resolve(root).Kind != yaml.MappingNode {
		return []error{&Error{File: file, Line: root.Line, Msg: "the top level must be a mapping of settings",
			Fix: "start with keys like `hostname: mail.example.com`"}}
	}
	d.value(root, reflect.ValueOf(c).Elem(), "")
	return d.errs
}

func syntaxError(file string, data []byte, err error) error {
	msg := err.Error()
	line, problem := 0, strings.TrimPrefix(msg, "yaml: ")
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		problem = m[2]
	}
	fix := "check the indentation and quoting"
	if line = errorLine(data, problem, line); line > 0 {
		fix = "check the indentation and quoting of this line against the lines above it"
	}
	return &Error{File: file, Line: line, Msg: "invalid YAML: " + problem, Fix: fix}
}

func (d *decoder) fail(n *yaml.Node, key, msg, fix string) {
	d.errs = append(d.errs, &Error{File: d.file, Line: n.Line, Key: key, Msg: msg, Fix: fix})
}

// spend takes one node from the budget; false once it is exhausted.
func (d *decoder) spend(n *yaml.Node) bool { return d.spendN(n, 1) }

func (d *decoder) spendN(n *yaml.Node, k int) bool {
	if d.budget < 0 {
		return false
	}
	d.budget -= k
	if d.budget < 0 {
		d.fail(n, "", "document too large or aliases expand too much", "write the settings out without deep aliasing")
	}
	return d.budget >= 0
}

// resolve follows aliases to the node they name (for kind checks only).
func (d *decoder) resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// value decodes n into v; path is v's dotted key path.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	if !d.spend(n) {
		return
	}
	if n.Kind == yaml.AliasNode {
		if d.active[n] || n.Alias == nil {
			d.fail(n, path, "alias *"+n.Value+" refers to itself", "remove the circular alias")
			return
		}
		d.active[n] = true
		d.value(n.Alias, v, path)
		delete(d.active, n)
		return
	}
	o := origin{file: d.file, line: n.Line}
	if isNull(n) {
		switch v.Kind() {
		case reflect.Pointer, reflect.Map, reflect.Slice:
			v.Set(reflect.Zero(v.Type()))
			d.src.set(path, o)
		}
		return
	}
	t := v.Type()
	switch {
	case isUnit(t):
		d.src.set(path, o)
		d.unit(n, v, path)
	case t.Kind() == reflect.Pointer && isSection(t):
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		d.value(n, v.Elem(), path)
	case t.Kind() == reflect.Struct:
		d.src.mark(path, o)
		d.section(n, v, path)
	case t.Kind() == reflect.Map:
		d.src.mark(path, o)
		d.mapping(n, v, path)
	case t.Kind() == reflect.Slice:
		d.src.set(path, o)
		d.list(n, v, path)
	default:
		d.src.set(path, o)
		d.scalar(n, v, path)
	}
}

func (d *decoder) unit(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		d.typeError(n, path, "a "+unitName(v.Type()))
		return
	}
	if v.Type() == durationType {
		x, err := parseDuration(n.Value)
		if err != nil {
			d.fail(n, path, fmt.Sprintf("invalid duration %q", n.Value), durationFix)
			return
		}
		v.SetInt(int64(x))
		return
	}
	x, err := ParseSize(n.Value)
	if err != nil {
		d.fail(n, path, fmt.Sprintf("invalid size %q", n.Value), sizeFix)
		return
	}
	v.SetInt(int64(x))
}

func unitName(t reflect.Type) string {
	if t == durationType {
		return "duration like 5m"
	}
	return "size like 25MB"
}

func (d *decoder) scalar(n *yaml.Node, v reflect.Value, path string) {
	if v.Kind() == reflect.Pointer { // *bool
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		v = v.Elem()
	}
	if n.Kind != yaml.ScalarNode {
		d.typeError(n, path, "a single value")
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(n.Value)
	case reflect.Int:
		x, err := strconv.ParseInt(n.Value, 10, 0)
		if err != nil {
			d.fail(n, path, fmt.Sprintf("invalid number %q", n.Value), "write a whole number, e.g. 20")
			return
		}
		v.SetInt(x)
	case reflect.Bool:
		x, ok := parseBool(n.Value)
		if !ok {
			d.fail(n, path, fmt.Sprintf("invalid boolean %q", n.Value), "write true or false")
			return
		}
		v.SetBool(x)
	default:
		panic("config: unsupported field type " + v.Type().String()) // a new Config field needs decoding support
	}
}

func parseBool(s string) (bool, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "yes", "on", "1":
		return true, true
	case "false", "no", "off", "0":
		return false, true
	}
	return false, false
}

func (d *decoder) typeError(n *yaml.Node, path, want string) {
	got := "a list"
	switch n.Kind {
	case yaml.MappingNode:
		got = "a mapping"
	case yaml.ScalarNode:
		v := n.Value
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		got = strconv.Quote(v)
	}
	d.fail(n, path, "expected "+want+", got "+got, "")
}

// pair is one key/value of a mapping, with merge keys ("<<") expanded.
type pair struct {
	k, v   *yaml.Node
	merged bool // came from a "<<" merge, so an explicit key may override it
}

// pairs lists n's entries: merged ones first (so explicit keys win), then its own.
func (d *decoder) pairs(n *yaml.Node, path string, depth int) []pair {
	var merged, own []pair
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merged = append(merged, d.merge(v, path, depth)...)
			continue
		}
		own = append(own, pair{k: k, v: v})
	}
	for i := range merged {
		merged[i].merged = true
	}
	return append(merged, own...)
}

// merge expands the value of a "<<" key: a mapping or a list of mappings,
// where earlier mappings win over later ones.
func (d *decoder) merge(v *yaml.Node, path string, depth int) []pair {
	if depth > 20 {
		d.fail(v, path, "merge keys nest too deeply", "")
		return nil
	}
	if !d.spend(v) {
		return nil
	}
	r := d.resolve(v)
	var out []pair
	switch r.Kind {
	case yaml.MappingNode:
		out = d.pairs(r, path, depth+1)
	case yaml.SequenceNode:
		for i := len(r.Content) - 1; i >= 0 && d.budget >= 0; i-- {
			if m := d.resolve(r.Content[i]); m.Kind == yaml.MappingNode {
				out = append(out, d.pairs(m, path, depth+1)...)
			} else {
				d.fail(r.Content[i], path, "<< must name mappings", "use << with a mapping or a list of mappings")
			}
		}
	default:
		d.fail(v, path, "<< must name a mapping", "use << with a mapping or a list of mappings")
	}
	if !d.spendN(v, len(out)) { // merged pairs are work too: stop merge-key fan-out
		return nil
	}
	return out
}

// section decodes a mapping into a struct of settings.
func (d *decoder) section(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.typeError(n, path, "a mapping of settings ("+strings.Join(fieldNames(v.Type()), ", ")+")")
		return
	}
	fields := yamlFields(v.Type())
	seen := make(map[string]int)
	for _, p := range d.pairs(n, path, 0) {
		name := p.k.Value
		kp := joinPath(path, name)
		if p.k.Kind != yaml.ScalarNode {
			d.fail(p.k, path, "keys must be plain names", "")
			continue
		}
		if !p.merged {
			if line, dup := seen[name]; dup {
				d.fail(p.k, kp, fmt.Sprintf("set twice (also on line %d)", line), "keep one")
			}
			seen[name] = p.k.Line
		}
		idx := -1
		for _, f := range fields {
			if f.name == name {
				idx = f.index
				break
			}
		}
		if idx < 0 {
			d.fail(p.k, kp, "unknown setting", unknownKeyFix(name, path, fieldNames(v.Type())))
			continue
		}
		d.value(p.v, v.Field(idx), kp)
		d.src.mark(kp, origin{file: d.file, line: p.k.Line}) // point at the key, not a nested block's first line
	}
}

func fieldNames(t reflect.Type) []string {
	var out []string
	for _, f := range yamlFields(t) {
		out = append(out, f.name)
	}
	return out
}

// unknownKeyFix suggests a sibling with a similar name, or the section where a
// key of that exact name lives.
func unknownKeyFix(name, parent string, siblings []string) string {
	if s := suggest(name, siblings); s != "" {
		return fmt.Sprintf("did you mean %q?", s)
	}
	for _, p := range schema.paths {
		if strings.HasSuffix(p, "."+name) || p == name {
			if p != joinPath(parent, name) && !strings.Contains(p, "*") {
				return "did you mean " + p + "? (it belongs in another section)"
			}
		}
	}
	if parent == "" {
		return "valid top-level keys: " + strings.Join(siblings, ", ")
	}
	return "valid keys in " + parent + ": " + strings.Join(siblings, ", ")
}

// mapping decodes a YAML mapping into a Go map, merging with existing entries.
func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.typeError(n, path, "a mapping of name: value entries")
		return
	}
	seen := make(map[string]int)
	for _, p := range d.pairs(n, path, 0) {
		if p.k.Kind != yaml.ScalarNode || isNull(p.k) {
			d.fail(p.k, path, "map keys must be plain names", "")
			continue
		}
		kp := path + "." + p.k.Value
		if !p.merged {
			if line, dup := seen[p.k.Value]; dup {
				d.fail(p.k, kp, fmt.Sprintf("set twice (also on line %d)", line), "keep one")
			}
			seen[p.k.Value] = p.k.Line
		}
		key := reflect.ValueOf(p.k.Value)
		ev := reflect.New(v.Type().Elem()).Elem()
		if old := v.MapIndex(key); old.IsValid() && isSection(ev.Type()) {
			ev.Set(old) // merge into the existing entry
		}
		d.value(p.v, ev, kp)
		d.src.mark(kp, origin{file: d.file, line: p.k.Line})
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		v.SetMapIndex(key, ev)
	}
}

// list decodes a YAML sequence (or, for lists of values, a single value) and
// replaces v. An empty list becomes nil.
func (d *decoder) list(n *yaml.Node, v reflect.Value, path string) {
	items := n.Content
	switch {
	case n.Kind == yaml.ScalarNode && !isSection(v.Type().Elem()):
		items = []*yaml.Node{n} // "trusted_networks: 10.0.0.0/8" means a list of one
	case n.Kind != yaml.SequenceNode:
		d.typeError(n, path, "a list")
		return
	}
	if len(items) == 0 {
		v.Set(reflect.Zero(v.Type()))
		return
	}
	out := reflect.MakeSlice(v.Type(), len(items), len(items))
	for i, item := range items {
		d.value(item, out.Index(i), fmt.Sprintf("%s[%d]", path, i))
	}
	v.Set(out)
}
