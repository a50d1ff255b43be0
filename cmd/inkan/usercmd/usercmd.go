// Package usercmd implements `inkan user`: add, change, delete and list the
// accounts of the users file. Passwords are read from the terminal without
// echo, or as one line from standard input, never from the command line. The
// file is rewritten atomically with mode 0600; a running server picks the
// change up when it next checks the file or on SIGHUP.
package usercmd

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/inkan-relay/inkan/auth"
	"github.com/inkan-relay/inkan/cmd/inkan/internal/cli"
)

// Hashing settings; tests lower them for speed.
var (
	bcryptCost   = auth.DefaultBcryptCost
	argon2Params = auth.DefaultArgon2Params
)

const usage = `usage: inkan user add [-hash bcrypt|argon2id] NAME
       inkan user passwd [-hash bcrypt|argon2id] NAME
       inkan user del NAME
       inkan user list

The password is read from the terminal (asked twice), or as one line from
standard input when it is not a terminal. It is never taken from arguments.
`

// Options are what `inkan user` needs from the configuration.
type Options struct {
	UsersFile string              // the users file (auth.users_file, or data_dir/users)
	Senders   map[string][]string // auth.senders, to say what a new user may send as
}

// Main runs `inkan user ARGS` on usersFile and returns the exit code: 0 done,
// 1 error, 2 bad usage.
func Main(usersFile string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return Run(Options{UsersFile: usersFile}, args, stdin, stdout, stderr)
}

// Run is Main with the settings of the configuration. -h, -help or --help
// print the usage on stdout and return 0.
func Run(o Options, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if cli.WantsHelp(args) {
		fmt.Fprint(stdout, usage)
		return cli.ExitOK
	}
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return cli.ExitUsage
	}
	cmd, rest := args[0], args[1:]
	fs := flag.NewFlagSet("inkan user "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), usage) }
	hashKind := "bcrypt"
	switch cmd {
	case "add", "passwd":
		fs.StringVar(&hashKind, "hash", "bcrypt", "password hash: bcrypt or argon2id")
	case "del", "delete", "list":
	case "help":
		fmt.Fprint(stdout, usage)
		return cli.ExitOK
	default:
		fmt.Fprintf(stderr, "inkan user: unknown command %q\n%s", cmd, usage)
		return cli.ExitUsage
	}
	if err := fs.Parse(rest); err != nil {
		return cli.ExitUsage
	}
	want := 1
	if cmd == "list" {
		want = 0
	}
	if fs.NArg() != want {
		fmt.Fprint(stderr, usage)
		return cli.ExitUsage
	}
	if hashKind != "bcrypt" && hashKind != "argon2id" {
		fmt.Fprintf(stderr, "inkan user: -hash %q: want bcrypt or argon2id\n", hashKind)
		return cli.ExitUsage
	}
	if o.UsersFile == "" {
		fmt.Fprintln(stderr, "inkan user: no users file configured: set auth.users_file")
		return cli.ExitConfig
	}
	if err := run(o, cmd, fs.Arg(0), hashKind, stdin, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "inkan user %s: %v\n", cmd, err)
		return cli.ExitFail
	}
	return cli.ExitOK
}

func run(o Options, cmd, name, hashKind string, stdin io.Reader, stdout, stderr io.Writer) error {
	file := o.UsersFile
	switch cmd {
	case "list":
		names, err := auth.ListUsers(file)
		if err != nil {
			return err
		}
		for _, n := range names {
			fmt.Fprintln(stdout, n)
		}
		return nil
	case "del", "delete":
		if err := auth.DeleteUser(file, name); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "Deleted user %s from %s\n", name, file)
		return nil
	}
	if err := auth.ValidateUserName(name); err != nil {
		return err
	}
	// Fail before asking for a password when the command cannot succeed.
	names, err := auth.ListUsers(file)
	if err != nil {
		return err
	}
	exists := contains(names, name)
	if cmd == "add" && exists {
		return fmt.Errorf("%w: %s (use `inkan user passwd %s`)", auth.ErrUserExists, name, name)
	}
	if cmd == "passwd" && !exists {
		return fmt.Errorf("%w: %s (use `inkan user add %s`)", auth.ErrNoSuchUser, name, name)
	}
	pw, err := readPassword(stdin, stderr)
	if err != nil {
		return err
	}
	hash, err := hashPassword(pw, hashKind)
	if err != nil {
		return err
	}
	if cmd == "add" {
		if err := auth.AddUser(file, name, hash); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "Added user %s to %s\n", name, file)
		sendsAs(o, name, stdout, stderr)
		serviceCanRead(file, stderr)
		return nil
	}
	if err := auth.ChangePassword(file, name, hash); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Changed the password of user %s in %s\n", name, file)
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func hashPassword(pw, kind string) (string, error) {
	if kind == "argon2id" {
		return auth.HashPasswordArgon2id(pw, argon2Params)
	}
	if len(pw) > 72 {
		return "", errors.New("bcrypt uses at most 72 bytes of a password; choose a shorter one or use -hash argon2id")
	}
	return auth.HashPasswordCost(pw, bcryptCost)
}

// readPassword asks twice on a terminal, else reads one line.
func readPassword(stdin io.Reader, stderr io.Writer) (string, error) {
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fd := int(f.Fd())
		fmt.Fprint(stderr, "Password: ")
		p1, err := term.ReadPassword(fd)
		fmt.Fprintln(stderr)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		fmt.Fprint(stderr, "Repeat password: ")
		p2, err := term.ReadPassword(fd)
		fmt.Fprintln(stderr)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		if string(p1) != string(p2) {
			return "", errors.New("passwords do not match")
		}
		return checkPassword(string(p1))
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password: %w", err)
	}
	return checkPassword(strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r"))
}

func checkPassword(pw string) (string, error) {
	if pw == "" {
		return "", errors.New("empty password")
	}
	for _, r := range pw {
		if r < 0x20 || r == 0x7f {
			return "", errors.New("password contains control characters")
		}
	}
	return pw, nil
}

// sendsAs says which addresses the new user may send as: its auth.senders
// entry, else its own name when that is an address, else none (a warning).
func sendsAs(o Options, name string, stdout, stderr io.Writer) {
	switch {
	case len(o.Senders[name]) > 0:
		fmt.Fprintf(stdout, "%s may send as %s (auth.senders)\n", name, strings.Join(o.Senders[name], ", "))
	case strings.Contains(name, "@"):
		fmt.Fprintf(stdout, "%s may send as %s (its own name; auth.senders can add more)\n", name, name)
	default:
		fmt.Fprintf(stderr, "warning: %s is not an address and auth.senders has no entry for it, so it may log in but send as no address; add `%s: [%s@example.com]` under auth.senders and reload\n", name, name, name)
	}
}
