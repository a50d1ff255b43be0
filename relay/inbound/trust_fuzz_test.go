package inbound

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/inkan-relay/inkan/auth"
	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/relay/mailsyntax"
	"github.com/inkan-relay/inkan/relay/signing"
)

// FuzzPolicyAndSigner drives the sender policy and the signer with the same
// header sections, the way Data does (readHeader, one parse, authorOf,
// Signer.Begin), and checks the promise in inkan's name: every signature's
// d= is a domain the policy approved for that user, or for that network.
func FuzzPolicyAndSigner(f *testing.F) {
	for _, s := range []string{
		"From: Alice <alice@example.com>\r\nSubject: x\r\n\r\n",
		"From: =?x-unknown?q?a?= \"<bob@other.example>\" <alice@example.com>\r\n\r\n",
		"From: alice@example.com\r\nSender: bob@other.example\r\n\r\n",
		"From: bob@other.example\r\nFrom: alice@example.com\r\n\r\n",
		"From: (x) <@other.example:alice@example.com>, news@example.org\r\n\r\n",
		"Subject: no from\r\n\r\n",
		"From: \"x\r\n <bob@other.example>\" <alice@example.com>\r\n\r\n",
		"From: a@example.org (<bob@other.example>)\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Add([]byte{0xff, 0, 17}) // "From: alice@example.com"
	f.Add([]byte{0xfe, 4, 0})  // "From: Alice <alice@example.com>"
	dir := f.TempDir()
	var keys []config.DKIMKey
	for i, d := range []string{"example.com", "example.org", "other.example", "lan.example"} {
		keys = append(keys, config.DKIMKey{Domain: d, Selector: "s", KeyFile: fuzzKey(f, dir, byte(i))})
	}
	signer, err := signing.New(config.DKIM{Keys: keys}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		f.Fatal(err)
	}
	policy, err := auth.NewPolicy(map[string][]string{"alice": {"alice@example.com", "@example.org"}})
	if err != nil {
		f.Fatal(err)
	}
	lanSenders, _ := auth.NewSenderSet([]string{"@lan.example"})
	lan := &auth.Network{Name: "lan", Senders: lanSenders}
	who := []struct {
		user     string
		net      *auth.Network
		envFrom  string
		approved func(mailsyntax.Address) bool
	}{
		{"alice", nil, "alice@example.com", func(a mailsyntax.Address) bool { return policy.UserAllows("alice", a.String()) }},
		{"", lan, "printer@lan.example", func(a mailsyntax.Address) bool { return lanSenders.Allows(a.String()) }},
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		hdr, _, err := readHeader(bufio.NewReader(bytes.NewReader(headerFromInput(raw))), 64<<10)
		if err != nil {
			return
		}
		h := mailsyntax.ParseHeader(hdr)
		for _, w := range who {
			author, _, err := authorOf(h, w.envFrom, w.user, w.net, policy)
			if err != nil {
				continue // refused: nothing is signed
			}
			st, d := signer.Begin(signing.Message{Header: h, Author: author})
			if st == nil {
				continue
			}
			// Whatever the session reads as a header, the signer can sign:
			// no accepted message is ever held back as unsignable.
			st.Write(hdr)
			if _, err := st.Finish(); err != nil {
				t.Fatalf("%q: the session reads it, the signer refuses it: %v", hdr, err)
			}
			if !w.approved(author) {
				t.Fatalf("%q: author %s not approved for %s%v but signed", hdr, author, w.user, w.net)
			}
			for _, k := range d.Keys {
				if k.Domain != mailsyntax.NormDomain(author.Domain) {
					t.Fatalf("%q: d=%s signed for author %s", hdr, k.Domain, author)
				}
			}
		}
	})
}

// fragments are the pieces header attacks are made of; an input that
// starts with 0xff is read as a list of them (one byte each), so the fuzzer
// combines encoded words, quoted strings, comments, groups and second
// fields in a few steps instead of having to spell them.
var fragments = []string{
	"From: ", "Sender: ", "Resent-From: ", "from:", "\r\n", "\r\n ", " ", ",", ":", ";", "<", ">", "\"", "(", ")", "@", ".",
	"alice@example.com", "<alice@example.com>", "bob@other.example", "<bob@other.example>", "\"<bob@other.example>\"",
	"news@example.org", "printer@lan.example", "=?x-unknown?q?a?=", "=?utf-8?q?=3Cbob=40other.example=3E?=",
	"=?utf-8?b?PGJvYkBvdGhlci5leGFtcGxlPg==?=", "(bob@other.example)", "\\", "other.example", "example.com",
	"group:", "undisclosed:;", "\xfc", "\t", "Subject: x", "[127.0.0.1]", "@other.example:",
}

// displays and authors build "From: display... author" lines from an input
// that starts with 0xfe: each byte picks a display-name piece, the last one
// the address, which is how display names are made to hide addresses.
var (
	displays = []string{
		"=?x-unknown?q?a?=", "\"<bob@other.example>\"", "(<bob@other.example>)", "=?utf-8?q?=3Cbob=40other.example=3E?=",
		"Alice", "\"Alice\"", "bob@other.example", "<bob@other.example>",
	}
	authors = []string{"<alice@example.com>", "alice@example.com", "<news@example.org>", "<printer@lan.example>"}
)

func headerFromInput(raw []byte) []byte {
	if len(raw) > 1 && raw[0] == 0xfe {
		b := []byte("From:")
		for _, c := range raw[1 : len(raw)-1] {
			b = append(append(b, ' '), displays[int(c)%len(displays)]...)
		}
		return append(append(append(b, ' '), authors[int(raw[len(raw)-1])%len(authors)]...), "\r\n\r\n"...)
	}
	if len(raw) == 0 || raw[0] != 0xff {
		return raw
	}
	var b []byte
	for _, c := range raw[1:] {
		b = append(b, fragments[int(c)%len(fragments)]...)
	}
	return append(b, "\r\n\r\n"...)
}

func fuzzKey(f *testing.F, dir string, seed byte) string {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed + 1}, 32))
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	p := filepath.Join(dir, string('a'+rune(seed))+".key")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		f.Fatal(err)
	}
	return p
}
