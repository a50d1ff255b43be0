// Package dnscmd implements "inkan dns": print the DKIM, SPF and DMARC
// records each sending domain needs (records), and look them up and check
// them (check, through package dnscheck).
//
// Promises: only "check" touches the network, and it asks only one
// resolver (-resolver, else delivery.resolver, else /etc/resolv.conf);
// inkan never probes the network for this host's addresses (-ip gives them);
// the exit status is 0 on success, 1 when a check FAILs, 2 on a usage
// error, 78 when the configuration or its keys cannot be loaded.
package dnscmd

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/inkan-relay/inkan/cmd/inkan/dkimcmd"
	"github.com/inkan-relay/inkan/cmd/inkan/dnscheck"
	"github.com/inkan-relay/inkan/cmd/inkan/internal/cli"
	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/relay/mailsyntax"
	"github.com/inkan-relay/inkan/relay/signing"
)

const dnsUsage = `usage: inkan dns COMMAND

  records [-ip ADDR,...] [-d DOMAIN]
        print the DKIM, SPF and DMARC records each sending domain needs
  check [-ip ADDR,...] [-d DOMAIN] [-resolver HOST:PORT] [-json]
        look the records up and check them: DKIM, SPF, DMARC and its report
        addresses, MX, and this host's PTR and name (exit status 1 if any
        FAIL); each finding says what to publish instead

-ip gives this host's public addresses; inkan never probes the network to
find them.
`

// usageOf heads each command's -h.
var usageOf = map[string]string{
	"records": "usage: inkan dns records [-ip ADDR,...] [-d DOMAIN]\n\nPrints the DKIM, SPF and DMARC records each sending domain needs.\n\nFlags:\n",
	"check":   "usage: inkan dns check [-ip ADDR,...] [-d DOMAIN] [-resolver HOST:PORT]\n\nLooks the records up and checks them; exit status 1 if any FAIL.\n\nFlags:\n",
}

// now is the clock, a variable so that tests can replace it.
var now = time.Now

// ipList is a repeatable, comma-separated -ip flag.
type ipList []netip.Addr

func (l *ipList) String() string {
	var s []string
	for _, a := range *l {
		s = append(s, a.String())
	}
	return strings.Join(s, ",")
}

func (l *ipList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		a, err := netip.ParseAddr(p)
		if err != nil {
			return fmt.Errorf("%q is not an IP address", p)
		}
		*l = append(*l, a.Unmap())
	}
	return nil
}

// Main runs "inkan dns records" and "inkan dns check". cfgLoad loads the
// inkan configuration.
func Main(cfgLoad func() (*config.Config, error), args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, dnsUsage)
		return 2
	}
	cmd := args[0]
	switch cmd {
	case "records", "check":
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, dnsUsage)
		return cli.ExitOK
	default:
		fmt.Fprintf(stderr, "inkan dns: unknown command %q\n\n%s", cmd, dnsUsage)
		return cli.ExitUsage
	}
	fs := flag.NewFlagSet("inkan dns "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var ips ipList
	fs.Var(&ips, "ip", "this host's public `addresses`, comma-separated")
	only := fs.String("d", "", "only this `domain`")
	resolver := ""
	asJSON := false
	if cmd == "check" {
		fs.StringVar(&resolver, "resolver", "", "DNS resolver `host:port` (default: delivery.resolver, else the first nameserver in /etc/resolv.conf)")
		fs.BoolVar(&asJSON, "json", false, "print the findings as JSON")
	}
	fs.Usage = cli.Usage(fs, usageOf[cmd])
	if status, ok := cli.Parse(fs, args[1:], stdout, stderr); !ok {
		return status
	}
	cfg, s, err := dkimcmd.LoadSigner(cfgLoad)
	if err != nil {
		cli.PrintErrors(stderr, err)
		return cli.ExitConfig
	}
	domains := sendingDomains(cfg, s)
	if *only != "" {
		domains = []string{strings.ToLower(strings.TrimSuffix(*only, "."))}
	}
	if len(domains) == 0 {
		fmt.Fprintf(stderr, "inkan dns %s: no sending domains: configure dkim.keys (inkan dkim keygen) or auth.senders\n", cmd)
		return 1
	}
	if cmd == "records" {
		for i, d := range domains {
			if i > 0 {
				fmt.Fprintln(stdout)
			}
			printDomainRecords(stdout, cfg, s, d, ips)
		}
		return 0
	}
	if resolver == "" {
		resolver = cfg.Delivery.Resolver // the resolver delivery uses, if set
	}
	c, err := dnscheck.New(resolver)
	if err != nil {
		fmt.Fprintln(stderr, "inkan dns check:", err)
		return 2
	}
	return check(c, s, domains, ips, cfg.Hostname, asJSON, stdout)
}

// sendingDomains are the domains inkan signs for, plus those the sender
// policy lets users send as (which then need keys too), sorted.
func sendingDomains(cfg *config.Config, s *signing.Signer) []string {
	set := map[string]bool{}
	for _, d := range s.Domains() {
		set[d.Name] = true
	}
	add := func(patterns []string) {
		for _, p := range patterns {
			if i := strings.LastIndexByte(p, '@'); i >= 0 && i < len(p)-1 && !strings.ContainsAny(p[i+1:], "*?") {
				set[strings.ToLower(p[i+1:])] = true
			}
		}
	}
	for _, list := range cfg.Auth.Senders {
		add(list)
	}
	add(cfg.Auth.TrustedSenders)
	for _, n := range cfg.Auth.Networks {
		add(n.Senders)
	}
	out := make([]string, 0, len(set))
	for d := range set {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// spfRecord suggests an SPF value: mx, this host's addresses (or its name
// when they are not given), and -all.
func spfRecord(hostname string, ips []netip.Addr) string {
	terms := []string{"v=spf1", "mx"}
	for _, a := range ips {
		if a.Is4() {
			terms = append(terms, "ip4:"+a.String())
		} else {
			terms = append(terms, "ip6:"+a.String())
		}
	}
	if len(ips) == 0 && strings.Contains(hostname, ".") {
		terms = append(terms, "a:"+hostname)
	}
	return strings.Join(append(terms, "-all"), " ")
}

func printDomainRecords(w io.Writer, cfg *config.Config, s *signing.Signer, domain string, ips []netip.Addr) {
	fmt.Fprintf(w, "== %s ==\n\n", domain)
	keys := dkimcmd.Keys(s, domain)
	if len(keys) == 0 {
		fmt.Fprintf(w, "DKIM: no key signs mail from %s yet. Create one:\n  inkan dkim keygen -d %s -s %s\n\n", domain, domain, "rsa"+now().Format("2006"))
	}
	for _, k := range keys {
		fmt.Fprintf(w, "DKIM, selector %s (%s):\n", k.Selector, k.Algorithm)
		dkimcmd.PrintRecord(w, domain, k.Selector, k.PublicKey)
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "SPF: TXT record at %s (only one SPF record per name: merge with any existing one)\n  %s\n", domain, spfRecord(cfg.Hostname, ips))
	if len(ips) == 0 {
		fmt.Fprintln(w, "  (pass -ip with this host's public addresses to list them as ip4:/ip6: terms)")
	}
	fmt.Fprintln(w, "  If other services send mail as this domain, add their include: terms before -all.")
	fmt.Fprintf(w, "\nDMARC: TXT record at _dmarc.%s\n  v=DMARC1; p=none; rua=mailto:dmarc-reports@%s\n", domain, domain)
	fmt.Fprintln(w, "  Start with p=none, read the aggregate reports, then move to p=quarantine and p=reject.")
	fmt.Fprintf(w, "\nMX: inkan only sends mail; the MX records of %s stay pointed at the server that receives it.\n", domain)
	host := cfg.Hostname
	if host == "" {
		host = "this host's name"
	}
	if len(ips) == 0 {
		fmt.Fprintf(w, "PTR: the reverse DNS of this host's public addresses should be %s, and %s should resolve back to them.\n", host, host)
		return
	}
	for _, a := range ips {
		fmt.Fprintf(w, "PTR: the reverse DNS of %s should be %s (set by whoever runs the address block), and %s should have an %s record for %s.\n",
			a, host, host, map[bool]string{true: "A", false: "AAAA"}[a.Is4()], a)
	}
}

// check runs every check for every domain, then those of this host, prints
// them (text, or JSON with asJSON) and returns the exit status.
func check(c *dnscheck.Checker, s *signing.Signer, domains []string, ips []netip.Addr, hostname string, asJSON bool, w io.Writer) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	findings := []dnscheck.Finding{}
	report := func(fs ...dnscheck.Finding) { findings = append(findings, fs...) }
	for _, d := range domains {
		keys := dkimcmd.Keys(s, d)
		if len(keys) == 0 {
			report(dnscheck.Finding{Check: "dkim " + d, Status: dnscheck.Fail,
				Detail: fmt.Sprintf("no key signs mail from %s: inkan dkim keygen -d %s -s SELECTOR", d, d)})
		}
		for _, k := range keys {
			report(c.CheckDKIM(ctx, d, k.Selector, k.PublicKey))
		}
		if f, ok := c.CheckADSP(ctx, d); ok {
			report(f)
		}
		shape, broken := c.CheckSPFRecord(ctx, d)
		report(shape...)
		if !broken { // else every sender gets permerror: the finding above says why
			if len(ips) == 0 {
				report(c.CheckSPF(ctx, d, netip.Addr{}))
			}
			for _, ip := range ips {
				report(c.CheckSPF(ctx, d, ip))
			}
		}
		report(c.CheckDMARC(ctx, d))
		report(c.CheckReportAuth(ctx, d)...)
		report(c.CheckMX(ctx, d))
		if f, ok := c.CheckMTASTS(ctx, d); ok { // when published
			report(f)
		}
		if f, ok := c.CheckTLSRPT(ctx, d); ok {
			report(f)
		}
	}
	if len(ips) == 0 {
		report(c.CheckHost(ctx, hostname, netip.Addr{})...)
	}
	for _, ip := range ips {
		report(c.CheckHost(ctx, hostname, ip)...)
	}
	failed := false
	for _, f := range findings {
		failed = failed || f.Status == dnscheck.Fail
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(struct {
			OK       bool               `json:"ok"`
			Findings []dnscheck.Finding `json:"findings"`
		}{!failed, findings})
	} else {
		for _, f := range findings {
			// DNS text is remote text: terminal controls are shown as '?'.
			fmt.Fprintln(w, mailsyntax.Printable(f.String()))
			if f.Publish != "" {
				fmt.Fprintln(w, "  publish instead:", mailsyntax.Printable(f.Publish))
			}
		}
	}
	if failed {
		return 1
	}
	return 0
}
