package signing

// The differential test of issue 20: the same opendkim.conf, KeyTable and
// SigningTable go to OpenDKIM (opendkim -t, its test mode, signing) and to
// inkan's Signer, and for each From header the set of (d=, s=) must be the
// same. Where inkan differs on purpose, the difference is one of
// diffDeviations, each listed with its reason in docs/opendkim-compat.md;
// any other difference fails.

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

var diffShow = flag.String("opendkim.show", "", "TestOpenDKIMDifferential: log both outcomes for every message of the sets whose name contains this")

// diffSeed fixes the generated table sets; change it only on purpose (a
// failure names the set, so it can be reproduced with the same seed).
const diffSeed = 20

// diffSet is one configuration given to both signers, and the From header
// values tried against it.
type diffSet struct {
	name  string
	conf  string            // opendkim.conf lines that choose keys
	files map[string]string // more files in the set's directory: name -> content
	froms []diffFrom
	// expect names the deviation a hand-written set demonstrates when no
	// predicate can recognise it (an indented table line); "" otherwise.
	expect string
}

// diffFrom is one From field value. plain is the same mailbox written as
// a bare addr-spec when value is another legal spelling of it; illegal
// marks hand-written values that are not RFC 5322.
type diffFrom struct {
	value   string
	plain   string
	shape   string
	illegal bool
}

// diffOutcome is what one signer did with one message.
type diffOutcome struct {
	kind   string   // "sign" (sigs may be empty), "tempfail", "reject", "crash", "config", "refused"
	sigs   []string // "d/s", lower case (DNS names), sorted, each once
	detail string   // error, notes or output, for messages
}

func (o diffOutcome) same(p diffOutcome) bool {
	return o.kind == p.kind && slices.Equal(o.sigs, p.sigs)
}

func (o diffOutcome) String() string {
	if o.kind == "sign" {
		if len(o.sigs) == 0 {
			return "no signature"
		}
		return "{" + strings.Join(o.sigs, ", ") + "}"
	}
	return o.kind
}

// diffCase is one comparison.
type diffCase struct {
	set   *diffSet
	from  diffFrom
	odk   diffOutcome
	ink   diffOutcome
	plain diffOutcome // inkan's outcome for from.plain, when set
	// matches are the (d=, s=) of every SigningTable match in order,
	// before a pair met twice is dropped; matchKeys their key names.
	matches, matchKeys []string
	// relPercent names the KeyTable keys with "%" in a ./relative path.
	relPercent []string
}

// inkFromMatches reports whether every key inkan signed with is one a
// SigningTable line matched: where OpenDKIM gives no set to compare with
// (it tempfailed), inkan's set must still come from the table.
func (c *diffCase) inkFromMatches() bool {
	for _, s := range c.ink.sigs {
		if !slices.Contains(c.matches, s) {
			return false
		}
	}
	return true
}

// diffDeviation is a deliberate difference from OpenDKIM: the id appears in
// docs/opendkim-compat.md with its reason, and applies says whether a
// differing case is explained by it.
type diffDeviation struct {
	id      string
	applies func(c *diffCase) bool
}

var diffDeviations = []diffDeviation{
	// OpenDKIM 2.11.0 keeps only the first and the last of three or more
	// signing requests (its request list loses the middle ones); inkan
	// signs with every match, as opendkim.conf(5) documents.
	{"first-and-last-only", func(c *diffCase) bool {
		n := len(c.matches)
		if n < 3 || c.odk.kind != "sign" || c.ink.kind != "sign" {
			return false
		}
		all := normSigs(slices.Clone(c.matches))
		return slices.Equal(c.ink.sigs, all) && slices.Equal(c.odk.sigs, normSigs([]string{c.matches[0], c.matches[n-1]}))
	}},
	// "%" in a ./relative key path is the d= domain for inkan too;
	// OpenDKIM replaces it only in absolute paths, and tempfails.
	{"percent-in-relative-key-path", func(c *diffCase) bool {
		if c.odk.kind != "tempfail" || c.ink.kind != "sign" || !c.inkFromMatches() {
			return false
		}
		for _, k := range c.relPercent {
			if slices.Contains(c.matchKeys, k) {
				return true
			}
		}
		return false
	}},
	// inkan refuses the configuration (inkan check, start, reload) where
	// OpenDKIM tempfails or ignores lines.
	{"undefined-key", func(c *diffCase) bool {
		return c.ink.kind == "config" && strings.Contains(c.ink.detail, "which KeyTable") && strings.Contains(c.ink.detail, "does not define")
	}},
	{"wildcard-in-exact-table", func(c *diffCase) bool {
		return c.ink.kind == "config" && strings.Contains(c.ink.detail, "exact-lookup table where OpenDKIM never matches it")
	}},
	{"keytable-duplicate-name", func(c *diffCase) bool {
		return c.ink.kind == "config" && strings.Contains(c.ink.detail, "already defined on line")
	}},
	// OpenDKIM 2.11 refuses to start when an exact table names the key
	// "%" (it looks for a key called "%"); inkan reads it as
	// opendkim.conf(5) describes, the From domain.
	{"percent-key-name-in-exact-table", func(c *diffCase) bool {
		return c.odk.kind == "config" && strings.Contains(c.odk.detail, `could not find valid key record "%" in KeyTable`) && c.ink.kind != "config"
	}},
	// A "%" rule whose key cannot be had leaves that rule out (the message
	// leaves with the other signatures, or unsigned) where OpenDKIM tempfails.
	{"percent-key-undefined", func(c *diffCase) bool {
		return c.odk.kind == "tempfail" && c.ink.kind == "sign" && c.inkFromMatches() && strings.Contains(c.ink.detail, "which the KeyTable does not define")
	}},
	{"percent-key-file-missing", func(c *diffCase) bool {
		return c.odk.kind == "tempfail" && c.ink.kind == "sign" && c.inkFromMatches() && strings.Contains(c.ink.detail, "no such key file")
	}},
	// "%" stands only for a From domain that is a host name.
	{"percent-not-host-name", func(c *diffCase) bool {
		if c.ink.kind != "sign" || !strings.Contains(c.ink.detail, "is not a host name") {
			return false
		}
		if c.odk.kind == "tempfail" {
			return true // OpenDKIM looked for a key file named after it
		}
		for _, s := range c.odk.sigs {
			d, _, _ := strings.Cut(s, "/")
			if !slices.Contains(c.ink.sigs, s) && mailsyntax.CheckDomain(d, mailsyntax.SigningDomain) == nil {
				return false
			}
		}
		return c.odk.kind == "sign"
	}},
	// inkan refuses (550 5.6.0) a From field that is not RFC 5322.
	{"from-refused", func(c *diffCase) bool { return c.from.illegal && c.ink.kind == "refused" }},
	// Spellings of a mailbox that OpenDKIM reads as another address: inkan
	// signs them as the plain address.
	{"quoted-local-part", func(c *diffCase) bool { return c.from.shape == "quoted-local" && c.ink.same(c.plain) }},
	{"white-space-in-address", func(c *diffCase) bool { return c.from.shape == "spaced" && c.ink.same(c.plain) }},
	// OpenDKIM 2.11 aborts (assertion in dkim_body) on a non-ASCII address.
	{"non-ascii-address", func(c *diffCase) bool {
		return c.odk.kind == "crash" && !mailsyntax.IsASCII(c.from.value)
	}},
	{"indented-line", func(c *diffCase) bool { return c.set.expect == "indented-line" }},
}

// opendkimBinary finds opendkim, or skips (fails when CI is set: CI
// installs it with .ci/install-deps.sh).
func opendkimBinary(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"opendkim", "/usr/sbin/opendkim"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("opendkim is required in CI (Debian package opendkim, installed by .ci/install-deps.sh)")
	}
	t.Skip("opendkim not installed (apt-get install opendkim opendkim-tools); set CI=1 to make this a failure")
	return ""
}

// TestOpenDKIMDifferential: for every generated and hand-written table set
// and From header, inkan signs with the (d=, s=) set opendkim -t signs with,
// or differs in a way docs/opendkim-compat.md lists.
func TestOpenDKIMDifferential(t *testing.T) {
	bin := opendkimBinary(t)
	base := t.TempDir()
	keys := diffKeys(t, base)
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "opendkim-compat.md"))
	if err != nil {
		t.Fatalf("the deviations must be documented: %v", err)
	}
	for _, d := range diffDeviations {
		if !bytes.Contains(doc, []byte("`"+d.id+"`")) {
			t.Errorf("docs/opendkim-compat.md does not list deviation `%s`", d.id)
		}
	}

	n := 160
	if testing.Short() {
		n = 40
	}
	r := rand.New(rand.NewPCG(diffSeed, diffSeed))
	sets := diffHandWritten(base, keys)
	for i := range n {
		sets = append(sets, diffGenerate(r, fmt.Sprintf("generated-%03d", i), base, keys))
	}

	cases := diffRun(t, bin, base, sets)
	hits := map[string]int{}
	equal, failures := 0, 0
	for _, c := range cases {
		if *diffShow != "" && strings.Contains(c.set.name, *diffShow) {
			t.Logf("%s, From: %q\n  opendkim: %s %s\n  inkan:    %s %s", c.set.name, c.from.value, c.odk, brief(c.odk.detail), c.ink, brief(c.ink.detail))
		}
		if c.odk.same(c.ink) {
			equal++
			continue
		}
		id := ""
		for _, d := range diffDeviations {
			if d.applies(c) {
				id = d.id
				break
			}
		}
		if id != "" {
			hits[id]++
			continue
		}
		failures++
		if failures <= 15 {
			t.Errorf("%s, From: %q\n  opendkim: %s %s\n  inkan:    %s %s\n%s", c.set.name, c.from.value,
				c.odk, brief(c.odk.detail), c.ink, brief(c.ink.detail), c.set.describe())
		}
	}
	if failures > 15 {
		t.Errorf("... and %d more differences", failures-15)
	}
	t.Logf("%d sets, %d messages: %d the same, %d known deviations %v, %d unexplained",
		len(sets), len(cases), equal, len(cases)-equal-failures, hits, failures)
	for _, d := range diffDeviations {
		if hits[d.id] == 0 {
			t.Errorf("deviation `%s` never occurred: give it a hand-written case, or delete it here and in docs/opendkim-compat.md", d.id)
		}
	}
}

func brief(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	if s == "" {
		return ""
	}
	return "(" + s + ")"
}

func (s *diffSet) describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "  --- opendkim.conf\n%s", indent(s.conf))
	names := make([]string, 0, len(s.files))
	for n := range s.files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "  --- %s\n%s", n, indent(s.files[n]))
	}
	return b.String()
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("    " + l + "\n")
	}
	return b.String()
}

// diffDomains have key files for every selector in diffSelectors; mail
// from nokey.test finds none.
var (
	diffDomains   = []string{"example.test", "sub.example.test", "deep.sub.example.test", "other.test", "mail.other.test", "third.test"}
	diffSelectors = []string{"s1", "s2", "s3", "2024a"}
	diffUsers     = []string{"alice", "bob", "ceo"}
)

// diffKeys writes one RSA key as keys/DOMAIN/SELECTOR.pem for every
// domain and selector and returns the keys directory. One key is enough:
// the test compares which (d=, s=) sign, not the signatures.
func diffKeys(t *testing.T, base string) string {
	t.Helper()
	k := testRSA(t, 20)
	dir := filepath.Join(base, "keys")
	for _, d := range diffDomains {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
		for _, s := range diffSelectors {
			writeKey(t, dir, filepath.Join(d, s+".pem"), k, 0o600)
		}
	}
	return dir
}

// diffRun writes each set, runs opendkim -t on each message (two at a
// time) and asks inkan's Signer the same question.
func diffRun(t *testing.T, bin, base string, sets []*diffSet) []*diffCase {
	t.Helper()
	type job struct {
		c    *diffCase
		conf string
		msg  string
	}
	var (
		cases []*diffCase
		jobs  []job
	)
	for i, set := range sets {
		dir := filepath.Join(base, fmt.Sprintf("set%03d", i))
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		set.conf = strings.ReplaceAll(set.conf, "{dir}", dir)
		for name, text := range set.files {
			set.files[name] = strings.ReplaceAll(text, "{dir}", dir)
			writeFile(t, dir, name, set.files[name])
		}
		// Test mode signs only with Mode s; keys under /tmp are not
		// "safe" to OpenDKIM (a world-writable parent), which inkan does
		// not check (it checks the key file's own mode).
		conf := writeFile(t, dir, "opendkim.conf", "Mode s\nSyslog no\nRequireSafeKeys no\n"+set.conf)
		signer, err := New(config.DKIM{OpenDKIMConf: conf}, quietLogger())
		var relPercent []string
		if err == nil && signer.table != nil {
			for _, e := range signer.table.entries {
				if strings.Contains(e.KeyFile, "%") && !filepath.IsAbs(e.KeyFile) {
					relPercent = append(relPercent, e.Name)
				}
			}
		}
		for j, f := range set.froms {
			c := &diffCase{set: set, from: f, relPercent: relPercent}
			switch {
			case err != nil:
				c.ink = diffOutcome{kind: "config", detail: err.Error()}
			default:
				c.ink = inkanOutcome(signer, f.value)
				c.matches, c.matchKeys = tableMatches(signer, f.value)
				if f.plain != "" {
					c.plain = inkanOutcome(signer, f.plain)
				}
			}
			msg := writeFile(t, dir, fmt.Sprintf("msg%02d.eml", j),
				"From: "+f.value+"\r\nTo: rcpt@example.net\r\nSubject: differential\r\n\r\nHello.\r\n")
			cases = append(cases, c)
			jobs = append(jobs, job{c, conf, msg})
		}
	}
	work := make(chan job)
	var wg sync.WaitGroup
	for range min(2, runtime.NumCPU()) {
		wg.Go(func() {
			for j := range work {
				j.c.odk = opendkimOutcome(bin, j.conf, j.msg)
			}
		})
	}
	for _, j := range jobs {
		work <- j
	}
	close(work)
	wg.Wait()
	return cases
}

// inkanOutcome is what the relay does with a message whose From field is
// from: the header is parsed once (a From that does not parse is refused
// with 550 5.6.0), then the Signer decides.
func inkanOutcome(s *Signer, from string) diffOutcome {
	m, err := MessageOf([]byte("From: " + from + "\r\nTo: rcpt@example.net\r\nSubject: differential\r\n\r\n"))
	if err != nil {
		return diffOutcome{kind: "refused", detail: err.Error()}
	}
	st, d := s.Begin(m)
	st.Abort()
	if d.Err != nil {
		return diffOutcome{kind: "tempfail", detail: d.Err.Error()}
	}
	var sigs []string
	for _, k := range d.Keys {
		sigs = append(sigs, strings.ToLower(k.Domain+"/"+k.Selector))
	}
	return diffOutcome{kind: "sign", sigs: normSigs(sigs), detail: d.Reason}
}

// tableMatches lists the (d=, s=) and key name of every SigningTable line
// that matches from, in order, repeats included ("%" resolved).
func tableMatches(s *Signer, from string) (sigs, names []string) {
	m, err := MessageOf([]byte("From: " + from + "\r\n\r\n"))
	if err != nil || s.table == nil {
		return nil, nil
	}
	addr := m.Author.String()
	domain := mailsyntax.DomainOf(addr)
	for _, hit := range s.table.st.Match(addr, s.table.multi) {
		e, ok := s.table.entries[hit.KeyName]
		if !ok {
			continue
		}
		d := e.Domain
		if d == "%" {
			d = domain
		}
		sigs, names = append(sigs, strings.ToLower(d+"/"+e.Selector)), append(names, e.Name)
	}
	return sigs, names
}

var (
	odkReturned = regexp.MustCompile(`mlfi_\w+\(\) returned (SMFIS_\w+)`)
	odkTag      = regexp.MustCompile(`(?:^|;)\s*([a-z]+)\s*=\s*([^;]*)`)
)

// opendkimOutcome runs opendkim -t on one message and reads the
// DKIM-Signature fields it prints.
func opendkimOutcome(bin, conf, msg string) diffOutcome {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-x", conf, "-vv", "-t", msg)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	detail := strings.TrimSpace(stderr.String())
	if ps := cmd.ProcessState; ps != nil && !ps.Exited() {
		return diffOutcome{kind: "crash", detail: fmt.Sprintf("%v: %s", err, detail)}
	}
	rets := odkReturned.FindAllStringSubmatch(stderr.String(), -1)
	if len(rets) == 0 {
		return diffOutcome{kind: "config", detail: fmt.Sprintf("%v: %s %s", err, detail, stdout.String())}
	}
	for _, m := range rets {
		switch m[1] {
		case "SMFIS_TEMPFAIL":
			return diffOutcome{kind: "tempfail", detail: detail}
		case "SMFIS_REJECT", "SMFIS_DISCARD":
			return diffOutcome{kind: "reject", detail: detail}
		}
	}
	var sigs []string
	for _, v := range printedSignatures(stdout.String()) {
		tags := map[string]string{}
		for _, m := range odkTag.FindAllStringSubmatch(v, -1) {
			tags[m[1]] = strings.Join(strings.Fields(m[2]), "")
		}
		sigs = append(sigs, strings.ToLower(tags["d"]+"/"+tags["s"]))
	}
	return diffOutcome{kind: "sign", sigs: normSigs(sigs), detail: stdout.String()}
}

// printedSignatures returns the values of the DKIM-Signature fields that
// opendkim -t -vv reports inserting ("### INSHEADER: idx=0
// hname='DKIM-Signature' hvalue='...'", the value folded over lines).
func printedSignatures(out string) []string {
	var vals []string
	for _, chunk := range strings.Split(out, "### INSHEADER:")[1:] {
		name, value, ok := strings.Cut(chunk, " hvalue='")
		if !ok || !strings.Contains(name, "hname='DKIM-Signature'") {
			continue
		}
		if k := strings.LastIndexByte(value, '\''); k >= 0 {
			value = value[:k]
		}
		vals = append(vals, value)
	}
	return vals
}

func normSigs(s []string) []string {
	sort.Strings(s)
	return slices.Compact(s)
}
