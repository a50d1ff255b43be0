package dkimcmd

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/inkan-relay/inkan/cmd/inkan/dnscheck"
	"github.com/inkan-relay/inkan/cmd/inkan/internal/cli"
	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/relay/signing"
)

// rotate runs "inkan dkim rotate next|check|retire": the steps of a key
// rotation, each printing the next one.
func rotate(cfgLoad func() (*config.Config, error), args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, rotateUsage)
		return cli.ExitUsage
	}
	switch args[0] {
	case "next":
		return rotateNext(cfgLoad, args[1:], stdout, stderr)
	case "check":
		return rotateCheck(cfgLoad, args[1:], stdout, stderr)
	case "retire":
		return rotateRetire(cfgLoad, args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "inkan dkim rotate: unknown step %q\n\n%s", args[0], rotateUsage)
	return cli.ExitUsage
}

const rotateUsage = `usage: inkan dkim rotate next -d DOMAIN -s NEWSELECTOR [-a rsa|ed25519] [-o DIR]
       inkan dkim rotate check -d DOMAIN -s SELECTOR [-k KEYFILE] [-resolver HOST:PORT]
       inkan dkim rotate retire -d DOMAIN -s OLDSELECTOR [-k KEYFILE]

A key rotation in stages, each printing the next:
  next    a new key and its record, and what to change in the configuration
  check   is the new record published and equal to the private key?
  retire  the record that revokes the old key, once it no longer signs
`

// keyDirs lists where keys of domain are expected: next to its current
// keys, then DataDir/dkim, then the working directory.
func keyDirs(cfg *config.Config, s *signing.Signer, domain string) []string {
	var dirs []string
	for _, d := range Keys(s, domain) {
		if d.KeyFile != "" {
			dirs = append(dirs, filepath.Dir(d.KeyFile))
		}
	}
	if cfg != nil && cfg.DataDir != "" {
		dirs = append(dirs, filepath.Join(cfg.DataDir, "dkim"))
	}
	return append(dirs, ".")
}

func rotateNext(cfgLoad func() (*config.Config, error), args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("inkan dkim rotate next", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o keyOpts
	o.register(fs, "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, s, err := LoadSigner(cfgLoad)
	if err != nil {
		return configFailed(stderr, err)
	}
	o.domain = strings.ToLower(strings.TrimSuffix(o.domain, "."))
	old := Keys(s, o.domain)
	for _, d := range old {
		if strings.EqualFold(d.Selector, o.selector) {
			fmt.Fprintf(stderr, "inkan dkim rotate next: selector %s is already in use for %s: pick a new one (e.g. %s)\n", o.selector, o.domain, suggestSelector(o.selector))
			return 1
		}
	}
	if o.dir == "" {
		o.dir = keyDirs(cfg, s, o.domain)[0]
	}
	path, pub, err := generate(&o)
	if err != nil {
		fmt.Fprintln(stderr, "inkan dkim rotate next:", err)
		if _, ok := err.(usageError); ok {
			return 2
		}
		return 1
	}
	fmt.Fprintf(stdout, "Step 1 of 4 done: new key for %s.\n\n", o.domain)
	printKey(stdout, o, path, pub)
	fmt.Fprintf(stdout, "\nStep 2: publish the record above, wait for it to be visible (up to the TTL of any\n"+
		"cached answer), then run:\n  inkan dkim rotate check -d %s -s %s\n\n", o.domain, o.selector)
	fmt.Fprintf(stdout, "Step 3: switch signing to %s and reload inkan.\n", o.selector)
	if cfg.KeysDir != "" && filepath.Dir(path) == cfg.KeysDir {
		fmt.Fprintf(stdout, "inkan signs with every key in %s (the configuration names none), so the new key signs from the next reload or restart; then move the old key file out of that folder.\n", cfg.KeysDir)
	}
	if len(old) == 0 && cfg.KeysDir == "" {
		fmt.Fprintf(stdout, "%s has no key configured yet; add:\n%s", o.domain, configSnippet(o.domain, o.selector, path))
	}
	for _, d := range old {
		if cfg.KeysDir != "" {
			// said above
		} else if isNative(cfg, d) {
			fmt.Fprintf(stdout, "In dkim.keys, replace\n      selector: %s\n      key_file: %s\nwith\n      selector: %s\n      key_file: %s\n",
				d.Selector, d.KeyFile, o.selector, path)
		} else {
			fmt.Fprintf(stdout, "In the KeyTable, add\n  %s._domainkey.%s %s:%s:%s\nand point the SigningTable line(s) that use selector %s at that key name.\n",
				o.selector, o.domain, o.domain, o.selector, path, d.Selector)
		}
		fmt.Fprintf(stdout, "Keep the %s record published for at least 7 more days: mail already sent is still verified with it.\n\n", d.Selector)
		fmt.Fprintf(stdout, "Step 4: after that, revoke the old key:\n  inkan dkim rotate retire -d %s -s %s\n", o.domain, d.Selector)
	}
	return 0
}

func isNative(cfg *config.Config, d signing.Domain) bool {
	for _, k := range cfg.DKIM.Keys {
		if strings.EqualFold(k.Domain, d.Name) && strings.EqualFold(k.Selector, d.Selector) {
			return true
		}
	}
	return false
}

// suggestSelector proposes a fresh selector: a date-stamped one.
func suggestSelector(sel string) string {
	base := strings.TrimRight(sel, "0123456789-")
	if base == "" {
		base = "key"
	}
	return base + now().Format("200601")
}

var now = time.Now

// findKey locates the private key of domain/selector: -k, the
// configuration, or DOMAIN.SELECTOR.key in the usual directories.
func findKey(cfg *config.Config, s *signing.Signer, domain, selector, flagPath string) (string, error) {
	if flagPath != "" {
		return flagPath, nil
	}
	for _, d := range Keys(s, domain) {
		if strings.EqualFold(d.Selector, selector) && d.KeyFile != "" {
			return d.KeyFile, nil
		}
	}
	for _, dir := range keyDirs(cfg, s, domain) {
		p := filepath.Join(dir, domain+"."+selector+".key")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no key file found for %s selector %s (pass -k KEYFILE)", domain, selector)
}

func rotateCheck(cfgLoad func() (*config.Config, error), args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("inkan dkim rotate check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	domain := fs.String("d", "", "signing `domain`")
	selector := fs.String("s", "", "`selector` to check")
	keyFile := fs.String("k", "", "private key `file` (default: from the configuration or DOMAIN.SELECTOR.key)")
	resolver := fs.String("resolver", "", "DNS resolver `host:port` (default: delivery.resolver, else the first nameserver in /etc/resolv.conf)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *domain == "" || *selector == "" {
		fmt.Fprintln(stderr, "usage: inkan dkim rotate check -d DOMAIN -s SELECTOR [-k KEYFILE] [-resolver HOST:PORT]")
		return 2
	}
	cfg, s, err := LoadSigner(cfgLoad)
	if err != nil {
		return configFailed(stderr, err)
	}
	path, err := findKey(cfg, s, strings.ToLower(*domain), *selector, *keyFile)
	if err != nil {
		fmt.Fprintln(stderr, "inkan dkim rotate check:", err)
		return 1
	}
	key, _, err := signing.LoadPrivateKey(path)
	if err != nil {
		fmt.Fprintln(stderr, "inkan dkim rotate check:", err)
		return 1
	}
	if *resolver == "" {
		*resolver = cfg.Delivery.Resolver
	}
	c, err := dnscheck.New(*resolver)
	if err != nil {
		fmt.Fprintln(stderr, "inkan dkim rotate check:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f := c.CheckDKIM(ctx, *domain, *selector, key.Public())
	fmt.Fprintln(stdout, f)
	if f.Status != dnscheck.Pass {
		fmt.Fprintln(stdout, "Not ready: fix the record (or wait for DNS), then run this check again.")
		return 1
	}
	fmt.Fprintf(stdout, "Ready: switch signing to selector %s (step 3 printed by rotate next).\n", *selector)
	return 0
}

func rotateRetire(cfgLoad func() (*config.Config, error), args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("inkan dkim rotate retire", flag.ContinueOnError)
	fs.SetOutput(stderr)
	domain := fs.String("d", "", "signing `domain`")
	selector := fs.String("s", "", "old `selector` to revoke")
	keyFile := fs.String("k", "", "old private key `file`, if kept elsewhere")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *domain == "" || *selector == "" {
		fmt.Fprintln(stderr, "usage: inkan dkim rotate retire -d DOMAIN -s OLDSELECTOR")
		return 2
	}
	d := strings.ToLower(*domain)
	cfg, s, err := LoadSigner(cfgLoad)
	if err != nil {
		return configFailed(stderr, err)
	}
	for _, x := range Keys(s, d) {
		if strings.EqualFold(x.Selector, *selector) {
			fmt.Fprintf(stderr, "inkan dkim rotate retire: %s selector %s still signs mail: remove it from the configuration, reload, and wait 7 days first\n", d, *selector)
			return 1
		}
	}
	record := "v=DKIM1; p="
	path, ferr := findKey(cfg, s, d, *selector, *keyFile)
	if ferr == nil {
		if key, _, err := signing.LoadPrivateKey(path); err == nil {
			record = "v=DKIM1; k=" + strings.TrimSuffix(signing.Algorithm(key.Public()), "-sha256") + "; p="
		}
	}
	name := *selector + "._domainkey"
	fmt.Fprintf(stdout, "Revoke %s selector %s: replace its TXT record at %s.%s with\n\n%s\n\nIn a BIND zone file for %s:\n%s\n\n",
		d, *selector, name, d, record, d, bindTXT(name, record))
	fmt.Fprintln(stdout, "The empty p= tells verifiers the key is revoked (RFC 6376 §3.6.1), so a stolen copy\nof the old key cannot sign for you; after a few weeks you may delete the record.")
	if ferr == nil {
		fmt.Fprintf(stdout, "Then delete the old private key:\n  rm %s\n", path)
	}
	return 0
}
