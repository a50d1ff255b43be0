package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/inkan-relay/inkan/cmd/inkan/dkimcmd"
	"github.com/inkan-relay/inkan/cmd/inkan/dnscmd"
	"github.com/inkan-relay/inkan/cmd/inkan/internal/cli"
	"github.com/inkan-relay/inkan/cmd/inkan/queuecmd"
	"github.com/inkan-relay/inkan/cmd/inkan/usercmd"
	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/relay/rewrite"
	"github.com/inkan-relay/inkan/relay/signing"
)

func runCheck(args []string) int { return checkMain(args, os.Stdout, os.Stderr) }

const checkUsage = `usage: inkan check [-config FILE] [-print] [FILE]

Validates the configuration and what it names (data directory, users file,
DKIM keys and tables, certificate files, delivery settings), without
changing anything. Every problem names its file and line (or environment
variable) and a fix. Exit status: 0 when there is none, 78 otherwise.
Warnings go to stderr and do not change the status.

`

func checkMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("inkan check", flag.ContinueOnError)
	fs.Usage = cli.Usage(fs, checkUsage+configHelp+"\n\nFlags:\n")
	cfgPath := configFlag(fs)
	print := fs.Bool("print", false, "print the effective config (defaults, file and env merged; secrets hidden) and where it came from")
	if status, ok := cli.Parse(fs, args, stdout, stderr); !ok {
		return status
	}
	switch fs.NArg() {
	case 0:
	case 1:
		*cfgPath = fs.Arg(0)
	default:
		fs.SetOutput(stderr)
		fs.Usage()
		return cli.ExitUsage
	}
	judgeAsService()
	cfg, source, status := loadConfig(*cfgPath, stderr)
	if status != cli.ExitOK {
		return status
	}
	problems, warnings := checkConfig(cfg)
	warnings = append(warnings, rewriter(cfg).Warnings()...)
	for _, w := range warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	for _, p := range problems {
		cli.PrintErrors(stderr, p)
	}
	if len(problems) > 0 {
		return cli.ExitConfig
	}
	where := config.Describe(cfg.Source, source)
	if cfg.KeysDir != "" {
		where += fmt.Sprintf("; DKIM keys: %d from %s", len(cfg.DKIM.Keys), cfg.KeysDir)
	}
	if *print {
		b, err := cfg.Dump()
		if err != nil {
			fmt.Fprintln(stderr, "inkan check:", err)
			return cli.ExitFail
		}
		fmt.Fprintf(stdout, "# %s\n", where)
		stdout.Write(b)
		for _, l := range rewriteSummary(cfg) {
			fmt.Fprintf(stdout, "# rewrite: %s\n", l)
		}
		return cli.ExitOK
	}
	if judgedAs != "" {
		where += "; files judged as the service account " + judgedAs + " sees them"
	}
	fmt.Fprintf(stdout, "%s: ok\n", where)
	return cli.ExitOK
}

// rewriteSummary says what rewrite.* resolves to (the origin domain,
// derived when unset, and the sender maps in the order they are tried), as
// the server applies it: relay/rewrite with the configured keys' domains.
func rewriteSummary(cfg *config.Config) []string {
	return rewriter(cfg).Describe()
}

// rewriter is the address rewriter the server would use with cfg.
func rewriter(cfg *config.Config) *rewrite.Rewriter {
	var s *signing.Signer
	if hasDKIM(cfg) {
		s, _ = signing.New(cfg.DKIM, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}
	return rewrite.ForSigner(cfg, s)
}

// loadConfigFor returns the loader the dkim and dns commands call when they
// need the configuration.
func loadConfigFor(path string) func() (*config.Config, error) {
	return func() (*config.Config, error) {
		judgeAsService()
		cfg, _, err := config.LoadDiscovered(path)
		return cfg, err
	}
}

func runUser(args []string) int {
	judgeAsService()
	path, rest := splitConfigFlag(args)
	if cli.WantsHelp(rest) || len(rest) == 0 {
		return usercmd.Run(usercmd.Options{}, rest, os.Stdin, os.Stdout, os.Stderr)
	}
	cfg, _, status := loadConfig(path, os.Stderr)
	if status != cli.ExitOK {
		return status
	}
	o := usercmd.Options{UsersFile: usersPath(cfg), Senders: cfg.Auth.Senders}
	return usercmd.Run(o, rest, os.Stdin, os.Stdout, os.Stderr)
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
	judgeAsService()
	path, rest := splitConfigFlag(args)
	if cli.WantsHelp(rest) {
		return queuecmd.Main("", rest, os.Stdout, os.Stderr)
	}
	cfg, _, status := loadConfig(path, os.Stderr)
	if status != cli.ExitOK {
		return status
	}
	return queuecmd.Main(queueDir(cfg), rest, os.Stdout, os.Stderr)
}
