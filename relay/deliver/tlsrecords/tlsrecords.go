// Package tlsrecords parses what a mail domain publishes about transport
// security: the MTA-STS TXT record and policy file (RFC 8461 sections 3.1
// and 3.2) and the TLS-RPT TXT record (RFC 8460 section 3).
//
// Delivery (relay/deliver) and the record checker (`inkan dns check`) share
// these parsers, so a record the checker accepts is exactly the record
// delivery obeys. Domain names inside them are checked by relay/mailsyntax.
//
// Promises: parsers never panic on any input; an error says what is wrong in
// words an operator can act on; a record or policy that parses is complete
// (an enforce or testing policy names at least one MX pattern, max_age is
// within the RFC's bound, a TLS-RPT record has at least one usable rua).
package tlsrecords

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// ErrNoRecord means no TXT string of the record's version was published.
var ErrNoRecord = errors.New("no record published")

// STSRecord is the TXT record at _mta-sts.DOMAIN.
type STSRecord struct {
	ID string // 1 to 32 letters and digits; a new id means a new policy
}

// FindSTSRecord picks the MTA-STS record among the TXT strings of
// _mta-sts.DOMAIN (each TXT record's strings already joined). Strings that do
// not start with "v=STSv1" are ignored; none gives ErrNoRecord, and more
// than one is an error (RFC 8461 section 3.1: then there is no policy).
func FindSTSRecord(txts []string) (STSRecord, error) {
	rec, err := pick(txts, "v=STSv1", "_mta-sts")
	if err != nil {
		return STSRecord{}, err
	}
	return ParseSTSRecord(rec)
}

// ParseSTSRecord parses one "v=STSv1; id=..." string.
func ParseSTSRecord(txt string) (STSRecord, error) {
	fields, err := tagList(txt, "v=STSv1")
	if err != nil {
		return STSRecord{}, err
	}
	var r STSRecord
	for _, f := range fields {
		name, value, _ := strings.Cut(f, "=")
		switch {
		case name == "id":
			if r.ID != "" {
				return STSRecord{}, errors.New("id= appears twice")
			}
			if value == "" || len(value) > 32 || !alnum(value) {
				return STSRecord{}, fmt.Errorf("id=%q is not 1 to 32 letters and digits", value)
			}
			r.ID = value
		case !extName(name) || !extValue(value):
			return STSRecord{}, fmt.Errorf("field %q is not name=value", f)
		}
	}
	if r.ID == "" {
		return STSRecord{}, errors.New("no id= field")
	}
	return r, nil
}

// Mode is an MTA-STS policy mode.
type Mode string

// The policy modes of RFC 8461 section 5.
const (
	Enforce Mode = "enforce" // deliver only over verified TLS to the listed MX hosts
	Testing Mode = "testing" // deliver as usual; report what would have failed
	None    Mode = "none"    // the domain withdrew its policy
)

// MaxPolicySize is the largest policy body read (RFC 8461 section 3.3
// suggests 64 KB).
const MaxPolicySize = 64 << 10

// MaxMaxAge is the largest max_age the RFC allows: about a year.
const MaxMaxAge = 31557600 * time.Second

// STSPolicy is a parsed mta-sts.txt.
type STSPolicy struct {
	Mode   Mode
	MaxAge time.Duration
	MX     []string // lower case, no trailing dot; "*.example.net" matches one label
}

// ParseSTSPolicy parses an mta-sts.txt body: "key: value" lines ended by LF
// or CRLF. Unknown keys are ignored, as the RFC asks; a missing or repeated
// version, mode or max_age is an error, as is an enforce or testing policy
// without mx lines.
func ParseSTSPolicy(body []byte) (*STSPolicy, error) {
	if len(body) > MaxPolicySize {
		return nil, fmt.Errorf("policy is larger than %d bytes", MaxPolicySize)
	}
	p := &STSPolicy{}
	seen := map[string]bool{}
	for n, line := range strings.Split(strings.TrimRight(string(body), "\r\n"), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("line %d: %q is not \"key: value\"", n+1, short(line))
		}
		value = strings.Trim(value, " \t")
		if key == "version" || key == "mode" || key == "max_age" {
			if seen[key] {
				return nil, fmt.Errorf("line %d: %s appears twice", n+1, key)
			}
			seen[key] = true
		}
		switch key {
		case "version":
			if value != "STSv1" {
				return nil, fmt.Errorf("line %d: version %q is not STSv1", n+1, short(value))
			}
		case "mode":
			switch Mode(value) {
			case Enforce, Testing, None:
				p.Mode = Mode(value)
			default:
				return nil, fmt.Errorf("line %d: mode %q is not enforce, testing or none", n+1, short(value))
			}
		case "max_age":
			secs, err := strconv.ParseUint(value, 10, 64)
			if err != nil || len(value) > 10 || time.Duration(secs)*time.Second > MaxMaxAge {
				return nil, fmt.Errorf("line %d: max_age %q is not a number of seconds up to %d", n+1, short(value), int64(MaxMaxAge/time.Second))
			}
			p.MaxAge = time.Duration(secs) * time.Second
		case "mx":
			pat := mailsyntax.NormDomain(value)
			if err := mailsyntax.CheckDomain(strings.TrimPrefix(pat, "*."), mailsyntax.HostName|mailsyntax.Underscore); err != nil {
				return nil, fmt.Errorf("line %d: mx %q is not a host name or *.domain: %v", n+1, short(value), err)
			}
			p.MX = append(p.MX, pat)
		}
	}
	for _, k := range []string{"version", "mode", "max_age"} {
		if !seen[k] {
			return nil, fmt.Errorf("no %s line", k)
		}
	}
	if p.Mode != None && len(p.MX) == 0 {
		return nil, fmt.Errorf("mode %s without any mx line", p.Mode)
	}
	return p, nil
}

// Matches reports whether MX host name host is one the policy allows: an mx
// line equal to it, or "*.rest" where host is one label followed by rest
// (RFC 8461 section 4.1).
func (p *STSPolicy) Matches(host string) bool {
	host = mailsyntax.NormDomain(host)
	for _, pat := range p.MX {
		if rest, ok := strings.CutPrefix(pat, "*."); ok {
			label, parent, found := strings.Cut(host, ".")
			if found && label != "" && parent == rest {
				return true
			}
		} else if pat == host {
			return true
		}
	}
	return false
}

// Lines is the policy as the "policy-string" of a TLS-RPT report: one string
// per field, in the RFC's order.
func (p *STSPolicy) Lines() []string {
	out := []string{"version: STSv1", "mode: " + string(p.Mode)}
	for _, mx := range p.MX {
		out = append(out, "mx: "+mx)
	}
	return append(out, fmt.Sprintf("max_age: %d", int64(p.MaxAge/time.Second)))
}

// TLSRPTRecord is the TXT record at _smtp._tls.DOMAIN.
type TLSRPTRecord struct {
	RUA []*url.URL // mailto: and https: addresses, in order
}

// FindTLSRPTRecord picks the TLS-RPT record among the TXT strings of
// _smtp._tls.DOMAIN; the rules are those of FindSTSRecord.
func FindTLSRPTRecord(txts []string) (TLSRPTRecord, error) {
	rec, err := pick(txts, "v=TLSRPTv1", "_smtp._tls")
	if err != nil {
		return TLSRPTRecord{}, err
	}
	return ParseTLSRPTRecord(rec)
}

// ParseTLSRPTRecord parses one "v=TLSRPTv1; rua=..." string. Addresses with
// another scheme than mailto: or https: are errors: nothing could be sent
// there.
func ParseTLSRPTRecord(txt string) (TLSRPTRecord, error) {
	fields, err := tagList(txt, "v=TLSRPTv1")
	if err != nil {
		return TLSRPTRecord{}, err
	}
	var r TLSRPTRecord
	seen := false
	for _, f := range fields {
		name, value, _ := strings.Cut(f, "=")
		switch {
		case name == "rua":
			if seen {
				return TLSRPTRecord{}, errors.New("rua= appears twice")
			}
			seen = true
			for _, u := range strings.Split(value, ",") {
				ru, err := parseRUA(strings.Trim(u, " \t"))
				if err != nil {
					return TLSRPTRecord{}, err
				}
				r.RUA = append(r.RUA, ru)
			}
		case !extName(name) || !extValue(value):
			return TLSRPTRecord{}, fmt.Errorf("field %q is not name=value", f)
		}
	}
	if !seen {
		return TLSRPTRecord{}, errors.New("no rua= field")
	}
	return r, nil
}

func parseRUA(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("rua %q is not a URI: %v", short(s), err)
	}
	switch strings.ToLower(u.Scheme) {
	case "mailto":
		addr, err := url.PathUnescape(u.Opaque)
		if err != nil || u.Opaque == "" {
			return nil, fmt.Errorf("rua %q names no address", short(s))
		}
		if err := mailsyntax.CheckPath(addr, false); err != nil {
			return nil, fmt.Errorf("rua %q: %q is not an address: %v", short(s), addr, err)
		}
		u.Scheme = "mailto"
	case "https":
		if u.Host == "" {
			return nil, fmt.Errorf("rua %q names no host", short(s))
		}
		u.Scheme = "https"
	default:
		return nil, fmt.Errorf("rua %q: only mailto: and https: are defined", short(s))
	}
	return u, nil
}

// MailtoAddress is the address of a mailto: rua.
func MailtoAddress(u *url.URL) string {
	addr, _ := url.PathUnescape(u.Opaque)
	return addr
}

// pick returns the one string starting with version (followed by ";", space
// or the end).
func pick(txts []string, version, where string) (string, error) {
	var found []string
	for _, t := range txts {
		if rest, ok := strings.CutPrefix(t, version); ok && (rest == "" || rest[0] == ';' || rest[0] == ' ' || rest[0] == '\t') {
			found = append(found, t)
		}
	}
	switch len(found) {
	case 0:
		return "", ErrNoRecord
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("%d TXT records at %s start with %s; there must be exactly one", len(found), where, version)
}

// tagList splits "v=X; a=b; c=d;" into its fields after the version, which
// must come first.
func tagList(txt, version string) ([]string, error) {
	parts := strings.Split(txt, ";")
	if strings.Trim(parts[0], " \t") != version {
		return nil, fmt.Errorf("record does not start with %s", version)
	}
	var out []string
	for i, p := range parts[1:] {
		p = strings.Trim(p, " \t")
		if p == "" {
			if i == len(parts)-2 { // one trailing ";" is allowed
				continue
			}
			return nil, errors.New("empty field between two ';'")
		}
		if !strings.Contains(p, "=") {
			return nil, fmt.Errorf("field %q is not name=value", short(p))
		}
		out = append(out, p)
	}
	return out, nil
}

func alnum(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// extName is an extension field name: a letter or digit, then up to 31 of
// those and "_-.".
func extName(s string) bool {
	if s == "" || len(s) > 32 || !alnum(s[:1]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !alnum(string(c)) && c != '_' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// extValue is an extension value: visible ASCII except ";" and "=".
func extValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == ';' || c == '=' {
			return false
		}
	}
	return s != ""
}

// short clips remote text for error messages.
func short(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
