package signing

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inkan-relay/inkan/config"
)

// opendkimSetup writes keys and tables the way an OpenDKIM install has them.
func opendkimSetup(t *testing.T) (dir string) {
	t.Helper()
	dir = t.TempDir()
	for _, d := range []string{"example.com", "example.org", "example.net", "sub.example.net"} {
		if err := os.MkdirAll(filepath.Join(dir, "keys", d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	writeKey(t, dir, "keys/example.com/mail.private", testRSA(t, 1), 0o600)
	writeKey(t, dir, "keys/example.com/ed.private", testEd25519(t, 10), 0o600)
	writeKey(t, dir, "keys/example.org/default.private", testEd25519(t, 11), 0o600)
	writeKey(t, dir, "keys/example.net/default.private", testEd25519(t, 12), 0o600)
	writeKey(t, dir, "keys/sub.example.net/default.private", testEd25519(t, 14), 0o600)
	writeFile(t, dir, "KeyTable", `mail._domainkey.example.com example.com:mail:`+dir+`/keys/example.com/mail.private
ed     example.com:ed:./keys/example.com/ed.private
any    %:default:`+dir+`/keys/%/default.private
unused example.com:old:/nonexistent/old.private
`)
	writeFile(t, dir, "SigningTable", `# refile: patterns in file order
*@example.com       mail._domainkey.example.com
*@example.c*        ed
ceo@*               mail._domainkey.example.com:ceo@example.com
*@example.org       any
*@*.example.net     any:@%
*@example.net       any
`)
	writeFile(t, dir, "ExactTable", `example.com        mail._domainkey.example.com
.example.com       ed
*                  any
`)
	return dir
}

func TestOpenDKIMTables(t *testing.T) {
	dir := opendkimSetup(t)
	kt, st := filepath.Join(dir, "KeyTable"), "refile:"+filepath.Join(dir, "SigningTable")
	first := newSigner(t, config.DKIM{KeyTable: kt, SigningTable: st})
	multi := newSigner(t, config.DKIM{KeyTable: kt, SigningTable: st, MultipleSignatures: true})
	exact := newSigner(t, config.DKIM{KeyTable: kt, SigningTable: filepath.Join(dir, "ExactTable")})
	tests := []struct {
		s     *Signer
		from  string
		want  string // "d/s,d/s"
		notes string
	}{
		{first, "a@example.com", "example.com/mail", ""},
		{multi, "a@example.com", "example.com/mail,example.com/ed", ""},
		{first, "ceo@example.com", "example.com/mail", ""},                // first match, not the ceo@ line
		{multi, "ceo@example.com", "example.com/mail,example.com/ed", ""}, // the ceo@ line repeats a key
		{first, "ceo@other.org", "example.com/mail", ""},                  // i=ceo@example.com
		{first, "a@example.org", "example.org/default", ""},               // "%" domain and key path
		{first, "a@sub.example.net", "sub.example.net/default", ""},       // found on first use
		{first, "a@x.example.net", "", "no such key file"},                // "%" path without a file: unsigned, noted
		{first, "a@example.net", "example.net/default", ""},
		{first, "a@nowhere.test", "", "no rule matches"},
		{exact, "a@example.com", "example.com/mail", ""},
		{exact, "a@deep.sub.example.com", "example.com/ed", ""}, // ".example.com" covers subdomains
		{exact, "a@example.org", "example.org/default", ""},     // "*"
	}
	for _, tt := range tests {
		st, d := tt.s.Begin(msgOf("From: " + tt.from + "\r\n\r\n"))
		var got []string
		for _, k := range d.Keys {
			got = append(got, k.Domain+"/"+k.Selector)
		}
		if strings.Join(got, ",") != tt.want || !strings.Contains(d.Reason, tt.notes) || d.Err != nil {
			t.Errorf("%s: got %v (%s) err %v, want %s", tt.from, got, d.Reason, d.Err, tt.want)
		}
		st.Abort()
	}
	if c, _, _ := first.choose("ceo@other.org"); len(c) != 1 || c[0].identity != "ceo@example.com" {
		t.Errorf("ceo identity: %+v", c)
	}
	if c, _, _ := first.choose("a@sub.example.net"); len(c) != 1 || c[0].identity != "@sub.example.net" {
		t.Errorf("%% identity: %+v", c)
	}

	w := strings.Join(first.Warnings(), "\n")
	for _, want := range []string{`key "unused" (d=example.com s=old) is not used`} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings lack %q:\n%s", want, w)
		}
	}
	// "%" keys are published for the domains the SigningTable names.
	var names []string
	for _, d := range first.Domains() {
		names = append(names, d.Name+"/"+d.Selector)
	}
	if got := strings.Join(names, ","); got != "example.com/ed,example.com/mail,example.net/default,example.org/default" {
		t.Errorf("domains %s", got)
	}

	// A signature made through the tables verifies.
	signed, _ := sign(t, multi, strings.Replace(testMsg, "alice@example.com", "ceo@example.com", 1))
	for _, v := range verify(t, signed, txtFor(multi, nil)) {
		if v.Err != nil {
			t.Errorf("verify: %v", v.Err)
		}
	}
	if got := strings.Join(first.Explain("ceo@example.com"), "\n"); !strings.Contains(got, "SigningTable "+filepath.Join(dir, "SigningTable")+`:2 "*@example.com" -> key "mail._domainkey.example.com"`) {
		// line 2: line 1 is the comment
		t.Errorf("explain: %s", got)
	}
}

func TestOpenDKIMUnreadableDynamicKey(t *testing.T) {
	dir := opendkimSetup(t)
	// A "%" key that exists but is world-readable must defer mail, not send it unsigned.
	writeKey(t, dir, "keys/example.net/default.private", testEd25519(t, 12), 0o644)
	_, err := New(config.DKIM{KeyTable: filepath.Join(dir, "KeyTable"), SigningTable: "refile:" + filepath.Join(dir, "SigningTable")}, quietLogger())
	if err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("preloaded world-readable key: %v", err)
	}
	writeKey(t, dir, "keys/example.net/default.private", testEd25519(t, 12), 0o600)
	if err := os.MkdirAll(filepath.Join(dir, "keys", "late.example"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeKey(t, dir, "keys/late.example/default.private", testEd25519(t, 13), 0o644)
	// Only a wildcard names late.example, so its key is first read for a message.
	writeFile(t, dir, "Wild", "* any\n")
	s := newSigner(t, config.DKIM{KeyTable: filepath.Join(dir, "KeyTable"), SigningTable: "refile:" + filepath.Join(dir, "Wild")})
	st, d := s.Begin(msgOf("From: a@late.example\r\n\r\n"))
	if st != nil || d.Err == nil || d.Unsigned != UnsignedError || !strings.Contains(d.Err.Error(), "chmod 600") {
		t.Errorf("runtime world-readable key: %+v", d)
	}
}

func TestOpenDKIMConf(t *testing.T) {
	dir := opendkimSetup(t)
	conf := writeFile(t, dir, "opendkim.conf", `Syslog yes
BaseDirectory `+dir+`
KeyTable file:KeyTable
SigningTable refile:SigningTable
MultipleSignatures yes
Canonicalization relaxed/simple
OversignHeaders From
SignatureTTL 3600
Mode v
SelectorHeader X-Key
`)
	s := newSigner(t, config.DKIM{OpenDKIMConf: conf})
	_, d := s.Begin(msgOf("From: a@example.com\r\n\r\n"))
	if len(d.Keys) != 2 || s.bodyCan != "simple" || s.headerCan != "relaxed" || s.expiration.Seconds() != 3600 || !s.plan.over["from"] || s.plan.over["subject"] {
		t.Errorf("conf not applied: %+v %s/%s %v %v", d, s.headerCan, s.bodyCan, s.expiration, s.plan.over)
	}
	w := strings.Join(s.Warnings(), "\n")
	if !strings.Contains(w, "SelectorHeader") || !strings.Contains(w, `Mode "v"`) {
		t.Errorf("warnings: %s", w)
	}
	// OversignHeaders Received would break every signature (inkan adds its
	// Received after signing): left out, with a warning naming the line.
	rcv := writeFile(t, dir, "received.conf", "BaseDirectory "+dir+"\nKeyTable file:KeyTable\nSigningTable refile:SigningTable\nOversignHeaders From,Received\n")
	s = newSigner(t, config.DKIM{OpenDKIMConf: rcv})
	if s.plan.over["received"] || !s.plan.over["from"] || !strings.Contains(strings.Join(s.Warnings(), "\n"), "lists Received, which joins the message after signing") {
		t.Errorf("OversignHeaders Received: over %v, warnings %q", s.plan.over, s.Warnings())
	}
	// The inkan configuration wins over opendkim.conf.
	s = newSigner(t, config.DKIM{OpenDKIMConf: conf, Canonicalization: "simple/simple", OversignHeaders: []string{"Subject"}})
	if s.headerCan != "simple" || s.plan.over["from"] || !s.plan.over["subject"] {
		t.Errorf("override: %s %v", s.headerCan, s.plan.over)
	}

	single := writeFile(t, dir, "single.conf", "Domain example.org,example.com\nSelector solo\nKeyFile "+dir+"/keys/example.org/default.private\nSubDomains yes\n")
	s = newSigner(t, config.DKIM{OpenDKIMConf: single})
	for from, want := range map[string]string{"a@example.org": "example.org/solo", "a@x.example.com": "example.com/solo", "a@example.net": ""} {
		st, d := s.Begin(msgOf("From: " + from + "\r\n\r\n"))
		got := ""
		if len(d.Keys) == 1 {
			got = d.Keys[0].Domain + "/" + d.Keys[0].Selector
		}
		if got != want {
			t.Errorf("single-key %s: %q want %q (%s)", from, got, want, d.Reason)
		}
		st.Abort()
	}
	if len(s.Domains()) != 2 {
		t.Errorf("single-key domains %+v", s.Domains())
	}
}

// Sessions share one Signer; "%" keys are loaded on first use under a lock.
func TestConcurrentBegin(t *testing.T) {
	dir := opendkimSetup(t)
	writeFile(t, dir, "Wild", "* any\n")
	s := newSigner(t, config.DKIM{KeyTable: filepath.Join(dir, "KeyTable"), SigningTable: "refile:" + filepath.Join(dir, "Wild")})
	done := make(chan Decision, 40)
	for i := 0; i < cap(done); i++ {
		from := []string{"a@example.org", "b@example.net", "c@sub.example.net", "d@none.example"}[i%4]
		go func() {
			st, d := s.Begin(msgOf("From: " + from + "\r\n\r\n"))
			if st != nil {
				st.Write([]byte("From: " + from + "\r\n\r\nhi\r\n"))
				if _, err := st.Finish(); err != nil {
					d.Err = err
				}
			}
			done <- d
		}()
	}
	signed := 0
	for i := 0; i < cap(done); i++ {
		d := <-done
		if d.Err != nil {
			t.Error(d.Err)
		}
		signed += len(d.Keys)
	}
	if signed != 30 {
		t.Errorf("%d signatures, want 30 (none for none.example)", signed)
	}
}

// Found by TestOpenDKIMDifferential: two "%" KeyTable entries that share a
// key file under different selectors each sign with their own selector
// (the "%" key cache was keyed by path alone), a KeyTable domain goes into
// a "%" key path as written, and in single-key mode the nearest listed
// parent domain signs, whatever the order of the Domain list.
func TestOpenDKIMDifferentialFindings(t *testing.T) {
	dir := opendkimSetup(t)
	if err := os.MkdirAll(filepath.Join(dir, "keys", "Example.ORG"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeKey(t, dir, "keys/Example.ORG/mixed.private", testEd25519(t, 15), 0o600)
	writeFile(t, dir, "SharedKT", "byname example.org:one:"+dir+"/keys/%/default.private\n"+
		"pct %:two:"+dir+"/keys/%/default.private\n"+
		"mixed Example.ORG:mixed:"+dir+"/keys/%/mixed.private\n")
	writeFile(t, dir, "SharedST", "*@example.org byname\n*@example.org pct\n*@example.org mixed\n")
	s := newSigner(t, config.DKIM{KeyTable: filepath.Join(dir, "SharedKT"), SigningTable: "refile:" + filepath.Join(dir, "SharedST"), MultipleSignatures: true})
	st, d := s.Begin(msgOf("From: a@example.org\r\n\r\n"))
	st.Abort()
	var got []string
	for _, k := range d.Keys {
		got = append(got, k.Domain+"/"+k.Selector)
	}
	if strings.Join(got, ",") != "example.org/one,example.org/two,example.org/mixed" || d.Err != nil {
		t.Errorf("shared %% key file: %v %s", got, d.Reason)
	}

	single := writeFile(t, dir, "nearest.conf", "Domain example.com,sub.example.com\nSelector solo\nKeyFile "+dir+"/keys/example.org/default.private\nSubDomains yes\n")
	s = newSigner(t, config.DKIM{OpenDKIMConf: single})
	for from, want := range map[string]string{"a@x.sub.example.com": "sub.example.com", "a@sub.example.com": "sub.example.com", "a@x.example.com": "example.com"} {
		st, d := s.Begin(msgOf("From: " + from + "\r\n\r\n"))
		st.Abort()
		if len(d.Keys) != 1 || d.Keys[0].Domain != want {
			t.Errorf("single-key %s: %+v, want d=%s", from, d.Keys, want)
		}
	}
}
