package signing

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// MinRSABits is the smallest RSA key inkan signs with (RFC 8301 allows 1024,
// but receivers increasingly treat such signatures as absent).
const MinRSABits = 2048

// Algorithm returns the DKIM a= value for a key: "rsa-sha256" or
// "ed25519-sha256", or "" for other key types.
func Algorithm(pub crypto.PublicKey) string {
	switch pub.(type) {
	case *rsa.PublicKey:
		return "rsa-sha256"
	case ed25519.PublicKey:
		return "ed25519-sha256"
	}
	return ""
}

// PublicKeyRecord returns the DNS TXT value that publishes pub, e.g.
// "v=DKIM1; k=rsa; p=MIIB...". It never adds an h= tag: h=sha256 only
// restricts what verifiers accept and old tools add it wrongly.
func PublicKeyRecord(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			return "", fmt.Errorf("marshal rsa public key: %w", err)
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		// RFC 8463: the raw 32-byte key, no ASN.1 wrapping.
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(k), nil
	}
	return "", fmt.Errorf("unsupported public key type %T", pub)
}

// KeyFileError is a private key file inkan refuses to use.
type KeyFileError struct {
	File    string
	Problem string
	Fix     string
	Err     error
}

func (e *KeyFileError) Error() string {
	s := e.File + ": " + e.Problem
	if e.Fix != "" {
		s += " (fix: " + e.Fix + ")"
	}
	return s
}

func (e *KeyFileError) Unwrap() error { return e.Err }

// LoadPrivateKey reads a DKIM private key file after checking its mode: a
// file anyone may read is refused; a group-readable one is accepted with a
// warning (it is fine when the group exists only for inkan). RSA keys shorter
// than MinRSABits are refused.
func LoadPrivateKey(path string) (crypto.Signer, []string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, nil, keyIOError(path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, &KeyFileError{File: path, Problem: "not a regular file", Fix: "point key_file at the PEM file itself"}
	}
	warnings, err := checkKeyMode(path, fi.Mode().Perm())
	if err != nil {
		return nil, nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, keyIOError(path, err)
	}
	key, err := ParsePrivateKey(data)
	if err != nil {
		return nil, nil, keyParseError(path, err)
	}
	return key, warnings, nil
}

// checkKeyMode refuses world-readable or world-writable keys and warns about
// group access.
func checkKeyMode(path string, perm fs.FileMode) ([]string, error) {
	fix := "chmod 600 " + path + " (or 640 with a dedicated group)"
	if perm&0o006 != 0 {
		return nil, &KeyFileError{File: path, Problem: fmt.Sprintf("private key is accessible by every user (mode %04o)", perm), Fix: fix}
	}
	if perm&0o060 != 0 {
		return []string{fmt.Sprintf("%s: private key is group-accessible (mode %04o); fine if the group is only for inkan, otherwise %s", path, perm, "chmod 600 "+path)}, nil
	}
	return nil, nil
}

func keyIOError(path string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &KeyFileError{File: path, Problem: "no such key file", Fix: "create it with: inkan dkim keygen -d DOMAIN -s SELECTOR", Err: err}
	case errors.Is(err, fs.ErrPermission):
		return &KeyFileError{File: path, Problem: "permission denied", Fix: "make the key readable by the user inkan runs as (chown inkan " + path + ")", Err: err}
	}
	return &KeyFileError{File: path, Problem: err.Error(), Err: err}
}

func keyParseError(path string, err error) error {
	var ke *KeyFileError
	if errors.As(err, &ke) {
		ke.File = path
		return ke
	}
	return &KeyFileError{File: path, Problem: err.Error(), Fix: "use a PEM private key (PKCS#8 or PKCS#1), e.g. from inkan dkim keygen", Err: err}
}

// ParsePrivateKey accepts the formats OpenDKIM and common tools write: PEM
// "PRIVATE KEY" (PKCS#8, RSA or Ed25519) and "RSA PRIVATE KEY" (PKCS#1); the
// same DER as base64 without PEM armour (OpenDKIM's inline KeyTable form);
// raw DER; and a base64 Ed25519 seed (32 bytes) or seed+public key (64
// bytes), as rspamd and dkimpy keep them.
func ParsePrivateKey(data []byte) (crypto.Signer, error) {
	rest := data
	sawPEM := false
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		sawPEM = true
		switch block.Type {
		case "PRIVATE KEY":
			return checkKey(x509.ParsePKCS8PrivateKey(block.Bytes))
		case "RSA PRIVATE KEY":
			if _, enc := block.Headers["Proc-Type"]; enc {
				return nil, errEncrypted
			}
			k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
			return checkKey(k, err)
		case "ENCRYPTED PRIVATE KEY":
			return nil, errEncrypted
		case "EC PRIVATE KEY":
			return nil, errors.New("ECDSA keys cannot sign DKIM mail; use RSA or Ed25519")
		case "OPENSSH PRIVATE KEY":
			return nil, &KeyFileError{Problem: "OpenSSH key format is not supported",
				Fix: "convert it with ssh-keygen -p -m PKCS8 -f FILE, or generate a key with inkan dkim keygen"}
		}
	}
	if sawPEM {
		return nil, errors.New("no PRIVATE KEY block in PEM file")
	}
	text := bytes.TrimSpace(data)
	if strings.HasPrefix(string(text), "-----BEGIN") {
		// One-line PEM (a KeyTable cannot hold newlines): drop the armour.
		s := string(text)
		if i := strings.Index(s[5:], "-----"); i >= 0 {
			s = s[5+i+5:]
		}
		if i := strings.Index(s, "-----END"); i >= 0 {
			s = s[:i]
		}
		text = []byte(s)
	}
	if der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(string(text)), "")); err == nil && len(der) > 0 {
		return parseDER(der)
	}
	return parseDER(data)
}

var errEncrypted = &KeyFileError{Problem: "encrypted private keys are not supported (inkan starts unattended)",
	Fix: "decrypt it: openssl pkey -in KEY -out KEY.new && chmod 600 KEY.new"}

func parseDER(der []byte) (crypto.Signer, error) {
	switch len(der) {
	case ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(der), nil
	case ed25519.PrivateKeySize:
		k := ed25519.NewKeyFromSeed(der[:ed25519.SeedSize])
		if !bytes.Equal(k[ed25519.SeedSize:], der[ed25519.SeedSize:]) {
			return nil, errors.New("64-byte Ed25519 key: the public half does not match the seed")
		}
		return k, nil
	}
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		return checkKey(k, nil)
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return checkKey(k, nil)
	}
	return nil, errors.New("not a private key in a known format")
}

// checkKey narrows a parsed key to the types DKIM can use.
func checkKey(k any, err error) (crypto.Signer, error) {
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	switch k := k.(type) {
	case *rsa.PrivateKey:
		if bits := k.N.BitLen(); bits < MinRSABits {
			return nil, &KeyFileError{Problem: fmt.Sprintf("%d-bit RSA keys are refused", bits),
				Fix: "generate a 2048-bit key with inkan dkim keygen"}
		}
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	case *ecdsa.PrivateKey:
		return nil, errors.New("ECDSA keys cannot sign DKIM mail; use RSA or Ed25519")
	}
	return nil, fmt.Errorf("unsupported private key type %T", k)
}
