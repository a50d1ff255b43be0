package mailsyntax

import (
	"errors"
	"fmt"
	"mime"
	"net/netip"
	"strings"
	"unicode/utf8"
)

// Length limits from RFC 5321 §4.5.3.1 (254 is the usable path length once
// the angle brackets of the 256-octet path are taken off).
const (
	MaxLocalLen   = 64
	MaxAddressLen = 254
)

// Address is one mailbox address. Local is decoded (a quoted local part
// comes without its quotes and backslashes), so equal mailboxes compare
// equal; Domain is as written (a domain literal keeps its brackets).
type Address struct {
	Local  string
	Domain string
}

// String is the address in RFC 5321 form: the local part quoted only when it
// is not a dot-atom.
func (a Address) String() string { return quoteLocal(a.Local) + "@" + a.Domain }

// Key is the form addresses are compared in: local part and domain lower
// case (as Postfix compares them), no trailing dot.
func (a Address) Key() string {
	return strings.ToLower(a.Local) + "@" + NormDomain(a.Domain)
}

var (
	errEmptyAddress = errors.New("empty address")
	errNoDomain     = errors.New("missing domain")
	errNoLocal      = errors.New("empty local part")
	errBadQuote     = errors.New("unterminated or misplaced quoted local part")
)

// SplitAddress splits an envelope address (no angle brackets) at its last
// '@'. A quoted local part ("john doe"@example.com) is returned decoded. It
// checks structure only; CheckPath checks the characters.
func SplitAddress(addr string) (Address, error) {
	if addr == "" {
		return Address{}, errEmptyAddress
	}
	var local, domain string
	if addr[0] == '"' {
		var b strings.Builder
		i := 1
		for ; i < len(addr) && addr[i] != '"'; i++ {
			if addr[i] == '\\' {
				i++
				if i == len(addr) {
					return Address{}, errBadQuote
				}
			}
			b.WriteByte(addr[i])
		}
		if i+1 >= len(addr) || addr[i+1] != '@' {
			return Address{}, errBadQuote
		}
		if i == 1 {
			return Address{}, errNoLocal
		}
		local, domain = b.String(), addr[i+2:]
	} else {
		at := strings.LastIndexByte(addr, '@')
		if at < 0 {
			return Address{}, errNoDomain
		}
		local, domain = addr[:at], addr[at+1:]
		if local == "" {
			return Address{}, errNoLocal
		}
	}
	if domain == "" {
		return Address{}, errNoDomain
	}
	return Address{Local: local, Domain: domain}, nil
}

// DomainOf returns the lower-cased domain of an envelope address, or "".
func DomainOf(addr string) string {
	a, err := SplitAddress(addr)
	if err != nil {
		return ""
	}
	return NormDomain(a.Domain)
}

// CheckPath returns why addr (an SMTP reverse-path or forward-path without
// angle brackets) is not one a relay should take, or nil. It refuses what
// relays are tricked with: the percent hack (user%other@host), bang paths,
// source routes, quoted local parts hiding '@', '%' or '!', missing domains,
// control characters and over-long parts. Domain literals naming a valid IP
// address pass only with allowLiteral.
func CheckPath(addr string, allowLiteral bool) error {
	if addr == "" {
		return errEmptyAddress
	}
	if !utf8.ValidString(addr) {
		return errors.New("invalid UTF-8")
	}
	for _, r := range addr {
		if r < 0x20 || r == 0x7f {
			return errors.New("control character in address")
		}
	}
	if len(addr) > MaxAddressLen {
		return fmt.Errorf("address longer than %d characters", MaxAddressLen)
	}
	if addr[0] == '@' {
		if strings.ContainsAny(addr, ":,") {
			return errors.New("source routes are not accepted")
		}
		return errors.New("missing local part")
	}
	a, err := SplitAddress(addr)
	if err != nil {
		return err
	}
	if rawLocal := addr[:len(addr)-len(a.Domain)-1]; len(rawLocal) > MaxLocalLen {
		return fmt.Errorf("local part longer than %d characters", MaxLocalLen)
	}
	if addr[0] == '"' {
		if strings.ContainsAny(a.Local, "@%!") {
			return errors.New("quoted local part contains '@', '%' or '!'")
		}
	} else if err := checkLocal(a.Local); err != nil {
		return err
	}
	if a.Domain[0] == '[' {
		if !allowLiteral {
			return errors.New("domain literals are not accepted here")
		}
		if !ValidLiteral(a.Domain) {
			return errors.New("invalid domain literal")
		}
		return nil
	}
	return CheckDomain(a.Domain, Underscore|Unicode)
}

func checkLocal(local string) error {
	for _, r := range local {
		switch {
		case r == '%':
			return errors.New("'%' in the local part (percent hack) is not accepted")
		case r == '!':
			return errors.New("'!' bang paths are not accepted")
		case r == '@':
			return errors.New("more than one '@'")
		case r == '.' || r >= utf8.RuneSelf || isAtext(byte(r)):
		default:
			return fmt.Errorf("invalid character %q in the local part", r)
		}
	}
	return nil
}

// isAtext reports whether c is an RFC 5322 atext character.
func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// ValidLiteral accepts [192.0.2.1] and [IPv6:2001:db8::1] (RFC 5321 §4.1.3).
func ValidLiteral(d string) bool {
	if len(d) < 3 || d[0] != '[' || d[len(d)-1] != ']' {
		return false
	}
	inner := d[1 : len(d)-1]
	if v6, ok := strings.CutPrefix(inner, "IPv6:"); ok {
		a, err := netip.ParseAddr(v6)
		return err == nil && a.Is6() && a.Zone() == ""
	}
	a, err := netip.ParseAddr(inner)
	return err == nil && a.Is4()
}

// quoteLocal quotes local unless it is a dot-atom.
func quoteLocal(local string) string {
	if isDotAtom(local) {
		return local
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(local); i++ {
		if c := local[i]; c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(local[i])
	}
	b.WriteByte('"')
	return b.String()
}

func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != '.' && c < utf8.RuneSelf && !isAtext(c) {
			return false
		}
	}
	return true
}

// FormatMailbox writes a mailbox for a header field: addr alone, or with a
// display name, quoted when it is ASCII and an RFC 2047 encoded word when
// it is not.
func FormatMailbox(name, addr string) string {
	if name == "" {
		return addr
	}
	if IsASCII(name) {
		name = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\r", "", "\n", "").Replace(name) + `"`
	} else {
		name = mime.QEncoding.Encode("utf-8", name)
	}
	return name + " <" + addr + ">"
}
