package dkimcmd

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/inkan-relay/inkan/relay/mailsyntax"
	"github.com/inkan-relay/inkan/relay/signing"
)

// keyOpts are the keygen flags, shared with "rotate next".
type keyOpts struct {
	domain, selector, algo, dir string
	bits                        int
}

func (o *keyOpts) register(fs *flag.FlagSet, defaultDir string) {
	fs.StringVar(&o.domain, "d", "", "signing `domain` (d=), e.g. example.com")
	fs.StringVar(&o.selector, "s", "", "`selector` (s=), e.g. rsa2025")
	fs.StringVar(&o.algo, "a", "rsa", "key `algorithm`: rsa or ed25519 (ed25519 is not verified everywhere yet: pair it with an rsa key)")
	fs.IntVar(&o.bits, "b", 2048, "RSA key size in `bits` (2048, 3072 or 4096)")
	fs.StringVar(&o.dir, "o", defaultDir, "`directory` for the private key file")
}

// validate checks the flags with the rules the configuration applies to
// dkim.keys, so the key it makes always loads.
func (o *keyOpts) validate() error {
	o.domain = strings.ToLower(strings.TrimSuffix(o.domain, "."))
	if o.domain == "" || o.selector == "" {
		return errors.New("-d DOMAIN and -s SELECTOR are required")
	}
	if err := mailsyntax.CheckDomain(o.domain, mailsyntax.SigningDomain); err != nil {
		return fmt.Errorf("-d %q is not a domain name (%v): give the domain of the From addresses, e.g. example.com", o.domain, err)
	}
	if err := mailsyntax.CheckDomain(o.selector, mailsyntax.Selector); err != nil {
		return fmt.Errorf("-s %q is not a valid selector (%v): use letters, digits, '-' and '.', e.g. rsa2025", o.selector, err)
	}
	switch o.algo {
	case "rsa":
		if o.bits < signing.MinRSABits || o.bits > 4096 {
			return fmt.Errorf("-b %d: RSA keys must be 2048 to 4096 bits (2048 is the usual choice)", o.bits)
		}
	case "ed25519":
	default:
		return fmt.Errorf("-a %q: choose rsa or ed25519", o.algo)
	}
	return nil
}

// Keygen runs "inkan dkim keygen -d DOMAIN -s SELECTOR [-a ed25519|rsa]
// [-b 2048] [-o DIR]": it writes DIR/DOMAIN.SELECTOR.key (PKCS#8 PEM, mode
// 0600, never overwriting) and prints the DNS record to publish.
func Keygen(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("inkan dkim keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o keyOpts
	o.register(fs, ".")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: inkan dkim keygen -d DOMAIN -s SELECTOR [-a rsa|ed25519] [-b 2048] [-o DIR]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "inkan dkim keygen: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	path, pub, err := generate(&o)
	if err != nil {
		fmt.Fprintln(stderr, "inkan dkim keygen:", err)
		var ue usageError
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	printKey(stdout, o, path, pub)
	fmt.Fprintf(stdout, "\nThen add the key to the inkan configuration and reload:\n%s", configSnippet(o.domain, o.selector, path))
	return 0
}

// usageError marks bad flags (exit status 2).
type usageError struct{ error }

// generate validates o, creates the key and writes it; it returns the
// absolute path and the public key.
func generate(o *keyOpts) (string, crypto.PublicKey, error) {
	if err := o.validate(); err != nil {
		return "", nil, usageError{err}
	}
	var key crypto.Signer
	var err error
	if o.algo == "rsa" {
		key, err = rsa.GenerateKey(rand.Reader, o.bits)
	} else {
		_, key, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		return "", nil, fmt.Errorf("generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", nil, fmt.Errorf("marshal key: %w", err)
	}
	if err := os.MkdirAll(o.dir, 0o750); err != nil {
		return "", nil, fmt.Errorf("create key directory: %w", err)
	}
	path, err := filepath.Abs(filepath.Join(o.dir, o.domain+"."+o.selector+".key"))
	if err != nil {
		return "", nil, err
	}
	if err := writeExclusive(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
		return "", nil, err
	}
	return path, key.Public(), nil
}

// writeExclusive creates path with mode 0600, refusing to replace a file:
// overwriting a published key would break every signature in flight.
func writeExclusive(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s already exists; refusing to overwrite it (pick a new selector, or delete the file if its key was never published)", path)
	}
	if err != nil {
		return fmt.Errorf("create key file: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write key file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("sync key file: %w", err)
	}
	return f.Close()
}

// printKey prints where the key is and the record to publish.
func printKey(w io.Writer, o keyOpts, path string, pub crypto.PublicKey) {
	alg := signing.Algorithm(pub)
	if k, ok := pub.(*rsa.PublicKey); ok {
		alg += fmt.Sprintf(" (%d-bit)", k.N.BitLen())
	}
	fmt.Fprintf(w, "Private key: %s (PKCS#8 PEM, mode 0600; keep it secret)\n", path)
	fmt.Fprintf(w, "Domain:      %s\n", o.domain)
	fmt.Fprintf(w, "Selector:    %s (the s= tag of signatures; not the s=email service tag)\n", o.selector)
	fmt.Fprintf(w, "Algorithm:   %s\n\n", alg)
	PrintRecord(w, o.domain, o.selector, pub)
}

// PrintRecord prints the DKIM TXT record of pub at selector._domainkey.domain,
// in both forms: one line for a web DNS panel, and BIND zone-file text.
func PrintRecord(w io.Writer, domain, selector string, pub crypto.PublicKey) {
	txt, err := signing.PublicKeyRecord(pub)
	if err != nil {
		fmt.Fprintf(w, "cannot format the public key: %v\n", err)
		return
	}
	name := selector + "._domainkey"
	fmt.Fprintf(w, "Publish this DNS TXT record at %s.%s\n\n", name, domain)
	fmt.Fprintf(w, "For a web DNS panel (name %q in the zone of %s, type TXT), the value on one line:\n%s\n\n", name, domain, txt)
	fmt.Fprintf(w, "In a BIND zone file for %s:\n%s\n", domain, bindTXT(name, txt))
}

// bindTXT formats a TXT record as zone-file text, split into quoted strings
// of at most 255 bytes (a DNS character-string limit), like the .txt file
// opendkim-genkey writes: the tags before p= in the first string.
func bindTXT(name, value string) string {
	var parts []string
	if i := strings.Index(value, "p="); i > 0 {
		parts, value = append(parts, value[:i]), value[i:]
	}
	for len(value) > 250 {
		parts, value = append(parts, value[:250]), value[250:]
	}
	parts = append(parts, value)
	var b strings.Builder
	fmt.Fprintf(&b, "%s\tIN\tTXT\t( ", name)
	for i, p := range parts {
		if i > 0 {
			b.WriteString("\n\t\t")
		}
		b.WriteString(`"` + p + `"`)
	}
	b.WriteString(" )")
	return b.String()
}

func configSnippet(domain, selector, path string) string {
	return fmt.Sprintf("dkim:\n  keys:\n    - domain: %s\n      selector: %s\n      key_file: %s\n", domain, selector, path)
}
