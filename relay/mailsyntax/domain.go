package mailsyntax

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// DomainOpt widens what CheckDomain accepts beyond a plain LDH host name
// (letters, digits and inner hyphens; labels of 1 to 63 octets; 253 in all).
type DomainOpt uint8

const (
	// Underscore allows '_' in labels: service names (_dmarc, _domainkey),
	// DKIM selectors and the odd internal host.
	Underscore DomainOpt = 1 << iota
	// Unicode allows U-labels (non-ASCII UTF-8, RFC 6531) as well as A-labels.
	Unicode
	// TrailingDot allows one trailing dot (an absolute name).
	TrailingDot
	// LeadingDot allows ".example.com", meaning "every subdomain of".
	LeadingDot
	// MultiLabel requires at least two labels (RFC 7208 §4.3).
	MultiLabel
	// AllNumeric allows an all-numeric last label. Added for DKIM selectors:
	// a selector is looked up under _domainkey, never as a host, so it cannot
	// be mistaken for an address, and date-style ones such as Gmail's
	// "20230601" are common.
	AllNumeric
)

// HostName is the rule for names inkan itself uses as a host: its EHLO
// name, listen hosts, smarthost and transport hosts, ACME certificate names.
// Letters, digits and inner hyphens, ASCII (RFC 1123 §2.1, RFC 5321 §4.1.2).
const HostName DomainOpt = 0

// SigningDomain is the rule for a DKIM signing domain, the d= tag: RFC 6376
// §3.5 defines it as domain-name = sub-domain 1*("." sub-domain), with the
// ASCII sub-domain of RFC 5321, so at least two labels and no '_'. The
// configuration (dkim.keys, OpenDKIM's KeyTable and Domain) and "inkan dkim
// keygen -d" share it, so a key that keygen makes always loads.
const SigningDomain = MultiLabel

// Selector is the rule for a DKIM selector (the s= tag, RFC 6376 §3.1):
// dot-separated labels in A-label form, with '_' tolerated (published
// selectors use it, and OpenDKIM accepts it) and all-numeric labels allowed.
const Selector = Underscore | AllNumeric

// MailDomain is the rule for domains in addresses and in configuration that
// names mail domains: underscores and U-labels are allowed, as receivers and
// Postfix accept them.
const MailDomain = Underscore | Unicode | TrailingDot

// MaxDomainLen is the longest domain name, in octets, without a trailing dot
// (RFC 1035 §2.3.4 less the length octets).
const MaxDomainLen = 253

// CheckDomain returns why s is not a domain name under opts, or nil. An
// all-numeric last label is refused (RFC 3696 §2) unless opts has AllNumeric:
// "192.0.2.1" is an address, not a name.
func CheckDomain(s string, opts DomainOpt) error {
	if opts&LeadingDot != 0 {
		s = strings.TrimPrefix(s, ".")
	}
	if opts&TrailingDot != 0 {
		s = strings.TrimSuffix(s, ".")
	}
	if s == "" {
		return errors.New("empty domain")
	}
	if len(s) > MaxDomainLen {
		return fmt.Errorf("domain longer than %d characters", MaxDomainLen)
	}
	if opts&Unicode != 0 && !utf8.ValidString(s) {
		return errors.New("invalid UTF-8 in the domain")
	}
	labels := 0
	last := ""
	for label := range strings.SplitSeq(s, ".") {
		labels++
		last = label
		if label == "" {
			return errors.New("empty label in the domain")
		}
		if len(label) > 63 {
			return errors.New("domain label longer than 63 characters")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("label %q starts or ends with '-'", label)
		}
		for _, r := range label {
			switch {
			case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-':
			case r == '_' && opts&Underscore != 0:
			case r >= utf8.RuneSelf && r != utf8.RuneError && opts&Unicode != 0:
			default:
				return fmt.Errorf("invalid character %q in the domain", r)
			}
		}
	}
	if opts&MultiLabel != 0 && labels < 2 {
		return errors.New("domain has only one label")
	}
	if allDigits(last) && opts&AllNumeric == 0 {
		return errors.New("domain ends in an all-numeric label (an address is not a name)")
	}
	return nil
}

// ValidDomain reports whether CheckDomain(s, opts) accepts s.
func ValidDomain(s string, opts DomainOpt) bool { return CheckDomain(s, opts) == nil }

// NormDomain lower-cases d and drops one trailing dot: the form domains are
// compared and stored in.
func NormDomain(d string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// IsASCII reports whether s is 7-bit.
func IsASCII[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
