// Package cli holds what every inkan subcommand does the same way: exit
// statuses, -h/--help, and printing configuration problems.
//
// Promises: -h, -help and --help anywhere before "--" print the command's
// usage on stdout and exit 0; a usage mistake prints the usage on stderr and
// exits 2; a configuration problem (the file, a variable, or a file a
// setting names) is printed once per problem on stderr and exits 78
// (EX_CONFIG), so that systemd's RestartPreventExitStatus=78 stops retrying.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// Exit statuses shared by the subcommands.
const (
	ExitOK     = 0
	ExitFail   = 1
	ExitUsage  = 2
	ExitConfig = 78 // EX_CONFIG from sysexits.h
)

// WantsHelp reports whether args ask for help: -h, -help or --help before
// a "--".
func WantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

// Parse parses args with fs. With -h/--help it prints fs's usage on stdout
// and returns ExitOK, ok false; on a flag mistake the flag package has
// printed the problem and the usage on stderr, and it returns ExitUsage.
func Parse(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (status int, ok bool) {
	if WantsHelp(args) {
		fs.SetOutput(stdout)
		fs.Usage()
		return ExitOK, false
	}
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK, false
		}
		return ExitUsage, false
	}
	return ExitOK, true
}

// Usage returns a flag.FlagSet Usage function that prints head (a
// "usage: ..." line, possibly more) and the flags to fs's output.
func Usage(fs *flag.FlagSet, head string) func() {
	return func() {
		fmt.Fprint(fs.Output(), head)
		if head != "" && head[len(head)-1] != '\n' {
			fmt.Fprintln(fs.Output())
		}
		fs.PrintDefaults()
	}
}

// PrintErrors prints each problem of err (as errors.Join makes them) on its
// own line as "error: PROBLEM". Callers pass the joined error itself, not a
// wrapped one, so that each line stands alone.
func PrintErrors(w io.Writer, err error) {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range joined.Unwrap() {
			PrintErrors(w, e)
		}
		return
	}
	fmt.Fprintln(w, "error:", err)
}
