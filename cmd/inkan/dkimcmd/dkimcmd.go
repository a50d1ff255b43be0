// Package dkimcmd implements "inkan dkim": key generation, rotation in
// stages, explaining signing decisions and printing the DKIM records of the
// configured keys. "inkan dns" (package dnscmd) prints and checks them with
// the SPF and DMARC records, through LoadSigner, Keys and PrintRecord.
//
// Promises: a key file is written once (never overwritten) with mode 0600,
// or 0640 with its folder's group when that group is not the process's and
// may read the folder; nothing here probes the network except "rotate
// check", which asks only the resolver given with -resolver (default:
// delivery.resolver, else /etc/resolv.conf); every command returns 0 on
// success, 1 on failure, 2 on a usage error and 78 when the configuration
// or its keys cannot be loaded; -h prints a command's usage on stdout.
package dkimcmd

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/inkan-relay/inkan/cmd/inkan/internal/cli"
	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/relay/mailsyntax"
	"github.com/inkan-relay/inkan/relay/rewrite"
	"github.com/inkan-relay/inkan/relay/signing"
)

const dkimUsage = `usage: inkan dkim COMMAND

  keygen -d DOMAIN -s SELECTOR [-a rsa|ed25519] [-b 2048] [-o DIR]
        create a key and print its DNS record
  explain ADDRESS...
        say which keys sign mail whose header From is ADDRESS, and why
  records
        print the DNS records of every configured key
  rotate next -d DOMAIN -s NEWSELECTOR [-a rsa|ed25519] [-o DIR]
        step 1 of a key rotation: new key, its record, what to change
  rotate check -d DOMAIN -s SELECTOR [-k KEYFILE] [-resolver HOST:PORT]
        step 2: is the record published and equal to the private key?
  rotate retire -d DOMAIN -s OLDSELECTOR
        last step: the record that revokes the old key
`

// Main runs "inkan dkim keygen|explain|records|rotate ...". cfgLoad loads
// the inkan configuration; it is only called by commands that need it.
func Main(cfgLoad func() (*config.Config, error), args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, dkimUsage)
		return cli.ExitUsage
	}
	if cli.WantsHelp(args[1:]) {
		if u, ok := helpOf[args[0]]; ok {
			fmt.Fprint(stdout, u)
			return cli.ExitOK
		}
	}
	switch args[0] {
	case "keygen":
		return keygen(cfgLoad, args[1:], stdout, stderr)
	case "explain":
		return explain(cfgLoad, args[1:], stdout, stderr)
	case "records":
		return records(cfgLoad, args[1:], stdout, stderr)
	case "rotate":
		return rotate(cfgLoad, args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, dkimUsage)
		return cli.ExitOK
	}
	fmt.Fprintf(stderr, "inkan dkim: unknown command %q\n\n%s", args[0], dkimUsage)
	return cli.ExitUsage
}

// helpOf is each command's usage, for -h.
var helpOf = map[string]string{
	"explain": "usage: inkan dkim explain ADDRESS...\n\nSays which keys sign mail whose header From is ADDRESS (e.g. alice@example.com), and why.\nFor a local part (root) or an unqualified address (root@web01), it first says what the\norigin domain and the sender maps (rewrite.*) make of it in mail from this host or a\ntrusted network.\n",
	"records": "usage: inkan dkim records\n\nPrints the DNS records of every configured key.\n",
	"rotate":  rotateUsage,
}

// configFailed prints each configuration problem once and returns the
// status for a configuration error.
func configFailed(stderr io.Writer, err error) int {
	cli.PrintErrors(stderr, err)
	return cli.ExitConfig
}

// LoadSigner loads the configuration and its keys, as the server would.
// Every error it returns is a configuration problem, located at its setting
// (print it with cli.PrintErrors; the exit status is cli.ExitConfig).
func LoadSigner(cfgLoad func() (*config.Config, error)) (*config.Config, *signing.Signer, error) {
	cfg, err := cfgLoad()
	if err != nil {
		return nil, nil, err
	}
	s, err := signing.New(cfg.DKIM, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return nil, nil, cli.Locate(cfg, "dkim", err)
	}
	return cfg, s, nil
}

func explain(cfgLoad func() (*config.Config, error), args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: inkan dkim explain ADDRESS... (a header From address, e.g. alice@example.com)")
		return 2
	}
	cfg, s, err := LoadSigner(cfgLoad)
	if err != nil {
		return configFailed(stderr, err)
	}
	rw := rewrite.ForSigner(cfg, s)
	for _, a := range args {
		fmt.Fprintf(stdout, "%s:\n", a)
		for _, r := range explainRewrite(cfg, rw, a) {
			if len(r.lines) > 0 {
				fmt.Fprintf(stdout, "  sent from %s (authenticated users are never rewritten):\n", r.who)
			}
			for _, l := range r.lines {
				fmt.Fprintf(stdout, "    %s\n", l)
			}
			if r.err != nil {
				fmt.Fprintf(stdout, "  no key can sign it: %v\n", r.err)
				continue
			}
			if r.from != a {
				fmt.Fprintf(stdout, "  %s then signs as:\n", r.from)
			}
			for _, l := range s.Explain(r.from) {
				fmt.Fprintf(stdout, "  %s\n", l)
			}
		}
	}
	for _, w := range s.Warnings() {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	return 0
}

// rewritten is what the rewriting makes of an address for some senders.
type rewritten struct {
	who   string   // "this host or a trusted network", "network printers"
	lines []string // the steps; none when nothing changes
	from  string   // the From the signer then sees
	err   error    // it cannot be completed
}

// explainRewrite says what the origin domain and the sender maps do to arg
// as the sender of mail from this host or a trusted network: for those
// first, then for each network whose own map makes another address of it.
// An argument without "@" and without a dot is a local part ("root"); one
// with a dot and no "@" is a domain, for the signer, as before.
func explainRewrite(cfg *config.Config, rw *rewrite.Rewriter, arg string) []rewritten {
	list, err := mailsyntax.ParseAddressesBare(arg)
	if err != nil || len(list) != 1 || list[0].Domain == "" && strings.Contains(list[0].Local, ".") {
		return []rewritten{{from: arg}}
	}
	a := list[0].Address
	from, lines, err := rw.Explain("", a)
	out := []rewritten{{"this host or a trusted network", lines, from.String(), err}}
	if len(lines) == 0 {
		out[0].from = arg
	}
	for _, n := range cfg.Auth.Networks {
		if len(n.RewriteSenders) == 0 {
			continue
		}
		if nf, nlines, err := rw.Explain(n.Name, a); err == nil && nf != from {
			out = append(out, rewritten{"network " + n.Name, nlines, nf.String(), nil})
		}
	}
	return out
}

func records(cfgLoad func() (*config.Config, error), args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintln(stderr, "usage: inkan dkim records")
		return 2
	}
	_, s, err := LoadSigner(cfgLoad)
	if err != nil {
		return configFailed(stderr, err)
	}
	ds := s.Domains()
	if len(ds) == 0 {
		fmt.Fprintln(stderr, "inkan dkim records: no DKIM keys configured (create one with inkan dkim keygen)")
		return 1
	}
	for i, d := range ds {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		fmt.Fprintf(stdout, "== %s, selector %s (%s) ==\n", d.Name, d.Selector, d.Algorithm)
		PrintRecord(stdout, d.Name, d.Selector, d.PublicKey)
	}
	return 0
}

// Keys lists the configured keys of domain (case-insensitive).
func Keys(s *signing.Signer, domain string) []signing.Domain {
	var out []signing.Domain
	for _, d := range s.Domains() {
		if strings.EqualFold(d.Name, domain) {
			out = append(out, d)
		}
	}
	return out
}
