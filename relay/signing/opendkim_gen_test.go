package signing

// Table sets for TestOpenDKIMDifferential: generated ones (fixed seed) and
// hand-written edge cases, one for each deliberate deviation at least. In
// conf and files, {dir} stands for the set's own directory.

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

func pick[T any](r *rand.Rand, list []T) T { return list[r.IntN(len(list))] }

// caseVariant upper-cases some letters of s (deterministically from r).
func caseVariant(r *rand.Rand, s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' && r.IntN(2) == 0 {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// diffShapes are legal RFC 5322 spellings of the mailbox u@d in a From
// field (RFC 5322 §3.4, §4.4 obsolete forms, RFC 6532 for UTF-8 names).
var diffShapes = []struct {
	name string
	f    func(u, d string) string
}{
	{"addr-spec", func(u, d string) string { return u + "@" + d }},
	{"name-addr", func(u, d string) string { return "Alice Example <" + u + "@" + d + ">" }},
	{"name-addr-tight", func(u, d string) string { return "Alice<" + u + "@" + d + ">" }},
	{"quoted-name", func(u, d string) string { return `"Example, Alice \"A\"" <` + u + "@" + d + ">" }},
	{"obs-phrase", func(u, d string) string { return "A. Example <" + u + "@" + d + ">" }},
	{"encoded-word", func(u, d string) string { return "=?utf-8?q?Al=C3=AFce?= <" + u + "@" + d + ">" }},
	{"utf8-name", func(u, d string) string { return "Alïce Ëxample <" + u + "@" + d + ">" }},
	{"trailing-comment", func(u, d string) string { return u + "@" + d + " (Alice (the) Example)" }},
	{"leading-comment", func(u, d string) string { return "(work) " + u + "@" + d }},
	{"local-comment", func(u, d string) string { return u + "(work)@" + d }},
	{"domain-comment", func(u, d string) string { return u + "@(work)" + d }},
	{"angle-comment", func(u, d string) string { return "Alice <" + u + "(c)@" + d + ">" }},
	{"folded", func(u, d string) string { return "Alice Example\r\n <" + u + "@" + d + ">" }},
	{"folded-tab", func(u, d string) string { return "\r\n\t" + u + "@" + d }},
	{"list", func(u, d string) string { return u + "@" + d + ", Other <other@else.test>" }},
	{"obs-list", func(u, d string) string { return ", " + u + "@" + d + ",," }},
	{"obs-route", func(u, d string) string { return "<@relay.test:" + u + "@" + d + ">" }},
	{"obs-route-list", func(u, d string) string { return "Alice <@relay.test,@r2.test:" + u + "@" + d + ">" }},
	{"quoted-local", func(u, d string) string { return `"` + u + `"@` + d }},
	{"spaced", func(u, d string) string { return u + " @ " + d }},
}

func diffFromOf(shape, u, d string) diffFrom {
	for _, s := range diffShapes {
		if s.name == shape {
			f := diffFrom{value: s.f(u, d), shape: shape}
			if shape != "addr-spec" {
				f.plain = u + "@" + d
			}
			return f
		}
	}
	panic("no shape " + shape)
}

// diffGenerate makes one random table set.
func diffGenerate(r *rand.Rand, name, base, keys string) *diffSet {
	set := &diffSet{name: name, files: map[string]string{}}
	if r.IntN(5) == 0 {
		diffSingleKey(r, set, keys)
	} else {
		diffTables(r, set, base, keys)
	}
	fromDomains := append(append([]string(nil), diffDomains...), "nokey.test", "x.other.test")
	for range 8 {
		u, d := pick(r, diffUsers), pick(r, fromDomains)
		if r.IntN(6) == 0 {
			u = caseVariant(r, u)
		}
		if r.IntN(6) == 0 {
			d = caseVariant(r, d)
		}
		set.froms = append(set.froms, diffFromOf(pick(r, diffShapes).name, u, d))
	}
	return set
}

// diffSingleKey is opendkim.conf's Domain/Selector/KeyFile mode.
func diffSingleKey(r *rand.Rand, set *diffSet, keys string) {
	var doms []string
	for _, i := range r.Perm(len(diffDomains))[:1+r.IntN(3)] {
		d := diffDomains[i]
		if r.IntN(5) == 0 {
			d = caseVariant(r, d)
		}
		doms = append(doms, d)
	}
	var spec string
	switch r.IntN(4) {
	case 0:
		spec = "csl:" + strings.Join(doms, ",")
	case 1:
		spec = strings.Join(doms, ", ")
	case 2:
		spec = "file:{dir}/Domains"
		set.files["Domains"] = "# signing domains\n" + strings.Join(doms, "\n") + "\n\n"
	default:
		spec = "{dir}/Domains"
		set.files["Domains"] = strings.Join(doms, "\n") + "\n"
	}
	sub := pick(r, []string{"yes", "no", "true", "false"})
	sel := pick(r, diffSelectors)
	set.conf = fmt.Sprintf("Domain %s\nSelector %s\nKeyFile %s/example.test/%s.pem\nSubDomains %s\n", spec, sel, keys, sel, sub)
}

type diffKeyEntry struct{ name, domain, sel, path string }

// diffTables writes a KeyTable and a SigningTable.
func diffTables(r *rand.Rand, set *diffSet, base, keys string) {
	var conf strings.Builder
	useBase := r.IntN(4) == 0
	if useBase {
		fmt.Fprintf(&conf, "BaseDirectory %s\n", base)
	}
	var entries []diffKeyEntry
	for i := range 2 + r.IntN(4) {
		e := diffKeyEntry{name: fmt.Sprintf("k%d", i), domain: pick(r, diffDomains[:4]), sel: pick(r, diffSelectors)}
		if r.IntN(4) == 0 {
			e.name = fmt.Sprintf("Key%d", i)
		}
		if r.IntN(4) == 0 {
			e.domain = "%"
		}
		e.path = diffKeyPath(r, e.domain, e.sel, keys, useBase)
		if e.domain != "%" && r.IntN(6) == 0 {
			e.domain = caseVariant(r, e.domain)
		}
		if r.IntN(10) == 0 {
			e.sel = strings.ToUpper(e.sel)
		}
		entries = append(entries, e)
	}
	named := r.IntN(3) == 0
	if named { // keys named after a domain, for "%" key names
		for _, i := range r.Perm(4)[:1+r.IntN(2)] {
			d := diffDomains[i]
			entries = append(entries, diffKeyEntry{name: d, domain: pick(r, []string{d, "%"}), sel: pick(r, diffSelectors),
				path: diffKeyPath(r, d, "s1", keys, false)})
		}
	}
	r.Shuffle(len(entries), func(i, j int) { entries[i], entries[j] = entries[j], entries[i] })

	var kt []diffLine
	for _, e := range entries {
		kt = append(kt, diffLine{e.name, e.domain + ":" + e.sel + ":" + e.path})
	}
	switch r.IntN(5) {
	case 0:
		fmt.Fprintf(&conf, "KeyTable %s\n", diffCSL(kt))
	case 1:
		fmt.Fprintf(&conf, "KeyTable refile:{dir}/KeyTable\n")
		set.files["KeyTable"] = diffFlat(r, kt)
	case 2:
		fmt.Fprintf(&conf, "KeyTable {dir}/KeyTable\n")
		set.files["KeyTable"] = diffFlat(r, kt)
	default:
		fmt.Fprintf(&conf, "KeyTable file:{dir}/KeyTable\n")
		set.files["KeyTable"] = diffFlat(r, kt)
	}

	kind := pick(r, []string{"refile", "refile", "refile", "file", "file", "csl"})
	var st []diffLine
	for i := range 1 + r.IntN(6) {
		var l diffLine
		if i > 0 && r.IntN(3) == 0 { // a pattern listed again, maybe in another case
			l.key = st[r.IntN(len(st))].key
			if r.IntN(2) == 0 {
				l.key = caseVariant(r, l.key)
			}
		} else {
			l.key = diffPattern(r, kind == "refile")
		}
		l.value = pick(r, entries).name
		if named && r.IntN(4) == 0 {
			l.value = "%"
		}
		if r.IntN(10) == 0 {
			l.value += ":" + pick(r, []string{"@%", "postmaster@%", "alice@example.test"})
		}
		st = append(st, l)
	}
	switch kind {
	case "csl":
		fmt.Fprintf(&conf, "SigningTable %s\n", diffCSL(st))
	case "file":
		fmt.Fprintf(&conf, "SigningTable %s\n", pick(r, []string{"file:{dir}/SigningTable", "{dir}/SigningTable"}))
		set.files["SigningTable"] = diffFlat(r, st)
	default:
		fmt.Fprintf(&conf, "SigningTable refile:{dir}/SigningTable\n")
		set.files["SigningTable"] = diffFlat(r, st)
	}
	if r.IntN(2) == 0 {
		fmt.Fprintf(&conf, "MultipleSignatures %s\n", pick(r, []string{"yes", "Yes", "true", "1"}))
	} else if r.IntN(2) == 0 {
		fmt.Fprintf(&conf, "MultipleSignatures no\n")
	}
	if r.IntN(10) == 0 { // ignored by both when a KeyTable is set
		fmt.Fprintf(&conf, "Domain example.test\nSubDomains yes\n")
	}
	set.conf = conf.String()
}

// diffKeyPath is where a KeyTable entry finds its key: absolute, with
// OpenDKIM's "%" for the d= domain, or ./relative to BaseDirectory.
func diffKeyPath(r *rand.Rand, domain, sel, keys string, useBase bool) string {
	dir := keys
	if useBase && r.IntN(2) == 0 {
		dir = "./keys"
	}
	if domain == "%" && r.IntN(4) == 0 { // one key for whatever the From domain
		return dir + "/example.test/" + strings.ToLower(sel) + ".pem"
	}
	if domain == "%" || r.IntN(5) == 0 {
		return dir + "/%/" + strings.ToLower(sel) + ".pem"
	}
	return dir + "/" + domain + "/" + strings.ToLower(sel) + ".pem"
}

// diffPattern is a SigningTable pattern: wildcards for refile tables, the
// lookup forms of an exact table otherwise.
func diffPattern(r *rand.Rand, refile bool) string {
	u := pick(r, diffUsers)
	d := pick(r, append([]string{"test"}, diffDomains[:5]...))
	var p string
	if refile {
		if d == "test" {
			d = "example.test"
		}
		p = pick(r, []string{"*@" + d, "*@" + d, u + "@" + d, "*@*." + d, "*", u + "@*", "*" + d, "*@*"})
	} else {
		p = pick(r, []string{u + "@" + d, d, d, "." + d, u + "@." + d, u + "@*", "*"})
	}
	if r.IntN(8) == 0 {
		p = caseVariant(r, p)
	}
	return p
}

type diffLine struct{ key, value string }

// diffFlat writes lines the way people do: tabs or spaces, comments,
// blank lines.
func diffFlat(r *rand.Rand, lines []diffLine) string {
	var b strings.Builder
	if r.IntN(2) == 0 {
		b.WriteString("# written by hand\n\n")
	}
	for _, l := range lines {
		fmt.Fprintf(&b, "%s%s%s", l.key, pick(r, []string{" ", "\t", "   ", "\t\t"}), l.value)
		if r.IntN(5) == 0 {
			b.WriteString("  # note")
		}
		b.WriteString("\n")
		if r.IntN(6) == 0 {
			b.WriteString(pick(r, []string{"\n", "# comment\n", "   \n"}))
		}
	}
	return b.String()
}

func diffCSL(lines []diffLine) string {
	parts := make([]string, len(lines))
	for i, l := range lines {
		parts[i] = l.key + "=" + l.value
	}
	return "csl:" + strings.Join(parts, ",")
}

// diffHandWritten are the edge cases: the reproductions of issue 20 and
// one set at least for every deviation.
func diffHandWritten(base, keys string) []*diffSet {
	key := func(d, s string) string { return keys + "/" + d + "/" + s + ".pem" }
	plain := func(addrs ...string) []diffFrom {
		var out []diffFrom
		for _, a := range addrs {
			out = append(out, diffFrom{value: a})
		}
		return out
	}
	kt := "k1 example.test:s1:" + key("example.test", "s1") + "\n" +
		"k2 example.test:s2:" + key("example.test", "s2") + "\n" +
		"k3 other.test:s3:" + key("other.test", "s3") + "\n" +
		"kp %:s1:" + keys + "/%/s1.pem\n" +
		"kf %:s2:" + key("example.test", "s2") + "\n"
	tables := func(kind, st string, multi bool) (string, map[string]string) {
		conf := "KeyTable file:{dir}/KeyTable\nSigningTable " + kind + "{dir}/SigningTable\n"
		if multi {
			conf += "MultipleSignatures yes\n"
		}
		return conf, map[string]string{"KeyTable": kt, "SigningTable": st}
	}
	set := func(name, kind, st string, multi bool, froms []diffFrom) *diffSet {
		conf, files := tables(kind, st, multi)
		return &diffSet{name: name, conf: conf, files: files, froms: froms}
	}
	issueFroms := []diffFrom{
		{value: "alice@example.test"},
		diffFromOf("local-comment", "alice", "example.test"),
		diffFromOf("domain-comment", "bob", "other.test"),
		diffFromOf("angle-comment", "carol", "example.test"),
		diffFromOf("obs-route", "alice", "other.test"),
	}
	sets := []*diffSet{
		set("issue 20: a refile pattern listed twice", "refile:", "*@example.test k1\n*@example.test k2\n", true, issueFroms),
		set("issue 20: the same pattern in another case", "refile:", "*@example.test k1\n*@EXAMPLE.TEST k2\n*@Example.Test k1\n* k3\n", true, issueFroms),
		set("a repeated pattern without MultipleSignatures", "refile:", "*@example.test k2\n*@example.test k1\n", false, issueFroms),
		set("an exact key listed twice: the first line only", "file:", "example.test k1\nEXAMPLE.test k2\n.test k3\n.TEST k1\n", true, issueFroms),
		set("exact lookup order", "", "alice@example.test k1\nexample.test k2\nalice@.test k3\n.test k1\nalice@* k2\n* k3\n", true,
			plain("alice@example.test", "bob@example.test", "alice@sub.example.test", "bob@deep.sub.example.test", "alice@nowhere.invalid", "bob@other.test")),
		{name: "csl tables", conf: "KeyTable csl:k1=example.test:s1:" + key("example.test", "s1") + ",k3=other.test:s3:" + key("other.test", "s3") +
			"\nSigningTable csl:alice@example.test=k1,example.test=k3,.test=k1\nMultipleSignatures yes\n",
			froms: plain("alice@example.test", "bob@other.test", "carol@sub.example.test")},
		set("signer (i=) outside d=", "refile:", "*@other.test k1:bob@other.test\n*@example.test k2:@sub.example.test\n* k3:@%\n", true,
			plain("alice@other.test", "alice@example.test", "a@third.test")),
		set("undefined-key", "refile:", "*@example.test k1\n*@other.test gone\n", false, plain("alice@example.test", "bob@other.test")),
		set("wildcard-in-exact-table", "file:", "*@example.test k1\n", false, plain("alice@example.test")),
		set("percent-key-undefined", "refile:", "*@example.test k1\n* %\n", true, plain("alice@example.test", "bob@other.test", "carol@third.test")),
		set("percent-key-file-missing", "refile:", "*@example.test k1\n* kp\n", true, plain("alice@example.test", "bob@nokey.test", "carol@other.test")),
		set("percent-not-host-name", "refile:", "* kp\n", false, []diffFrom{
			{value: "alice@[192.0.2.1]"}, {value: "alice@example.test.", illegal: true}, {value: "alice@-bad.test", illegal: true},
			{value: "alice@under_score.test"}, {value: "alice@example.test"}}),
		set("from-refused", "refile:", "* k1\n", false, []diffFrom{
			{value: "a@b@example.test", illegal: true}, {value: "@example.test", illegal: true}, {value: "alice", illegal: true},
			{value: "Group: alice@example.test;", illegal: true}, {value: "<alice@example.test", illegal: true},
			{value: "alice@example.test>", illegal: true}, {value: "alice@", illegal: true}}),
		set("quoted-local-part", "refile:", "alice@* k1\n*@other.test k3\n", true, []diffFrom{
			diffFromOf("quoted-local", "alice", "example.test"), diffFromOf("quoted-local", "alice", "other.test"),
			{value: `"al\ice"@example.test`, plain: "alice@example.test", shape: "quoted-local"},
			{value: `"a b"@example.test`}, {value: `"alice@x"@other.test`}}),
		set("white-space-in-address", "refile:", "* kp\n", true, []diffFrom{
			diffFromOf("spaced", "alice", "example.test"),
			{value: "alice@ example . test", plain: "alice@example.test", shape: "spaced"},
			{value: "alice . smith@other.test", plain: "alice.smith@other.test", shape: "spaced"}}),
		set("non-ascii-address", "refile:", "* k1\n", false, []diffFrom{
			{value: "Ünïcode <ü@example.test>"}, {value: "alice@bücher.test"}}),
		set("non-ascii-address with %", "refile:", "* kp\n", false, []diffFrom{
			{value: "Ünïcode <ü@example.test>"}, {value: "alice@bücher.test"}, {value: "Ünïcode <ü@exämple.test>"}}),
		set("non-ascii-address with % and one key file", "refile:", "* kf\n", false, []diffFrom{
			{value: "Ünïcode <ü@example.test>"}, {value: "alice@bücher.test"}, {value: "alice@[192.0.2.1]"}, {value: "alice@other.test"}}),
		{name: "indented-line", expect: "indented-line", conf: "KeyTable file:{dir}/KeyTable\nSigningTable refile:{dir}/SigningTable\n",
			files: map[string]string{"KeyTable": kt, "SigningTable": "  *@example.test k1\n*@other.test k3\n"},
			froms: plain("alice@example.test")},
		{name: "keytable-duplicate-name", conf: "KeyTable file:{dir}/KeyTable\nSigningTable refile:{dir}/SigningTable\n",
			files: map[string]string{"KeyTable": kt + "k1 example.test:s2:" + key("example.test", "s2") + "\n", "SigningTable": "* k1\n"},
			froms: plain("alice@example.test")},
		{name: "single key, overlapping domains, SubDomains", conf: "Domain sub.example.test,example.test\nSelector s2\nKeyFile " +
			key("example.test", "s2") + "\nSubDomains yes\n",
			froms: plain("a@x.sub.example.test", "a@sub.example.test", "a@example.test", "a@xexample.test", "a@other.test", "a@EXAMPLE.TEST")},
		{name: "single key without SubDomains", conf: "Domain example.test\nSelector s1\nKeyFile " + key("example.test", "s1") + "\n",
			froms: append(plain("a@sub.example.test", "a@example.test"), diffFrom{value: "a@example.test.", illegal: true})},
		{name: "KeyTable wins over Domain", conf: "Domain third.test\nSelector s1\nKeyFile " + key("third.test", "s1") +
			"\nKeyTable file:{dir}/KeyTable\nSigningTable refile:{dir}/SigningTable\n",
			files: map[string]string{"KeyTable": kt, "SigningTable": "*@example.test k1\n"}, froms: plain("a@third.test", "a@example.test")},
		{name: "BaseDirectory and relative key paths", conf: "BaseDirectory " + base + "\nKeyTable {dir}/KeyTable\nSigningTable refile:{dir}/SigningTable\nMultipleSignatures yes\n",
			files: map[string]string{"KeyTable": "rel example.test:s3:./keys/example.test/s3.pem\npct %:2024a:./keys/%/2024a.pem\n",
				"SigningTable": "# comment\n\n*@example.test\trel # trailing comment\n*@*.example.test pct\n"},
			froms: plain("a@example.test", "a@sub.example.test", "a@deep.sub.example.test")},
	}
	return sets
}
