package deliver

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/idna"

	"github.com/inkan-relay/inkan/relay/dnsutil"
	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

const (
	dnsTimeout    = 5 * time.Second // per query and server
	dnsAttempts   = 2               // rounds over the server list
	dnsMaxTTL     = time.Hour       // cap on cached answers
	dnsNegTTL     = time.Minute     // cap on cached NXDOMAIN/NODATA
	dnsCacheSize  = 4096            // entries; the cache is emptied when full
	resolvConf    = "/etc/resolv.conf"
	resolvRecheck = 5 * time.Second
	maxCNAMEs     = 8
)

// shuffle randomises MX hosts of equal preference; tests may replace it.
var shuffle = rand.Shuffle

var errNXDomain = errors.New("no such domain (NXDOMAIN)")

// resolver sends recursive queries with miekg/dns to delivery.resolver or the
// servers in /etc/resolv.conf, and caches answers for their TTL.
type resolver struct {
	fixed string // delivery.resolver; "" = resolv.conf

	mu        sync.Mutex
	sys       []string
	sysMod    time.Time
	sysCheck  time.Time
	cache     map[cacheKey]cacheEntry
	cacheSize int
}

type cacheKey struct {
	name  string
	qtype uint16
}

type cacheEntry struct {
	msg     *dns.Msg
	expires time.Time
}

func newResolver(fixed string) *resolver {
	return &resolver{fixed: fixed, cache: map[cacheKey]cacheEntry{}, cacheSize: dnsCacheSize}
}

// servers returns the name servers to ask, re-reading resolv.conf when it
// changed. Without a usable resolv.conf it falls back to the local host, as
// the Go and C resolvers do.
func (r *resolver) servers() []string {
	if r.fixed != "" {
		return []string{r.fixed}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t := now()
	if r.sys != nil && t.Sub(r.sysCheck) < resolvRecheck {
		return r.sys
	}
	r.sysCheck = t
	fi, err := os.Stat(resolvConf)
	if err == nil && r.sys != nil && fi.ModTime().Equal(r.sysMod) {
		return r.sys
	}
	// A new slice each time: callers may still be reading the old one.
	r.sys = []string{"127.0.0.1:53", "[::1]:53"}
	if err != nil {
		return r.sys
	}
	r.sysMod = fi.ModTime()
	if conf, err := dns.ClientConfigFromFile(resolvConf); err == nil && len(conf.Servers) > 0 {
		list := make([]string, 0, len(conf.Servers))
		for _, s := range conf.Servers {
			list = append(list, net.JoinHostPort(s, conf.Port))
		}
		r.sys = list
	}
	return r.sys
}

// query returns a NOERROR or NXDOMAIN answer for name/qtype, from the cache
// or from the first server that gives one. Other answers (SERVFAIL,
// REFUSED...) and timeouts are temporary errors.
func (r *resolver) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	key := cacheKey{strings.ToLower(dns.Fqdn(name)), qtype}
	r.mu.Lock()
	if e, ok := r.cache[key]; ok && now().Before(e.expires) {
		r.mu.Unlock()
		return e.msg, nil
	}
	r.mu.Unlock()

	m := new(dns.Msg)
	m.SetQuestion(key.name, qtype)
	m.RecursionDesired = true
	m.AuthenticatedData = true // ask a validating resolver for the AD bit (RFC 6840 section 5.7)
	m.SetEdns0(1232, false)
	var last error
	for range dnsAttempts {
		for _, srv := range r.servers() {
			resp, err := dnsutil.Exchange(ctx, m, srv, dnsTimeout)
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				last = err
				continue
			}
			if resp.Rcode != dns.RcodeSuccess && resp.Rcode != dns.RcodeNameError {
				last = fmt.Errorf("%s from %s", dns.RcodeToString[resp.Rcode], srv)
				continue
			}
			if !r.trustsAD(srv) { // DNSSEC: believed only from resolvers we trust (dane.go)
				resp.AuthenticatedData = false
			}
			r.store(key, resp)
			return resp, nil
		}
	}
	return nil, last
}

// store caches an answer for its smallest TTL (negative answers for the SOA
// minimum), capped.
func (r *resolver) store(key cacheKey, resp *dns.Msg) {
	ttl, neg := dnsMaxTTL, true
	for _, rr := range resp.Answer {
		neg = false
		ttl = min(ttl, time.Duration(rr.Header().Ttl)*time.Second)
	}
	if neg {
		ttl = dnsNegTTL
		for _, rr := range resp.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				ttl = min(ttl, time.Duration(min(soa.Minttl, soa.Hdr.Ttl))*time.Second)
			}
		}
	}
	if ttl <= 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.cache) >= r.cacheSize {
		t := now()
		for k, e := range r.cache {
			if !t.Before(e.expires) {
				delete(r.cache, k)
			}
		}
		if len(r.cache) >= r.cacheSize {
			clear(r.cache)
		}
	}
	r.cache[key] = cacheEntry{msg: resp, expires: now().Add(ttl)}
}

// lookup returns the records of type qtype at name, following CNAMEs: those
// in the answer, then (if the server stopped at one) by asking again for the
// target. No records and no error means NODATA.
func (r *resolver) lookup(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	rrs, _, err := r.lookupAD(ctx, name, qtype)
	return rrs, err
}

// lookupAD is lookup that also reports whether every answer on the way was
// DNSSEC-validated by a trusted resolver (the AD bit): for records, NODATA
// and NXDOMAIN alike.
func (r *resolver) lookupAD(ctx context.Context, name string, qtype uint16) (rrs []dns.RR, secure bool, err error) {
	name = dns.Fqdn(name)
	secure = true
	for range maxCNAMEs {
		resp, err := r.query(ctx, name, qtype)
		if err != nil {
			return nil, false, err
		}
		secure = secure && resp.AuthenticatedData
		rrs, target := answers(resp, name, qtype)
		switch {
		case len(rrs) > 0:
			return rrs, secure, nil
		case resp.Rcode == dns.RcodeNameError:
			return nil, secure, errNXDomain
		case strings.EqualFold(target, name):
			return nil, secure, nil
		}
		name = target
	}
	return nil, false, fmt.Errorf("CNAME chain longer than %d at %s", maxCNAMEs, name)
}

// answers follows the CNAME chain from name inside resp and returns the
// records of type qtype owned by its end, and that end.
func answers(resp *dns.Msg, name string, qtype uint16) ([]dns.RR, string) {
	target := name
	for range maxCNAMEs {
		next := ""
		for _, rr := range resp.Answer {
			if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, target) {
				next = dns.Fqdn(c.Target)
				break
			}
		}
		if next == "" {
			break
		}
		target = next
	}
	var rrs []dns.RR
	for _, rr := range resp.Answer {
		if rr.Header().Rrtype == qtype && strings.EqualFold(rr.Header().Name, target) {
			rrs = append(rrs, rr)
		}
	}
	return rrs, target
}

// mxHost is one host to try, in order.
type mxHost struct {
	name string // lower case, no trailing dot
	pref uint16
}

// mx returns the hosts that receive mail for domain, per RFC 5321 section
// 5.1: MX records by preference (equal ones shuffled), or the domain itself
// when it has none (implicit MX). A null MX (RFC 7505) and NXDOMAIN are
// permanent failures; other lookup errors are temporary.
func (r *resolver) mx(ctx context.Context, domain string) ([]mxHost, *verdict) {
	q, f := queryName(domain)
	if f != nil {
		return nil, f
	}
	rrs, err := r.lookup(ctx, q, dns.TypeMX)
	switch {
	case errors.Is(err, errNXDomain):
		return nil, permanent("5.1.2", "domain %s not found: %v", domain, err)
	case err != nil:
		return nil, temporary("4.4.3", "cannot look up MX records of %s: %v", domain, err)
	case len(rrs) == 0:
		return []mxHost{{name: mailsyntax.NormDomain(q)}}, nil
	}
	hosts := make([]mxHost, 0, len(rrs))
	for _, rr := range rrs {
		mx := rr.(*dns.MX)
		if mx.Mx == "." {
			continue
		}
		hosts = append(hosts, mxHost{name: mailsyntax.NormDomain(mx.Mx), pref: mx.Preference})
	}
	if len(hosts) == 0 {
		return nil, permanent("5.1.10", "domain %s does not accept mail (null MX)", domain)
	}
	sort.SliceStable(hosts, func(i, j int) bool { return hosts[i].pref < hosts[j].pref })
	for i := 0; i < len(hosts); {
		j := i + 1
		for j < len(hosts) && hosts[j].pref == hosts[i].pref {
			j++
		}
		group := hosts[i:j]
		shuffle(len(group), func(a, b int) { group[a], group[b] = group[b], group[a] })
		i = j
	}
	return hosts, nil
}

// addrs resolves a host to its IPv6 then IPv4 addresses (both asked at once).
// A host with no address at all fails permanently when both answers were
// definite (NXDOMAIN or NODATA), temporarily otherwise.
func (r *resolver) addrs(ctx context.Context, host string) ([]netip.Addr, *verdict) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip.Unmap()}, nil
	}
	q, f := queryName(host)
	if f != nil {
		return nil, f
	}
	var (
		wg   sync.WaitGroup
		rrs  [2][]dns.RR
		errs [2]error
	)
	for i, qt := range []uint16{dns.TypeAAAA, dns.TypeA} {
		wg.Go(func() { rrs[i], errs[i] = r.lookup(ctx, q, qt) })
	}
	wg.Wait()
	var out []netip.Addr
	for _, list := range rrs {
		out = append(out, dnsutil.Addrs(list)...)
	}
	if len(out) > 0 {
		return out, nil
	}
	for _, err := range errs {
		if err != nil && !errors.Is(err, errNXDomain) {
			return nil, temporary("4.4.3", "cannot resolve %s: %v", host, err)
		}
	}
	why := "no A or AAAA records"
	if errors.Is(errs[0], errNXDomain) || errors.Is(errs[1], errNXDomain) {
		why = "no such domain (NXDOMAIN)"
	}
	return nil, permanent("5.4.4", "cannot resolve %s: %s", host, why)
}

// queryName turns a domain into the A-label form DNS needs.
func queryName(d string) (string, *verdict) {
	for i := 0; i < len(d); i++ {
		if d[i] >= 0x80 {
			a, err := idna.Lookup.ToASCII(d)
			if err != nil {
				return "", permanent("5.1.2", "invalid domain %q: %v", d, err)
			}
			return a, nil
		}
	}
	return d, nil
}
