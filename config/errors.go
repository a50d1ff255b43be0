package config

import (
	"strconv"
	"strings"
)

// Error is one problem in the configuration, located where the offending value
// came from: a file line, an environment variable, or nowhere (a default).
//
// Load and Validate return every problem at once joined with errors.Join;
// err.Error() prints one per line.
type Error struct {
	File string // config file, or "INKAN_CONFIG_YAML"; "" when the value did not come from YAML
	Line int    // 1-based line in File; 0 when unknown
	Env  string // environment variable that set the value, e.g. "INKAN_QUEUE_RETRY_MIN"
	Key  string // dotted setting path, e.g. "delivery.smarthost.address" or "auth.networks[1].cidrs[0]"
	Msg  string // what is wrong
	Fix  string // how to fix it; may be ""

	cause error // the underlying error (a file that cannot be read), for errors.Is
}

// Unwrap returns the underlying error, if any.
func (e *Error) Unwrap() error { return e.cause }

// Error formats the problem as "FILE:LINE: key: problem; fix" or
// "env INKAN_X: key: problem; fix".
func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.Env != "":
		b.WriteString("env " + e.Env + ": ")
	case e.File != "" && e.Line > 0:
		b.WriteString(e.File + ":" + strconv.Itoa(e.Line) + ": ")
	case e.File != "":
		b.WriteString(e.File + ": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	if e.Fix != "" {
		b.WriteString("; " + e.Fix)
	}
	return b.String()
}

// NewError returns an Error about key located where key's value came from
// (file line or env variable), so callers outside this package (for example
// code that opens the files a setting names) can report problems the same way.
func (c *Config) NewError(key, msg, fix string) *Error {
	e := &Error{Key: key, Msg: msg, Fix: fix}
	if o, ok := c.src.lookup(key); ok {
		e.File, e.Line, e.Env = o.file, o.line, o.env
	}
	return e
}

// origin is where a setting's value came from.
type origin struct {
	file string
	line int
	env  string
}

// sources maps dotted key paths to their origin. A nil *sources is valid and empty.
type sources struct {
	m map[string]origin
}

func newSources() *sources { return &sources{m: make(map[string]origin)} }

// set records path's origin and forgets its descendants, since a new value
// replaced whatever they described.
func (s *sources) set(path string, o origin) {
	if s == nil || path == "" {
		return
	}
	for k := range s.m {
		if isBelow(k, path) {
			delete(s.m, k)
		}
	}
	s.m[path] = o
}

// mark records path's origin and keeps its descendants (a mapping merged into
// an existing value).
func (s *sources) mark(path string, o origin) {
	if s == nil || path == "" {
		return
	}
	s.m[path] = o
}

// lookup finds path's origin, or that of its nearest recorded ancestor.
func (s *sources) lookup(path string) (origin, bool) {
	if s == nil {
		return origin{}, false
	}
	for path != "" {
		if o, ok := s.m[path]; ok {
			return o, true
		}
		path = parentPath(path)
	}
	return origin{}, false
}

func isBelow(k, path string) bool {
	return len(k) > len(path) && strings.HasPrefix(k, path) && (k[len(path)] == '.' || k[len(path)] == '[')
}

func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

// suggest returns the candidate closest to s, if it is close enough to be a typo.
func suggest(s string, candidates []string) string {
	best, bestD := "", len(s)/3+2
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(s), strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	if len(a) > 200 || len(b) > 200 {
		return 1 << 30 // not a typo; spare the quadratic work
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
