// Package dockerignore decides which files a .dockerignore leaves out of a
// Docker build context, following Docker's documented rules: patterns are
// slash-separated paths relative to the context root (a leading "/" is
// dropped), "*" and "?" match within one path element, "**" matches any
// number of elements, a pattern that matches a directory also excludes what
// is below it, "!" re-includes, and the last matching pattern wins.
//
// It exists so that CI can build from exactly the files Docker would send,
// without a Docker engine. Character classes ("[a-z]") and escapes are not
// supported: Parse refuses them rather than guess.
package dockerignore

import (
	"fmt"
	"path"
	"regexp"
	"strings"
)

// Matcher holds the parsed patterns of one .dockerignore file.
type Matcher struct {
	rules    []rule
	negation bool // some pattern re-includes files
}

type rule struct {
	pattern string
	re      *regexp.Regexp
	negate  bool
}

// Parse reads .dockerignore content: one pattern per line, "#" comments and
// blank lines ignored.
func Parse(data []byte) (*Matcher, error) {
	m := &Matcher{}
	for i, line := range strings.Split(string(data), "\n") {
		p := strings.TrimSpace(line)
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		r := rule{}
		if p, r.negate = strings.CutPrefix(p, "!"); r.negate {
			p = strings.TrimSpace(p)
			m.negation = true
		}
		p = strings.TrimPrefix(path.Clean(p), "/")
		re, err := compile(p)
		if err != nil {
			return nil, fmt.Errorf("dockerignore: line %d: %w", i+1, err)
		}
		r.pattern, r.re = p, re
		m.rules = append(m.rules, r)
	}
	return m, nil
}

// compile turns one cleaned pattern into an anchored regular expression.
func compile(p string) (*regexp.Regexp, error) {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case strings.HasPrefix(p[i:], "**/"):
			b.WriteString("(.*/)?")
			i += 2
		case strings.HasPrefix(p[i:], "**"):
			b.WriteString(".*")
			i++
		case c == '*':
			b.WriteString("[^/]*")
		case c == '?':
			b.WriteString("[^/]")
		case c == '[' || c == '\\':
			return nil, fmt.Errorf("pattern %q: character classes and escapes are not supported", p)
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}

// Ignored reports whether the file at rel (slash-separated, relative to the
// context root) is left out of the context.
func (m *Matcher) Ignored(rel string) bool {
	rel = strings.TrimPrefix(path.Clean(rel), "/")
	out := false
	for _, r := range m.rules {
		for p := rel; p != "." && p != "/" && p != ""; p = path.Dir(p) {
			if r.re.MatchString(p) {
				out = !r.negate
				break
			}
		}
	}
	return out
}

// SkipDir reports whether nothing below the directory rel can be in the
// context, so a walk need not enter it.
func (m *Matcher) SkipDir(rel string) bool {
	return !m.negation && m.Ignored(rel)
}
