// Command inkan is an SMTP submission relay: it authenticates its clients,
// DKIM-signs their mail, queues it durably and delivers it.
//
// Usage: inkan <command> [flags]; `inkan help` lists the commands.
package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
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
		{"sendmail", "sendmail-compatible submission to the local inkan (for cron, PHP mail())", runSendmail},
		{"health", "exit 0 when the local inkan is ready (for container health checks)", runHealth},
		{"status", "who sent how much against the sending quotas (needs http.status)", runStatus},
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
	}
	if len(os.Args) < 2 {
		usage(os.Stderr)
		os.Exit(2)
	}
	name := os.Args[1]
	for _, c := range commands {
		if c.name == name {
			os.Exit(c.run(os.Args[2:]))
		}
	}
	if name == "-h" || name == "--help" || name == "-help" {
		usage(os.Stdout)
		os.Exit(0)
	}
	fmt.Fprintf(os.Stderr, "inkan: unknown command %q\n\n", name)
	usage(os.Stderr)
	os.Exit(2)
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "inkan %s: SMTP submission relay with DKIM signing and a durable queue\n\nUsage: inkan <command> [flags]\n\nCommands:\n", version)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nEvery command takes -config FILE (or INKAN_CONFIG=FILE); `inkan <command> -h` shows its flags.\n")
}

func runHelp([]string) int { usage(os.Stdout); return 0 }

func runVersion([]string) int { fmt.Println("inkan", version); return 0 }

// configPath returns the -config flag value, or INKAN_CONFIG.
func defaultConfigPath() string { return os.Getenv("INKAN_CONFIG") }

// splitConfigFlag pulls "-config X" / "--config=X" out of args so that
// subcommands implemented in other packages need not know about it.
func splitConfigFlag(args []string) (path string, rest []string) {
	path = defaultConfigPath()
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
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
