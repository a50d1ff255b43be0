package signing

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/inkan-relay/inkan/config"
)

func TestSignVerify(t *testing.T) {
	dir := t.TempDir()
	rsaFile := writeKey(t, dir, "rsa.key", testRSA(t, 1), 0o600)
	edFile := writeKey(t, dir, "ed.key", testEd25519(t, 1), 0o600)
	tests := []struct {
		name  string
		keys  []config.DKIMKey
		algos []string
	}{
		{"rsa", []config.DKIMKey{{Domain: "example.com", Selector: "rsa1", KeyFile: rsaFile}}, []string{"rsa-sha256"}},
		{"ed25519", []config.DKIMKey{{Domain: "example.com", Selector: "ed1", KeyFile: edFile}}, []string{"ed25519-sha256"}},
		{"dual", []config.DKIMKey{
			{Domain: "example.com", Selector: "rsa1", KeyFile: rsaFile},
			{Domain: "Example.COM", Selector: "ed1", KeyFile: edFile},
		}, []string{"rsa-sha256", "ed25519-sha256"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSigner(t, config.DKIM{Keys: tt.keys})
			before := counterValue(t, signaturesTotal.WithLabelValues("example.com", tt.algos[0]))
			signed, d := sign(t, s, testMsg)
			if signed == nil || len(d.Keys) != len(tt.algos) || d.Unsigned != "" || d.Err != nil {
				t.Fatalf("decision %+v", d)
			}
			for i, k := range d.Keys {
				if k.Domain != "example.com" || k.Algorithm != tt.algos[i] {
					t.Errorf("key %d: %+v", i, k)
				}
			}
			vs := verify(t, signed, txtFor(s, nil))
			if len(vs) != len(tt.algos) {
				t.Fatalf("%d verifications, want %d", len(vs), len(tt.algos))
			}
			for _, v := range vs {
				if v.Err != nil || v.Domain != "example.com" {
					t.Errorf("verification %+v", v)
				}
			}
			if got := counterValue(t, signaturesTotal.WithLabelValues("example.com", tt.algos[0])); got != before+1 {
				t.Errorf("signatures counter %v -> %v", before, got)
			}
			if !strings.HasPrefix(d.String(), "signed d=example.com") || !strings.Contains(d.Reason, `dkim.keys[0] sender pattern "@example.com"`) {
				t.Errorf("decision text %q / %q", d.String(), d.Reason)
			}
		})
	}
}

// TestRFC8463 checks the Ed25519 example of RFC 8463 appendix A: the RFC's
// signed message verifies, and signing the same message with the RFC key and
// the same header list gives the RFC's body hash and a signature its public
// key verifies. The b= value itself cannot be compared: go-msgauth stamps t=
// from its own clock and orders tags differently, and both are hashed.
func TestRFC8463(t *testing.T) {
	const (
		seed   = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A="
		record = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
		bh     = "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8="
	)
	msg := strings.ReplaceAll(`From: Joe SixPack <joe@football.example.com>
To: Suzie Q <suzie@shopping.example.net>
Subject: Is dinner ready?
Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)
Message-ID: <20030712040037.46341.5F8J@football.example.com>

Hi.

We lost the game.  Are you hungry yet?

Joe.`, "\n", "\r\n")
	rfcSig := strings.ReplaceAll(`DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;
 d=football.example.com; i=@football.example.com;
 q=dns/txt; s=brisbane; t=1528637909; h=from : to :
 subject : date : message-id : from : subject : date;
 bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;
 b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus
 Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==
`, "\n", "\r\n")
	lookup := func(name string) ([]string, error) {
		if name == "brisbane._domainkey.football.example.com" {
			return []string{record}, nil
		}
		return nil, errors.New("no such record")
	}
	vs := verify(t, []byte(rfcSig+msg), lookup)
	if len(vs) != 1 || vs[0].Err != nil || vs[0].Time.Unix() != 1528637909 {
		t.Fatalf("RFC 8463 message: %+v", vs[0])
	}

	raw, _ := base64.StdEncoding.DecodeString(seed)
	dir := t.TempDir()
	keyFile := writeFile(t, dir, "brisbane.key", seed) // a bare base64 seed, as rspamd stores it
	s := newSigner(t, config.DKIM{
		Keys:             []config.DKIMKey{{Domain: "football.example.com", Selector: "brisbane", KeyFile: keyFile}},
		Canonicalization: "relaxed/relaxed",
		SignHeaders:      []string{"From", "To", "Subject", "Date", "Message-ID"},
		OversignHeaders:  []string{"From", "Subject", "Date"},
	})
	if got := s.Domains()[0].PublicKeyTXT; got != record {
		t.Errorf("public key record %q, want %q (seed %x)", got, record, raw)
	}
	signed, _ := sign(t, s, msg)
	sig := string(signed[:bytes.Index(signed, []byte("From: Joe"))])
	if !strings.Contains(sig, "bh="+bh+";") {
		t.Errorf("body hash differs from RFC 8463: %s", sig)
	}
	if h := tag(t, sig, "h"); h != "From:To:Subject:Date:Message-ID:From:Subject:Date" {
		t.Errorf("h=%s", h)
	}
	if vs := verify(t, signed, lookup); vs[0].Err != nil {
		t.Errorf("our signature with the RFC key: %v", vs[0].Err)
	}
}

// tag extracts a tag value from a DKIM-Signature field, unfolded.
func tag(t *testing.T, sig, name string) string {
	t.Helper()
	m := regexp.MustCompile(`[ ;]` + name + `=([^;]*)`).FindStringSubmatch(strings.ReplaceAll(sig, "\r\n ", ""))
	if m == nil {
		t.Fatalf("no %s= in %q", name, sig)
	}
	return strings.Join(strings.Fields(m[1]), "")
}

// TestRFC6376Canonicalization runs the example of RFC 6376 §3.4.6 through
// go-msgauth: the body hashes equal those of the RFC's canonical forms, and
// a relaxed signature survives exactly the rewriting relaxed allows. The
// RFC writes "B : Y" with the obsolete white space before the colon; inkan
// reads such a line as body text (field names follow RFC 5322, as the SMTP
// reader's do), so here it is "B: Y", the rest of the example unchanged.
func TestRFC6376Canonicalization(t *testing.T) {
	const (
		header = "From: x@example.com\r\nA: X\r\nB: Y\t\r\n\tZ  \r\n\r\n"
		body   = " C \r\nD \t E\r\n\r\n\r\n"
		// The same message as the RFC's relaxed canonical forms produce it.
		relaxedForm = "from:x@example.com\r\na:X\r\nb:Y Z\r\n\r\n C\r\nD E\r\n"
	)
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return base64.StdEncoding.EncodeToString(h[:]) }
	key := writeKey(t, t.TempDir(), "k", testEd25519(t, 2), 0o600)
	for _, tt := range []struct{ canon, bodyForm string }{
		{"relaxed/relaxed", " C\r\nD E\r\n"},
		{"simple/simple", " C \r\nD \t E\r\n"},
	} {
		s := newSigner(t, config.DKIM{
			Keys:             []config.DKIMKey{{Domain: "example.com", Selector: "s", KeyFile: key}},
			Canonicalization: tt.canon, SignHeaders: []string{"A", "B"}, OversignHeaders: []string{"-"},
		})
		signed, _ := sign(t, s, header+body)
		sig := string(signed[:bytes.Index(signed, []byte("From: x"))])
		if got := tag(t, sig, "bh"); got != sum(tt.bodyForm) {
			t.Errorf("%s: bh=%s, want sha256 of %q", tt.canon, got, tt.bodyForm)
		}
		if tag(t, sig, "h") != "From:A:B" || tag(t, sig, "c") != tt.canon {
			t.Errorf("%s: %s", tt.canon, sig)
		}
		lookup := txtFor(s, nil)
		if v := verify(t, signed, lookup)[0]; v.Err != nil {
			t.Errorf("%s: original does not verify: %v", tt.canon, v.Err)
		}
		rewritten := verify(t, append([]byte(sig), relaxedForm...), lookup)[0]
		if (rewritten.Err == nil) != (tt.canon == "relaxed/relaxed") {
			t.Errorf("%s: rewritten message verification = %v", tt.canon, rewritten.Err)
		}
	}
}

func TestOversigning(t *testing.T) {
	key := writeKey(t, t.TempDir(), "k", testEd25519(t, 3), 0o600)
	s := newSigner(t, config.DKIM{Keys: []config.DKIMKey{{Domain: "example.com", Selector: "s", KeyFile: key}}})
	msg := "From: a@example.com\r\nTo: b@example.net\r\nTo: c@example.net\r\nReferences: <x@y>\r\n\r\nbody\r\n"
	signed, _ := sign(t, s, msg)
	sig := string(signed[:bytes.Index(signed, []byte("From: a"))])
	// Default set, default oversigning: the author, display and MIME fields
	// once more than present; References etc. only when present.
	want := "From:To:To:References:From:Sender:Reply-To:Subject:Date:Message-ID:To:Cc:MIME-Version:Content-Type:Content-Transfer-Encoding"
	if h := tag(t, sig, "h"); h != want {
		t.Errorf("h=%s\nwant %s", h, want)
	}
	lookup := txtFor(s, nil)
	if v := verify(t, signed, lookup)[0]; v.Err != nil {
		t.Fatal(v.Err)
	}
	// An added From, Subject or To must break the signature.
	for _, extra := range []string{"From: evil@example.org\r\n", "Subject: pay now\r\n", "To: d@example.net\r\n"} {
		tampered := strings.Replace(string(signed), "From: a@example.com\r\n", "From: a@example.com\r\n"+extra, 1)
		if v := verify(t, []byte(tampered), lookup)[0]; v.Err == nil {
			t.Errorf("adding %q did not break the signature", extra)
		}
	}
}

func TestDecisions(t *testing.T) {
	dir := t.TempDir()
	rsaFile := writeKey(t, dir, "rsa.key", testRSA(t, 1), 0o600)
	edFile := writeKey(t, dir, "ed.key", testEd25519(t, 1), 0o600)
	s := newSigner(t, config.DKIM{Keys: []config.DKIMKey{
		{Domain: "example.com", Selector: "rsa1", KeyFile: rsaFile, Subdomains: true},
		{Domain: "example.com", Selector: "ed1", KeyFile: edFile},
		{Domain: "example.org", Selector: "ed1", KeyFile: edFile, Senders: []string{"news@example.org", "*@lists.example.org"}},
	}})
	tests := []struct {
		name, header string
		keys         []string
		unsigned     string
		reason       string
	}{
		{"no from", "To: a@example.com\r\n\r\n", nil, UnsignedNoFrom, "no From header"},
		{"bad from", "From: nobody\r\n\r\n", nil, UnsignedNoFrom, "no From header"},
		{"no rule", "From: alice@other.org\r\n\r\n", nil, UnsignedNoRule, "no rule matches alice@other.org"},
		{"subdomain", "From: a@mail.example.com\r\n\r\n", []string{"example.com/rsa1"}, "", "dkim.keys[0]"},
		{"exact sender", "From: News <News@Example.org>\r\n\r\n", []string{"example.org/ed1"}, "", `"news@example.org"`},
		{"other sender", "From: bob@example.org\r\n\r\n", nil, UnsignedNoRule, "no rule matches"},
		{"glob sender", "From: x@lists.example.org\r\n\r\n", []string{"example.org/ed1"}, "", `"*@lists.example.org"`},
		{"two addresses", "From: a@example.com, b@other.org\r\nSender: a@example.com\r\n\r\n", []string{"example.com/rsa1", "example.com/ed1"}, "", ""},
		{"two fields", "From: b@other.org\r\nFrom: a@example.com\r\n\r\n", nil, UnsignedNoFrom, "no From header"},
		{"folded from", "From: \"Alice\"\r\n <alice@example.com>\r\n\r\n", []string{"example.com/rsa1", "example.com/ed1"}, "", ""},
		{"already signed", "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=rsa1;\r\n\tb=x\r\nDKIM-Signature: v=1; d=Example.com; s=ED1; b=y\r\nFrom: a@example.com\r\n\r\n", nil, UnsignedAlreadySigned, "d=example.com s=rsa1 already signed upstream"},
		{"partly signed", "DKIM-Signature: v=1; d=example.com;\r\n s=rsa1; b=x\r\nFrom: a@example.com\r\n\r\n", []string{"example.com/ed1"}, "", "already signed upstream"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before float64
			if tt.unsigned != "" {
				before = counterValue(t, unsignedTotal.WithLabelValues(tt.unsigned))
			}
			st, d := s.Begin(msgOf(tt.header))
			var got []string
			for _, k := range d.Keys {
				got = append(got, k.Domain+"/"+k.Selector)
			}
			if strings.Join(got, ",") != strings.Join(tt.keys, ",") || d.Unsigned != tt.unsigned || !strings.Contains(d.Reason, tt.reason) {
				t.Errorf("got keys %v unsigned %q reason %q", got, d.Unsigned, d.Reason)
			}
			if (st == nil) != (len(tt.keys) == 0) {
				t.Errorf("stream %v for keys %v", st, tt.keys)
			}
			if st != nil {
				st.Abort()
			} else if after := counterValue(t, unsignedTotal.WithLabelValues(tt.unsigned)); after != before+1 {
				t.Errorf("unsigned{%s} %v -> %v", tt.unsigned, before, after)
			}
		})
	}
}

func TestHeaderOnlyMessage(t *testing.T) {
	key := writeKey(t, t.TempDir(), "k", testEd25519(t, 4), 0o600)
	s := newSigner(t, config.DKIM{Keys: []config.DKIMKey{{Domain: "example.com", Selector: "s", KeyFile: key}}, Expiration: config.Duration(48 * time.Hour)})
	for _, msg := range []string{"From: a@example.com\r\nSubject: x\r\n", "From: a@example.com\r\nSubject: x"} {
		st, _ := s.Begin(msgOf(msg))
		st.Write([]byte(msg))
		sigs, err := st.Finish()
		if err != nil {
			t.Fatalf("%q: %v", msg, err)
		}
		full := string(sigs) + msg
		if !strings.HasSuffix(full, "\r\n") {
			full += "\r\n"
		}
		if v := verify(t, []byte(full+"\r\n"), txtFor(s, nil))[0]; v.Err != nil {
			t.Errorf("%q: %v", msg, v.Err)
		}
		x := tag(t, string(sigs), "x")
		if tt := tag(t, string(sigs), "t"); len(x) != len(tt) || x <= tt {
			t.Errorf("x=%s t=%s", x, tt)
		}
		if _, err := st.Finish(); err == nil {
			t.Error("second Finish succeeded")
		}
	}
}

func TestDisabledAndSkip(t *testing.T) {
	var nilSigner *Signer
	before := counterValue(t, unsignedTotal.WithLabelValues(UnsignedDisabled))
	if st, d := nilSigner.Begin(msgOf("From: a@example.com\r\n\r\n")); st != nil || d.Unsigned != UnsignedDisabled {
		t.Errorf("nil signer: %+v", d)
	}
	s := newSigner(t, config.DKIM{})
	if s.Enabled() || len(s.Warnings()) != 1 || !strings.Contains(s.Explain("a@example.com")[0], "not configured") {
		t.Errorf("empty signer: %v %q", s.Enabled(), s.Warnings())
	}
	if d := s.Skip("route has no_sign"); d.String() != "not signed: route has no_sign" {
		t.Errorf("skip: %+v", d)
	}
	if got := counterValue(t, unsignedTotal.WithLabelValues(UnsignedDisabled)); got != before+2 {
		t.Errorf("disabled counter %v -> %v", before, got)
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	good := writeKey(t, dir, "good.key", testEd25519(t, 5), 0o600)
	weak := writeKey(t, dir, "weak.key", testRSA(t, -1), 0o600)
	open := writeKey(t, dir, "open.key", testEd25519(t, 5), 0o644)
	group := writeKey(t, dir, "group.key", testEd25519(t, 5), 0o640)
	tests := []struct {
		key  config.DKIMKey
		want string
	}{
		{config.DKIMKey{Domain: "example.com", Selector: "s", KeyFile: weak}, "1024-bit RSA keys are refused (fix: generate a 2048-bit key with inkan dkim keygen)"},
		{config.DKIMKey{Domain: "example.com", Selector: "s", KeyFile: open}, "chmod 600 " + open + " (or 640 with a dedicated group)"},
		{config.DKIMKey{Domain: "example.com", Selector: "s", KeyFile: dir + "/missing"}, "no such key file (fix: create it with: inkan dkim keygen"},
		{config.DKIMKey{Domain: "", Selector: "s", KeyFile: good}, "domain is empty"},
		{config.DKIMKey{Domain: "example.com", KeyFile: good}, "selector is empty"},
		{config.DKIMKey{Domain: "example.com", Selector: "s", KeyFile: good, Senders: []string{"@"}}, "names no domain"},
	}
	for _, tt := range tests {
		_, err := New(config.DKIM{Keys: []config.DKIMKey{tt.key}}, quietLogger())
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: got %v, want %q", tt.key, err, tt.want)
		}
	}
	_, err := New(config.DKIM{Keys: []config.DKIMKey{{Domain: "example.com", Selector: "s", KeyFile: good}, {Domain: "example.com", Selector: "S", KeyFile: good}}}, quietLogger())
	if err == nil || !strings.Contains(err.Error(), "already dkim.keys[0]") {
		t.Errorf("duplicate: %v", err)
	}
	if _, err := New(config.DKIM{Canonicalization: "loose"}, quietLogger()); err == nil {
		t.Error("bad canonicalization accepted")
	}
	s := newSigner(t, config.DKIM{Keys: []config.DKIMKey{
		{Domain: "example.com", Selector: "s", KeyFile: group},
		{Domain: "example.com", Selector: "t", KeyFile: good, Senders: []string{"@example.com", "@partner.net"}},
	}})
	w := strings.Join(s.Warnings(), "\n")
	if !strings.Contains(w, "group-accessible (mode 0640)") || !strings.Contains(w, "@partner.net: that signature will not align") {
		t.Errorf("warnings: %s", w)
	}
	if got := s.CheckDomains([]string{"@example.com", "other.org"}); len(got) != 1 || !strings.Contains(got[0], "other.org") {
		t.Errorf("CheckDomains: %q", got)
	}
}

func TestExplain(t *testing.T) {
	key := writeKey(t, t.TempDir(), "k", testEd25519(t, 6), 0o600)
	s := newSigner(t, config.DKIM{Keys: []config.DKIMKey{{Domain: "example.com", Selector: "ed1", KeyFile: key, Senders: []string{"@example.com", "@other.org"}}}})
	got := strings.Join(s.Explain("Alice <alice@example.com>"), "\n")
	if !strings.Contains(got, `sign d=example.com s=ed1 (ed25519-sha256) for alice@example.com: dkim.keys[0] sender pattern "@example.com"`) {
		t.Errorf("explain: %s", got)
	}
	if got := strings.Join(s.Explain("bob@other.org"), "\n"); !strings.Contains(got, "does not align") {
		t.Errorf("explain other: %s", got)
	}
	got = strings.Join(s.Explain("x@nowhere.net"), "\n")
	if !strings.Contains(got, "no rule matches x@nowhere.net") || !strings.Contains(got, "dkim.keys[0] (d=example.com s=ed1) signs @example.com, @other.org") {
		t.Errorf("explain none: %s", got)
	}
	if got := s.Explain("example.com"); !strings.Contains(got[0], "postmaster@example.com") {
		t.Errorf("explain domain: %q", got)
	}
}

func TestDomains(t *testing.T) {
	dir := t.TempDir()
	s := newSigner(t, config.DKIM{Keys: []config.DKIMKey{
		{Domain: "example.org", Selector: "b", KeyFile: writeKey(t, dir, "b", testEd25519(t, 7), 0o600)},
		{Domain: "example.com", Selector: "a", KeyFile: writeKey(t, dir, "a", testRSA(t, 1), 0o600)},
	}})
	ds := s.Domains()
	if len(ds) != 2 || ds[0].Name != "example.com" || ds[0].Algorithm != "rsa-sha256" || !strings.HasPrefix(ds[0].PublicKeyTXT, "v=DKIM1; k=rsa; p=MIIB") ||
		ds[1].Name != "example.org" || !strings.HasPrefix(ds[1].PublicKeyTXT, "v=DKIM1; k=ed25519; p=") || strings.Contains(ds[0].PublicKeyTXT, "h=") {
		t.Errorf("domains %+v", ds)
	}
}

// A failing signer must not make Write fail (it is teed with the spool).
func TestStreamErrorOnlyAtFinish(t *testing.T) {
	key := writeKey(t, t.TempDir(), "k", testEd25519(t, 8), 0o600)
	s := newSigner(t, config.DKIM{Keys: []config.DKIMKey{{Domain: "example.com", Selector: "s", KeyFile: key}}})
	st, _ := s.Begin(msgOf("From: a@example.com\r\n\r\n"))
	// The key's signer starts failing behind the stream's back.
	k := *st.use[0].k
	k.signer = failingSigner{k.signer}
	st.use[0].k = &k
	if n, err := st.Write(bytes.Repeat([]byte("x"), 70000)); n != 70000 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if _, err := st.Finish(); err == nil {
		t.Fatal("Finish succeeded after the signer was closed")
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

type failingSigner struct{ crypto.Signer }

func (failingSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("the HSM is gone")
}

// A signature counts once the message carrying it is queued: Finish alone
// (the spool then fails and the client gets 451) adds nothing, Count adds
// one per key, once.
func TestSignaturesCountedOnlyWhenQueued(t *testing.T) {
	s := newSigner(t, config.DKIM{Keys: []config.DKIMKey{{Domain: "example.com", Selector: "ed1", KeyFile: writeKey(t, t.TempDir(), "ed.private", testEd25519(t, 31), 0o600)}}})
	c := signaturesTotal.WithLabelValues("example.com", "ed25519-sha256")
	before := counterValue(t, c)
	st, d := s.Begin(msgOf(testMsg[:strings.Index(testMsg, "\r\n\r\n")+4]))
	if st == nil {
		t.Fatalf("not signed: %+v", d)
	}
	st.Write([]byte(testMsg))
	if _, err := st.Finish(); err != nil {
		t.Fatal(err)
	}
	if got := counterValue(t, c); got != before {
		t.Errorf("counted at Finish: %v -> %v", before, got)
	}
	st.Count()
	st.Count()
	if got := counterValue(t, c); got != before+1 {
		t.Errorf("after Count twice: %v -> %v, want +1", before, got)
	}
}
