package dnscheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/inkan-relay/inkan/relay/dnsutil"
)

// Status grades a Finding.
type Status int

const (
	Pass Status = iota
	Warn
	Fail
)

func (s Status) String() string {
	switch s {
	case Pass:
		return "PASS"
	case Warn:
		return "WARN"
	}
	return "FAIL"
}

// MarshalText writes PASS, WARN or FAIL (for -json).
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Finding is the outcome of one check.
type Finding struct {
	Check  string `json:"check"` // "dkim rsa1._domainkey.example.com", "spf example.com", "dmarc _dmarc.example.com"
	Status Status `json:"status"`
	Detail string `json:"detail"`
	// Publish is the record to publish instead, in zone-file form, when the
	// fix is one record: `example.com._report._dmarc.example.net. TXT "v=DMARC1"`.
	Publish string `json:"publish,omitempty"`
}

// String formats a finding as one output line:
// "PASS dkim rsa1._domainkey.example.com: key matches private key".
func (f Finding) String() string { return f.Status.String() + " " + f.Check + ": " + f.Detail }

// Checker sends its queries to one recursive resolver.
type Checker struct {
	Resolver string        // "host:port"
	Timeout  time.Duration // per query
}

// New returns a Checker using resolver ("host:port"); "" means the first
// nameserver in /etc/resolv.conf.
func New(resolver string) (*Checker, error) {
	if resolver == "" {
		cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil {
			return nil, fmt.Errorf("read /etc/resolv.conf: %w (fix: pass -resolver host:port)", err)
		}
		if len(cc.Servers) == 0 {
			return nil, errors.New("no nameserver in /etc/resolv.conf (fix: pass -resolver host:port)")
		}
		resolver = net.JoinHostPort(cc.Servers[0], cc.Port)
	}
	if _, _, err := net.SplitHostPort(resolver); err != nil {
		return nil, fmt.Errorf("resolver %q: %v (fix: write host:port, e.g. 127.0.0.1:53)", resolver, err)
	}
	return &Checker{Resolver: resolver, Timeout: 5 * time.Second}, nil
}

// errNXDomain marks a name that does not exist (a "void" answer for SPF).
var errNXDomain = errors.New("no such domain")

// tempError is a DNS failure worth retrying later (timeout, SERVFAIL).
type tempError struct{ err error }

func (e *tempError) Error() string { return e.err.Error() }
func (e *tempError) Unwrap() error { return e.err }

func isTemp(err error) bool {
	var te *tempError
	return errors.As(err, &te)
}

// query asks for name/qtype and returns the answers of that type (any CNAME
// chain the resolver followed is skipped). No records and no error means the
// name exists without data of that type.
func (c *Checker) query(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	m.SetEdns0(1232, false) // the size dnsutil.Exchange reads; larger answers come over TCP
	r, err := dnsutil.Exchange(ctx, m, c.Resolver, c.Timeout)
	if err != nil {
		return nil, &tempError{fmt.Errorf("query %s %s: %w", strings.TrimSuffix(name, "."), dns.TypeToString[qtype], err)}
	}
	switch r.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return nil, errNXDomain
	default:
		return nil, &tempError{fmt.Errorf("query %s %s: %s", strings.TrimSuffix(name, "."), dns.TypeToString[qtype], dns.RcodeToString[r.Rcode])}
	}
	var out []dns.RR
	for _, rr := range r.Answer {
		if rr.Header().Rrtype == qtype {
			out = append(out, rr)
		}
	}
	return out, nil
}

// txtRaw returns the character-strings of each TXT record, unjoined (how a
// record was split is what some publishing mistakes change), as the bytes
// on the wire: miekg/dns gives them escaped (\" \\ \DDD), and the escapes
// are undone here.
func (c *Checker) txtRaw(ctx context.Context, name string) ([][]string, error) {
	rrs, err := c.query(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	out := make([][]string, 0, len(rrs))
	for _, rr := range rrs {
		strs := make([]string, 0, len(rr.(*dns.TXT).Txt))
		for _, s := range rr.(*dns.TXT).Txt {
			strs = append(strs, unescapeTXT(s))
		}
		out = append(out, strs)
	}
	return out, nil
}

// unescapeTXT undoes the presentation escapes of a TXT string as miekg/dns
// reads them: \DDD is the byte DDD, \X is X, a dangling \ is dropped.
func unescapeTXT(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] != '\\':
			b.WriteByte(s[i])
		case i+1 == len(s): // dangling
		case i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]):
			b.WriteByte((s[i+1]-'0')*100 + (s[i+2]-'0')*10 + (s[i+3] - '0'))
			i += 3
		default:
			b.WriteByte(s[i+1])
			i++
		}
	}
	return b.String()
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// txt returns each TXT record as one string (its character-strings joined,
// as RFC 6376 §3.6.2.2 and RFC 7208 §3.3 require).
func (c *Checker) txt(ctx context.Context, name string) ([]string, error) {
	raw, err := c.txtRaw(ctx, name)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(raw))
	for _, strs := range raw {
		out = append(out, strings.Join(strs, ""))
	}
	return out, nil
}

// addrs returns the A (v4) or AAAA records of name.
func (c *Checker) addrs(ctx context.Context, name string, v4 bool) ([]netip.Addr, error) {
	qt := dns.TypeAAAA
	if v4 {
		qt = dns.TypeA
	}
	rrs, err := c.query(ctx, name, qt)
	if err != nil {
		return nil, err
	}
	return dnsutil.Addrs(rrs), nil
}

// mx returns the exchange host names of name.
func (c *Checker) mx(ctx context.Context, name string) ([]string, error) {
	rrs, err := c.query(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, strings.TrimSuffix(rr.(*dns.MX).Mx, "."))
	}
	return out, nil
}

// PTR returns the names the reverse DNS of ip gives (no trailing dot). A
// name that does not exist is no names and no error.
func (c *Checker) PTR(ctx context.Context, ip netip.Addr) ([]string, error) {
	rev, err := dns.ReverseAddr(ip.Unmap().String())
	if err != nil {
		return nil, err
	}
	rrs, err := c.query(ctx, rev, dns.TypePTR)
	if errors.Is(err, errNXDomain) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, strings.ToLower(strings.TrimSuffix(rr.(*dns.PTR).Ptr, ".")))
	}
	return out, nil
}
