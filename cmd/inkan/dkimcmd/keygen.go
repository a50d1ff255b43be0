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
	"syscall"

	"github.com/inkan-relay/inkan/cmd/inkan/internal/cli"
	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/queue/safefile"
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
// [-b 2048] [-o DIR]": it writes DIR/DOMAIN.SELECTOR.key (PKCS#8 PEM, never
// overwriting; mode 0600, or 0640 with the folder's group when DIR belongs
// to another group that may read it, as `install -d -m 0750 -o root -g
// inkan DIR` makes it) and prints the DNS record to publish.
func Keygen(args []string, stdout, stderr io.Writer) int { return keygen(nil, args, stdout, stderr) }

const keygenHelp = `Writes DIR/DOMAIN.SELECTOR.key (PKCS#8 PEM, never overwriting an existing
file; mode 0600, or 0640 with the folder's group when DIR belongs to another
group that may read it, e.g. install -d -m 0750 -o root -g inkan DIR) and
prints the DNS TXT record to publish. Keys written to DATA_DIR/dkim are used
without any dkim setting in the configuration.

`

// keygen is Keygen; cfgLoad, when not nil, lets it say how the running
// configuration will pick the key up.
func keygen(cfgLoad func() (*config.Config, error), args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("inkan dkim keygen", flag.ContinueOnError)
	var o keyOpts
	o.register(fs, ".")
	fs.Usage = cli.Usage(fs, "usage: inkan dkim keygen -d DOMAIN -s SELECTOR [-a rsa|ed25519] [-b 2048] [-o DIR]\n\n"+keygenHelp+"Flags:\n")
	if status, ok := cli.Parse(fs, args, stdout, stderr); !ok {
		return status
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "inkan dkim keygen: unexpected argument %q\n", fs.Arg(0))
		return cli.ExitUsage
	}
	path, pub, err := generate(&o)
	if err != nil {
		fmt.Fprintln(stderr, "inkan dkim keygen:", err)
		var ue usageError
		if errors.As(err, &ue) {
			return cli.ExitUsage
		}
		return cli.ExitFail
	}
	printKey(stdout, o, path, pub)
	fmt.Fprintln(stdout)
	nextStep(stdout, cfgLoad, o, path)
	return cli.ExitOK
}

// nextStep says what makes inkan sign with the new key.
func nextStep(w io.Writer, cfgLoad func() (*config.Config, error), o keyOpts, path string) {
	var cfg *config.Config
	if cfgLoad != nil {
		cfg, _ = cfgLoad() // a broken configuration does not stop keygen
	}
	where := "the inkan configuration"
	if cfg != nil {
		if cfg.Source != "" {
			where = cfg.Source
		}
		auto := config.AutoKeysDir(cfg.DataDir)
		configured := cfg.KeysDir == "" && (len(cfg.DKIM.Keys) > 0 || cfg.DKIM.KeyTable != "" || cfg.DKIM.SigningTable != "" || cfg.DKIM.OpenDKIMConf != "")
		if !configured && auto != "" && filepath.Dir(path) == auto {
			fmt.Fprintf(w, "The configuration names no DKIM keys, so inkan signs with every key in %s: publish the record, then restart inkan or send it SIGHUP (systemctl reload inkan) to load this one.\n", auto)
			return
		}
		for _, k := range cfg.DKIM.Keys {
			if k.KeyFile == path {
				fmt.Fprintf(w, "%s already names this file (d=%s s=%s): publish the record, then reload inkan.\n", where, k.Domain, k.Selector)
				return
			}
		}
	}
	fmt.Fprintf(w, "Then add the key to %s and reload inkan:\n%s", where, configSnippet(o.domain, o.selector, path))
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
	shareWithFolderGroup(path)
	return path, key.Public(), nil
}

// writeExclusive creates path with mode 0600, atomically, refusing to
// replace a file: overwriting a published key would break every signature
// in flight.
func writeExclusive(path string, data []byte) error {
	err := safefile.CreateNew(path, data, 0o600)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s already exists; refusing to overwrite it (pick a new selector, or delete the file if its key was never published)", path)
	}
	if err != nil {
		return fmt.Errorf("create key file: %w", err)
	}
	return nil
}

// printKey prints where the key is and the record to publish.
func printKey(w io.Writer, o keyOpts, path string, pub crypto.PublicKey) {
	alg := signing.Algorithm(pub)
	if k, ok := pub.(*rsa.PublicKey); ok {
		alg += fmt.Sprintf(" (%d-bit)", k.N.BitLen())
	}
	mode := "mode 0600"
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm() != 0o600 {
		mode = fmt.Sprintf("mode %04o, readable by the folder's group", fi.Mode().Perm())
	}
	fmt.Fprintf(w, "Private key: %s (PKCS#8 PEM, %s; keep it secret)\n", path, mode)
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

// shareWithFolderGroup gives a new key the group of its folder, readable by
// that group (0640), when the folder belongs to another group than the
// process's and that group may list it: root making keys in a 0750
// root:inkan folder makes keys the service can read, and nobody else.
func shareWithFolderGroup(path string) {
	dir, err := os.Stat(filepath.Dir(path))
	if err != nil {
		return
	}
	st, ok := dir.Sys().(*syscall.Stat_t)
	if !ok || int(st.Gid) == os.Getegid() || dir.Mode().Perm()&0o050 != 0o050 || dir.Mode().Perm()&0o007 != 0 {
		return
	}
	if os.Chown(path, -1, int(st.Gid)) == nil {
		os.Chmod(path, 0o640)
	}
}
