package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// Route is a parsed delivery.transport value or smarthost address, in
// Postfix's notation: "[host]:port" and "[host]" name a host to connect to
// directly; "host:port" and "host" name a domain whose MX records are looked
// up first. An IP address is never looked up.
type Route struct {
	Host string // host name or IP address (IPv6 without brackets)
	Port int    // 0 when not given: the caller's default (delivery.mx_port, 25, 465...)
	MX   bool   // look up Host's MX records
}

// ParseRoute parses "[host]:port", "[host]", "host:port" or "host". IPv6
// addresses need brackets: "[2001:db8::1]:25".
func ParseRoute(s string) (Route, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Route{}, errors.New("empty address")
	}
	var r Route
	var port string
	hasPort := false
	if rest, ok := strings.CutPrefix(s, "["); ok {
		host, after, ok := strings.Cut(rest, "]")
		if !ok {
			return Route{}, fmt.Errorf("%q lacks the closing ]", s)
		}
		r.Host = host
		if after != "" {
			if port, hasPort = strings.CutPrefix(after, ":"); !hasPort {
				return Route{}, fmt.Errorf("unexpected %q after ] in %q", after, s)
			}
		}
	} else {
		r.MX = true
		r.Host = s
		if i := strings.LastIndexByte(s, ':'); i >= 0 {
			r.Host, port, hasPort = s[:i], s[i+1:], true
			if strings.Contains(r.Host, ":") {
				return Route{}, fmt.Errorf("IPv6 address %q needs brackets, e.g. [2001:db8::1]:25", s)
			}
		}
	}
	if ip, err := netip.ParseAddr(r.Host); err == nil && ip.Zone() == "" {
		r.MX = false
	} else if err := mailsyntax.CheckDomain(r.Host, mailsyntax.HostName); err != nil {
		return Route{}, fmt.Errorf("%q is not a valid host name or IP address (%v)", r.Host, err)
	}
	if hasPort {
		p, err := parsePort(port, false)
		if err != nil {
			return Route{}, err
		}
		r.Port = p
	}
	return r, nil
}

// parsePort accepts 1..65535, and 0 when zeroOK (a listener on a free port).
func parsePort(s string, zeroOK bool) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 0 || p > 65535 || (p == 0 && !zeroOK) || s != strconv.Itoa(p) {
		return 0, fmt.Errorf("invalid port %q (1..65535)", s)
	}
	return p, nil
}

// ParseCanonicalization splits a DKIM canonicalization such as
// "relaxed/relaxed". A single word sets the header canonicalization and
// leaves the body "simple", as in RFC 6376 and OpenDKIM.
func ParseCanonicalization(s string) (header, body string, err error) {
	header, body, ok := strings.Cut(strings.ToLower(strings.TrimSpace(s)), "/")
	if !ok {
		body = "simple"
	}
	for _, v := range []string{header, body} {
		if v != "simple" && v != "relaxed" {
			return "", "", fmt.Errorf("invalid canonicalization %q (simple or relaxed, e.g. relaxed/relaxed)", s)
		}
	}
	return header, body, nil
}

// peerHost is the rule for names of other machines that inkan resolves
// (trusted networks, OpenDKIM's InternalHosts and PeerList): host names, and
// '_' too, which LAN names given by DHCP or Windows often have and OpenDKIM
// accepts.
const peerHost = mailsyntax.HostName | mailsyntax.Underscore

// checkListenAddr checks one "host:port" listen address; host may be empty
// (all interfaces), an IP or a host name, and port 0 picks a free port.
func checkListenAddr(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("%q is not host:port", a)
	}
	if _, err := parsePort(port, true); err != nil {
		return err
	}
	if host != "" && !mailsyntax.ValidDomain(host, mailsyntax.HostName) {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("%q is not an IP address or host name", host)
		}
	}
	return nil
}

// checkNetwork checks a trusted network entry: a CIDR, an IP, or a host name.
// It returns a warning when a CIDR has host bits set, and for a CIDR or IP
// the prefix it trusts, as UnmapPrefix stores it (invalid for a host name).
// Postfix's "[2001:db8::]/32" form of IPv6 networks is accepted too.
func checkNetwork(s string) (trusts netip.Prefix, warn string, err error) {
	v := s
	if rest, ok := strings.CutPrefix(v, "["); ok {
		if addr, after, ok := strings.Cut(rest, "]"); ok {
			v = addr + after
		}
	}
	if strings.Contains(v, "/") {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return netip.Prefix{}, "", fmt.Errorf("invalid CIDR %q", s)
		}
		if p.Masked() != p {
			warn = fmt.Sprintf("%q has host bits set and means %s", s, p.Masked())
		}
		return UnmapPrefix(p), warn, nil
	}
	if ip, err := netip.ParseAddr(v); err == nil {
		if ip.Zone() != "" {
			return netip.Prefix{}, "", fmt.Errorf("%q has a zone, which is not allowed", s)
		}
		return UnmapPrefix(netip.PrefixFrom(ip, ip.BitLen())), "", nil
	}
	if mailsyntax.ValidDomain(v, peerHost) {
		return netip.Prefix{}, "", nil
	}
	return netip.Prefix{}, "", fmt.Errorf("%q is not a CIDR, IP address or host name", s)
}

// checkSenderPattern checks "local@domain" or "@domain".
func checkSenderPattern(s string) error {
	i := strings.LastIndexByte(s, '@')
	if i < 0 {
		return fmt.Errorf("%q is neither an address nor @domain", s)
	}
	local, domain := s[:i], s[i+1:]
	if err := mailsyntax.CheckDomain(domain, mailsyntax.MailDomain); err != nil {
		return fmt.Errorf("%q has an invalid domain (%v)", s, err)
	}
	if len(local) >= 2 && local[0] == '"' && local[len(local)-1] == '"' {
		return nil // quoted local part: anything goes
	}
	for _, r := range local {
		if r <= ' ' || r == 0x7f || strings.ContainsRune("<>,;", r) {
			return fmt.Errorf("%q has an invalid local part", s)
		}
	}
	return nil
}

// ReadPassword returns the smarthost password: Password, or else the first
// line of PasswordFile (read on each call, so a rotated secret is picked up).
func (s *Smarthost) ReadPassword() (string, error) {
	if s.Password != "" || s.PasswordFile == "" {
		return s.Password, nil
	}
	b, err := os.ReadFile(s.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("read smarthost password: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimRight(line, "\r"), nil
}
