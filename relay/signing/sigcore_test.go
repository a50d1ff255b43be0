package signing

import (
	"bytes"
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
				if name, _, ok := strings.Cut(l, ":"); !ok || name == "" || strings.ContainsAny(name, " \t") || l[0] > '~' {
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
			if !ok || name == "" || strings.ContainsAny(name, " \t") || l[0] > '~' || l[0] < '!' {
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
