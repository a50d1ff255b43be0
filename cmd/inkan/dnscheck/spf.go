package dnscheck

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// SPFRecord is a parsed SPF record (RFC 7208 §4.6, §5, §6).
type SPFRecord struct {
	Terms    []SPFTerm // mechanisms, in order
	Redirect string    // redirect= domain-spec (macros unexpanded)
	Exp      string    // exp= domain-spec
}

// SPFTerm is one directive: qualifier, mechanism and its argument.
type SPFTerm struct {
	Qualifier byte   // '+', '-', '~' or '?'
	Mechanism string // all, include, a, mx, ptr, ip4, ip6, exists (lower case)
	Domain    string // domain-spec for include, a, mx, ptr, exists ("" = current domain)
	Net       netip.Prefix
	CIDR4     int // a/mx: IPv4 prefix length (32 when absent)
	CIDR6     int // a/mx: IPv6 prefix length (128 when absent)
}

func (t SPFTerm) String() string {
	q := ""
	if t.Qualifier != '+' {
		q = string(t.Qualifier)
	}
	s := q + t.Mechanism
	switch t.Mechanism {
	case "ip4", "ip6":
		return s + ":" + t.Net.String()
	case "all":
		return s
	}
	if t.Domain != "" {
		s += ":" + t.Domain
	}
	if t.CIDR4 != 32 {
		s += "/" + strconv.Itoa(t.CIDR4)
	}
	if t.CIDR6 != 128 {
		s += "//" + strconv.Itoa(t.CIDR6)
	}
	return s
}

// IsSPF reports whether a TXT value is an SPF record ("v=spf1" then a space or the end).
func IsSPF(txt string) bool {
	return len(txt) >= 6 && strings.EqualFold(txt[:6], "v=spf1") && (len(txt) == 6 || txt[6] == ' ')
}

// ParseSPF parses an SPF record. Any syntax error is a permerror in RFC 7208.
func ParseSPF(s string) (*SPFRecord, error) {
	if !IsSPF(s) {
		return nil, errors.New(`not an SPF record: it must start with "v=spf1"`)
	}
	r := &SPFRecord{}
	seen := map[string]bool{}
	for _, term := range strings.Split(s[6:], " ") {
		if term == "" {
			continue
		}
		if name, value, isMod := modifier(term); isMod {
			if err := checkMacroString(value, name == "exp"); err != nil {
				return nil, fmt.Errorf("%s: %v", term, err)
			}
			switch name {
			case "redirect", "exp":
				if seen[name] {
					return nil, fmt.Errorf("%s= appears twice", name)
				}
				seen[name] = true
				if value == "" {
					return nil, fmt.Errorf("%s= has no domain", name)
				}
				if name == "redirect" {
					r.Redirect = value
				} else {
					r.Exp = value
				}
			}
			continue // unknown modifiers are ignored (RFC 7208 §6)
		}
		t, err := parseDirective(term)
		if err != nil {
			return nil, err
		}
		r.Terms = append(r.Terms, t)
	}
	return r, nil
}

// modifier splits "name=value" when term is a modifier (name = ALPHA *(ALPHA / DIGIT / "-" / "_" / ".")).
func modifier(term string) (name, value string, ok bool) {
	i := strings.IndexByte(term, '=')
	if i <= 0 {
		return "", "", false
	}
	for j, c := range term[:i] {
		alpha := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !alpha && (j == 0 || !(c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.')) {
			return "", "", false
		}
	}
	return strings.ToLower(term[:i]), term[i+1:], true
}

func parseDirective(term string) (SPFTerm, error) {
	t := SPFTerm{Qualifier: '+', CIDR4: 32, CIDR6: 128}
	if strings.ContainsRune("+-~?", rune(term[0])) {
		t.Qualifier, term = term[0], term[1:]
	}
	name, arg := term, ""
	hasArg := false
	if i := strings.IndexAny(term, ":/"); i >= 0 {
		name, arg, hasArg = term[:i], term[i:], true
	}
	t.Mechanism = strings.ToLower(name)
	bad := func(why string) (SPFTerm, error) { return t, fmt.Errorf("%q: %s", term, why) }
	switch t.Mechanism {
	case "all":
		if hasArg {
			return bad("all takes no argument")
		}
	case "include", "exists":
		if !strings.HasPrefix(arg, ":") || len(arg) < 2 {
			return bad(t.Mechanism + " needs :domain")
		}
		t.Domain = arg[1:]
		if err := checkMacroString(t.Domain, false); err != nil {
			return bad(err.Error())
		}
	case "a", "mx", "ptr":
		rest := arg
		if strings.HasPrefix(rest, ":") {
			end := strings.IndexByte(rest, '/')
			if end < 0 {
				end = len(rest)
			}
			t.Domain, rest = rest[1:end], rest[end:]
			if t.Domain == "" {
				return bad("empty domain after ':'")
			}
			if err := checkMacroString(t.Domain, false); err != nil {
				return bad(err.Error())
			}
		}
		if rest != "" {
			if t.Mechanism == "ptr" {
				return bad("ptr takes no prefix length")
			}
			if err := parseDualCIDR(rest, &t); err != nil {
				return bad(err.Error())
			}
		}
	case "ip4", "ip6":
		if !strings.HasPrefix(arg, ":") {
			return bad(t.Mechanism + " needs :address")
		}
		addr, bits, hasBits := strings.Cut(arg[1:], "/")
		a, err := netip.ParseAddr(addr)
		if err != nil || a.Zone() != "" || (t.Mechanism == "ip4") != a.Is4() {
			return bad("not an " + map[string]string{"ip4": "IPv4", "ip6": "IPv6"}[t.Mechanism] + " address")
		}
		n := a.BitLen()
		if hasBits {
			if n, err = cidrLen(bits, a.BitLen()); err != nil {
				return bad(err.Error())
			}
		}
		t.Net = netip.PrefixFrom(a, n).Masked()
	default:
		return bad("unknown mechanism")
	}
	return t, nil
}

// parseDualCIDR reads "/24", "//64" or "/24//64".
func parseDualCIDR(s string, t *SPFTerm) error {
	v4, v6, two := strings.Cut(s, "//")
	var err error
	if v4 != "" {
		if !strings.HasPrefix(v4, "/") {
			return errors.New("bad prefix length")
		}
		if t.CIDR4, err = cidrLen(v4[1:], 32); err != nil {
			return err
		}
	}
	if two {
		if t.CIDR6, err = cidrLen(v6, 128); err != nil {
			return err
		}
	}
	return nil
}

func cidrLen(s string, max int) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > max || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("bad prefix length %q", s)
	}
	return n, nil
}

// checkMacroString validates RFC 7208 §7.1 macro syntax.
func checkMacroString(s string, exp bool) error {
	letters := "slodiphv"
	if exp {
		letters += "crt"
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e {
			return fmt.Errorf("invalid character %q", c)
		}
		if c != '%' {
			continue
		}
		if i+1 >= len(s) {
			return errors.New("'%' at the end")
		}
		switch s[i+1] {
		case '%', '_', '-':
			i++
			continue
		case '{':
		default:
			return fmt.Errorf("bad macro %q", s[i:i+2])
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return errors.New("unterminated macro")
		}
		body := s[i+2 : i+end]
		if body == "" || !strings.ContainsRune(letters, toLowerASCII(rune(body[0]))) {
			return fmt.Errorf("unknown macro %%{%s}", body)
		}
		j := 1
		for j < len(body) && body[j] >= '0' && body[j] <= '9' {
			j++
		}
		if j < len(body) && (body[j] == 'r' || body[j] == 'R') {
			j++
		}
		for ; j < len(body); j++ {
			if !strings.ContainsRune(".-+,/_=", rune(body[j])) {
				return fmt.Errorf("bad macro transformer in %%{%s}", body)
			}
		}
		i += end
	}
	return nil
}

func toLowerASCII(r rune) rune {
	if r >= 'A' && r <= 'Z' {
		return r + 'a' - 'A'
	}
	return r
}
