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
	"strconv"
	"strings"

	"github.com/miekg/dns"
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
// half). pub may be nil to check only the record. It recognises the usual
// publishing mistakes: the key split into several TXT records instead of
// several strings of one record, quotes or backslashes stored as part of the
// value, a value cut at 255 characters, a key published at the wrong name,
// and RSA keys shorter than 2048 bits.
func (c *Checker) CheckDKIM(ctx context.Context, domain, selector string, pub crypto.PublicKey) Finding {
	domain = strings.TrimSuffix(domain, ".")
	name := selector + "._domainkey." + domain
	f := Finding{Check: "dkim " + name}
	raw, err := c.txtRaw(ctx, name)
	switch {
	case isTemp(err):
		f.Status, f.Detail = Warn, "could not check: "+err.Error()
		return f
	case errors.Is(err, errNXDomain) || (err == nil && len(raw) == 0):
		f.Status, f.Detail = Fail, "no TXT record: publish the record printed by inkan dns records"
		if at := c.findMisplacedKey(ctx, domain, selector); at != "" {
			f.Detail = fmt.Sprintf("no TXT record here, but a DKIM key is published at %s: the name is wrong (a DNS panel for %s wants the name %s._domainkey, without the domain): move the record", at, domain, selector)
		}
		return f
	case len(raw) > 1:
		f.Status, f.Detail = Fail, fmt.Sprintf("%d TXT records; verifiers need exactly one: delete the others", len(raw))
		if joined, ok := splitAcrossRecords(raw); ok {
			f.Detail = fmt.Sprintf("the key is split into %d TXT records; it must be one TXT record made of several strings: replace them with the record below", len(raw))
			f.Publish = zoneTXT(name, joined)
		}
		return f
	}
	value := strings.Join(raw[0], "")
	if problem, fixed := storedSyntax(value); problem != "" {
		f.Status, f.Detail, f.Publish = Fail, problem, zoneTXT(name, fixed)
		return f
	}
	r, err := ParseDKIMRecord(value)
	if err != nil {
		f.Status, f.Detail = Fail, "record does not parse: "+err.Error()
		if len(raw[0]) == 1 && len(value) == 255 {
			f.Detail = "the record is cut at 255 characters (" + err.Error() + "): a TXT string holds at most 255, and the DNS panel dropped the rest: publish the whole value as several strings of at most 255 characters"
		}
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
	bits := 0
	if k, ok := r.PublicKey.(*rsa.PublicKey); ok {
		bits = k.N.BitLen()
	}
	if bits > 0 && bits < 1024 {
		problems = append(problems, fmt.Sprintf("a %d-bit RSA key: verifiers refuse keys under 1024 bits (RFC 8301): make a 2048-bit key with inkan dkim rotate next -d %s -s NEWSELECTOR -a rsa", bits, domain))
	}
	desc := describeKey(r)
	switch {
	case len(problems) > 0:
		f.Status, f.Detail = Fail, strings.Join(problems, "; ")+" ("+desc+")"
	case has(r.Flags, "y"):
		f.Status, f.Detail = Warn, "t=y: the domain says it is testing DKIM, so verifiers may ignore failures ("+desc+"); remove t=y when done"
	case bits > 0 && bits < 2048:
		f.Status, f.Detail = Warn, fmt.Sprintf("a %d-bit RSA key (%s): too weak for today, and some receivers treat it as unsigned: make a 2048-bit key with inkan dkim rotate next -d %s -s NEWSELECTOR -a rsa, publish it, then retire this one", bits, desc, domain)
	case pub != nil:
		f.Status, f.Detail = Pass, "key matches private key ("+desc+")"
	default:
		f.Status, f.Detail = Pass, "record is valid ("+desc+")"
	}
	return f
}

// storedSyntax finds zone-file syntax that a DNS panel stored as part of
// the value: the quotes of a split record, or backslash escapes. It returns
// the problem and the value as it should be.
func storedSyntax(v string) (problem, fixed string) {
	switch {
	case strings.Contains(v, `"`):
		fixed = strings.NewReplacer(`" "`, "", `""`, "", `"`, "").Replace(v)
		return `the value contains quote characters: the quotes of a record split into strings ("..." "...") were stored as text; publish the value without them`, fixed
	case strings.Contains(v, `\`):
		fixed = strings.NewReplacer(`\;`, ";", `"`, "", `\`, "").Replace(v)
		return `the value contains backslashes (\;): escapes copied from a zone file were stored as text; publish the value without them`, fixed
	}
	return "", ""
}

// splitAcrossRecords reports whether several TXT records are one DKIM key
// record cut into pieces (in either order, for two; as returned, for more).
func splitAcrossRecords(raw [][]string) (string, bool) {
	parts := make([]string, len(raw))
	for i, r := range raw {
		parts[i] = strings.Join(r, "")
	}
	orders := [][]string{parts}
	if len(parts) == 2 {
		orders = append(orders, []string{parts[1], parts[0]})
	}
	for _, o := range orders {
		v := strings.Join(o, "")
		if r, err := ParseDKIMRecord(v); err == nil && r.PublicKey != nil {
			return v, true
		}
	}
	return "", false
}

// findMisplacedKey looks for the key record at the names it ends up at by
// mistake: the domain appended twice by a DNS panel, _domainkey left out, or
// the organizational domain's _domainkey for a subdomain's key.
func (c *Checker) findMisplacedKey(ctx context.Context, domain, selector string) string {
	cands := []string{
		selector + "._domainkey." + domain + "." + domain,
		selector + "." + domain,
	}
	if org := orgDomain(domain); org != domain {
		cands = append(cands, selector+"._domainkey."+org)
	}
	for _, n := range cands {
		recs, err := c.txt(ctx, n)
		if err != nil {
			continue
		}
		for _, v := range recs {
			if r, err := ParseDKIMRecord(v); err == nil && r.PublicKey != nil {
				return n
			}
		}
	}
	return ""
}

// CheckADSP reports a record at _adsp._domainkey.DOMAIN: ADSP (RFC 5617) was
// declared historic in 2013 and no receiver reads it. ok is false when there
// is none (nothing to say).
func (c *Checker) CheckADSP(ctx context.Context, domain string) (f Finding, ok bool) {
	name := "_adsp._domainkey." + strings.TrimSuffix(domain, ".")
	recs, err := c.txt(ctx, name)
	if err != nil || len(recs) == 0 {
		return Finding{}, false
	}
	return Finding{Check: "adsp " + name, Status: Warn,
		Detail: fmt.Sprintf("an ADSP record (%q): ADSP was declared historic in 2013 and nothing reads it; delete the TXT record at %s (the DMARC record at _dmarc.%s does its job)", recs[0], name, strings.TrimSuffix(domain, "."))}, true
}

// zoneTXT formats a TXT record in zone-file syntax, split into strings of at
// most 255 characters, as BIND and most DNS panels take it.
func zoneTXT(name, value string) string {
	var parts []string
	for len(value) > 255 {
		parts = append(parts, strconv.Quote(value[:255]))
		value = value[255:]
	}
	parts = append(parts, strconv.Quote(value))
	return dns.Fqdn(name) + " TXT " + strings.Join(parts, " ")
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
