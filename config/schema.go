package config

import (
	"reflect"
	"sort"
	"strings"
)

var (
	durationType = reflect.TypeFor[Duration]()
	sizeType     = reflect.TypeFor[Size]()
	configType   = reflect.TypeFor[Config]()
)

// yamlField is one settable struct field.
type yamlField struct {
	name  string // yaml key
	index int
}

// yamlFields lists the fields of struct type t that YAML may set.
func yamlFields(t reflect.Type) []yamlField {
	var out []yamlField
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out = append(out, yamlField{name, i})
	}
	return out
}

// isUnit reports whether t is written as one scalar despite its Go kind.
func isUnit(t reflect.Type) bool { return t == durationType || t == sizeType }

// isSection reports whether t is a struct of settings (possibly behind a pointer).
func isSection(t reflect.Type) bool {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Kind() == reflect.Struct && !isUnit(t)
}

// setting is one leaf of the configuration that an environment variable sets.
type setting struct {
	path  string       // "delivery.smarthost.address"
	env   string       // "INKAN_DELIVERY_SMARTHOST_ADDRESS"
	index []int        // field indexes from Config, through pointer sections
	typ   reflect.Type // the leaf field's type
}

// schema is derived once from Config's yaml tags.
var schema = buildSchema()

type schemaInfo struct {
	settings []setting           // env-settable leaves, in struct order
	byEnv    map[string]*setting // env name -> setting
	yamlOnly []string            // lists/maps of sections: only YAML (or INKAN_CONFIG_YAML) sets them
	paths    []string            // every key path; list items and map values appear as "*"
}

func buildSchema() *schemaInfo {
	s := &schemaInfo{byEnv: make(map[string]*setting)}
	s.walk(configType, "", nil)
	for i := range s.settings {
		s.byEnv[s.settings[i].env] = &s.settings[i]
	}
	return s
}

func (s *schemaInfo) walk(t reflect.Type, prefix string, index []int) {
	for _, f := range yamlFields(t) {
		path := joinPath(prefix, f.name)
		ft := t.Field(f.index).Type
		idx := append(append([]int(nil), index...), f.index)
		s.paths = append(s.paths, path)
		switch {
		case isSection(ft):
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			s.walk(ft, path, idx)
		case (ft.Kind() == reflect.Slice || ft.Kind() == reflect.Map) && isSection(ft.Elem()):
			s.yamlOnly = append(s.yamlOnly, path)
			s.walkPathsOnly(ft.Elem(), path+".*")
		default:
			s.settings = append(s.settings, setting{path: path, env: EnvName(path), index: idx, typ: ft})
		}
	}
}

// walkPathsOnly records key paths inside list items and map values.
func (s *schemaInfo) walkPathsOnly(t reflect.Type, prefix string) {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	for _, f := range yamlFields(t) {
		path := prefix + "." + f.name
		s.paths = append(s.paths, path)
		if ft := t.Field(f.index).Type; isSection(ft) {
			s.walkPathsOnly(ft, path)
		}
	}
}

func joinPath(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// EnvName is the environment variable for a dotted key path:
// "delivery.smarthost.address" -> "INKAN_DELIVERY_SMARTHOST_ADDRESS".
func EnvName(path string) string {
	return "INKAN_" + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

// Keys returns every dotted key path the configuration accepts, sorted. Items
// of lists and values of maps appear as "*": "auth.networks.*.cidrs".
func Keys() []string {
	out := append([]string(nil), schema.paths...)
	sort.Strings(out)
	return out
}

// leaf returns the field for st inside root (a Config value). Nil pointer
// sections on the way are allocated when alloc is set (created names the
// first one); otherwise ok is false.
func (st *setting) leaf(root reflect.Value, alloc bool) (v reflect.Value, created string, ok bool) {
	v = root
	for i, x := range st.index {
		v = v.Field(x)
		if i == len(st.index)-1 {
			break
		}
		if v.Kind() == reflect.Pointer {
			if v.IsNil() {
				if !alloc {
					return reflect.Value{}, "", false
				}
				v.Set(reflect.New(v.Type().Elem()))
				if created == "" {
					created = strings.Join(strings.Split(st.path, ".")[:i+1], ".")
				}
			}
			v = v.Elem()
		}
	}
	return v, created, true
}
