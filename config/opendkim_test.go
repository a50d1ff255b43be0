package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func writeOpenDKIMFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseKeyTable(t *testing.T) {
	dir := t.TempDir()
	p := writeOpenDKIMFile(t, dir, "KeyTable", `# comment
mail._domainkey.example.com example.com:mail:/etc/opendkim/keys/example.com/mail.private

ed  example.com:ed2024:./keys/ed.key   # trailing comment
wild %:default:/etc/opendkim/keys/%/default.private
inline example.org:s1:MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7
google Example.NET:20230601:/k/g
under example.net:s_1.mail:/k/u
`)
	for _, spec := range []string{p, "file:" + p, "refile:" + p} {
		got, err := ParseKeyTable(spec)
		if err != nil {
			t.Fatalf("%s: %v", spec, err)
		}
		want := []KeyTableEntry{
			{Name: "mail._domainkey.example.com", Domain: "example.com", DomainAsWritten: "example.com", Selector: "mail", KeyFile: "/etc/opendkim/keys/example.com/mail.private", File: p, Line: 2},
			{Name: "ed", Domain: "example.com", DomainAsWritten: "example.com", Selector: "ed2024", KeyFile: "./keys/ed.key", File: p, Line: 4},
			{Name: "wild", Domain: "%", DomainAsWritten: "%", Selector: "default", KeyFile: "/etc/opendkim/keys/%/default.private", File: p, Line: 5},
			{Name: "inline", Domain: "example.org", DomainAsWritten: "example.org", Selector: "s1", KeyData: "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7", File: p, Line: 6},
			{Name: "google", Domain: "example.net", DomainAsWritten: "Example.NET", Selector: "20230601", KeyFile: "/k/g", File: p, Line: 7},
			{Name: "under", Domain: "example.net", DomainAsWritten: "example.net", Selector: "s_1.mail", KeyFile: "/k/u", File: p, Line: 8},
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", spec, got, want)
		}
	}
}

func TestParseKeyTableErrors(t *testing.T) {
	tests := []struct {
		text, want string
	}{
		{"k example.com:mail", "keytable:1: key \"k\": value \"example.com:mail\" is not domain:selector:keyfile"},
		{"\n\nk", "keytable:3: key \"k\" has no value"},
		{"k example.com:mail:keys/mail.private", "neither an absolute or ./relative path"},
		{"k exa mple.com:mail:/k", "is not a domain name"},
		{"k ex!ample.com:mail:/k", "is not a domain name"},
		{"k example.com:ma@il:/k", "is not a valid selector"},
		// d= is an ASCII name of two labels at least (RFC 6376 §3.5), as in dkim.keys.
		{"k exa_mple.com:mail:/k", "is not a domain name (invalid character '_'"},
		{"k bücher.example:mail:/k", "is not a domain name"},
		{"k localhost:mail:/k", "is not a domain name (domain has only one label)"},
		{"k example.com:maïl:/k", "is not a valid selector"},
		{"k example.com:a:/k\nk example.com:b:/k", "keytable:2: key name \"k\" already defined on line 1"},
	}
	for _, tt := range tests {
		_, err := opendkimParseKeyTable([]byte(tt.text), "keytable")
		var oe *OpenDKIMError
		if !errors.As(err, &oe) || !strings.Contains(err.Error(), tt.want) || oe.Fix == "" {
			t.Errorf("%q: got %v, want an OpenDKIMError containing %q with a fix", tt.text, err, tt.want)
		}
	}
	_, err := ParseKeyTable(filepath.Join(t.TempDir(), "missing"))
	if err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file: %v", err)
	}
	if _, err := ParseKeyTable("dsn:mysql://u@h/db"); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Errorf("dsn: %v", err)
	}
}

func TestOpenDKIMExactKeyOrder(t *testing.T) {
	got := opendkimExactKeys("user", "host.sub.example.com")
	want := []string{
		"user@host.sub.example.com", "host.sub.example.com",
		"user@.sub.example.com", ".sub.example.com",
		"user@.example.com", ".example.com",
		"user@.com", ".com",
		"user@*", "*",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

func TestSigningTableExact(t *testing.T) {
	text := `# exact-lookup table
*               catchall
user@*          anyuser
.com            dotcom
.example.com    parent
user@.example.com userparent
.sub.example.com sub
host.sub.example.com host
boss@host.sub.example.com boss:boss@%
example.net     %
`
	st, err := opendkimParseSigningTable([]byte(text), "st", false)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		addr string
		all  bool
		want []string
	}{
		{"boss@host.sub.example.com", false, []string{"boss"}},
		{"Boss@HOST.sub.Example.com", false, []string{"boss"}},
		{"user@host.sub.example.com", false, []string{"host"}},
		{"user@other.sub.example.com", false, []string{"sub"}}, // .sub.example.com before user@.example.com
		{"user@x.example.com", false, []string{"userparent"}},  // user@.example.com before .example.com
		{"bob@x.example.com", false, []string{"parent"}},       //
		{"bob@x.example.org", false, []string{"catchall"}},     // no .org entry
		{"user@x.example.org", false, []string{"anyuser"}},     // user@* before *
		{"bob@example.net", false, []string{"example.net"}},    // "%" = the From domain
		{"nobody", false, nil},                                 // no domain: OpenDKIM does not sign
		{"boss@host.sub.example.com", true, []string{"boss", "host", "sub", "parent", "dotcom", "catchall"}},
		{"user@x.example.com", true, []string{"userparent", "parent", "dotcom", "anyuser", "catchall"}},
	}
	for _, tt := range tests {
		if got := st.Lookup(tt.addr, tt.all); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Lookup(%q, %v) = %q, want %q", tt.addr, tt.all, got, tt.want)
		}
	}
	m := st.Match("boss@host.sub.example.com", false)
	if len(m) != 1 || m[0].Signer != "boss@host.sub.example.com" || m[0].Rule.Line != 9 || m[0].Query != "boss@host.sub.example.com" {
		t.Errorf("Match = %+v", m)
	}
}

func TestSigningTableRefile(t *testing.T) {
	dir := t.TempDir()
	p := writeOpenDKIMFile(t, dir, "SigningTable", `*@example.com      mail
alice@*            alice:alice@%
*@*.example.com    sub
*                  %
`)
	st, err := ParseSigningTable("refile:" + p)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Regex || len(st.Rules) != 4 {
		t.Fatalf("table = %+v", st)
	}
	tests := []struct {
		addr string
		all  bool
		want []string
	}{
		{"bob@example.com", false, []string{"mail"}},
		{"BOB@Example.COM", false, []string{"mail"}},
		{"alice@example.com", false, []string{"mail"}}, // file order: first match wins
		{"alice@example.com", true, []string{"mail", "alice", "example.com"}},
		{"alice@other.org", false, []string{"alice"}},
		{"bob@a.example.com", false, []string{"sub"}},
		{"bob@exampleXcom", false, []string{"examplexcom"}}, // '.' is literal, so only the catch-all matches
		{"bob@other.org", false, []string{"other.org"}},
	}
	for _, tt := range tests {
		if got := st.Lookup(tt.addr, tt.all); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Lookup(%q, %v) = %q, want %q", tt.addr, tt.all, got, tt.want)
		}
	}
	if m := st.Match("alice@other.org", false); len(m) != 1 || m[0].Signer != "alice@other.org" || m[0].Rule.Line != 2 {
		t.Errorf("Match = %+v", m)
	}
	// A bare path and file: are exact tables.
	for _, spec := range []string{p, "file:" + p} {
		if _, err := ParseSigningTable(spec); err == nil || !strings.Contains(err.Error(), "refile:") {
			t.Errorf("%s: wildcard in exact table: got %v", spec, err)
		}
	}
}

func TestSigningTableErrors(t *testing.T) {
	tests := []struct {
		text  string
		regex bool
		want  string
	}{
		{"*@example.com", true, "st:1: \"*@example.com\" has no key name"},
		{"a@example.com :signer", false, "empty key name"},
		{"*@(example.com k", true, "not a valid pattern"},
	}
	for _, tt := range tests {
		_, err := opendkimParseSigningTable([]byte(tt.text), "st", tt.regex)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "fix:") {
			t.Errorf("%q: got %v, want %q", tt.text, err, tt.want)
		}
	}
}

func TestParseOpenDKIMConf(t *testing.T) {
	dir := t.TempDir()
	writeOpenDKIMFile(t, dir, "extra.conf", "MultipleSignatures yes\nSignatureTTL 86400\n")
	writeOpenDKIMFile(t, dir, "oversign", "From\nSubject # comment\n")
	p := writeOpenDKIMFile(t, dir, "opendkim.conf", `# OpenDKIM
Syslog                  yes
UMask                   007
Canonicalization        relaxed/simple
Mode                    sv
BaseDirectory           `+dir+`
KeyTable                refile:KeyTable
SigningTable            refile:/etc/opendkim/SigningTable
InternalHosts           127.0.0.1,::1,10.0.0.0/8
OversignHeaders         file:oversign
SignHeaders             From,To,Subject
SelectorHeader          X-Selector
include                 `+filepath.Join(dir, "extra.conf")+`
`)
	c, err := ParseOpenDKIMConf(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.KeyTable != "refile:"+filepath.Join(dir, "KeyTable") || c.SigningTable != "refile:/etc/opendkim/SigningTable" {
		t.Errorf("tables: %q %q", c.KeyTable, c.SigningTable)
	}
	if c.Canonicalization != "relaxed/simple" || !c.MultipleSignatures || c.SignatureTTL != 86400 || !c.RequireSafeKeys {
		t.Errorf("conf = %+v", c)
	}
	if !reflect.DeepEqual(c.OversignHeaders, []string{"From", "Subject"}) || !reflect.DeepEqual(c.SignHeaders, []string{"From", "To", "Subject"}) {
		t.Errorf("headers: %q %q", c.OversignHeaders, c.SignHeaders)
	}
	if len(c.Unsupported) != 1 || !strings.HasPrefix(c.Unsupported[0], "SelectorHeader (") {
		t.Errorf("unsupported: %q", c.Unsupported)
	}
	if pos := c.Line["KeyTable"]; pos.File != p || pos.Line != 7 {
		t.Errorf("KeyTable at %v", pos)
	}
	hosts, err := ParseHostList(c.InternalHosts)
	if err != nil || !reflect.DeepEqual(hosts, []string{"127.0.0.1", "::1", "10.0.0.0/8"}) {
		t.Errorf("hosts = %q, %v", hosts, err)
	}
}

func TestParseOpenDKIMConfSingleKeyAndErrors(t *testing.T) {
	dir := t.TempDir()
	p := writeOpenDKIMFile(t, dir, "single.conf", "Domain example.com, Example.org\nSelector mail\nKeyFile /etc/mail/dkim.key\nSubDomains Y\n")
	c, err := ParseOpenDKIMConf(p)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := c.Domains()
	if err != nil || !reflect.DeepEqual(ds, []string{"example.com", "example.org"}) || !c.SubDomains || c.Selector != "mail" {
		t.Errorf("single key: %+v %q %v", c, ds, err)
	}
	// The Domain data set names d= domains: the rule of dkim.keys and the KeyTable.
	one := writeOpenDKIMFile(t, dir, "one.conf", "Domain example.com,localhost\nSelector mail\nKeyFile /k\n")
	if c, err := ParseOpenDKIMConf(one); err != nil {
		t.Fatal(err)
	} else if _, err := c.Domains(); err == nil || !strings.Contains(err.Error(), `one.conf:1: Domain: "localhost" is not a domain name (domain has only one label)`) {
		t.Errorf("one-label Domain: %v", err)
	}
	for text, want := range map[string]string{
		"MultipleSignatures maybe":      "bad.conf:1: MultipleSignatures: \"maybe\" is not a boolean",
		"\nSignatureTTL soon":           "bad.conf:2: SignatureTTL",
		"Canonicalization loose":        "not simple or relaxed",
		"SigningTable refile:/x":        "needs a KeyTable",
		"KeyTable dsn:mysql://x\nA b":   "", // parsed lazily: the spec is checked when the table is read
		"Include /nonexistent/inc.conf": "no such file",
	} {
		bad := writeOpenDKIMFile(t, dir, "bad.conf", text)
		_, err := ParseOpenDKIMConf(bad)
		if want == "" {
			if err != nil {
				t.Errorf("%q: %v", text, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", text, err, want)
		}
	}
}

func TestParseHostList(t *testing.T) {
	dir := t.TempDir()
	p := writeOpenDKIMFile(t, dir, "TrustedHosts", `127.0.0.1
localhost
192.168.0.1/24   # masked to the network
*.example.pw
.example.hu
[::1]
2001:DB8::/32
::ffff:192.0.2.1
printer_1.lan
`)
	got, err := ParseHostList("refile:" + p)
	want := []string{"127.0.0.1", "localhost", "192.168.0.0/24", ".example.pw", ".example.hu", "::1", "2001:db8::/32", "192.0.2.1", "printer_1.lan"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, %v\nwant %q", got, err, want)
	}
	for text, wantErr := range map[string]string{
		"10.0.0.1\n!10.0.0.2": "hosts:2: negated entry",
		"192.0.2/24":          "not a valid CIDR range",
		"10.1":                "neither an IP address nor a host name",
		".10.1":               "neither an IP address nor a host name",
		"-host.lan":           "not an IP address",
		"bad!host":            "not an IP address",
	} {
		f := writeOpenDKIMFile(t, dir, "hosts", text)
		_, err := ParseHostList(f)
		if err == nil || !strings.Contains(err.Error(), wantErr) || !strings.Contains(err.Error(), "fix:") {
			t.Errorf("%q: got %v, want %q", text, err, wantErr)
		}
	}
}

// A pattern listed twice, or in another letter case, signs with each of its
// keys under MultipleSignatures in a refile table, in file order (OpenDKIM
// 2.11 does; relay/signing's differential test runs opendkim -t on it). In
// an exact table a lookup key finds only its first line, so the repeat is
// a warning, not a key.
func TestSigningTableRepeatedPattern(t *testing.T) {
	dir := t.TempDir()
	p := dir + "/SigningTable"
	os.WriteFile(p, []byte("*@example.com excom\n*@Example.com excom2\n* catchall\n*@example.com excom\n"), 0o644)
	st, err := ParseSigningTable("refile:" + p)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Lookup("alice@example.com", true); !reflect.DeepEqual(got, []string{"excom", "excom2", "catchall", "excom"}) {
		t.Errorf("refile Lookup = %v, want every matching line in file order", got)
	}
	if got := st.Lookup("alice@example.com", false); !reflect.DeepEqual(got, []string{"excom"}) {
		t.Errorf("refile first match = %v", got)
	}
	if len(st.Warnings) != 0 {
		t.Errorf("refile warnings: %q", st.Warnings)
	}

	os.WriteFile(p, []byte("example.com excom\nEXAMPLE.com excom2\n* catchall\n"), 0o644)
	st, err = ParseSigningTable(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Lookup("alice@example.com", true); !reflect.DeepEqual(got, []string{"excom", "catchall"}) {
		t.Errorf("exact Lookup = %v, want [excom catchall]", got)
	}
	want := p + `:2: "EXAMPLE.com" (key "excom2") is never used: line 1 lists "example.com" (key "excom") already`
	if len(st.Warnings) != 1 || !strings.HasPrefix(st.Warnings[0], want) || !strings.Contains(st.Warnings[0], "fix: ") {
		t.Errorf("exact warnings: %q\nwant %s...", st.Warnings, want)
	}
}

// OpenDKIM's inline lists: "csl:key=value,..." for either table.
func TestOpenDKIMCSLTables(t *testing.T) {
	keys, err := ParseKeyTable("csl:k1=example.com:s1:/k/1, k2=Example.org:s2:/k/2")
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[1].Name != "k2" || keys[1].Domain != "example.org" || keys[1].KeyFile != "/k/2" || keys[1].Line != 2 {
		t.Errorf("csl KeyTable: %+v", keys)
	}
	st, err := ParseSigningTable("csl:alice@example.com=k2:alice@example.com,example.com=k1,.example.com=k1")
	if err != nil {
		t.Fatal(err)
	}
	if st.Regex || len(st.Rules) != 3 || st.Rules[0].Signer != "alice@example.com" {
		t.Fatalf("csl SigningTable: %+v", st)
	}
	if got := st.Lookup("alice@example.com", true); !reflect.DeepEqual(got, []string{"k2", "k1"}) {
		t.Errorf("Lookup = %v", got)
	}
	if got := st.Lookup("bob@a.example.com", true); !reflect.DeepEqual(got, []string{"k1"}) {
		t.Errorf("Lookup sub = %v", got)
	}
	for spec, want := range map[string]string{
		"csl:":                        `"csl:" is an empty list`,
		"csl:example.com":             `csl:example.com (entry 1): "example.com" has no key name`,
		"csl:a=k,b c=k":               `csl:a=k,b c=k (entry 2): entry "b c=k" has white space in its key`,
		"csl:*@example.com=k":         `csl:*@example.com=k (entry 1): "*@example.com" has a wildcard`,
		"dsn:mysql://u@h/db/table=st": `OpenDKIM data set type "dsn" is not supported`,
	} {
		if _, err := ParseSigningTable(spec); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "fix:") {
			t.Errorf("%s: got %v, want %s", spec, err, want)
		}
	}
	if _, err := ParseKeyTable("csl:k1=example.com:s1"); err == nil || !strings.Contains(err.Error(), "csl:k1=example.com:s1 (entry 1): ") {
		t.Errorf("bad csl KeyTable: %v", err)
	}
}

// Every SigningTable line naming an undefined key is reported, with its
// line and a fix; "%" names are checked only when mail arrives.
func TestSigningTableCheckKeyNames(t *testing.T) {
	keys, err := opendkimParseKeyTable([]byte("Mail example.com:mail:/k/mail\nwild %:s:/k/%\n"), "kt")
	if err != nil {
		t.Fatal(err)
	}
	st, err := opendkimParseSigningTable([]byte("*@example.com Mail\n*@example.org mail\n*@example.net gone\n* %\n*@x.example wild\n"), "st", true)
	if err != nil {
		t.Fatal(err)
	}
	err = st.CheckKeyNames(keys, "kt")
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) != 2 {
		t.Fatalf("want two errors, got %v", err)
	}
	for i, want := range []string{
		`st:2: "*@example.org" names key "mail", which KeyTable kt does not define, so the mail it matches would leave unsigned (fix: KeyTable kt:1 defines "Mail": write the name exactly as there)`,
		`st:3: "*@example.net" names key "gone", which KeyTable kt does not define`,
	} {
		if got := joined.Unwrap()[i].Error(); !strings.HasPrefix(got, want) {
			t.Errorf("error %d:\n got %s\nwant %s...", i, got, want)
		}
	}
	if got := joined.Unwrap()[1].Error(); !strings.Contains(got, `add "gone example.com:selector:/path/to/selector.private" to the KeyTable`) ||
		!strings.Contains(got, `delete the line to leave that mail unsigned on purpose`) {
		t.Errorf("fix of a missing key: %s", got)
	}
}
