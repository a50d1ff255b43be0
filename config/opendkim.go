package config

// OpenDKIM KeyTable and SigningTable parsing, so an existing Postfix+OpenDKIM
// setup can be pointed at unchanged. Flat files ("file:", "refile:" or a bare
// path) and inline "csl:" lists are read; SQL, LDAP, Lua and the other
// OpenDKIM data set back ends are refused with a message. No crypto happens
// here: key files are named, not opened.
//
// Lookup order (checked against OpenDKIM 2.11's dkimf_apply_signtable, not
// only opendkim.conf(5), whose prose differs): for a "refile:" table the
// patterns are tried in file order against the whole "user@host" address; for
// every other table the keys tried are, in this order,
//
//	user@host.sub.example.com, host.sub.example.com,
//	user@.sub.example.com, .sub.example.com,
//	user@.example.com, .example.com,
//	user@.com, .com,
//	user@*, *
//
// The ".parent" keys are always tried: OpenDKIM's SubDomains setting only
// applies to the single-key Domain/KeyFile mode, never to a SigningTable. Only
// the first match is used unless MultipleSignatures is on; then every match
// is, in that order: for a "refile:" table every matching line, a pattern
// listed twice (or in another letter case) included; in an exact table a
// lookup key finds only its first line, as in OpenDKIM, and a repeated key is
// reported by Warnings. The signer then uses each (d=, s=) once. (All of this
// is checked against opendkim -t by relay/signing's differential test.) A
// key name of "%"
// in the SigningTable, and a "%" in the optional signer (i=) field, stand for
// the From domain; a KeyTable domain of "%" means "the From domain" and a "%"
// in a key path is replaced by the d= domain.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// OpenDKIMError is a mistake in an OpenDKIM file: where it is, what is wrong
// and how to fix it.
type OpenDKIMError struct {
	File    string
	Line    int // 0 when the problem is about the whole file
	Problem string
	Fix     string
	Err     error // underlying error (I/O), if any
}

func (e *OpenDKIMError) Error() string {
	s := opendkimPlace(e.File, e.Line) + ": " + e.Problem
	if e.Fix != "" {
		s += " (fix: " + e.Fix + ")"
	}
	return s
}

func (e *OpenDKIMError) Unwrap() error { return e.Err }

// KeyTableEntry is one KeyTable line: "Name Domain:Selector:KeyFile".
type KeyTableEntry struct {
	Name   string
	Domain string // lower case; "%" = the domain of the header From address
	// DomainAsWritten is Domain before lower-casing: OpenDKIM puts it
	// into a "%" key path as written.
	DomainAsWritten string
	Selector        string
	KeyFile         string // path to the private key; may contain "%" (replaced by the d= domain)
	KeyData         string // the key itself when the line holds it inline instead of a path
	File            string // the KeyTable this entry came from
	Line            int
}

// ParseKeyTable reads an OpenDKIM KeyTable. path may carry a "file:" or
// "refile:" prefix (OpenDKIM accepts both for a KeyTable; a refile KeyTable
// is still looked up by exact key name), or be an inline "csl:" list of
// name=domain:selector:keyfile entries.
func ParseKeyTable(path string) ([]KeyTableEntry, error) {
	kind, file, err := opendkimTableSpec("KeyTable", path, false)
	if err != nil {
		return nil, err
	}
	if kind == "csl" {
		return opendkimKeyTable("csl:"+file, func(fn entryFunc) error { return opendkimCSL("csl:"+file, fn) })
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, &OpenDKIMError{File: file, Problem: "cannot read KeyTable: " + opendkimIOReason(err),
			Fix: "check the path in key_table / KeyTable and that inkan may read it", Err: err}
	}
	return opendkimParseKeyTable(data, file)
}

// entryFunc receives one table entry: its line (or csl entry number), key
// and value.
type entryFunc func(line int, key, value string) error

// opendkimParseKeyTable parses KeyTable text; file is used in messages only.
func opendkimParseKeyTable(data []byte, file string) ([]KeyTableEntry, error) {
	return opendkimKeyTable(file, func(fn entryFunc) error { return opendkimLines(data, file, fn) })
}

// opendkimKeyTable builds a KeyTable from the entries each yields.
func opendkimKeyTable(file string, each func(entryFunc) error) ([]KeyTableEntry, error) {
	var out []KeyTableEntry
	seen := map[string]int{}
	err := each(func(n int, key, value string) error {
		bad := func(problem, fix string) error {
			return &OpenDKIMError{File: file, Line: n, Problem: problem, Fix: fix}
		}
		const form = `write "keyname example.com:selector:/path/to/key.private"`
		if value == "" {
			return bad(fmt.Sprintf("key %q has no value", key), form)
		}
		parts := strings.SplitN(value, ":", 3) // the last field keeps any further colons, as in OpenDKIM
		if len(parts) < 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
			return bad(fmt.Sprintf("key %q: value %q is not domain:selector:keyfile", key, value), form)
		}
		e := KeyTableEntry{Name: key, Domain: strings.ToLower(parts[0]), DomainAsWritten: parts[0], Selector: parts[1], File: file, Line: n}
		if err := mailsyntax.CheckDomain(e.Domain, mailsyntax.SigningDomain); e.Domain != "%" && err != nil {
			return bad(fmt.Sprintf("key %q: %q is not a domain name (%v)", key, parts[0], err),
				`the first field is the d= domain, e.g. example.com, or "%" for the From domain`)
		}
		if err := mailsyntax.CheckDomain(e.Selector, mailsyntax.Selector); err != nil {
			return bad(fmt.Sprintf("key %q: %q is not a valid selector (%v)", key, e.Selector, err),
				"a selector is letters, digits, '-' and '.', e.g. mail or rsa2024")
		}
		if err := opendkimKeyRef(&e, parts[2]); err != nil {
			return bad(fmt.Sprintf("key %q: %v", key, err),
				"give an absolute path (/etc/opendkim/keys/example.com/mail.private) or ./relative/path")
		}
		if first, dup := seen[key]; dup {
			return bad(fmt.Sprintf("key name %q already defined on line %d (OpenDKIM would only use the first)", key, first),
				"delete one of the two lines or rename one key")
		}
		seen[key] = n
		out = append(out, e)
		return nil
	})
	return out, err
}

// opendkimKeyRef decides, like OpenDKIM's dkimf_loadkey, whether the third
// KeyTable field is a path ("/", "./", "../") or the key itself.
func opendkimKeyRef(e *KeyTableEntry, v string) error {
	v = strings.TrimPrefix(v, "file:") // tolerated: some generators write file:/path
	switch {
	case strings.HasPrefix(v, "/"), strings.HasPrefix(v, "./"), strings.HasPrefix(v, "../"):
		e.KeyFile = v
		return nil
	case strings.HasPrefix(v, "-----BEGIN"):
		e.KeyData = v
		return nil
	}
	for _, c := range v {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=') {
			return fmt.Errorf("%q is neither an absolute or ./relative path nor base64 key data (OpenDKIM would read it as key data and fail)", v)
		}
	}
	if len(v) < 40 {
		return fmt.Errorf("%q is too short to be inline key data and is not an absolute or ./relative path", v)
	}
	e.KeyData = v
	return nil
}

// SigningRule is one SigningTable line.
type SigningRule struct {
	Pattern string // as written (lower-cased for exact tables)
	KeyName string // KeyTable name; "%" = the From domain
	Signer  string // optional i= identity; "%" = the From domain
	Line    int
	re      *regexp.Regexp // refile tables only
}

// SigningTable selects KeyTable entries by header From address.
type SigningTable struct {
	File  string // the file, or the whole "csl:" list
	Regex bool   // "refile:": wildcard patterns tried in file order
	Rules []SigningRule
	// Warnings are lines OpenDKIM reads but never uses (a key listed twice
	// in an exact table), each with its place and a fix. They do not stop
	// signing: the table signs as OpenDKIM would.
	Warnings []string
	exact    map[string]int // exact tables: key -> index in Rules
}

// SigningMatch is one SigningTable hit for an address.
type SigningMatch struct {
	KeyName string // after "%" substitution
	Signer  string // i= value after "%" substitution; "" if none
	Query   string // the lookup key that matched (exact tables) or the pattern (refile)
	Rule    SigningRule
}

// ParseSigningTable reads a SigningTable given as "refile:/path",
// "file:/path", a bare path, or an inline "csl:" list of pattern=keyname
// entries (an exact table).
func ParseSigningTable(spec string) (*SigningTable, error) {
	kind, file, err := opendkimTableSpec("SigningTable", spec, true)
	if err != nil {
		return nil, err
	}
	if kind == "csl" {
		return opendkimSigningTable("csl:"+file, false, func(fn entryFunc) error { return opendkimCSL("csl:"+file, fn) })
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, &OpenDKIMError{File: file, Problem: "cannot read SigningTable: " + opendkimIOReason(err),
			Fix: "check the path in signing_table / SigningTable and that inkan may read it", Err: err}
	}
	return opendkimParseSigningTable(data, file, kind == "refile")
}

// opendkimParseSigningTable parses SigningTable text.
func opendkimParseSigningTable(data []byte, file string, regex bool) (*SigningTable, error) {
	return opendkimSigningTable(file, regex, func(fn entryFunc) error { return opendkimLines(data, file, fn) })
}

// opendkimSigningTable builds a SigningTable from the entries each yields.
func opendkimSigningTable(file string, regex bool, each func(entryFunc) error) (*SigningTable, error) {
	t := &SigningTable{File: file, Regex: regex}
	if !regex {
		t.exact = map[string]int{}
	}
	err := each(func(n int, key, value string) error {
		bad := func(problem, fix string) error {
			return &OpenDKIMError{File: file, Line: n, Problem: problem, Fix: fix}
		}
		if value == "" {
			return bad(fmt.Sprintf("%q has no key name", key), `write "*@example.com keyname" (keyname from the KeyTable)`)
		}
		name, signer, _ := strings.Cut(value, ":")
		name = strings.TrimSpace(name)
		if name == "" {
			return bad(fmt.Sprintf("%q has an empty key name", key), `write "*@example.com keyname"`)
		}
		r := SigningRule{Pattern: key, KeyName: name, Signer: strings.TrimSpace(signer), Line: n}
		if regex {
			re, err := regexp.Compile("(?i)" + opendkimGlobRegexp(key))
			if err != nil {
				return bad(fmt.Sprintf("pattern %q is not a valid pattern: %v", key, err),
					"use '*' as the only wildcard, e.g. *@example.com")
			}
			r.re = re
			t.Rules = append(t.Rules, r)
			return nil
		}
		r.Pattern = strings.ToLower(key)
		if strings.Contains(r.Pattern, "*") && r.Pattern != "*" && !strings.HasSuffix(r.Pattern, "@*") {
			return bad(fmt.Sprintf("%q has a wildcard, but this table is an exact-lookup table where OpenDKIM never matches it", key),
				"prefix the table with refile: (signing_table: refile:"+file+"), or use the exact forms user@example.com, example.com, .example.com")
		}
		if first, dup := t.exact[r.Pattern]; dup {
			// OpenDKIM finds only the first line for a lookup key, even
			// with MultipleSignatures: this one never signs.
			f := t.Rules[first]
			t.Warnings = append(t.Warnings, fmt.Sprintf("%s: %q (key %q) is never used: line %d lists %q (key %q) already, and an exact-lookup table "+
				"finds only the first line for a key, as in OpenDKIM (fix: delete the line, or to sign with both keys, prefix the table with refile: "+
				"so that every matching line signs under MultipleSignatures)",
				opendkimPlace(file, n), key, name, f.Line, f.Pattern, f.KeyName))
			t.Rules = append(t.Rules, r)
			return nil
		}
		t.exact[r.Pattern] = len(t.Rules)
		t.Rules = append(t.Rules, r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// CheckKeyNames returns an error for each line that names a key keys do not
// define; keyTable is the KeyTable's name for the message. A key name of "%"
// is only known when mail arrives and is not checked. OpenDKIM tempfails the
// mail such a line matches; inkan refuses the configuration instead, so the
// mistake shows at start or reload rather than as mail leaving unsigned.
func (t *SigningTable) CheckKeyNames(keys []KeyTableEntry, keyTable string) error {
	defined := make(map[string]bool, len(keys))
	for _, e := range keys {
		defined[e.Name] = true
	}
	var errs []error
	for _, r := range t.Rules {
		if r.KeyName == "%" || defined[r.KeyName] {
			continue
		}
		errs = append(errs, &OpenDKIMError{File: t.File, Line: r.Line,
			Problem: fmt.Sprintf("%q names key %q, which KeyTable %s does not define, so the mail it matches would leave unsigned",
				r.Pattern, r.KeyName, keyTable),
			Fix: keyNameFix(r.KeyName, keys)})
	}
	return errors.Join(errs...)
}

// keyNameFix suggests the KeyTable name meant, or how to define one.
func keyNameFix(name string, keys []KeyTableEntry) string {
	var names []string
	for _, e := range keys {
		if strings.EqualFold(e.Name, name) {
			return fmt.Sprintf("KeyTable %s:%d defines %q: write the name exactly as there", e.File, e.Line, e.Name)
		}
		if len(names) < 5 {
			names = append(names, fmt.Sprintf("%q", e.Name))
		}
	}
	defined := "it defines no key"
	if len(names) > 0 {
		defined = "it defines " + strings.Join(names, ", ")
		if len(keys) > len(names) {
			defined += "..."
		}
	}
	return fmt.Sprintf(`add "%s example.com:selector:/path/to/selector.private" to the KeyTable or correct the name (%s); `+
		"delete the line to leave that mail unsigned on purpose", name, defined)
}

// opendkimGlobRegexp mirrors OpenDKIM's dkimf_mkregexp: '*' becomes ".*",
// '.' and '+' are literal, anything else is passed through as a regular
// expression, and the whole address must match.
func opendkimGlobRegexp(p string) string {
	var b strings.Builder
	b.WriteByte('^')
	for _, c := range p {
		switch c {
		case '*':
			b.WriteString(".*")
		case '.', '+':
			b.WriteByte('\\')
			b.WriteRune(c)
		default:
			b.WriteRune(c)
		}
	}
	b.WriteByte('$')
	return b.String()
}

// Lookup returns the KeyTable names that sign mail whose header From is addr
// ("user@host"): the first match, or every match when all is true
// (MultipleSignatures).
func (t *SigningTable) Lookup(addr string, all bool) []string {
	var names []string
	for _, m := range t.Match(addr, all) {
		names = append(names, m.KeyName)
	}
	return names
}

// Match is Lookup with the matching rules, for explanations.
func (t *SigningTable) Match(addr string, all bool) []SigningMatch {
	addr = strings.ToLower(strings.TrimSpace(addr))
	at := strings.LastIndexByte(addr, '@')
	if at < 0 || at == len(addr)-1 {
		return nil // OpenDKIM needs a domain to sign
	}
	user, domain := addr[:at], addr[at+1:]
	var out []SigningMatch
	hit := func(r SigningRule, query string) bool {
		out = append(out, SigningMatch{
			KeyName: opendkimSubst(r.KeyName, domain, true),
			Signer:  opendkimSubst(r.Signer, domain, false),
			Query:   query,
			Rule:    r,
		})
		return !all
	}
	if t.Regex {
		// Every matching line in file order, a pattern listed twice (or in
		// another letter case) included: OpenDKIM 2.11 signs with each.
		for _, r := range t.Rules {
			if r.re.MatchString(addr) && hit(r, r.Pattern) {
				break
			}
		}
		return out
	}
	for _, q := range opendkimExactKeys(user, domain) {
		if i, ok := t.exact[q]; ok && hit(t.Rules[i], q) {
			break
		}
	}
	return out
}

// opendkimExactKeys lists the keys OpenDKIM tries, in order, for user@domain.
func opendkimExactKeys(user, domain string) []string {
	keys := []string{user + "@" + domain, domain}
	for i := 0; i < len(domain); i++ {
		if domain[i] == '.' {
			keys = append(keys, user+"@"+domain[i:], domain[i:])
		}
	}
	return append(keys, user+"@*", "*")
}

// opendkimSubst applies OpenDKIM's "%" token: a key name that is exactly "%"
// becomes the domain; in a signer every "%" is replaced.
func opendkimSubst(s, domain string, whole bool) string {
	if whole {
		if s == "%" {
			return domain
		}
		return s
	}
	return strings.ReplaceAll(s, "%", domain)
}

// opendkimTableSpec splits "type:path" and refuses data set types inkan
// cannot read. A bare value is a file path.
func opendkimTableSpec(what, spec string, allowRefile bool) (kind, path string, err error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return "", "", &OpenDKIMError{File: what, Problem: "no path given", Fix: "set it to a file path, e.g. refile:/etc/opendkim/SigningTable"}
	}
	kind, path = "file", spec
	if i := strings.IndexByte(spec, ':'); i > 0 && !strings.HasPrefix(spec, "/") {
		prefix := strings.ToLower(spec[:i])
		switch prefix {
		case "file", "refile", "csl":
			kind, path = prefix, spec[i+1:]
		case "db", "dsn", "ldap", "ldaps", "ldapi", "lua", "mdb", "redis", "memcache", "socket", "erlang":
			return "", "", &OpenDKIMError{File: what, Problem: fmt.Sprintf("%q: OpenDKIM data set type %q is not supported by inkan", spec, prefix),
				Fix: "export the table to a flat file and point " + what + " at file:/path or refile:/path"}
		}
	}
	if kind == "refile" && !allowRefile {
		kind = "file"
	}
	if path == "" && kind == "csl" {
		return "", "", &OpenDKIMError{File: what, Problem: fmt.Sprintf("%q is an empty list", spec), Fix: "write csl:key=value,key=value or file:/path/to/table"}
	}
	if path == "" {
		return "", "", &OpenDKIMError{File: what, Problem: fmt.Sprintf("%q names no file", spec), Fix: "write " + kind + ":/path/to/table"}
	}
	return kind, path, nil
}

// opendkimCSL calls fn for each entry of an inline "csl:" list (list is the
// whole spec, for messages): entries are separated by commas, a key from
// its value by '=', as OpenDKIM reads them; the entry number stands for the
// line.
func opendkimCSL(list string, fn entryFunc) error {
	for n, e := range strings.Split(strings.TrimPrefix(list, "csl:"), ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		key, value, _ := strings.Cut(e, "=")
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if strings.ContainsAny(key, " \t") {
			return &OpenDKIMError{File: list, Line: n + 1, Problem: fmt.Sprintf("entry %q has white space in its key", e),
				Fix: "write key=value entries separated by commas, e.g. csl:example.com=mail,example.org=org"}
		}
		if err := fn(n+1, key, value); err != nil {
			return err
		}
	}
	return nil
}

// opendkimPlace is "file:line", or for a csl list "csl:... (entry n)".
func opendkimPlace(file string, line int) string {
	switch {
	case line > 0 && strings.HasPrefix(file, "csl:"):
		return fmt.Sprintf("%s (entry %d)", file, line)
	case line > 0:
		return fmt.Sprintf("%s:%d", file, line)
	}
	return file
}

// opendkimLines calls fn for each non-blank line with '#' comments removed,
// split like OpenDKIM's flat-file reader: the key up to the first white space,
// then the rest of the line, trimmed.
func opendkimLines(data []byte, file string, fn func(line int, key, value string) error) error {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		key, value := line, ""
		if i := strings.IndexAny(line, " \t"); i >= 0 {
			key, value = line[:i], strings.TrimSpace(line[i+1:])
		}
		if err := fn(n, key, value); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return &OpenDKIMError{File: file, Line: n + 1, Problem: "line too long or unreadable: " + err.Error(), Fix: "keep lines under 1 MB", Err: err}
	}
	return nil
}

func opendkimIOReason(err error) string {
	switch {
	case os.IsNotExist(err):
		return "no such file"
	case os.IsPermission(err):
		return "permission denied"
	}
	return err.Error()
}
