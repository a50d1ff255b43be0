package auth

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"net/netip"
	"strings"
	"unicode/utf8"
)

// Length limits from RFC 5321 §4.5.3.1 (254 is the usable path length once
// the angle brackets of the 256-octet path are taken off).
const (
	maxLocalLen   = 64
	maxDomainLen  = 255
	maxAddressLen = 254
)

var (
	errEmptyAddress = errors.New("empty address")
	errNoDomain     = errors.New("missing domain")
	errNoLocal      = errors.New("empty local part")
	errBadQuote     = errors.New("unterminated or misplaced quoted local part")
)

// SplitAddress splits addr (no angle brackets) at its last '@'. A quoted
// local part ("john doe"@example.com) is returned decoded, without quotes and
// backslash escapes, so equal mailboxes compare equal. The domain is returned
// as written. SplitAddress checks structure only; CheckSender and
// CheckRecipient check the characters.
func SplitAddress(addr string) (local, domain string, err error) {
	if addr == "" {
		return "", "", errEmptyAddress
	}
	if addr[0] == '"' {
		var b strings.Builder
		i := 1
		for ; i < len(addr) && addr[i] != '"'; i++ {
			if addr[i] == '\\' {
				i++
				if i == len(addr) {
					return "", "", errBadQuote
				}
			}
			b.WriteByte(addr[i])
		}
		if i+1 >= len(addr) || addr[i+1] != '@' {
			return "", "", errBadQuote
		}
		local, domain = b.String(), addr[i+2:]
		if i == 1 {
			return "", "", errNoLocal
		}
	} else {
		at := strings.LastIndexByte(addr, '@')
		if at < 0 {
			return "", "", errNoDomain
		}
		local, domain = addr[:at], addr[at+1:]
		if local == "" {
			return "", "", errNoLocal
		}
	}
	if domain == "" {
		return "", "", errNoDomain
	}
	return local, domain, nil
}

// Domain returns the lower-cased text after the last '@' of addr, or "".
func Domain(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return ""
	}
	return strings.ToLower(addr[at+1:])
}

// CheckRecipient refuses RCPT TO addresses a relay must not accept: the
// percent hack (user%other@host), bang paths, source routes, quoted local
// parts hiding '@', '%' or '!', domain literals, missing domains, control
// characters and over-long parts. The error is a BadRecipient (553 5.1.3).
func CheckRecipient(addr string) error {
	if reason := addressProblem(addr, false); reason != "" {
		return BadRecipient(addr, reason)
	}
	return nil
}

// CheckSender applies CheckRecipient's rules to MAIL FROM, except that a
// domain literal naming a valid IP address is allowed and the null sender ""
// is accepted. The error is a BadSender (553 5.1.7).
func CheckSender(addr string) error {
	if addr == "" {
		return nil
	}
	if reason := addressProblem(addr, true); reason != "" {
		return BadSender(addr, reason)
	}
	return nil
}

// addressProblem returns why addr is unacceptable, or "".
func addressProblem(addr string, allowLiteral bool) string {
	if addr == "" {
		return "empty address"
	}
	if !utf8.ValidString(addr) {
		return "invalid UTF-8"
	}
	for _, r := range addr {
		if r < 0x20 || r == 0x7f {
			return "control character in address"
		}
	}
	if len(addr) > maxAddressLen {
		return fmt.Sprintf("address longer than %d characters", maxAddressLen)
	}
	if addr[0] == '@' {
		if strings.ContainsAny(addr, ":,") {
			return "source routes are not accepted"
		}
		return "missing local part"
	}
	local, domain, err := SplitAddress(addr)
	if err != nil {
		return err.Error()
	}
	if rawLocal := addr[:len(addr)-len(domain)-1]; len(rawLocal) > maxLocalLen {
		return fmt.Sprintf("local part longer than %d characters", maxLocalLen)
	}
	if addr[0] == '"' {
		if strings.ContainsAny(local, "@%!") {
			return "quoted local part contains '@', '%' or '!'"
		}
	} else if reason := localProblem(local); reason != "" {
		return reason
	}
	return domainProblem(domain, allowLiteral)
}

func localProblem(local string) string {
	for _, r := range local {
		switch {
		case r == '%':
			return "'%' in the local part (percent hack) is not accepted"
		case r == '!':
			return "'!' bang paths are not accepted"
		case r == '@':
			return "more than one '@'"
		case r == '.' || r >= utf8.RuneSelf || isAtext(byte(r)):
		default:
			return fmt.Sprintf("invalid character %q in the local part", r)
		}
	}
	return ""
}

// isAtext reports whether c is an RFC 5322 atext character.
func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

func domainProblem(domain string, allowLiteral bool) string {
	if len(domain) > maxDomainLen {
		return fmt.Sprintf("domain longer than %d characters", maxDomainLen)
	}
	if domain[0] == '[' {
		if !allowLiteral {
			return "domain literals are not accepted for recipients"
		}
		if !validLiteral(domain) {
			return "invalid domain literal"
		}
		return ""
	}
	for label := range strings.SplitSeq(domain, ".") {
		if label == "" {
			return "empty label in domain"
		}
		if len(label) > 63 {
			return "domain label longer than 63 characters"
		}
		for _, r := range label {
			if r >= utf8.RuneSelf || r == '-' || r == '_' ||
				('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9') {
				continue
			}
			return fmt.Sprintf("invalid character %q in the domain", r)
		}
	}
	return ""
}

// validLiteral accepts [192.0.2.1] and [IPv6:2001:db8::1] (RFC 5321 §4.1.3).
func validLiteral(d string) bool {
	if len(d) < 3 || d[len(d)-1] != ']' {
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

// headerParser decodes encoded words in any charset without failing: only the
// addresses matter, the display names are thrown away.
var headerParser = mail.AddressParser{WordDecoder: &mime.WordDecoder{
	CharsetReader: func(_ string, input io.Reader) (io.Reader, error) { return input, nil },
}}

// ParseHeaderFrom returns the addresses of a From header value (RFC 5322
// mailbox-list: display names, comments, encoded words, groups and several
// addresses; folded lines are unfolded). Local parts that are not dot-atoms
// come back quoted, so SplitAddress gives the same mailbox. A value with no
// address is an error.
func ParseHeaderFrom(header string) ([]string, error) {
	h := strings.NewReplacer("\r\n", "", "\n", "", "\r", "").Replace(header)
	if strings.TrimSpace(h) == "" {
		return nil, errors.New("empty From header")
	}
	list, err := headerParser.ParseList(h)
	if err != nil {
		return nil, fmt.Errorf("parse From header: %w", err)
	}
	var out []string
	for _, a := range list {
		at := strings.LastIndexByte(a.Address, '@')
		if at <= 0 {
			return nil, fmt.Errorf("parse From header: address %q has no domain", a.Address)
		}
		out = append(out, quoteLocal(a.Address[:at])+a.Address[at:])
	}
	if len(out) == 0 {
		return nil, errors.New("no address in From header")
	}
	return out, nil
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
