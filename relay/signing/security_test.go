package signing

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/inkan-relay/inkan/config"
)

// percentSetup writes a KeyTable whose "%" entry finds its key under
// dir/keys/<From domain>/, and a SigningTable that sends every address to it.
func percentSetup(t *testing.T) (dir string, s *Signer) {
	t.Helper()
	dir = t.TempDir()
	writeFile(t, dir, "KeyTable", "any %:default:"+dir+"/keys/%/default.private\n")
	writeFile(t, dir, "SigningTable", "* any\n")
	return dir, newSigner(t, config.DKIM{KeyTable: filepath.Join(dir, "KeyTable"), SigningTable: "refile:" + filepath.Join(dir, "SigningTable")})
}

// The From domain replaces "%" in a key path and becomes d=: anything that
// is not a host name (a path, a domain literal) must neither reach the file
// system nor a signature.
func TestPercentDomainMustBeAHostName(t *testing.T) {
	dir, s := percentSetup(t)
	for _, sub := range []string{"evil", "keys/[192.0.2.1]"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
		writeKey(t, dir, sub+"/default.private", testEd25519(t, 20), 0o600)
	}
	// "inkan dkim explain ../evil" asks about postmaster@../evil: the key
	// path would climb out of keys/.
	got := strings.Join(s.Explain("../evil"), "\n")
	if strings.Contains(got, "sign d=") || !strings.Contains(got, "not a host name") {
		t.Errorf("explain ../evil:\n%s", got)
	}
	// A domain literal is a valid From, but no d= domain and no directory name.
	st, d := s.Begin(msgOf("From: a@[192.0.2.1]\r\n\r\n"))
	if st != nil || len(d.Keys) != 0 || !strings.Contains(d.Reason, "not a host name") {
		t.Errorf("From a@[192.0.2.1]: %+v", d)
	}
	st.Abort()
}

// An attacker who may choose the From domain (a trusted network without a
// sender list) must not grow the "%" key cache without bound.
func TestPercentKeyCacheBounded(t *testing.T) {
	_, s := percentSetup(t)
	for i := 0; i < 3000; i++ {
		st, _ := s.Begin(msgOf(fmt.Sprintf("From: a@d%d.example\r\n\r\n", i)))
		st.Abort()
	}
	s.table.mu.Lock()
	n := len(s.table.dynamic)
	s.table.mu.Unlock()
	if n > 1024 {
		t.Errorf("%d cached \"%%\" keys after 3000 From domains, want at most 1024", n)
	}
}

// One "%" key with a fixed path signs d=<any From domain>: the domain label
// of inkan_dkim_signatures_total must not grow with them, and configured
// domains keep their own label.
func TestSignatureDomainLabelsBounded(t *testing.T) {
	dir := t.TempDir()
	key := writeKey(t, dir, "any.private", testEd25519(t, 21), 0o600)
	writeFile(t, dir, "KeyTable", "any %:any:"+key+"\n")
	writeFile(t, dir, "SigningTable", "* any\n")
	native := writeKey(t, dir, "native.private", testEd25519(t, 22), 0o600)
	s := newSigner(t, config.DKIM{KeyTable: filepath.Join(dir, "KeyTable"), SigningTable: "refile:" + filepath.Join(dir, "SigningTable"),
		Keys: []config.DKIMKey{{Domain: "configured.example", Selector: "n", KeyFile: native}}})
	before := seriesCount(signaturesTotal)
	for i := 0; i < 300; i++ {
		if signed, _ := sign(t, s, fmt.Sprintf("From: a@flood%d.example\r\n\r\nhi\r\n", i)); signed == nil {
			t.Fatalf("flood%d.example not signed", i)
		}
	}
	if grown := seriesCount(signaturesTotal) - before; grown > 101 {
		t.Errorf("inkan_dkim_signatures_total grew by %d series for 300 From domains, want at most 101", grown)
	}
	// Both the native key and the "%" key sign configured.example.
	c := signaturesTotal.WithLabelValues("configured.example", "ed25519-sha256")
	was := counterValue(t, c)
	if signed, _ := sign(t, s, "From: a@configured.example\r\n\r\nhi\r\n"); signed == nil {
		t.Fatal("configured.example not signed")
	}
	if got := counterValue(t, c); got != was+2 {
		t.Errorf("configured.example counter %v -> %v: folded into another label", was, got)
	}
}

// A SigningTable line naming a key the KeyTable lacks is a configuration
// error, not a warning: the mail it matches would leave unsigned.
func TestSigningTableNamesMissingKey(t *testing.T) {
	dir := opendkimSetup(t)
	st := filepath.Join(dir, "SigningTable")
	table, _ := os.ReadFile(st)
	writeFile(t, dir, "SigningTable", string(table)+"*@broken.example    nokey\n") // line 8
	_, err := New(config.DKIM{KeyTable: filepath.Join(dir, "KeyTable"), SigningTable: "refile:" + st}, quietLogger())
	if err == nil {
		t.Fatal("New accepted a SigningTable line naming an undefined key")
	}
	var oe *config.OpenDKIMError
	if !errors.As(err, &oe) || oe.File != st || oe.Line != 8 {
		t.Fatalf("error %v: want an OpenDKIMError at %s:8", err, st)
	}
	for _, want := range []string{st + ":8", `"nokey"`, "KeyTable", "fix:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// seriesCount is how many label sets c exports.
func seriesCount(c prometheus.Collector) int {
	ch := make(chan prometheus.Metric)
	go func() { c.Collect(ch); close(ch) }()
	n := 0
	for range ch {
		n++
	}
	return n
}

// New loads "%" keys for the domains the SigningTable names; a pattern
// whose domain part is a path must not make it read outside the key folder.
func TestPercentDomainFromSigningTableMustBeAHostName(t *testing.T) {
	dir := t.TempDir()
	for _, sub := range []string{"evil", "keys/a"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	writeKey(t, dir, "evil/default.private", testEd25519(t, 23), 0o600)
	writeFile(t, dir, "KeyTable", "any %:default:"+dir+"/keys/%/default.private\n")
	writeFile(t, dir, "SigningTable", "x@a/../../evil any\n")
	s := newSigner(t, config.DKIM{KeyTable: filepath.Join(dir, "KeyTable"), SigningTable: filepath.Join(dir, "SigningTable")})
	if d := s.Domains(); len(d) != 0 {
		t.Errorf("published %+v from a path in the SigningTable", d)
	}
	if w := strings.Join(s.Warnings(), "\n"); !strings.Contains(w, `SigningTable `+filepath.Join(dir, "SigningTable")+`:1 "x@a/../../evil": "a/../../evil" is not a host name`) {
		t.Errorf("warnings:\n%s", w)
	}
}
