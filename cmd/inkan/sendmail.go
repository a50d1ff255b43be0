package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/user"
	"slices"
	"strings"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// `inkan sendmail`, installed as /usr/sbin/sendmail: the command line of
// Postfix's sendmail(1), the same exit codes (sysexits.h), the same
// fix-ups (Bcc removed, From added), submitted to the local inkan over its
// Unix socket (listen.local) or a TCP listener of the configuration that
// config.Discover finds, and left in the maildrop (package maildrop) when
// the server does not answer.

// sysexits.h codes, which cron, PHP and MTAs' callers understand.
const (
	exOK          = 0
	exDataErr     = 65
	exNoUser      = 67
	exUnavailable = 69
	exSoftware    = 70
	exTempFail    = 75
	exNoPerm      = 77
	exConfig      = 78
)

// sendmail modes (-b).
const (
	modeDeliver = "m" // read a message, send it (the default)
	modeSMTP    = "s" // SMTP on standard input and output
	modeQueue   = "p" // print the queue, as mailq
	modeVerify  = "v" // check addresses, send nothing
	modeAliases = "i" // newaliases: nothing to do
	modeRun     = "q" // -q: deliver the queue now
)

type sendmailOpts struct {
	mode            string
	queueArg        string // -q's value
	fromHeaderRcpts bool   // -t
	from            string // -f / -r
	fromSet         bool
	fullName        string // -F
	fullNameSet     bool
	ignoreDots      bool // -i, -oi
	verbose         bool // -v
	server          string
	startTLS        bool // server is a submission port
	configPath      string
	rcpts           []string
	redirects       []string // -server, -config, -C: only for root and inkan's user
	notify          []string // -N, DSN NOTIFY
	ret             string   // -R, DSN RET
	envID           string   // -V, DSN ENVID
	warnings        []string // option values ignored, as Postfix ignores them
}

// sendmailOptArgs are Postfix's sendmail options (its getopt string
// "A:B:C:F:GIL:N:O:R:UV:X:b:ce:f:h:imno:p:r:q:tvx"): true for those that
// take a value, attached (-fFROM) or as the next argument (-f FROM).
var sendmailOptArgs = map[byte]bool{
	'A': true, 'B': true, 'C': true, 'F': true, 'G': false, 'I': false, 'L': true,
	'N': true, 'O': true, 'R': true, 'U': false, 'V': true, 'b': true,
	'c': false, 'e': true, 'f': true, 'h': true, 'i': false, 'm': false, 'n': false,
	'o': true, 'p': true, 'r': true, 'q': true, 't': false, 'v': false, 'x': false,
}

// parseSendmailArgs reads Postfix's sendmail command line. Options may be
// grouped (-ti) and anywhere among the recipients; "--" ends them. Options
// Postfix ignores (-B, -G, -h, -L, -m, -n, -O, -o other than -oi, -U...) are
// accepted and ignored, and so are bad -N, -R and -V values, with a warning.
// -server and -config (-C) are inkan's own. An error is a usage error, for
// which Postfix's sendmail exits 75 (EX_TEMPFAIL), as every fatal error.
func parseSendmailArgs(args []string) (*sendmailOpts, error) {
	o := &sendmailOpts{mode: modeDeliver, server: os.Getenv(config.EnvSendmailServer)}
	for i := 0; i < len(args); i++ {
		a := args[i]
		next := func(name string) (string, error) {
			if i+1 >= len(args) {
				return "", fmt.Errorf("option %s needs a value", name)
			}
			i++
			return args[i], nil
		}
		var err error
		switch {
		case a == "--":
			o.rcpts = append(o.rcpts, args[i+1:]...)
			i = len(args)
			continue
		case a == "-config" || a == "--config":
			o.configPath, err = next(a)
			o.redirects = append(o.redirects, "-config")
		case a == "-server" || a == "--server":
			o.server, err = next(a)
			o.redirects = append(o.redirects, "-server")
		case a == "-q": // without an interval: run the queue once
			o.mode = modeRun
		case len(a) < 2 || a[0] != '-':
			o.rcpts = append(o.rcpts, a)
		default:
			err = o.parseGroup(a, next)
		}
		if err != nil {
			return nil, err
		}
	}
	return o, nil
}

// parseGroup reads one argument of single-letter options, such as "-ti",
// "-oi", "-fFROM" or "-f" followed by FROM.
func (o *sendmailOpts) parseGroup(a string, next func(string) (string, error)) error {
	for j := 1; j < len(a); j++ {
		c := a[j]
		takes, known := sendmailOptArgs[c]
		if !known {
			return fmt.Errorf("unsupported option -%c (in %q)", c, a)
		}
		if !takes {
			o.flag(c)
			continue
		}
		val := a[j+1:]
		if val == "" {
			var err error
			if val, err = next("-" + string(c)); err != nil {
				return err
			}
		}
		return o.value(c, val)
	}
	return nil
}

func (o *sendmailOpts) flag(c byte) {
	switch c {
	case 't':
		o.fromHeaderRcpts = true
	case 'i':
		o.ignoreDots = true
	case 'v':
		o.verbose = true
	case 'I':
		o.mode = modeAliases
	}
	// -G, -U, -c, -m, -n, -x: accepted, no effect (as in Postfix)
}

func (o *sendmailOpts) value(c byte, v string) error {
	switch c {
	case 'f', 'r':
		o.from, o.fromSet = v, true
		if v == "<>" {
			o.from = ""
		}
	case 'F':
		o.fullName, o.fullNameSet = v, true
	case 'C':
		o.configPath = v
		o.redirects = append(o.redirects, "-C")
	case 'b':
		switch v {
		case "m", "s", "p", "v", "i":
			o.mode = v
		case "d", "D":
			return fmt.Errorf("unsupported: -b%s (daemon mode): start the server with `inkan serve` (systemctl start inkan)", v)
		default:
			return fmt.Errorf("unsupported: -b%s (inkan sendmail knows -bm, -bs, -bp, -bv and -bi)", v)
		}
	case 'q':
		o.mode, o.queueArg = modeRun, v
	case 'o':
		if v == "i" {
			o.ignoreDots = true
		}
	case 'N':
		if err := o.parseNotify(v); err != nil {
			o.warnings = append(o.warnings, err.Error()+"; -N ignored")
		}
	case 'R':
		switch strings.ToLower(v) {
		case "full":
			o.ret = "FULL"
		case "hdrs":
			o.ret = "HDRS"
		default:
			o.warnings = append(o.warnings, fmt.Sprintf("-R %q: want full or hdrs; -R ignored", mailsyntax.Printable(v)))
		}
	case 'V':
		if len(v) > 100 || !printableASCII(v) {
			o.warnings = append(o.warnings, "-V: an envelope ID is at most 100 printable ASCII characters; -V ignored")
			break
		}
		o.envID = v
	}
	// -A, -B, -e, -h, -L, -O, -p: accepted, no effect
	return nil
}

// parseNotify reads -N: "never", or a list of success, delay, failure.
func (o *sendmailOpts) parseNotify(v string) error {
	var notify []string
	for _, w := range strings.FieldsFunc(strings.ToLower(v), func(r rune) bool { return r == ',' || r == ' ' }) {
		switch w {
		case "never", "success", "delay", "failure":
			notify = append(notify, strings.ToUpper(w))
		default:
			return fmt.Errorf("-N %q: want never, or success, delay and failure separated by commas", mailsyntax.Printable(v))
		}
	}
	if len(notify) == 0 || (len(notify) > 1 && strings.Contains(strings.ToLower(v), "never")) {
		return fmt.Errorf("-N %q: want never, or success, delay and failure separated by commas", v)
	}
	o.notify = notify
	return nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '!' || s[i] > '~' {
			return false
		}
	}
	return true
}

func runSendmail(args []string) int {
	return sendmailMain(args, os.Stdin, os.Stdout, os.Stderr)
}

const sendmailUsage = `usage: inkan sendmail [options] [recipient...]
       (installed as /usr/sbin/sendmail, mailq and newaliases: see deploy/clients.md)

Postfix's sendmail command line. Reads a message on standard input and
submits it to the local inkan: over its Unix socket (listen.local, where the
server knows your uid) or a TCP listener of the configuration every inkan
command finds (-config, $INKAN_CONFIG, /etc/inkan/inkan.yaml, the per-user
file, the embedded default). While the server does not answer, the message
waits in its maildrop (queue.maildrop) and sendmail exits 0.

  -t            recipients also from To, Cc, Bcc (Resent-* when present)
  -i, -oi       a line with a single "." does not end the message
  -f ADDR, -r   envelope sender (root and inkan's user: any; others: their
                own address or what auth.local_senders allows)
  -F NAME       full name for an added From
  -N LIST       DSN: never, or success,delay,failure
  -R full|hdrs  DSN: what a bounce returns     -V ID  DSN envelope ID
  -bm           send (the default)             -bs    SMTP on stdin/stdout
  -bp           the queue, as mailq            -bv    check addresses, send nothing
  -bi, -I       newaliases (nothing to do)     -q     deliver the queue now
  -C FILE, -config FILE, -server HOST:PORT     root and inkan's user only
  -v            say where the message went
Accepted and ignored, as in Postfix: -B -G -h -L -m -n -O -o* -U -A -e -p.
Every message loses its Bcc and Resent-Bcc fields. Exit status as Postfix's
sendmail: 0 sent or queued, 75 on any usage error or temporary failure,
77 a sender you may not use, 67 no recipient accepted, 65 bad data.
`

func sendmailMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 1 && args[0] == "-h" || slices.Contains(args, "--help") || slices.Contains(args, "-help") {
		io.WriteString(stdout, sendmailUsage)
		return exOK
	}
	o, err := parseSendmailArgs(args)
	if err != nil {
		fmt.Fprintln(stderr, "sendmail:", err)
		fmt.Fprintln(stderr, "sendmail: usage: sendmail [options] [recipient...]; `inkan sendmail --help` lists them")
		return exTempFail
	}
	for _, w := range o.warnings {
		fmt.Fprintln(stderr, "sendmail: warning:", w)
	}
	if err := mayRedirect(o.redirects); err != nil {
		fmt.Fprintln(stderr, "sendmail:", err)
		return exNoPerm
	}
	switch o.mode {
	case modeAliases:
		fmt.Fprintln(stderr, "sendmail: inkan has no aliases database (it delivers no mail locally); nothing to do")
		return exOK
	case modeQueue:
		return runQueue(withConfig(o, "list"))
	case modeRun:
		return runQueueNow(o, stderr)
	}
	sub, status := newSubmitter(o, stderr)
	if status != exOK {
		return status
	}
	switch o.mode {
	case modeSMTP:
		return serveStdio(sub, stdin, stdout, stderr)
	case modeVerify:
		return sub.verify(o.rcpts, stdout)
	}
	raw, err := readSendmailMessage(stdin, o.ignoreDots)
	if err != nil {
		fmt.Fprintln(stderr, "sendmail: reading the message:", err)
		return exDataErr
	}
	env, msg, status := prepareMessage(o, sub, raw, stderr)
	if status != exOK {
		return status
	}
	return sub.send(env, msg)
}

// withConfig passes -config (-C) on to an `inkan queue` command.
func withConfig(o *sendmailOpts, args ...string) []string {
	if o.configPath != "" {
		return append([]string{"-config", o.configPath}, args...)
	}
	return args
}

// runQueueNow is -q: deliver every queued message now. An interval (-q30m)
// asks for a queue runner, which the server is: nothing to do.
func runQueueNow(o *sendmailOpts, stderr io.Writer) int {
	switch {
	case o.queueArg == "":
	case strings.HasPrefix(o.queueArg, "R") || strings.HasPrefix(o.queueArg, "S"):
		fmt.Fprintf(stderr, "sendmail: -q%s: inkan retries the whole queue\n", o.queueArg)
	default:
		fmt.Fprintf(stderr, "sendmail: -q%s: the inkan server runs its queue on its own (queue.retry_min, queue.retry_max); nothing to do\n", o.queueArg)
		return exOK
	}
	return runQueue(withConfig(o, "retry"))
}

// readSendmailMessage reads stdin, ending at EOF, or at a line with a single
// "." unless -i was given; line endings become CRLF.
func readSendmailMessage(r io.Reader, ignoreDots bool) ([]byte, error) {
	var out bytes.Buffer
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if len(line) > 0 {
			trimmed := strings.TrimRight(line, "\r\n")
			if !ignoreDots && trimmed == "." {
				break
			}
			out.WriteString(trimmed)
			out.WriteString("\r\n")
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	return out.Bytes(), nil
}

// envelope is what a submission asks for.
type envelope struct {
	from   string
	to     []string
	notify []string
	ret    string
	envID  string
}

// prepareMessage applies sendmail's rules to a message read from stdin:
// with -t the recipients come from To, Cc and Bcc (Resent-To, Resent-Cc
// and Resent-Bcc when the message has any) and are added to those on the
// command line; Bcc and Resent-Bcc are removed in every mode; a message
// without From gets one with the sender and the full name (-F, $NAME or
// the account's), as Postfix writes it.
func prepareMessage(o *sendmailOpts, sub *submitter, msg []byte, stderr io.Writer) (envelope, []byte, int) {
	env := envelope{from: o.from, to: o.rcpts, notify: o.notify, ret: o.ret, envID: o.envID}
	if !o.fromSet {
		env.from = sub.defaultSender()
	}
	hdrEnd := bytes.Index(msg, []byte("\r\n\r\n"))
	var header mailsyntax.Header
	if hdrEnd >= 0 {
		header = mailsyntax.ParseHeader(msg[:hdrEnd+4])
	}
	if o.fromHeaderRcpts {
		fields := []string{"To", "Cc", "Bcc"}
		if header.Has("Resent-To") || header.Has("Resent-Cc") || header.Has("Resent-Bcc") {
			fields = []string{"Resent-To", "Resent-Cc", "Resent-Bcc"}
		}
		for _, k := range fields {
			for _, v := range header.Values(k) {
				list, err := mailsyntax.ParseAddressList(v)
				if err != nil {
					fmt.Fprintf(stderr, "sendmail: %s header: %v\n", k, err)
					return env, nil, exDataErr
				}
				for _, a := range list {
					env.to = append(env.to, a.String())
				}
			}
		}
	}
	for i, r := range env.to {
		env.to[i] = sub.qualify(r)
	}
	msg = stripBcc(msg, hdrEnd)
	if len(env.to) == 0 {
		// Postfix's sendmail exits 75 for both.
		if o.fromHeaderRcpts {
			fmt.Fprintln(stderr, "sendmail: no recipient addresses found in the message header (To, Cc, Bcc)")
			return env, nil, exTempFail
		}
		fmt.Fprintln(stderr, "sendmail: no recipients: give them as arguments, or use -t to read them from the header")
		return env, nil, exTempFail
	}
	if !header.Has("From") && env.from != "" {
		msg = append([]byte("From: "+mailsyntax.FormatMailbox(fullName(o), env.from)+"\r\n"), msg...)
	}
	return env, msg, exOK
}

// fullName is the sender's name for an added From: -F, else $NAME, else
// the account's (the GECOS field), as Postfix's sendmail.
func fullName(o *sendmailOpts) string {
	if o.fullNameSet {
		return o.fullName
	}
	if n := os.Getenv("NAME"); n != "" {
		return n
	}
	if u, err := user.Current(); err == nil {
		return u.Name
	}
	return ""
}

// stripBcc removes Bcc and Resent-Bcc fields (with continuation lines)
// from the header.
func stripBcc(msg []byte, hdrEnd int) []byte {
	if hdrEnd < 0 {
		return msg
	}
	var out bytes.Buffer
	skipping := false
	lines := strings.SplitAfter(string(msg[:hdrEnd+2]), "\r\n")
	for _, l := range lines {
		if l == "" {
			continue
		}
		if (l[0] == ' ' || l[0] == '\t') && skipping {
			continue
		}
		name, _, _ := strings.Cut(l, ":")
		skipping = strings.EqualFold(name, "bcc") || strings.EqualFold(name, "resent-bcc")
		if !skipping {
			out.WriteString(l)
		}
	}
	out.Write(msg[hdrEnd+2:])
	return out.Bytes()
}
