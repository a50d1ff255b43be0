package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/inkan-relay/inkan/auth"
	"github.com/inkan-relay/inkan/cmd/inkan/dkimcmd"
	"github.com/inkan-relay/inkan/cmd/inkan/dnscmd"
	"github.com/inkan-relay/inkan/cmd/inkan/queuecmd"
	"github.com/inkan-relay/inkan/cmd/inkan/usercmd"
	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/relay/signing"
)

func runCheck(args []string) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	cfgPath := fs.String("config", defaultConfigPath(), "config file to check (default: the embedded default)")
	print := fs.Bool("print", false, "print the effective config (defaults, file and env merged; secrets hidden)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		*cfgPath = fs.Arg(0)
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		printConfigError(os.Stderr, err)
		return 1
	}
	failed := false
	// Load what the config names, as serve would, to catch missing files.
	if _, err := auth.NewNetworks(cfg.Auth, nil); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		failed = true
	}
	if _, err := auth.NewPolicy(cfg.Auth.Senders); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		failed = true
	}
	if cfg.Auth.UsersFile != "" {
		if _, err := auth.LoadUsers(cfg.Auth.UsersFile); err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			failed = true
		}
	}
	warnings := cfg.Warnings()
	if hasDKIM(cfg) {
		s, err := signing.New(cfg.DKIM, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			printConfigError(os.Stderr, err) // one line per SigningTable mistake
			failed = true
		} else {
			warnings = append(warnings, s.Warnings()...)
		}
	} else {
		warnings = append(warnings, "no DKIM keys configured: mail will leave unsigned (see inkan dkim keygen)")
	}
	if _, err := newTransport(cfg, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		failed = true
	}
	for _, w := range warnings {
		fmt.Fprintln(os.Stderr, "warning:", w)
	}
	if *print {
		b, err := cfg.Dump()
		if err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			return 1
		}
		os.Stdout.Write(b)
	}
	if failed {
		return 1
	}
	fmt.Fprintf(os.Stderr, "%s: ok\n", sourceName(cfg))
	return 0
}

// printConfigError prints each problem of a joined error on its own line.
func printConfigError(w io.Writer, err error) {
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		for _, e := range joined.Unwrap() {
			printConfigError(w, e)
		}
		return
	}
	fmt.Fprintln(w, "error:", err)
}

func loadConfigFor(path string) func() (*config.Config, error) {
	return func() (*config.Config, error) { return config.Load(path) }
}

func runUser(args []string) int {
	path, rest := splitConfigFlag(args)
	cfg, err := config.Load(path)
	if err != nil {
		printConfigError(os.Stderr, err)
		return 78
	}
	return usercmd.Main(usersPath(cfg), rest, os.Stdin, os.Stdout, os.Stderr)
}

func runDKIM(args []string) int {
	path, rest := splitConfigFlag(args)
	return dkimcmd.Main(loadConfigFor(path), rest, os.Stdout, os.Stderr)
}

func runDNS(args []string) int {
	path, rest := splitConfigFlag(args)
	return dnscmd.Main(loadConfigFor(path), rest, os.Stdout, os.Stderr)
}

func runQueue(args []string) int {
	path, rest := splitConfigFlag(args)
	cfg, err := config.Load(path)
	if err != nil {
		printConfigError(os.Stderr, err)
		return 78
	}
	return queuecmd.Main(queueDir(cfg), rest, os.Stdout, os.Stderr)
}
