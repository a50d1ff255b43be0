package dnscheck

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// CheckMX checks that domain, the domain of the sending addresses, can
// receive mail: receivers refuse mail from a domain that cannot (replies
// and bounces would have nowhere to go), and a null MX (RFC 7505) says
// exactly that. inkan only sends, so the MX names another server.
func (c *Checker) CheckMX(ctx context.Context, domain string) Finding {
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	f := Finding{Check: "mx " + domain}
	hosts, err := c.mx(ctx, domain)
	switch {
	case isTemp(err):
		f.Status, f.Detail = Warn, "could not check: "+err.Error()
		return f
	case errors.Is(err, errNXDomain):
		f.Status, f.Detail = Fail, domain+" does not exist in the DNS: receivers refuse mail from it; register it or send from a domain that exists"
		return f
	case len(hosts) == 0:
		if v4, _ := c.addrs(ctx, domain, true); len(v4) > 0 {
			f.Status, f.Detail = Warn, fmt.Sprintf("no MX record: replies to %s go to its A record (%s); publish MX records naming the server that receives its mail", domain, v4[0])
			return f
		}
		f.Status, f.Detail = Fail, fmt.Sprintf("no MX record and no address: nothing can reply to mail from %s, and receivers refuse it: publish MX records naming the server that receives its mail", domain)
		return f
	}
	var ok, bad []string
	for _, h := range hosts {
		switch {
		case h == "":
			f.Status, f.Detail = Fail, fmt.Sprintf("a null MX (\"0 .\", RFC 7505): %s says it receives no mail, and receivers refuse mail from such domains; publish MX records for the server that receives its mail, or send from another domain", domain)
			f.Publish = fmt.Sprintf("%s MX 10 (the server that receives mail for %s)", dns.Fqdn(domain), domain)
			return f
		case isAddress(h):
			bad = append(bad, h+" is an address, not a host name: publish an A record for a name and point the MX at the name")
			continue
		}
		v4, err4 := c.addrs(ctx, h, true)
		v6, err6 := c.addrs(ctx, h, false)
		if isTemp(err4) || isTemp(err6) {
			ok = append(ok, h+" (address not checked)")
			continue
		}
		if len(v4)+len(v6) == 0 {
			bad = append(bad, h+" has no A or AAAA record: publish its address")
			continue
		}
		ok = append(ok, h)
	}
	if len(bad) > 0 {
		f.Status, f.Detail = Fail, "MX host "+strings.Join(bad, "; ")
		return f
	}
	f.Status, f.Detail = Pass, "mail to "+domain+" goes to "+strings.Join(ok, ", ")
	return f
}

func isAddress(h string) bool {
	_, err := netip.ParseAddr(h)
	return err == nil
}

// CheckHost checks this host's sending address ip against its reverse DNS
// and helo, the name inkan greets with (the hostname setting): the PTR of
// ip must name a host that resolves back to ip, and helo must resolve to
// ip. Receivers score mail down, or refuse it, when they disagree. Without
// an ip (the zero Addr) it only checks that helo is a public name with an
// address.
func (c *Checker) CheckHost(ctx context.Context, helo string, ip netip.Addr) []Finding {
	helo = strings.TrimSuffix(strings.ToLower(helo), ".")
	var out []Finding
	if ip.IsValid() {
		out = append(out, c.checkPTR(ctx, helo, ip))
	}
	return append(out, c.checkHELO(ctx, helo, ip))
}

func (c *Checker) checkPTR(ctx context.Context, helo string, ip netip.Addr) Finding {
	f := Finding{Check: "ptr " + ip.String()}
	rev, _ := dns.ReverseAddr(ip.String())
	want := helo
	if !mailsyntax.ValidDomain(helo, mailsyntax.HostName|mailsyntax.MultiLabel) {
		want = "mail.example.com (this host's public name)"
	}
	names, err := c.PTR(ctx, ip)
	switch {
	case err != nil:
		f.Status, f.Detail = Warn, "could not check: "+err.Error()
		return f
	case len(names) == 0:
		f.Status, f.Detail = Fail, fmt.Sprintf("%s has no reverse DNS: many receivers refuse mail from such addresses; ask whoever runs the address (the hosting or ISP panel) to set its PTR to %s", ip, want)
		f.Publish = rev + " PTR " + dns.Fqdn(want)
		return f
	}
	var confirmed []string
	for _, n := range names {
		addrs, err := c.addrs(ctx, n, ip.Is4())
		if err == nil && slices.Contains(addrs, ip) {
			confirmed = append(confirmed, n)
		}
	}
	switch {
	case len(confirmed) == 0:
		f.Status, f.Detail = Fail, fmt.Sprintf("the reverse DNS of %s is %s, which does not resolve back to %s: receivers treat that as no reverse DNS; publish the record below, or have the PTR changed to %s", ip, strings.Join(names, ", "), ip, want)
		f.Publish = fmt.Sprintf("%s %s %s", dns.Fqdn(names[0]), addrType(ip), ip)
	case !slices.Contains(confirmed, helo):
		f.Status, f.Detail = Warn, fmt.Sprintf("the reverse DNS of %s is %s, but inkan greets as %q (hostname): set hostname: %s in the configuration, or have the PTR changed to %s", ip, confirmed[0], helo, confirmed[0], want)
	default:
		f.Status, f.Detail = Pass, fmt.Sprintf("%s has reverse DNS %s, which resolves back to it", ip, helo)
	}
	return f
}

func (c *Checker) checkHELO(ctx context.Context, helo string, ip netip.Addr) Finding {
	f := Finding{Check: "helo " + helo}
	if helo == "" || !mailsyntax.ValidDomain(helo, mailsyntax.HostName|mailsyntax.MultiLabel) || helo == "localhost" || strings.HasSuffix(helo, ".local") || strings.HasSuffix(helo, ".localdomain") {
		f.Check = "helo"
		f.Status, f.Detail = Fail, fmt.Sprintf("inkan greets as %q (hostname), which is not a public host name: set hostname: to the name this host's address resolves to (its PTR)", helo)
		return f
	}
	v4, err4 := c.addrs(ctx, helo, true)
	v6, err6 := c.addrs(ctx, helo, false)
	if isTemp(err4) || isTemp(err6) {
		f.Status, f.Detail = Warn, "could not check: "+errors.Join(err4, err6).Error()
		return f
	}
	all := append(v4, v6...)
	switch {
	case ip.IsValid() && !slices.Contains(all, ip):
		f.Status, f.Detail = Fail, fmt.Sprintf("inkan greets as %s (hostname), which does not resolve to %s: receivers check that the greeting names the sender; publish the record below", helo, ip)
		f.Publish = fmt.Sprintf("%s %s %s", dns.Fqdn(helo), addrType(ip), ip)
	case len(all) == 0:
		f.Status, f.Detail = Fail, fmt.Sprintf("inkan greets as %s (hostname), which has no A or AAAA record: publish one for this host's address", helo)
	case ip.IsValid():
		f.Status, f.Detail = Pass, fmt.Sprintf("%s resolves to %s", helo, ip)
	default:
		f.Status, f.Detail = Pass, fmt.Sprintf("%s resolves to %s; pass -ip to check it against the sending address", helo, all[0])
	}
	return f
}

func addrType(ip netip.Addr) string {
	if ip.Is4() {
		return "A"
	}
	return "AAAA"
}
