package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// sysexits.h codes, which cron, PHP and MTAs' callers understand.
const (
	exOK          = 0
	exUsage       = 64
	exDataErr     = 65
	exNoUser      = 67
	exUnavailable = 69
	exTempFail    = 75
	exNoPerm      = 77
	exConfig      = 78
)

type sendmailOpts struct {
	fromHeaderRcpts bool   // -t
	from            string // -f
	fullName        string // -F
	ignoreDots      bool   // -i / -oi
	server          string
	startTLS        bool // server is a submission port
	rcpts           []string
	redirects       []string // -server, -config: only for root and inkan's user
}

// parseSendmailArgs understands the flags cron, PHP mail() and scripts pass.
// Unknown -o and -B options are accepted and ignored, as sendmail does.
func parseSendmailArgs(args []string) (*sendmailOpts, string, error) {
	o := &sendmailOpts{server: os.Getenv(config.EnvSendmailServer)}
	cfgPath := defaultConfigPath()
	for i := 0; i < len(args); i++ {
		a := args[i]
		value := func(flag string) (string, error) {
			if len(a) > len(flag) {
				return a[len(flag):], nil
			}
			if i+1 >= len(args) {
				return "", fmt.Errorf("option %s needs a value", flag)
			}
			i++
			return args[i], nil
		}
		var err error
		switch {
		case a == "--":
			o.rcpts = append(o.rcpts, args[i+1:]...)
			i = len(args)
		case a == "-t":
			o.fromHeaderRcpts = true
		case a == "-i" || a == "-oi":
			o.ignoreDots = true
		case strings.HasPrefix(a, "-f") || strings.HasPrefix(a, "-r"):
			o.from, err = value(a[:2])
		case strings.HasPrefix(a, "-F"):
			o.fullName, err = value("-F")
		case a == "-config" || a == "--config":
			cfgPath, err = value(a)
			o.redirects = append(o.redirects, a)
		case a == "-server" || a == "--server":
			o.server, err = value(a)
			o.redirects = append(o.redirects, a)
		case strings.HasPrefix(a, "-o") || strings.HasPrefix(a, "-B") || a == "-v" || a == "-U" || a == "-bm" || a == "-em" || a == "-ep" || a == "-eq":
			// accepted for compatibility, no effect
			if (a == "-B" || a == "-O") && i+1 < len(args) {
				i++
			}
		case strings.HasPrefix(a, "-N") || strings.HasPrefix(a, "-R") || strings.HasPrefix(a, "-V"):
			// DSN options: accepted, ignored
		case strings.HasPrefix(a, "-") && len(a) > 1:
			return nil, "", fmt.Errorf("unsupported option %s", a)
		default:
			o.rcpts = append(o.rcpts, a)
		}
		if err != nil {
			return nil, "", err
		}
	}
	return o, cfgPath, nil
}

func runSendmail(args []string) int {
	o, cfgPath, err := parseSendmailArgs(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sendmail:", err)
		return exUsage
	}
	if err := mayRedirect(o.redirects); err != nil {
		fmt.Fprintln(os.Stderr, "sendmail:", err)
		return exNoPerm
	}
	if o.server == "" {
		cfg, err := config.Load(cfgPath)
		if err != nil {
			printConfigError(os.Stderr, err)
			return exConfig
		}
		o.server, o.startTLS = localServer(cfg)
		if o.server == "" {
			fmt.Fprintln(os.Stderr, "sendmail: no relay or submission listener configured to submit to (set INKAN_SENDMAIL_SERVER=host:port)")
			return exConfig
		}
	}
	msg, err := readSendmailMessage(os.Stdin, o.ignoreDots)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sendmail: reading message:", err)
		return exDataErr
	}
	return submitLocal(o, msg, os.Stderr)
}

// localServer picks the address to submit to: the plain relay listener
// (loopback is trusted), else submission.
func localServer(cfg *config.Config) (string, bool) {
	for i, l := range []string{cfg.Listen.Relay, cfg.Listen.Submission} {
		for _, a := range config.SplitAddrs(l) {
			host, port, err := net.SplitHostPort(a)
			if err != nil {
				continue
			}
			if host == "" || host == "0.0.0.0" || host == "::" {
				host = "127.0.0.1"
			}
			return net.JoinHostPort(host, port), i == 1
		}
	}
	return "", false
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

func submitLocal(o *sendmailOpts, msg []byte, stderr io.Writer) int {
	from := o.from
	if from == "" {
		from = defaultSender()
	}
	hdrEnd := bytes.Index(msg, []byte("\r\n\r\n"))
	var header mailsyntax.Header
	if hdrEnd >= 0 {
		header = mailsyntax.ParseHeader(msg[:hdrEnd+4])
	}
	rcpts := o.rcpts
	if o.fromHeaderRcpts {
		for _, k := range []string{"To", "Cc", "Bcc"} {
			for _, v := range header.Values(k) {
				list, err := mailsyntax.ParseAddressList(v)
				if err != nil {
					fmt.Fprintf(stderr, "sendmail: %s header: %v\n", k, err)
					return exDataErr
				}
				for _, a := range list {
					rcpts = append(rcpts, a.String())
				}
			}
		}
	}
	// Bcc never leaves, whichever way the recipients were given (as
	// Postfix's sendmail does).
	msg = stripBcc(msg, hdrEnd)
	if len(rcpts) == 0 {
		fmt.Fprintln(stderr, "sendmail: no recipients (give them as arguments, or use -t)")
		return exUsage
	}
	if !header.Has("From") {
		msg = append([]byte("From: "+mailsyntax.FormatMailbox(o.fullName, from)+"\r\n"), msg...)
	}

	conn, err := net.DialTimeout("tcp", o.server, 10*time.Second)
	if err != nil {
		fmt.Fprintf(stderr, "sendmail: cannot reach inkan at %s: %v\n", o.server, err)
		return exTempFail
	}
	var c *smtp.Client
	if o.startTLS {
		// The submission port needs TLS before it relays; this hop goes to
		// our own server, whose certificate may be self-signed.
		if c, err = smtp.NewClientStartTLS(conn, &tls.Config{InsecureSkipVerify: true}); err != nil {
			conn.Close()
			return smtpExit(stderr, "STARTTLS", err)
		}
	} else {
		c = smtp.NewClient(conn)
	}
	defer c.Close()
	host, _ := os.Hostname()
	if err := c.Hello(host); err != nil {
		return smtpExit(stderr, "EHLO", err)
	}
	if err := c.Mail(from, nil); err != nil {
		return smtpExit(stderr, "MAIL FROM", err)
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			return smtpExit(stderr, "RCPT TO <"+r+">", err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return smtpExit(stderr, "DATA", err)
	}
	if _, err := w.Write(msg); err != nil {
		return smtpExit(stderr, "DATA", err)
	}
	if err := w.Close(); err != nil {
		return smtpExit(stderr, "end of DATA", err)
	}
	c.Quit()
	return exOK
}

func smtpExit(stderr io.Writer, stage string, err error) int {
	fmt.Fprintf(stderr, "sendmail: %s: %v\n", stage, err)
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		switch {
		case se.Code/100 == 4:
			return exTempFail
		case strings.HasPrefix(stage, "RCPT"):
			return exNoUser
		default:
			return exUnavailable
		}
	}
	return exTempFail
}

func defaultSender() string {
	name := "root"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "localhost"
	}
	return name + "@" + host
}

// stripBcc removes Bcc fields (with continuation lines) from the header.
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
		skipping = len(l) >= 4 && strings.EqualFold(l[:4], "bcc:")
		if !skipping {
			out.WriteString(l)
		}
	}
	out.Write(msg[hdrEnd+2:])
	return out.Bytes()
}
