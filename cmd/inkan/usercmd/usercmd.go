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

// Main runs `inkan user ARGS` on usersFile and returns the exit code: 0 done,
// 1 error, 2 bad usage.
func Main(usersFile string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	fs := flag.NewFlagSet("inkan user "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	hashKind := "bcrypt"
	switch cmd {
	case "add", "passwd":
		fs.StringVar(&hashKind, "hash", "bcrypt", "password hash: bcrypt or argon2id")
	case "del", "delete", "list":
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "inkan user: unknown command %q\n%s", cmd, usage)
		return 2
	}
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	want := 1
	if cmd == "list" {
		want = 0
	}
	if fs.NArg() != want {
		fmt.Fprint(stderr, usage)
		return 2
	}
	if hashKind != "bcrypt" && hashKind != "argon2id" {
		fmt.Fprintf(stderr, "inkan user: -hash %q: want bcrypt or argon2id\n", hashKind)
		return 2
	}
	if usersFile == "" {
		fmt.Fprintln(stderr, "inkan user: no users file configured: set auth.users_file")
		return 1
	}
	if err := run(usersFile, cmd, fs.Arg(0), hashKind, stdin, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "inkan user %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

func run(file, cmd, name, hashKind string, stdin io.Reader, stdout, stderr io.Writer) error {
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
		fmt.Fprintf(stdout, "deleted user %s from %s\n", name, file)
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
		fmt.Fprintf(stdout, "added user %s to %s\n", name, file)
		if !strings.Contains(name, "@") {
			fmt.Fprintf(stderr, "note: %s is not an address, so it may send only as the addresses listed for it under auth.senders\n", name)
		}
		return nil
	}
	if err := auth.ChangePassword(file, name, hash); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "changed password of %s in %s\n", name, file)
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
