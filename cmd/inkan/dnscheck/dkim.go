package dnscheck

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// DKIMRecord is a parsed DKIM key record (RFC 6376 §3.6.1, RFC 8463).
type DKIMRecord struct {
	KeyType   string           // "rsa" or "ed25519"
	PublicKey crypto.PublicKey // nil when revoked (empty p=)
	Hashes    []string         // h=; empty = any
	Services  []string         // s=; empty = "*"
	Flags     []string         // t=
	Notes     string           // n=
}

// ParseDKIMRecord parses the TXT value published at SELECTOR._domainkey.DOMAIN.
func ParseDKIMRecord(s string) (*DKIMRecord, error) {
	tags, order, err := parseTags(s)
	if err != nil {
		return nil, err
	}
	if v, ok := tags["v"]; ok && (v != "DKIM1" || order[0] != "v") {
		return nil, errors.New(`v= must be "DKIM1" and come first`)
	}
	r := &DKIMRecord{KeyType: "rsa", Notes: tags["n"]}
	if k, ok := tags["k"]; ok {
		r.KeyType = strings.ToLower(k)
	}
	r.Hashes = splitList(tags["h"], ":")
	r.Services = splitList(tags["s"], ":")
	r.Flags = splitList(tags["t"], ":")
	if r.KeyType != "rsa" && r.KeyType != "ed25519" {
		return nil, fmt.Errorf("unknown key type k=%s", r.KeyType)
	}
	p, ok := tags["p"]
	if !ok {
		return nil, errors.New("no p= tag (the public key)")
	}
	p = strings.Join(strings.Fields(p), "")
	if p == "" {
		return r, nil // revoked
	}
	der, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		return nil, fmt.Errorf("p= is not valid base64: %v", err)
	}
	switch r.KeyType {
	case "rsa":
		pub, err := x509.ParsePKIXPublicKey(der)
		if err != nil {
			// Some publish a bare PKCS#1 RSAPublicKey; verifiers accept it.
			if k, err2 := x509.ParsePKCS1PublicKey(der); err2 == nil {
				pub, err = k, nil
			}
		}
		if err != nil {
			return nil, fmt.Errorf("p= is not an RSA public key: %v", err)
		}
		rk, isRSA := pub.(*rsa.PublicKey)
		if !isRSA {
			return nil, fmt.Errorf("p= holds a %T, not an RSA key", pub)
		}
		r.PublicKey = rk
	case "ed25519":
		if len(der) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("ed25519 p= must be 32 bytes, got %d (publish the raw key, not its ASN.1 form)", len(der))
		}
		r.PublicKey = ed25519.PublicKey(der)
	}
	return r, nil
}

// parseTags reads a DKIM-style tag=value list.
func parseTags(s string) (map[string]string, []string, error) {
	tags := map[string]string{}
	var order []string
	for _, part := range strings.Split(s, ";") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return nil, nil, fmt.Errorf("%q is not tag=value", strings.TrimSpace(part))
		}
		if _, dup := tags[k]; dup {
			return nil, nil, fmt.Errorf("tag %s= appears twice", k)
		}
		tags[k] = strings.TrimSpace(v)
		order = append(order, k)
	}
	if len(order) == 0 {
		return nil, nil, errors.New("empty record")
	}
	return tags, order, nil
}

func splitList(s, sep string) []string {
	var out []string
	for _, v := range strings.Split(s, sep) {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, strings.ToLower(v))
		}
	}
	return out
}

func has(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// CheckDKIM looks up SELECTOR._domainkey.DOMAIN and checks that it is one
// valid record for e-mail whose key equals pub (the private key's public
// half). pub may be nil to check only the record.
func (c *Checker) CheckDKIM(ctx context.Context, domain, selector string, pub crypto.PublicKey) Finding {
	name := selector + "._domainkey." + strings.TrimSuffix(domain, ".")
	f := Finding{Check: "dkim " + name}
	recs, err := c.txt(ctx, name)
	switch {
	case isTemp(err):
		f.Status, f.Detail = Warn, "could not check: "+err.Error()
		return f
	case errors.Is(err, errNXDomain) || (err == nil && len(recs) == 0):
		f.Status, f.Detail = Fail, "no TXT record: publish the record printed by inkan dns records"
		return f
	case len(recs) > 1:
		f.Status, f.Detail = Fail, fmt.Sprintf("%d TXT records; verifiers need exactly one: delete the others", len(recs))
		return f
	}
	r, err := ParseDKIMRecord(recs[0])
	if err != nil {
		f.Status, f.Detail = Fail, "record does not parse: "+err.Error()
		return f
	}
	var problems []string
	if r.PublicKey == nil {
		f.Status, f.Detail = Fail, "key is revoked (empty p=)"
		return f
	}
	if len(r.Hashes) > 0 && !has(r.Hashes, "sha256") {
		problems = append(problems, "h= excludes sha256, so every signature fails: remove the h= tag")
	}
	if len(r.Services) > 0 && !has(r.Services, "*") && !has(r.Services, "email") {
		problems = append(problems, "s= does not allow email (s= is the service type, not the selector): remove the s= tag")
	}
	if pub != nil && !samePublicKey(pub, r.PublicKey) {
		problems = append(problems, "published key does not match the private key (an old key, or another selector's?)")
	}
	desc := describeKey(r)
	switch {
	case len(problems) > 0:
		f.Status, f.Detail = Fail, strings.Join(problems, "; ")+" ("+desc+")"
	case has(r.Flags, "y"):
		f.Status, f.Detail = Warn, "t=y: the domain says it is testing DKIM, so verifiers may ignore failures ("+desc+"); remove t=y when done"
	case pub != nil:
		f.Status, f.Detail = Pass, "key matches private key ("+desc+")"
	default:
		f.Status, f.Detail = Pass, "record is valid ("+desc+")"
	}
	return f
}

func describeKey(r *DKIMRecord) string {
	if k, ok := r.PublicKey.(*rsa.PublicKey); ok {
		return fmt.Sprintf("k=rsa, %d-bit", k.N.BitLen())
	}
	return "k=" + r.KeyType
}

func samePublicKey(a, b crypto.PublicKey) bool {
	switch a := a.(type) {
	case *rsa.PublicKey:
		return a.Equal(b)
	case ed25519.PublicKey:
		bk, ok := b.(ed25519.PublicKey)
		return ok && bytes.Equal(a, bk)
	}
	return false
}
