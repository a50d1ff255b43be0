// Package reportcmd implements "inkan report": it reads the DMARC aggregate
// reports (RFC 7489) and TLS-RPT reports (RFC 8460) that receivers send, as
// they arrive, and says what they mean for this installation.
//
// Promises:
//   - Inputs are files, folders (read recursively; a Maildir's tmp is left
//     alone), mbox files and standard input; reports may be plain, gzipped,
//     zipped, attached to mail messages, or any of these nested up to
//     maxDepth deep.
//   - Every input that cannot be read (not a report, the wrong schema, XML
//     with a DOCTYPE, a zip entry named to escape its folder, more than the
//     size limits of input.go once decompressed) is named on stderr with the
//     reason, and the other inputs are still read and reported. The exit
//     status is then 1; it is 0 when every input was read, 2 on a usage
//     error.
//   - Mail is "signed by inkan" when a DKIM result names one of the
//     configuration's keys (domain and selector, loaded as "inkan dkim" loads
//     them, or given with -keys) or comes from an address given with -ip.
//     Nothing is guessed from vendor names. A configuration that does not
//     load stops "report dmarc" with status 78, as it stops every command.
//   - Text meant for a terminal goes through mailsyntax.Printable; -json
//     gives the same facts for programs.
//   - Only -rdns touches the network: PTR queries to one resolver.
package reportcmd

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/inkan-relay/inkan/cmd/inkan/dkimcmd"
	"github.com/inkan-relay/inkan/cmd/inkan/dnscheck"
	"github.com/inkan-relay/inkan/cmd/inkan/internal/cli"
	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/relay/mailsyntax"
	"github.com/inkan-relay/inkan/relay/signing"
)

const usage = `usage: inkan report COMMAND [flags] INPUT...

  dmarc [-json] [-rdns] [-ip ADDR,...] [-config FILE] INPUT...
        DMARC aggregate reports: what each receiver saw, per reporting
        organisation and period, mail signed by inkan apart from the rest,
        and what to do about it
  tlsrpt [-json] INPUT...
        TLS-RPT reports (RFC 8460): which sessions to your MX hosts failed
        TLS, and why

INPUT is a file (.xml, .xml.gz, .zip, .json, .json.gz, a mail message or an
mbox), a folder (a Maildir, or a folder of any of these) or - for standard
input. Flags may come before or after the inputs.

Exit status: 0 when every input was read, 1 when some could not be (each is
named on stderr; the others are still reported), 2 on a usage error.
`

// Command runs "inkan report" for the inkan binary: the configuration is
// found as every command finds it (config.Discover), from -config.
func Command(args []string) int {
	return Main(func(path string) (*config.Config, error) {
		cfg, _, err := config.LoadDiscovered(path)
		return cfg, err
	}, args, os.Stdin, os.Stdout, os.Stderr)
}

// Main runs "inkan report dmarc|tlsrpt". loadConfig loads the configuration
// named by -config ("" to discover it); only dmarc calls it.
func Main(loadConfig func(path string) (*config.Config, error), args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return cli.ExitUsage
	}
	switch args[0] {
	case "dmarc":
		return runDMARC(loadConfig, args[1:], stdin, stdout, stderr)
	case "tlsrpt":
		return runTLSRPT(args[1:], stdin, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return cli.ExitOK
	}
	fmt.Fprintf(stderr, "inkan report: unknown command %q\n\n%s", args[0], usage)
	return cli.ExitUsage
}

// parseInterleaved parses flags that may stand before, between or after the
// inputs; "--" ends the flags.
func parseInterleaved(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (inputs []string, status int, ok bool) {
	if cli.WantsHelp(args) {
		fs.SetOutput(stdout)
		fs.Usage()
		return nil, cli.ExitOK, false
	}
	fs.SetOutput(stderr)
	for {
		if err := fs.Parse(args); err != nil {
			return nil, cli.ExitUsage, false
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return inputs, cli.ExitOK, true
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(inputs, rest...), cli.ExitOK, true
		}
		inputs = append(inputs, rest[0])
		args = rest[1:]
	}
}

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

func runDMARC(loadConfig func(string) (*config.Config, error), args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("inkan report dmarc", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: inkan report dmarc [flags] INPUT...\n\nReads DMARC aggregate reports (.xml, .xml.gz, .zip, mail messages, mbox, Maildir,\nfolders, - for stdin) and says what they mean for this configuration's keys.\n\n")
		fs.PrintDefaults()
	}
	cfgPath := fs.String("config", "", "config `file` whose DKIM keys are inkan's (default: $INKAN_CONFIG, /etc/inkan/inkan.yaml, ~/.config/inkan/inkan.yaml)")
	asJSON := fs.Bool("json", false, "print JSON for programs")
	rdns := fs.Bool("rdns", false, "look up the reverse DNS of each source address")
	resolver := fs.String("resolver", "", "DNS resolver `host:port` for -rdns (default: delivery.resolver, else /etc/resolv.conf)")
	verbose := fs.Bool("v", false, "list every mailbox message and file that held no report")
	var ips ipList
	fs.Var(&ips, "ip", "this host's public `addresses`, comma-separated: their mail is inkan's even when a report names no selector")
	var keyFlag keyList
	fs.Var(&keyFlag, "keys", "inkan's DKIM keys as `DOMAIN/SELECTOR`,... instead of the configuration's (to read reports where the configuration is not)")
	inputs, status, ok := parseInterleaved(fs, args, stdout, stderr)
	if !ok {
		return status
	}
	if len(inputs) == 0 {
		fmt.Fprintln(stderr, "inkan report dmarc: name the reports to read (files, folders, mbox, Maildir, or - for stdin)")
		return cli.ExitUsage
	}
	var cfg *config.Config
	keys := []signing.Domain(keyFlag)
	if len(keys) == 0 {
		var status int
		if cfg, keys, status = loadKeys(loadConfig, *cfgPath, stderr); status != cli.ExitOK {
			return status
		}
	}
	me := newSelf(keys, ips)

	x := newExtractor(kindXML, stdin)
	for _, in := range inputs {
		x.add(in)
	}
	var reports []dmarcReport
	seen := map[string]int{}
	for _, d := range x.docs {
		f, err := parseDMARC(d.data)
		if err != nil {
			x.fail(d.name, err)
			continue
		}
		key := f.Metadata.OrgName + "\x00" + f.Metadata.ReportID + "\x00" + f.Policy.Domain
		if i, dup := seen[key]; dup {
			reports[i].Duplicates = append(reports[i].Duplicates, d.name)
			continue
		}
		seen[key] = len(reports)
		reports = append(reports, me.view(d.name, f))
	}
	sort.SliceStable(reports, func(i, j int) bool {
		a, b := reports[i], reports[j]
		if a.Domain != b.Domain {
			return a.Domain < b.Domain
		}
		if !a.Begin.Equal(b.Begin) {
			return a.Begin.Before(b.Begin)
		}
		return a.Org < b.Org
	})
	if *rdns && len(reports) > 0 {
		if *resolver == "" && cfg != nil {
			*resolver = cfg.Delivery.Resolver
		}
		if err := reverseDNS(reports, *resolver); err != nil {
			fmt.Fprintln(stderr, "inkan report dmarc: -rdns:", err)
		}
	}
	concl := me.conclude(reports)
	if *asJSON {
		writeJSON(stdout, map[string]any{
			"reports": nonNil(reports), "conclusions": nonNil(concl),
			"errors": nonNil(x.errors), "skipped": nonNil(x.skipped),
		})
	} else {
		renderDMARC(newPrintable(stdout), reports, concl, me)
	}
	return finish(stderr, "dmarc", x, len(reports), *verbose)
}

// loadKeys returns the configuration and its DKIM keys, loaded as
// "inkan dkim" loads them. A configuration problem is printed as every
// command prints it, and status is cli.ExitConfig. When the configuration
// loads but its keys do not (a key file gone since), the domain and
// selector of each dkim.keys entry are enough to read reports.
func loadKeys(loadConfig func(string) (*config.Config, error), path string, stderr io.Writer) (cfg *config.Config, keys []signing.Domain, status int) {
	cfg, err := loadConfig(path)
	if err != nil {
		cli.PrintErrors(stderr, err)
		return nil, nil, cli.ExitConfig
	}
	_, s, err := dkimcmd.LoadSigner(func() (*config.Config, error) { return cfg, nil })
	if err != nil {
		for _, k := range cfg.DKIM.Keys {
			keys = append(keys, signing.Domain{Name: k.Domain, Selector: k.Selector})
		}
		fmt.Fprintf(stderr, "inkan report dmarc: note: the DKIM keys could not be loaded (%v); using the %d domain/selector pairs of dkim.keys\n", err, len(keys))
		return cfg, keys, cli.ExitOK
	}
	keys = s.Domains()
	if len(keys) == 0 {
		fmt.Fprintln(stderr, "inkan report dmarc: note: the configuration has no DKIM keys, so no mail counts as signed by inkan (give -config, -keys or -ip)")
	}
	return cfg, keys, cli.ExitOK
}

// keyList is the -keys flag: DOMAIN/SELECTOR pairs, comma-separated.
type keyList []signing.Domain

func (l *keyList) String() string {
	var s []string
	for _, k := range *l {
		s = append(s, k.Name+"/"+k.Selector)
	}
	return strings.Join(s, ",")
}

func (l *keyList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		d, sel, ok := strings.Cut(p, "/")
		if !ok || !mailsyntax.ValidDomain(d, mailsyntax.SigningDomain) || !mailsyntax.ValidDomain(sel, mailsyntax.Selector) {
			return fmt.Errorf("%q is not DOMAIN/SELECTOR (e.g. example.com/rsa1)", p)
		}
		*l = append(*l, signing.Domain{Name: mailsyntax.NormDomain(d), Selector: strings.ToLower(sel)})
	}
	return nil
}

// finish prints the problems and the skipped inputs and returns the exit status.
func finish(stderr io.Writer, cmd string, x *extractor, reports int, verbose bool) int {
	for _, p := range x.errors {
		fmt.Fprintf(stderr, "inkan report %s: %s\n", cmd, p)
	}
	for i, p := range x.skipped {
		if i == 10 && !verbose {
			fmt.Fprintf(stderr, "inkan report %s: and %d more without a report (-v lists them)\n", cmd, len(x.skipped)-i)
			break
		}
		fmt.Fprintf(stderr, "inkan report %s: skipped %s\n", cmd, p)
	}
	if reports == 0 && len(x.errors) == 0 {
		fmt.Fprintf(stderr, "inkan report %s: no reports found\n", cmd)
		return cli.ExitFail
	}
	if len(x.errors) > 0 {
		return cli.ExitFail
	}
	return cli.ExitOK
}

func writeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// nonNil makes an empty list print as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// reverseDNS fills in the PTR names of every source address (at most 2000
// addresses, 8 queries at a time, two minutes in all).
func reverseDNS(reports []dmarcReport, resolver string) error {
	c, err := dnscheck.New(resolver)
	if err != nil {
		return err
	}
	c.Timeout = 3 * time.Second
	var addrs []string
	names := map[string][]string{}
	for _, r := range reports {
		for _, rw := range r.Rows {
			if _, ok := names[rw.SourceIP]; !ok {
				names[rw.SourceIP] = nil
				addrs = append(addrs, rw.SourceIP)
			}
		}
	}
	if len(addrs) > 2000 {
		return fmt.Errorf("%d source addresses: more than 2000, not looked up", len(addrs))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	work := make(chan string)
	var failures int
	for range 8 {
		wg.Go(func() {
			for a := range work {
				ip, _ := netip.ParseAddr(a)
				ptr, err := c.PTR(ctx, ip)
				mu.Lock()
				names[a] = ptr
				if err != nil {
					failures++
				}
				mu.Unlock()
			}
		})
	}
	for _, a := range addrs {
		work <- a
	}
	close(work)
	wg.Wait()
	for i := range reports {
		for j := range reports[i].Rows {
			reports[i].Rows[j].ReverseDNS = names[reports[i].Rows[j].SourceIP]
		}
	}
	if failures > 0 {
		return fmt.Errorf("%d of %d lookups failed (timeouts or server failures)", failures, len(addrs))
	}
	return nil
}
