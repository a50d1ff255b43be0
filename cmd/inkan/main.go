// Command inkan is an SMTP submission relay: it authenticates its clients,
// DKIM-signs their mail, queues it durably and delivers it.
//
// Usage: inkan <command> [flags]; `inkan help` lists the commands.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/inkan-relay/inkan/cmd/inkan/internal/cli"
	"github.com/inkan-relay/inkan/cmd/inkan/reportcmd"
	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/relay/signing"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type command struct {
	name    string
	summary string
	run     func(args []string) int
}

var commands []command

func init() {
	// Filled in init to let runHelp refer to the table.
	commands = []command{
		{"serve", "run the relay (no config file needed: an embedded default is used)", runServe},
		{"check", "validate a config file and report problems with file, line and fix", runCheck},
		{"user", "manage SMTP AUTH users: add|passwd|del|list", runUser},
		{"dkim", "DKIM keys: keygen|explain|rotate|records", runDKIM},
		{"dns", "DNS records to publish, and a check of the live DNS: records|check", runDNS},
		{"queue", "inspect and manage the queue: list|show|retry|delete|bounce|hold|release", runQueue},
		{"report", "read DMARC and TLS-RPT reports and say what they mean: dmarc|tlsrpt", reportcmd.Command},
		{"sendmail", "sendmail-compatible submission to the local inkan (for cron, PHP mail())", runSendmail},
		{"health", "exit 0 when the local inkan is ready (for container health checks)", runHealth},
		{"status", "who sent how much against the sending quotas (needs http.status)", runStatus},
		{"oauth2", "sign a relay in with OAuth2 (Microsoft 365, Google), test it: login|test", runOAuth2},
		{"version", "print the version", runVersion},
		{"help", "show this help", runHelp},
	}
}

func main() {
	// Installed as /usr/sbin/sendmail (or mailq), behave like it.
	switch filepath.Base(os.Args[0]) {
	case "sendmail":
		os.Exit(runSendmail(os.Args[1:]))
	case "mailq":
		os.Exit(runQueue(append([]string{"list"}, os.Args[1:]...)))
	case "newaliases":
		os.Exit(runSendmail(append([]string{"-bi"}, os.Args[1:]...)))
	}
	if len(os.Args) < 2 {
		usage(os.Stderr)
		os.Exit(cli.ExitUsage)
	}
	name := os.Args[1]
	for _, c := range commands {
		if c.name == name {
			os.Exit(c.run(os.Args[2:]))
		}
	}
	if name == "-h" || name == "--help" || name == "-help" {
		usage(os.Stdout)
		os.Exit(cli.ExitOK)
	}
	fmt.Fprintf(os.Stderr, "inkan: unknown command %q\n\n", name)
	usage(os.Stderr)
	os.Exit(cli.ExitUsage)
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "inkan %s: SMTP submission relay with DKIM signing and a durable queue\n\nUsage: inkan <command> [flags]\n\nCommands:\n", version)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\n%s\n`inkan <command> -h` (or `inkan help <command>`) shows a command's flags.\n", configHelp)
}

// configHelp says how every command finds its configuration (config.Discover).
const configHelp = `Every command reads the first of: -config FILE, $INKAN_CONFIG (set to ""
for none), /etc/inkan/inkan.yaml, ~/.config/inkan/inkan.yaml; else the
embedded default. INKAN_* variables apply on top. ` + "`inkan check -print`" + ` shows which.`

// runHelp prints the command list, or with a command name that command's help.
func runHelp(args []string) int {
	if len(args) > 0 && args[0] != "help" {
		for _, c := range commands {
			if c.name == args[0] {
				return c.run(append(args[1:], "-h"))
			}
		}
	}
	usage(os.Stdout)
	return cli.ExitOK
}

func runVersion(args []string) int {
	if cli.WantsHelp(args) {
		fmt.Println("usage: inkan version\n\nPrints the version of this binary.")
		return cli.ExitOK
	}
	fmt.Printf("inkan %s\ncrypto: %s\nDKIM RSA signing: %s\n", version, cryptoBackend, signing.RSABackend())
	return cli.ExitOK
}

// configFlag defines -config on fs.
func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", "", "config `file` (default: $INKAN_CONFIG, /etc/inkan/inkan.yaml, ~/.config/inkan/inkan.yaml, else the embedded default)")
}

// loadConfig loads the configuration a command uses (config.Discover). On a
// problem it prints each one once on stderr and returns cli.ExitConfig.
func loadConfig(flagValue string, stderr io.Writer) (*config.Config, string, int) {
	rootReadsForService()
	cfg, source, err := config.LoadDiscovered(flagValue)
	if err != nil {
		cli.PrintErrors(stderr, err)
		return nil, source, cli.ExitConfig
	}
	return cfg, source, cli.ExitOK
}

// printConfigError prints each problem of a joined error on its own line.
func printConfigError(w io.Writer, err error) { cli.PrintErrors(w, err) }

// splitConfigFlag pulls "-config X" / "--config=X" out of args so that
// subcommands implemented in other packages need not know about it. path is
// "" when the flag is absent: config.Discover then looks further.
func splitConfigFlag(args []string) (path string, rest []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return path, append(rest, args[i:]...)
		case a == "-config" || a == "--config":
			if i+1 < len(args) {
				path = args[i+1]
				i++
			}
		case strings.HasPrefix(a, "-config=") || strings.HasPrefix(a, "--config="):
			path = a[strings.IndexByte(a, '=')+1:]
		default:
			rest = append(rest, a)
		}
	}
	return path, rest
}
