package dnscheck

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// SPFResult is an RFC 7208 §2.6 result.
type SPFResult string

const (
	SPFNone      SPFResult = "none"
	SPFNeutral   SPFResult = "neutral"
	SPFPass      SPFResult = "pass"
	SPFFail      SPFResult = "fail"
	SPFSoftFail  SPFResult = "softfail"
	SPFTempError SPFResult = "temperror"
	SPFPermError SPFResult = "permerror"
)

// Limits from RFC 7208 §4.6.4.
const (
	maxLookups = 10 // include, a, mx, ptr, exists, redirect
	maxVoid    = 2  // lookups answered with NXDOMAIN or no records
	maxMXNames = 10 // exchanges looked up for one mx mechanism
)

// SPFOutcome is the result of evaluating SPF for one IP address.
type SPFOutcome struct {
	Result  SPFResult
	Reason  string   // what decided it: "ip4:192.0.2.0/24 matched", "no mechanism matched"
	Lookups int      // DNS-querying terms evaluated (limit 10)
	Voids   int      // void lookups (limit 2)
	Notes   []string // e.g. ptr mechanisms skipped
}

// SPF runs check_host() (RFC 7208 §4) for ip and domain, with
// postmaster@domain as the sender and domain as the HELO name. "ptr"
// mechanisms count toward the lookup limit but never match (they are
// deprecated, §5.5); a note says so.
func (c *Checker) SPF(ctx context.Context, ip netip.Addr, domain string) SPFOutcome {
	e := &spfEval{c: c, ip: ip.Unmap(), sender: "postmaster@" + domain, helo: domain}
	res, reason := e.checkHost(ctx, strings.TrimSuffix(strings.ToLower(domain), "."), 0)
	return SPFOutcome{Result: res, Reason: reason, Lookups: e.lookups, Voids: e.voids, Notes: e.notes}
}

type spfEval struct {
	c              *Checker
	ip             netip.Addr
	sender, helo   string
	lookups, voids int
	notes          []string
	// countAll counts past the limits instead of stopping (SPFLookups),
	// with the lookups of each top-level term and the void names.
	countAll  bool
	perTerm   []TermLookups
	voidNames []string
}

// errLimit ends evaluation with permerror.
type errLimit struct{ msg string }

func (e *errLimit) Error() string { return e.msg }

func (e *spfEval) count() error {
	e.lookups++
	if e.lookups > maxLookups && !e.countAll {
		return &errLimit{fmt.Sprintf("more than %d DNS-querying terms (include, a, mx, ptr, exists, redirect): flatten includes or replace some with ip4:/ip6:", maxLookups)}
	}
	return nil
}

// void counts an empty or NXDOMAIN answer for name.
func (e *spfEval) void(name string, n int, err error) error {
	if n == 0 && (err == nil || errors.Is(err, errNXDomain)) {
		e.voids++
		e.voidNames = append(e.voidNames, name)
		if e.voids > maxVoid && !e.countAll {
			return &errLimit{fmt.Sprintf("more than %d lookups found nothing (void lookups): remove terms naming domains that do not exist", maxVoid)}
		}
	}
	return nil
}

func (e *spfEval) checkHost(ctx context.Context, domain string, depth int) (SPFResult, string) {
	if err := mailsyntax.CheckDomain(domain, spfDomain); err != nil {
		return SPFNone, fmt.Sprintf("%q is not a valid domain: %v", domain, err)
	}
	if depth > 20 { // includes that loop: the lookup limit stops them, this guards the stack
		return SPFPermError, "include loop"
	}
	txts, err := e.c.txt(ctx, domain)
	if isTemp(err) {
		return SPFTempError, err.Error()
	}
	var recs []string
	for _, t := range txts {
		if IsSPF(t) {
			recs = append(recs, t)
		}
	}
	switch len(recs) {
	case 0:
		return SPFNone, "no SPF record at " + domain
	case 1:
	default:
		return SPFPermError, fmt.Sprintf("%d SPF records at %s: merge them into one", len(recs), domain)
	}
	rec, err := ParseSPF(recs[0])
	if err != nil {
		return SPFPermError, fmt.Sprintf("%s: %v", domain, err)
	}
	for _, t := range rec.Terms {
		before := e.lookups
		match, res, why := e.mechanism(ctx, t, domain, depth)
		if depth == 0 && e.lookups > before {
			e.perTerm = append(e.perTerm, TermLookups{Term: t.String(), Lookups: e.lookups - before})
		}
		if res != "" {
			return res, why
		}
		if match {
			reason := fmt.Sprintf("%s matched at %s", t, domain)
			if why != "" {
				reason += " (" + why + ")"
			}
			return qualifierResult(t.Qualifier), reason
		}
	}
	if rec.Redirect != "" {
		before := e.lookups
		if err := e.count(); err != nil {
			return SPFPermError, err.Error()
		}
		target, err := e.expand(rec.Redirect, domain)
		if err != nil {
			return SPFPermError, err.Error()
		}
		res, why := e.checkHost(ctx, target, depth+1)
		if depth == 0 {
			e.perTerm = append(e.perTerm, TermLookups{Term: "redirect=" + rec.Redirect, Lookups: e.lookups - before})
		}
		if res == SPFNone {
			return SPFPermError, "redirect=" + target + ": " + why
		}
		return res, why
	}
	return SPFNeutral, "no mechanism matched at " + domain + " (and no redirect)"
}

func qualifierResult(q byte) SPFResult {
	switch q {
	case '-':
		return SPFFail
	case '~':
		return SPFSoftFail
	case '?':
		return SPFNeutral
	}
	return SPFPass
}

// mechanism evaluates one term. A non-empty res ends evaluation (errors).
func (e *spfEval) mechanism(ctx context.Context, t SPFTerm, domain string, depth int) (match bool, res SPFResult, why string) {
	fail := func(err error) (bool, SPFResult, string) {
		if isTemp(err) {
			return false, SPFTempError, err.Error()
		}
		return false, SPFPermError, fmt.Sprintf("%s at %s: %v", t, domain, err)
	}
	switch t.Mechanism {
	case "all":
		return true, "", ""
	case "ip4", "ip6":
		return t.Net.Contains(e.ip), "", ""
	}
	if err := e.count(); err != nil {
		return fail(err)
	}
	target := domain
	if t.Domain != "" {
		var err error
		if target, err = e.expand(t.Domain, domain); err != nil {
			return fail(err)
		}
	}
	switch t.Mechanism {
	case "include":
		r, w := e.checkHost(ctx, target, depth+1)
		switch r {
		case SPFPass:
			return true, "", w
		case SPFTempError:
			return false, r, w
		case SPFPermError, SPFNone:
			return false, SPFPermError, "include:" + target + ": " + w
		}
		return false, "", ""
	case "ptr":
		e.notes = append(e.notes, fmt.Sprintf("%s at %s not evaluated: ptr is deprecated (RFC 7208 §5.5) and slow; use ip4:/ip6: or a", t, domain))
		return false, "", ""
	case "exists":
		ips, err := e.c.addrs(ctx, target, true)
		if verr := e.void(target, len(ips), err); verr != nil {
			return fail(verr)
		}
		if err != nil && !errors.Is(err, errNXDomain) {
			return fail(err)
		}
		return len(ips) > 0, "", ""
	case "a":
		ips, err := e.c.addrs(ctx, target, e.ip.Is4())
		if verr := e.void(target, len(ips), err); verr != nil {
			return fail(verr)
		}
		if err != nil && !errors.Is(err, errNXDomain) {
			return fail(err)
		}
		return e.inAny(ips, t), "", ""
	case "mx":
		hosts, err := e.c.mx(ctx, target)
		if verr := e.void(target, len(hosts), err); verr != nil {
			return fail(verr)
		}
		if err != nil && !errors.Is(err, errNXDomain) {
			return fail(err)
		}
		if len(hosts) > maxMXNames {
			return fail(fmt.Errorf("%d MX hosts, more than the %d SPF allows", len(hosts), maxMXNames))
		}
		for _, h := range hosts {
			ips, err := e.c.addrs(ctx, h, e.ip.Is4())
			if isTemp(err) {
				return fail(err)
			}
			if e.inAny(ips, t) {
				return true, "", ""
			}
		}
		return false, "", ""
	}
	return fail(fmt.Errorf("unknown mechanism"))
}

func (e *spfEval) inAny(ips []netip.Addr, t SPFTerm) bool {
	bits := t.CIDR6
	if e.ip.Is4() {
		bits = t.CIDR4
	}
	for _, a := range ips {
		if p, err := a.Prefix(bits); err == nil && p.Contains(e.ip) {
			return true
		}
	}
	return false
}

// expand applies RFC 7208 §7 macros to a domain-spec and shortens the
// result to 253 characters by dropping labels on the left.
func (e *spfEval) expand(spec, domain string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(spec); i++ {
		c := spec[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+1 >= len(spec) {
			return "", errors.New("'%' at the end of " + spec)
		}
		switch spec[i+1] {
		case '%':
			b.WriteByte('%')
			i++
			continue
		case '_':
			b.WriteByte(' ')
			i++
			continue
		case '-':
			b.WriteString("%20")
			i++
			continue
		}
		end := strings.IndexByte(spec[i:], '}')
		if spec[i+1] != '{' || end < 0 {
			return "", fmt.Errorf("bad macro in %s", spec)
		}
		v, err := e.macro(spec[i+2:i+end], domain)
		if err != nil {
			return "", err
		}
		b.WriteString(v)
		i += end
	}
	out := strings.TrimSuffix(b.String(), ".")
	for len(out) > 253 {
		i := strings.IndexByte(out, '.')
		if i < 0 {
			break
		}
		out = out[i+1:]
	}
	return out, nil
}

func (e *spfEval) macro(body, domain string) (string, error) {
	if body == "" {
		return "", errors.New("empty macro")
	}
	letter := body[0]
	local, senderDomain, _ := strings.Cut(e.sender, "@")
	var v string
	switch toLowerASCII(rune(letter)) {
	case 's':
		v = e.sender
	case 'l':
		v = local
	case 'o':
		v = senderDomain
	case 'd':
		v = domain
	case 'i':
		v = dottedIP(e.ip)
	case 'p':
		v = "unknown" // validated PTR names are not looked up (see ptr)
	case 'v':
		v = "in-addr"
		if e.ip.Is6() {
			v = "ip6"
		}
	case 'h':
		v = e.helo
	default:
		return "", fmt.Errorf("macro %%{%s} is not allowed in a domain", body)
	}
	rest := body[1:]
	j := 0
	for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
		j++
	}
	keep := 0
	if j > 0 {
		n, err := strconv.Atoi(rest[:j])
		if err != nil || n == 0 {
			return "", fmt.Errorf("bad digit transformer in %%{%s}", body)
		}
		keep = n
	}
	rest = rest[j:]
	reverse := false
	if rest != "" && (rest[0] == 'r' || rest[0] == 'R') {
		reverse, rest = true, rest[1:]
	}
	delims := "."
	if rest != "" {
		delims = rest
	}
	parts := strings.FieldsFunc(v, func(r rune) bool { return strings.ContainsRune(delims, r) })
	if reverse {
		for a, z := 0, len(parts)-1; a < z; a, z = a+1, z-1 {
			parts[a], parts[z] = parts[z], parts[a]
		}
	}
	if keep > 0 && keep < len(parts) {
		parts = parts[len(parts)-keep:]
	}
	v = strings.Join(parts, ".")
	if letter >= 'A' && letter <= 'Z' {
		v = url.PathEscape(v)
	}
	return v, nil
}

// dottedIP is the %{i} form: dotted quad, or 32 dot-separated nibbles.
func dottedIP(a netip.Addr) string {
	if a.Is4() {
		return a.String()
	}
	b := a.As16()
	const hex = "0123456789abcdef"
	var s strings.Builder
	for i, x := range b {
		if i > 0 {
			s.WriteByte('.')
		}
		s.WriteByte(hex[x>>4])
		s.WriteByte('.')
		s.WriteByte(hex[x&0xf])
	}
	return s.String()
}

// spfDomain is the rule for the <domain> of check_host() (RFC 7208 §4.3):
// more than one label, an absolute name allowed, and '_' allowed, as in
// include:_spf.example.com. An all-numeric last label is refused: the
// toplabel of RFC 7208 §7.1 cannot be all digits.
const spfDomain = mailsyntax.MultiLabel | mailsyntax.Underscore | mailsyntax.TrailingDot

// testNetIP stands in for "this host" when no address is given: it is in
// TEST-NET-1 (RFC 5737), which real records do not authorize, so evaluation
// walks the whole record, which is what the lookup count needs.
var testNetIP = netip.MustParseAddr("192.0.2.1")

// CheckSPF evaluates the SPF record of domain for ip, the address this relay
// sends from. Without an ip (the zero Addr) it only checks that the record
// exists, parses and stays within the DNS lookup limits.
func (c *Checker) CheckSPF(ctx context.Context, domain string, ip netip.Addr) Finding {
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	f := Finding{Check: "spf " + domain}
	probe := ip
	if !ip.IsValid() {
		probe = testNetIP
	}
	o := c.SPF(ctx, probe, domain)
	budget := fmt.Sprintf("%d/%d DNS lookups", o.Lookups, maxLookups)
	notes := ""
	if len(o.Notes) > 0 {
		notes = "; " + strings.Join(o.Notes, "; ")
	}
	switch o.Result {
	case SPFTempError:
		f.Status, f.Detail = Warn, "could not check: "+o.Reason
	case SPFNone:
		f.Status, f.Detail = Fail, "no SPF record: publish the one printed by inkan dns records"
	case SPFPermError:
		f.Status, f.Detail = Fail, "permerror (receivers treat the record as broken): "+o.Reason
	default:
		if !ip.IsValid() {
			f.Status, f.Detail = Pass, fmt.Sprintf("record is valid (%s); pass -ip with this host's public address to check that it is authorized", budget)
			break
		}
		f.Status, f.Detail = c.spfVerdict(ip, o, budget)
	}
	if f.Status == Pass && o.Lookups >= maxLookups-2 {
		f.Status, f.Detail = Warn, f.Detail+"; close to the 10-lookup limit"
	}
	if notes != "" && f.Status == Pass {
		f.Status = Warn
	}
	f.Detail += notes
	return f
}

// spfVerdict grades a pass/fail/softfail/neutral result for this host's IP.
func (c *Checker) spfVerdict(ip netip.Addr, o SPFOutcome, budget string) (Status, string) {
	if o.Result == SPFPass {
		return Pass, fmt.Sprintf("%s is authorized (%s; %s)", ip, o.Reason, budget)
	}
	st := Fail
	if o.Result == SPFNeutral {
		st = Warn // "?" means no opinion; DKIM alone can still carry DMARC
	}
	return st, fmt.Sprintf("%s is not authorized: %s (%s; %s): add ip4:/ip6: for it before the all term", ip, o.Result, o.Reason, budget)
}
