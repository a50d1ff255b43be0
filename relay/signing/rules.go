package signing

import (
	"crypto"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// key is one loaded private key with where it came from.
type key struct {
	domain   string // d=; "%" = the From domain (OpenDKIM KeyTable only)
	selector string
	signer   crypto.Signer
	algo     string
	file     string // "" for inline keys
	origin   string // human: `dkim.keys[0]` or `KeyTable /etc/opendkim/KeyTable:3 "mail"`
}

// candidate is a key chosen for one message.
type candidate struct {
	k        *key
	domain   string // resolved d=
	identity string // i=, "" for none
	why      string // which rule matched
}

// nativeRule is a dkim.keys entry.
type nativeRule struct {
	k          *key
	patterns   []senderPattern
	subdomains bool
}

type senderPattern struct {
	raw    string
	exact  string         // "alice@example.com"
	domain string         // "example.com" for "@example.com"
	re     *regexp.Regexp // "*" patterns
}

func parseSenderPattern(p string) (senderPattern, error) {
	p = strings.TrimSpace(p)
	sp := senderPattern{raw: p}
	l := strings.ToLower(p)
	switch {
	case p == "":
		return sp, errors.New("empty sender pattern")
	case strings.Contains(p, "*"):
		re, err := regexp.Compile("(?i)^" + strings.ReplaceAll(regexp.QuoteMeta(l), `\*`, ".*") + "$")
		if err != nil {
			return sp, err
		}
		sp.re = re
	case strings.HasPrefix(l, "@"):
		sp.domain = strings.TrimSuffix(l[1:], ".")
	case strings.Contains(l, "@"):
		sp.exact = l
	default:
		sp.domain = strings.TrimSuffix(l, ".") // a bare domain means "@domain"
	}
	if sp.domain == "" && sp.exact == "" && sp.re == nil {
		return sp, fmt.Errorf("%q names no domain", p)
	}
	return sp, nil
}

func (sp senderPattern) match(addr, domain string, subdomains bool) bool {
	switch {
	case sp.re != nil:
		return sp.re.MatchString(addr)
	case sp.exact != "":
		return strings.EqualFold(addr, sp.exact)
	}
	return domain == sp.domain || (subdomains && strings.HasSuffix(domain, "."+sp.domain))
}

// tableRules are OpenDKIM KeyTable + SigningTable rules.
type tableRules struct {
	entries  map[string]config.KeyTableEntry
	st       *config.SigningTable
	multi    bool
	baseDir  string          // for ./relative key paths
	static   map[string]*key // by key name, keys with a fixed d= and path
	mu       sync.Mutex
	dynamic  map[string]dynKey // "%"-keys by dynID
	loadWarn func(string)
}

type dynKey struct {
	k   *key
	err error
}

// singleRule is OpenDKIM's single-key mode (Domain, Selector, KeyFile).
type singleRule struct {
	k          *key
	domains    []string
	subdomains bool
	origin     string
}

// choose returns the keys that sign mail whose header From is addr, notes
// explaining near misses, and an error when a rule applies but its key cannot
// be used (the caller should then defer the message rather than send it
// unsigned).
func (s *Signer) choose(addr string) (cands []candidate, notes []string, err error) {
	domain := mailsyntax.DomainOf(addr)
	lower := strings.ToLower(addr)
	for i, r := range s.native {
		for _, p := range r.patterns {
			if p.match(lower, domain, r.subdomains) {
				cands = append(cands, candidate{k: r.k, domain: r.k.domain,
					why: fmt.Sprintf("dkim.keys[%d] sender pattern %q", i, p.raw)})
				break
			}
		}
	}
	if r := s.single; r != nil {
		if d, ok := r.match(domain); ok {
			cands = append(cands, candidate{k: r.k, domain: d, why: fmt.Sprintf("%s Domain %s", r.origin, d)})
		}
	}
	if t := s.table; t != nil {
		c, n, e := t.choose(addr, domain)
		cands, notes = append(cands, c...), append(notes, n...)
		if e != nil {
			err = e
		}
	}
	return dedupe(cands), notes, err
}

// match returns the listed domain that signs mail from domain: domain
// itself, or with SubDomains its nearest listed parent. OpenDKIM walks up
// from the From domain, so the most specific entry wins whatever the order
// of the list.
func (r *singleRule) match(domain string) (string, bool) {
	for d := domain; d != ""; {
		if slices.Contains(r.domains, d) {
			return d, true
		}
		_, parent, ok := strings.Cut(d, ".")
		if !r.subdomains || !ok {
			break
		}
		d = parent
	}
	return "", false
}

func dedupe(cands []candidate) []candidate {
	seen := map[string]bool{}
	out := cands[:0]
	for _, c := range cands {
		id := strings.ToLower(c.domain + "/" + c.k.selector)
		if !seen[id] {
			seen[id] = true
			out = append(out, c)
		}
	}
	return out
}

func (t *tableRules) choose(addr, fromDomain string) (cands []candidate, notes []string, err error) {
	// OpenDKIM's "%" pastes the From domain into key names, i=, d= and key
	// paths as it is. Here it must be a host name first: no "../", no
	// domain literal, nothing a d= tag cannot hold.
	domainErr := mailsyntax.CheckDomain(fromDomain, mailsyntax.SigningDomain)
	for _, m := range t.st.Match(addr, t.multi) {
		where := fmt.Sprintf("SigningTable %s:%d %q", t.st.File, m.Rule.Line, m.Rule.Pattern)
		e, ok := t.entries[m.KeyName]
		if domainErr != nil && (m.Rule.KeyName == "%" || strings.Contains(m.Rule.Signer, "%") || (ok && e.Domain == "%")) {
			notes = append(notes, fmt.Sprintf("%s: the From domain %q is not a host name (%v), so it cannot stand for %%", where, fromDomain, domainErr))
			continue
		}
		if !ok {
			// Only a "%" key name gets here (New refuses literal names the
			// KeyTable lacks). Unlike OpenDKIM, which tempfails, send
			// unsigned: the name comes from the sender's From domain.
			notes = append(notes, fmt.Sprintf("%s names key %q, which the KeyTable does not define", where, m.KeyName))
			continue
		}
		k, kerr := t.keyFor(e, fromDomain)
		if kerr != nil {
			if errors.Is(kerr, fs.ErrNotExist) {
				notes = append(notes, fmt.Sprintf("%s: %v", where, kerr))
				continue
			}
			err = fmt.Errorf("%s: %w", where, kerr)
			continue
		}
		d := e.Domain
		if d == "%" {
			d = fromDomain
		}
		c := candidate{k: k, domain: d, why: fmt.Sprintf("%s -> key %q (KeyTable %s:%d)", where, e.Name, e.File, e.Line)}
		if m.Signer != "" {
			if identityOK(m.Signer, d) {
				c.identity = m.Signer
			} else {
				notes = append(notes, fmt.Sprintf("%s: signer %q is not in d=%s, so no i= tag is added", where, m.Signer, d))
			}
		}
		cands = append(cands, c)
	}
	return cands, notes, err
}

// identityOK checks RFC 6376 §3.5: the i= domain is d= or a subdomain of it.
func identityOK(id, d string) bool {
	// i= may have an empty local part ("@sub.example.com", RFC 6376 §3.5).
	dom := mailsyntax.NormDomain(id[strings.LastIndexByte(id, '@')+1:])
	d = strings.ToLower(d)
	return strings.Contains(id, "@") && (dom == d || strings.HasSuffix(dom, "."+d))
}

// maxDynamicKeys bounds the "%"-key cache. Senders choose From domains, so
// each new one may add a failed lookup; those are forgotten first.
const maxDynamicKeys = 1024

// dynID names a "%" key in the cache: the KeyTable entry and the key file.
// Two entries may share a file under different selectors, so the path
// alone is not enough.
func dynID(e config.KeyTableEntry, path string) string { return e.Name + "\x00" + path }

// remember caches a "%" key or its failure under its dynID; t.mu is held
// (or t is not shared yet). When the cache is full the failures are
// dropped; when keys alone fill it (over maxDynamicKeys key files), the
// result is not kept.
func (t *tableRules) remember(id string, dk dynKey) {
	if len(t.dynamic) >= maxDynamicKeys {
		for p, old := range t.dynamic {
			if old.k == nil {
				delete(t.dynamic, p)
			}
		}
		if len(t.dynamic) >= maxDynamicKeys {
			return
		}
	}
	t.dynamic[id] = dk
}

// keyFor returns the loaded key for a KeyTable entry and From domain. Keys
// with a fixed path were loaded by New; "%" paths are loaded on first use and
// remembered (including failures, up to maxDynamicKeys) until restart.
func (t *tableRules) keyFor(e config.KeyTableEntry, fromDomain string) (*key, error) {
	if k := t.static[e.Name]; k != nil {
		return k, nil
	}
	d := e.Domain
	if d == "%" {
		d = fromDomain
	}
	path := t.keyPath(e, d)
	t.mu.Lock()
	defer t.mu.Unlock()
	if dk, ok := t.dynamic[dynID(e, path)]; ok {
		return dk.k, dk.err
	}
	k, err := loadTableKey(e, path, t.loadWarn)
	t.remember(dynID(e, path), dynKey{k, err})
	return k, err
}

// keyPath applies OpenDKIM's "%" token (the d= domain) to a key path and
// resolves ./relative paths against BaseDirectory, or else the KeyTable's
// own directory. A KeyTable domain goes into the path as written, as in
// OpenDKIM ("%" stands for the From domain, which is lower case).
func (t *tableRules) keyPath(e config.KeyTableEntry, domain string) string {
	if e.KeyFile == "" {
		return ""
	}
	if e.Domain != "%" && e.DomainAsWritten != "" {
		domain = e.DomainAsWritten
	}
	p := strings.ReplaceAll(e.KeyFile, "%", domain)
	if !filepath.IsAbs(p) {
		base := t.baseDir
		if base == "" {
			base = filepath.Dir(e.File)
		}
		p = filepath.Join(base, p)
	}
	return p
}

func loadTableKey(e config.KeyTableEntry, path string, warn func(string)) (*key, error) {
	origin := fmt.Sprintf("KeyTable %s:%d %q", e.File, e.Line, e.Name)
	var (
		signer crypto.Signer
		warns  []string
		err    error
	)
	if e.KeyData != "" {
		signer, err = ParsePrivateKey([]byte(e.KeyData))
		if err != nil {
			return nil, keyParseError(fmt.Sprintf("%s:%d (inline key %q)", e.File, e.Line, e.Name), err)
		}
	} else if signer, warns, err = LoadPrivateKey(path); err != nil {
		return nil, err
	}
	for _, w := range warns {
		warn(w)
	}
	return &key{domain: e.Domain, selector: e.Selector, signer: FastSigner(signer), algo: Algorithm(signer.Public()), file: path, origin: origin}, nil
}

// tableDomains derives, for a "%"-domain KeyTable entry, the domains it will
// sign for from SigningTable patterns with a literal domain ("*@example.com",
// "example.com", "user@example.com"). Patterns whose domain is not a host
// name are skipped with a warning.
func (t *tableRules) tableDomains(name string, warn func(string)) []string {
	set := map[string]bool{}
	for _, r := range t.st.Rules {
		if r.KeyName != name && r.KeyName != "%" {
			continue
		}
		p := strings.ToLower(r.Pattern)
		if i := strings.LastIndexByte(p, '@'); i >= 0 {
			p = p[i+1:]
		}
		if p == "" || strings.ContainsAny(p, "*?[](){}|\\^$+") || strings.HasPrefix(p, ".") {
			continue
		}
		if r.KeyName == "%" && p != name {
			continue // "%" names the key after the domain
		}
		if err := mailsyntax.CheckDomain(p, mailsyntax.SigningDomain); err != nil {
			// Not a host name: never a key path or d= (see choose).
			warn(fmt.Sprintf(`SigningTable %s:%d %q: %q is not a host name (%v), so KeyTable key %q ("%%") is not loaded for it; fix the domain part of the pattern`,
				t.st.File, r.Line, r.Pattern, p, err, name))
			continue
		}
		set[p] = true
	}
	out := make([]string, 0, len(set))
	for d := range set {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}
