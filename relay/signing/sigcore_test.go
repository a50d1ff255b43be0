package signing

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/test/dkimpy"
)

var canons = []string{"relaxed/relaxed", "simple/simple", "relaxed/simple", "simple/relaxed"}

// Bodies and headers where canonicalizations differ: trailing blank and
// white-space-only lines, white space runs and ends, empty bodies, folded
// and repeated fields, a last line without CRLF. (Not a lone CR, nor white
// space ending an unterminated last line: verifiers disagree on those, and
// the SMTP session never lets them through: it makes every line end CRLF.)
var trickyMessages = []string{
	"From: a@example.com\r\nSubject: x\r\n\r\n",
	"From: a@example.com\r\n\r\n\r\n\r\n",
	"From: a@example.com\r\n\r\n \t \r\n  \r\n",
	"From: a@example.com\r\n\r\nabc",
	"From: a@example.com\r\n\r\n\r\n\r\n  x \t y  \r\n\t\r\n\r\n",
	"From:   a@example.com  \r\nSubject:\tfolded\r\n \tacross  \r\n\t lines \r\nTo: b@example.net\r\nTo: c@example.net\r\n\r\nbody\r\n",
	"FROM: a@example.com\r\nsubject: lower\r\nSubject: upper\r\n\r\n\tleading tab\r\n trailing space \r\n",
	"From: a@example.com\r\nX-Empty:\r\nX-Space: \r\n\r\n" + strings.Repeat("0123456789 ", 700) + "\r\n",
}

func signerFor(t testing.TB, canon string) *Signer {
	dir := t.TempDir()
	return newSigner(t, config.DKIM{
		Keys: []config.DKIMKey{
			{Domain: "example.com", Selector: "rsa1", KeyFile: writeKey(t, dir, "rsa", testRSA(t, 1), 0o600)},
			{Domain: "example.com", Selector: "ed1", KeyFile: writeKey(t, dir, "ed", testEd25519(t, 9), 0o600)},
		},
		Canonicalization: canon,
		SignHeaders:      []string{"From", "To", "Subject", "X-Empty", "X-Space"},
	})
}

// TestSignatureCoreVerifies signs every tricky message with both keys in
// all four canonicalizations and has go-msgauth and dkimpy verify each
// signature: the body hash, header picking (bottom up, oversigned names)
// and the field layout are inkan's own, so independent verifiers judge
// them.
func TestSignatureCoreVerifies(t *testing.T) {
	dir := t.TempDir()
	var files []string
	recs := map[string]string{}
	for _, canon := range canons {
		s := signerFor(t, canon)
		for _, d := range s.Domains() {
			recs[d.Selector+"._domainkey."+d.Name] = d.PublicKeyTXT
		}
		for i, msg := range trickyMessages {
			signed, _ := sign(t, s, msg)
			vs := verify(t, signed, txtFor(s, nil))
			if len(vs) != 2 {
				t.Fatalf("%s #%d: %d signatures", canon, i, len(vs))
			}
			for _, v := range vs {
				if v.Err != nil {
					t.Errorf("%s #%d: go-msgauth: %v\n%q", canon, i, v.Err, signed)
				}
			}
			f := filepath.Join(dir, fmt.Sprintf("%s-%d.eml", strings.ReplaceAll(canon, "/", "-"), i))
			if err := os.WriteFile(f, signed, 0o600); err != nil {
				t.Fatal(err)
			}
			files = append(files, f)
		}
	}
	if !dkimpy.Available(t) {
		return
	}
	res, err := dkimpy.Verify(recs, files)
	if err != nil {
		t.Fatal(err)
	}
	for i, sigs := range res {
		if len(sigs) != 2 {
			t.Errorf("%s: dkimpy saw %d signatures, want 2", files[i], len(sigs))
		}
		for _, r := range sigs {
			if !r.Pass {
				t.Errorf("%s: dkimpy: s=%s: %s", filepath.Base(files[i]), r.Selector, r.Why)
			}
		}
	}
}

// FuzzSignatureCoreVerifies: whatever the header and body (line ends made
// CRLF as the SMTP session makes them) and however the stream is cut into
// writes, go-msgauth verifies both signatures.
func FuzzSignatureCoreVerifies(f *testing.F) {
	for i, m := range trickyMessages {
		h, b, _ := strings.Cut(m, "\r\n\r\n")
		f.Add(h[len("From: a@example.com"):], b, uint8(i), uint8(i))
	}
	signers := make([]*Signer, len(canons))
	for i, c := range canons {
		signers[i] = signerFor(f, c)
	}
	f.Fuzz(func(t *testing.T, extraHeader, body string, cut, canon uint8) {
		extraHeader, body = crlf(extraHeader), crlf(body)
		hdr := "From: a@example.com\r\n"
		if extraHeader != "" {
			// Keep it a header section: each line a field or a continuation.
			for _, l := range strings.Split(strings.TrimSuffix(extraHeader, "\r\n"), "\r\n") {
				if name, _, ok := strings.Cut(l, ":"); !ok || !fieldName(name) {
					l = "X-F: " + l
				}
				hdr += l + "\r\n"
			}
		}
		s := signers[int(canon)%len(signers)]
		msg := hdr + "\r\n" + body
		st, d := s.Begin(msgOf(hdr + "\r\n"))
		if st == nil {
			t.Skipf("unsigned: %s", d.Reason)
		}
		step := 1 + int(cut)
		for b := []byte(msg); len(b) > 0; {
			n := min(len(b), step)
			st.Write(b[:n])
			b = b[n:]
		}
		sigs, err := st.Finish()
		if err != nil {
			t.Fatal(err)
		}
		signed := append(sigs, msg...)
		for _, v := range verify(t, signed, txtFor(s, nil)) {
			if v.Err != nil {
				t.Fatalf("%s: %v\n%q", canons[int(canon)%len(canons)], v.Err, signed)
			}
		}
	})
}

// crlf makes every line end CRLF, as the SMTP session's crlfWriter does.
func crlf(s string) string {
	var b bytes.Buffer
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\r' && i+1 < len(s) && s[i+1] == '\n':
			b.WriteString("\r\n")
			i++
		case c == '\r' || c == '\n':
			b.WriteString("\r\n")
		case c == 0:
			b.WriteByte(' ')
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// FuzzSignatureCoreMatchesGoMsgauth is differential: for the same message,
// key, h= list and canonicalization, the DKIM-Signature field inkan computes
// is byte for byte the one go-msgauth's dkim.Sign (which inkan used before)
// makes: same tags, same folding, and, RSA signatures being deterministic,
// the same b=.
func FuzzSignatureCoreMatchesGoMsgauth(f *testing.F) {
	for i, m := range trickyMessages {
		h, b, _ := strings.Cut(m, "\r\n\r\n")
		f.Add(h[len("From: a@example.com"):], b, uint8(i))
	}
	dir := f.TempDir()
	key := testRSA(f, 1)
	signers := make([]*Signer, len(canons))
	for i, c := range canons {
		signers[i] = newSigner(f, config.DKIM{
			Keys:             []config.DKIMKey{{Domain: "example.com", Selector: "rsa1", KeyFile: writeKey(f, dir, fmt.Sprintf("k%d", i), key, 0o600)}},
			Canonicalization: c,
		})
	}
	f.Fuzz(func(t *testing.T, extraHeader, body string, canon uint8) {
		hdr := "From: a@example.com\r\n"
		for _, l := range strings.Split(strings.TrimSuffix(crlf(extraHeader), "\r\n"), "\r\n") {
			if l == "" {
				continue
			}
			// Field lines only, each "Name: value": go-msgauth's reader and
			// mailsyntax part ways on lines that are neither field nor
			// continuation, which the SMTP session never lets through.
			name, _, ok := strings.Cut(l, ":")
			if !ok || !fieldName(name) {
				l = "X-F: " + l
			}
			hdr += l + "\r\n"
		}
		msg := hdr + "\r\n" + crlf(body)
		s := signers[int(canon)%len(signers)]
		hc, bc := s.headerCan, s.bodyCan
		for range 3 { // the two clocks may straddle a second
			st, d := s.Begin(msgOf(hdr + "\r\n"))
			if st == nil {
				t.Fatalf("unsigned: %s", d.Reason)
			}
			if len(strings.Join(st.headers, ":")) > foldH {
				t.Skip("h= longer than foldH is folded; go-msgauth never folds it")
			}
			st.Write([]byte(msg))
			ours, err := st.Finish()
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := dkim.Sign(&out, strings.NewReader(msg), &dkim.SignOptions{
				Domain: "example.com", Selector: "rsa1", Signer: key,
				HeaderCanonicalization: hc, BodyCanonicalization: bc, HeaderKeys: st.headers,
			}); err != nil {
				t.Fatal(err)
			}
			theirs := out.String()[:out.Len()-len(msg)]
			if string(ours) == theirs {
				return
			}
			if tagOf(string(ours), "t") == tagOf(theirs, "t") {
				t.Fatalf("%s/%s: inkan's field differs from go-msgauth's\ninkan:\n%q\ngo-msgauth:\n%q", hc, bc, ours, theirs)
			}
		}
		t.Fatal("the clock moved three times")
	})
}

func tagOf(field, name string) string {
	for _, kv := range strings.Split(strings.ReplaceAll(strings.ReplaceAll(field, "\r\n", ""), " ", ""), ";") {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}

// TestManyInstancesBoundedAndFolded (review finding): h= lists at most
// maxSignedInstances of a name, however many the header holds, picking
// stays linear, and an h= longer than foldH is folded at its colons so that
// no line of the field passes RFC 5322's 998 octets; go-msgauth and dkimpy
// verify the result.
func TestManyInstancesBoundedAndFolded(t *testing.T) {
	names := []string{"From", "To", "Cc", "Subject", "Keywords", "Comments", "X-A", "X-B", "X-C", "X-D", "X-E", "X-F", "X-G", "X-H", "X-I", "X-J"}
	dir := t.TempDir()
	s := newSigner(t, config.DKIM{
		Keys: []config.DKIMKey{
			{Domain: "example.com", Selector: "rsa1", KeyFile: writeKey(t, dir, "rsa", testRSA(t, 1), 0o600)},
			{Domain: "example.com", Selector: "ed1", KeyFile: writeKey(t, dir, "ed", testEd25519(t, 9), 0o600)},
		},
		SignHeaders: names, OversignHeaders: []string{"-"},
	})
	var hdr strings.Builder
	hdr.WriteString("From: a@example.com\r\n")
	for i := range 20000 {
		fmt.Fprintf(&hdr, "Cc: c%d@example.net\r\n", i)
	}
	for i := range 20 {
		for _, n := range names[3:] {
			fmt.Fprintf(&hdr, "%s: v%d\r\n", n, i)
		}
	}
	msg := hdr.String() + "\r\nbody\r\n"
	signed, _ := sign(t, s, msg)
	sigs := string(signed[:len(signed)-len(msg)])
	for _, f := range strings.SplitAfter(sigs, "\r\nDKIM-Signature:") {
		cc := 0
		for _, n := range strings.Split(tagOf(f, "h"), ":") {
			if n == "Cc" {
				cc++
			}
		}
		if cc != maxSignedInstances {
			t.Errorf("h= lists Cc %d times, want %d", cc, maxSignedInstances)
		}
	}
	for _, l := range strings.Split(sigs, "\r\n") {
		if len(l) > 998 {
			t.Errorf("a line of %d octets: %.60s...", len(l), l)
		}
	}
	if !strings.Contains(sigs, ":\r\n ") {
		t.Error("the long h= is not folded")
	}
	for _, v := range verify(t, signed, txtFor(s, nil)) {
		if v.Err != nil {
			t.Errorf("go-msgauth: %v", v.Err)
		}
	}
	if dkimpy.Available(t) {
		f := filepath.Join(t.TempDir(), "many.eml")
		os.WriteFile(f, signed, 0o600)
		recs := map[string]string{}
		for _, d := range s.Domains() {
			recs[d.Selector+"._domainkey."+d.Name] = d.PublicKeyTXT
		}
		res, err := dkimpy.Verify(recs, []string{f})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res[0] {
			if !r.Pass {
				t.Errorf("dkimpy: s=%s: %s", r.Selector, r.Why)
			}
		}
	}
}

// TestLongBlankRunNotHeld (review finding): a body of a million empty lines
// before its text is hashed as it streams; the canonicalizer's buffer stays
// small.
func TestLongBlankRunNotHeld(t *testing.T) {
	for _, relaxed := range []bool{false, true} {
		b := newBodyHasher(relaxed)
		b.Write(bytes.Repeat([]byte("\r\n"), 1<<20))
		b.Write([]byte("x\r\n"))
		if cap(b.out) > 8192 {
			t.Errorf("relaxed=%v: buffer grew to %d bytes", relaxed, cap(b.out))
		}
		want := sha256.Sum256(append(bytes.Repeat([]byte("\r\n"), 1<<20), "x\r\n"...))
		if got := b.Sum(); !bytes.Equal(got, want[:]) {
			t.Errorf("relaxed=%v: wrong body hash", relaxed)
		}
	}
}

// TestUnsignableHeaderRefused (review finding): Sign's callers other than
// the SMTP session could pass a header line that is not a field, or a lone
// CR or LF; verifiers would read those differently, so Finish fails instead
// of returning a signature that cannot verify.
func TestUnsignableHeaderRefused(t *testing.T) {
	s := signerFor(t, "relaxed/relaxed")
	for _, msg := range []string{
		"From: a@example.com\r\nSubject : sneaky\r\n\r\nbody\r\n",
		"From: a@example.com\r\nnot a field\r\n\r\nbody\r\n",
		"From: a@example.com\r\nSubject: x\r",
		"From: a@example.com\nSubject: x\n\nbody\n",
	} {
		hdr, _, _ := strings.Cut(msg, "\r\n\r\n")
		st, d := s.Begin(msgOf(hdr + "\r\n\r\n"))
		if st == nil {
			t.Fatalf("%q: %s", msg, d.Reason)
		}
		st.Write([]byte(msg))
		if sigs, err := st.Finish(); err == nil {
			t.Errorf("%q: signed:\n%s", msg, sigs)
		}
	}
}

// fieldName is RFC 5322's field-name: printable ASCII but ':', no white
// space. Fuzzed lines that are not fields are made values of X-F fields: the
// SMTP session ends the header before such a line, and Finish refuses it.
func fieldName(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return s != ""
}
