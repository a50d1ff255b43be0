package main

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/inkan-relay/inkan/auth"
	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/queue/maildrop"
	"github.com/inkan-relay/inkan/queue/safefile"
	"github.com/inkan-relay/inkan/relay/inbound"
	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// rootDataDir is the data directory of a server run by root (or by systemd
// with StateDirectory=inkan) on the embedded default. A user's sendmail on
// the embedded default computes its own data directory, so it looks there
// too.
const rootDataDir = "/var/lib/inkan"

// target is a listener sendmail may submit to.
type target struct {
	network  string // "unix" or "tcp"
	addr     string
	startTLS bool
}

func (t target) String() string {
	if t.network == "unix" {
		return t.addr
	}
	return "tcp " + t.addr
}

// submitter sends messages the way the configuration says: to the first
// target that answers, else into the maildrop.
type submitter struct {
	o        *sendmailOpts
	stderr   io.Writer
	cfg      *config.Config // nil when -server is used without a readable config
	targets  []target
	maildrop string // folder; "" when there is none
	uid      int
	uname    string
	domain   string // qualifies bare names: hostname
}

// newSubmitter finds the configuration (config.Discover: -config/-C,
// INKAN_CONFIG, /etc/inkan/inkan.yaml, the per-user file, the embedded
// default) and the listeners in it. -server or INKAN_SENDMAIL_SERVER name
// a TCP server instead, with no maildrop: it is not this host's inkan.
func newSubmitter(o *sendmailOpts, stderr io.Writer) (*submitter, int) {
	s := &submitter{o: o, stderr: stderr, uid: os.Geteuid()}
	if u, err := user.LookupId(strconv.Itoa(s.uid)); err == nil {
		s.uname = u.Username
	}
	cfg, source, err := config.LoadDiscovered(o.configPath)
	if err != nil && o.server == "" {
		printConfigError(stderr, err)
		return nil, exConfig
	}
	if err == nil {
		s.cfg = cfg
		if ds := inbound.LocalDomains(cfg, keyDomains(cfg)); len(ds) > 0 {
			s.domain = ds[0]
		}
	}
	if s.domain == "" {
		s.domain, _ = os.Hostname()
	}
	if o.server != "" {
		s.targets = []target{{network: "tcp", addr: o.server}}
		return s, exOK
	}
	embedded := source == config.FromEmbedded && s.uid != 0
	if p := cfg.LocalSocketPath(); p != "" {
		s.targets = append(s.targets, target{network: "unix", addr: p})
		if embedded && !filepath.IsAbs(cfg.Listen.Local) {
			s.targets = append(s.targets, target{network: "unix", addr: filepath.Join(rootDataDir, cfg.Listen.Local)})
		}
	}
	if addr, startTLS := localServer(cfg); addr != "" {
		s.targets = append(s.targets, target{network: "tcp", addr: addr, startTLS: startTLS})
	}
	s.maildrop = cfg.MaildropPath()
	if embedded && cfg.Queue.Maildrop != "" && !filepath.IsAbs(cfg.Queue.Maildrop) && !exists(s.maildrop) {
		s.maildrop = filepath.Join(rootDataDir, cfg.Queue.Maildrop)
	}
	if len(s.targets) == 0 && s.maildrop == "" {
		fmt.Fprintln(stderr, "sendmail: the configuration has no local, relay or submission listener and no maildrop to submit to "+
			"(set listen.local, or INKAN_SENDMAIL_SERVER=host:port); "+config.Describe(cfg.Source, source))
		return nil, exConfig
	}
	return s, exOK
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// keyDomains are the signing domains the configuration names without
// reading key files (dkim.keys), for the origin domain.
func keyDomains(cfg *config.Config) []string {
	var out []string
	for _, k := range cfg.DKIM.Keys {
		out = append(out, k.Domain)
	}
	return out
}

// localServer picks the TCP address to submit to: the plain relay listener
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

// defaultSender is the sender without -f: the user's name at the origin
// domain (Postfix: user@$myorigin), as the server's policy for local users
// has it.
func (s *submitter) defaultSender() string {
	name := s.uname
	if name == "" {
		name = strconv.Itoa(s.uid)
	}
	return name + "@" + s.domain
}

// qualify adds the origin domain to a bare user name (cron's MAILTO=root).
func (s *submitter) qualify(addr string) string {
	if addr == "" || strings.Contains(addr, "@") {
		return addr
	}
	return addr + "@" + s.domain
}

// utf8 reports whether an address is not ASCII: SMTPUTF8 is asked for only
// then, so 8-bit text in a message does not need it of every next hop.
func (e envelope) utf8() bool {
	u := !mailsyntax.IsASCII(e.from)
	for _, r := range e.to {
		u = u || !mailsyntax.IsASCII(r)
	}
	return u
}

// outcome is how one submission ended.
type outcome struct {
	id      string   // queue ID, when the server took it
	dropped string   // maildrop file, when it went there
	refused []string // recipients the server refused, with its reply (the others got the message)
	err     error    // nil: accepted or dropped
	stage   string   // where err happened: "connect", "MAIL FROM", "RCPT TO", "DATA"
	exit    int
}

// deliver submits env and msg to the first target that answers. When none
// does, or the server answers "try again later", the message goes to the
// maildrop; so it is never lost while the server is down.
func (s *submitter) deliver(env envelope, msg []byte) outcome {
	last := outcome{err: errors.New("no listener configured"), stage: "connect", exit: exTempFail}
	for _, t := range s.targets {
		out := s.submitTo(t, env, msg)
		if out.stage == "connect" {
			if s.o.verbose {
				fmt.Fprintf(s.stderr, "sendmail: %s: %v\n", t, out.err)
			}
			last = out
			continue
		}
		if out.err != nil && isTemporary(out.err) && s.maildrop != "" && s.o.server == "" {
			fmt.Fprintf(s.stderr, "sendmail: %s: %v; the message goes to the maildrop\n", out.stage, out.err)
			return s.drop(env, msg)
		}
		return out
	}
	if s.maildrop != "" && s.o.server == "" {
		return s.drop(env, msg)
	}
	return last
}

// submitTo sends one message over one connection.
func (s *submitter) submitTo(t target, env envelope, msg []byte) outcome {
	c, err := s.dial(t)
	if err != nil {
		return outcome{err: err, stage: "connect", exit: exTempFail}
	}
	defer c.Close()
	fail := func(stage string, err error) outcome {
		return outcome{err: err, stage: stage, exit: exitFor(stage, err)}
	}
	mo := &smtp.MailOptions{UTF8: env.utf8(), Return: smtp.DSNReturn(env.ret), EnvelopeID: env.envID}
	if err := c.Mail(env.from, mo); err != nil {
		return fail("MAIL FROM", err)
	}
	var ro *smtp.RcptOptions
	for _, n := range env.notify {
		if ro == nil {
			ro = &smtp.RcptOptions{}
		}
		ro.Notify = append(ro.Notify, smtp.DSNNotify(n))
	}
	var refused []string
	var lastRefusal error
	accepted := 0
	for _, r := range env.to {
		err := c.Rcpt(r, ro)
		var se *smtp.SMTPError
		switch {
		case err == nil:
			accepted++
		case errors.As(err, &se) && se.Code/100 == 5:
			refused = append(refused, fmt.Sprintf("<%s>: %v", r, err))
			lastRefusal = err
		default:
			return fail("RCPT TO <"+r+">", err)
		}
	}
	if accepted == 0 {
		return outcome{err: lastRefusal, stage: "RCPT TO", refused: refused, exit: exNoUser}
	}
	w, err := c.Data()
	if err != nil {
		return fail("DATA", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fail("DATA", err)
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return fail("end of DATA", err)
	}
	c.Quit()
	_, id, _ := strings.Cut(resp.StatusText, "queued as ")
	return outcome{id: id, refused: refused}
}

// dial connects to t and says EHLO.
func (s *submitter) dial(t target) (*smtp.Client, error) {
	conn, err := net.DialTimeout(t.network, t.addr, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("cannot reach inkan at %s: %w", t, err)
	}
	var c *smtp.Client
	if t.startTLS {
		// The submission port needs TLS before it relays; this hop goes to
		// our own server, whose certificate may be self-signed.
		if c, err = smtp.NewClientStartTLS(conn, &tls.Config{InsecureSkipVerify: true}); err != nil {
			conn.Close()
			return nil, fmt.Errorf("STARTTLS with %s: %w", t, err)
		}
	} else {
		c = smtp.NewClient(conn)
	}
	c.CommandTimeout = 5 * time.Minute
	c.SubmissionTimeout = 10 * time.Minute
	host, _ := os.Hostname()
	if host == "" {
		host = "localhost"
	}
	if err := c.Hello(host); err != nil {
		c.Close()
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return nil, err // an answer: 421 shutting down is "try later"
		}
		return nil, fmt.Errorf("cannot talk to inkan at %s: %w", t, err)
	}
	return c, nil
}

// drop writes the message into the maildrop, after the same sender check
// the server applies at pickup, so that a refusal is seen now.
func (s *submitter) drop(env envelope, msg []byte) outcome {
	if err := s.mayDrop(env, msg); err != nil {
		return outcome{err: err, stage: "maildrop", exit: exNoPerm}
	}
	name, err := maildrop.Write(s.maildrop, maildrop.Envelope{
		From: env.from, To: env.to, Notify: env.notify, Ret: env.ret, EnvID: env.envID, UTF8: env.utf8(),
	}, msg)
	if err != nil {
		return outcome{err: fmt.Errorf("inkan is not running and the maildrop cannot take the message: %w", err), stage: "maildrop", exit: exTempFail}
	}
	return outcome{dropped: name}
}

// mayDrop applies the server's policy for local users (inbound.LocalSenders)
// to the envelope sender and the header's authors. The server owns the
// maildrop: its owner is the user inkan runs as.
func (s *submitter) mayDrop(env envelope, msg []byte) error {
	fi, err := os.Stat(s.maildrop)
	if err != nil {
		return nil // Write reports it
	}
	if s.cfg == nil {
		return nil
	}
	owner, _ := safefile.OwnerOf(fi)
	pats, any, err := inbound.LocalSenders(s.cfg, keyDomains(s.cfg), s.uid, s.uname, owner.UID)
	if err != nil || any {
		return nil // the server decides
	}
	set, err := auth.NewSenderSet(pats)
	if err != nil {
		return nil
	}
	who := s.uname
	if who == "" {
		who = "uid " + strconv.Itoa(s.uid)
	}
	refuse := func(what string) error {
		allowed := strings.Join(pats, ", ")
		if allowed == "" {
			allowed = "no address"
		}
		return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
			Message: fmt.Sprintf("Local user %s may not send as <%s>: it may use %s; other addresses in %s are for root and inkan's user, or auth.local_senders", who, env.from, allowed, what)}
	}
	if env.from != "" && !set.Allows(env.from) {
		return refuse("-f")
	}
	if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
		a, _ := mailsyntax.ParseHeader(msg[:i+4]).Authors()
		for _, x := range a.All() {
			if !set.Allows(x.String()) {
				env.from = x.String()
				return refuse("From:")
			}
		}
	}
	return nil
}

// send is the default mode: deliver, report, and exit as Postfix's
// sendmail would.
func (s *submitter) send(env envelope, msg []byte) int {
	out := s.deliver(env, msg)
	for _, r := range out.refused {
		fmt.Fprintf(s.stderr, "sendmail: recipient refused, the message was not sent to it: %s\n", r)
	}
	if out.err != nil {
		fmt.Fprintf(s.stderr, "sendmail: %s: %v\n", out.stage, out.err)
		if hint := policyHint(out.err); hint != "" {
			fmt.Fprintln(s.stderr, "sendmail: "+hint)
		}
		return out.exit
	}
	if s.o.verbose {
		if out.dropped != "" {
			fmt.Fprintf(s.stderr, "sendmail: inkan is not running; queued in the maildrop as %s\n", out.dropped)
		} else {
			fmt.Fprintf(s.stderr, "sendmail: queued as %s\n", out.id)
		}
	}
	return exOK
}

// policyHint explains a refusal of the sender policy.
func policyHint(err error) string {
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.EnhancedCode == (smtp.EnhancedCode{5, 7, 1}) {
		return "which addresses local users may send as is the server's policy: auth.local_senders (root and inkan's user may use any)"
	}
	return ""
}

func isTemporary(err error) bool {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code/100 == 4
	}
	return true // the connection broke: try later
}

// exitFor maps a failure to the code Postfix's sendmail would exit with.
func exitFor(stage string, err error) int {
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code/100 == 4 {
		return exTempFail
	}
	switch {
	case se.EnhancedCode[1] == 7:
		return exNoPerm
	case strings.HasPrefix(stage, "RCPT"):
		return exNoUser
	case se.EnhancedCode[1] == 6 || se.EnhancedCode == smtp.EnhancedCode{5, 3, 4} || se.EnhancedCode[1] == 1:
		return exDataErr
	}
	return exUnavailable
}

// verify is -bv: asks the server whether it would take each address
// (sender policy, recipient syntax and limits) and shows the route it
// would go by; nothing is sent.
func (s *submitter) verify(addrs []string, stdout io.Writer) int {
	if len(addrs) == 0 {
		fmt.Fprintln(s.stderr, "sendmail: -bv needs addresses to verify")
		return exTempFail
	}
	from := s.o.from
	if !s.o.fromSet {
		from = s.defaultSender()
	}
	var c *smtp.Client
	var err error
	for _, t := range s.targets {
		if c, err = s.dial(t); err == nil {
			break
		}
	}
	if c == nil {
		fmt.Fprintf(s.stderr, "sendmail: -bv needs the inkan server running: %v\n", err)
		return exTempFail
	}
	defer c.Close()
	if err := c.Mail(from, nil); err != nil {
		fmt.Fprintf(stdout, "<%s>: sender refused: %v\n", from, err)
		return exitFor("MAIL FROM", err)
	}
	routes := s.router()
	status := exOK
	for _, a := range addrs {
		a = s.qualify(a)
		if err := c.Rcpt(a, nil); err != nil {
			fmt.Fprintf(stdout, "<%s>: undeliverable: %v\n", a, err)
			status = exNoUser
			continue
		}
		line := fmt.Sprintf("<%s>: deliverable", a)
		if routes != nil {
			line += " via " + routes(from, mailsyntax.DomainOf(a))
		}
		fmt.Fprintln(stdout, line)
	}
	c.Reset()
	c.Quit()
	return status
}

// router describes the route for a sender and recipient domain, from the
// configuration; nil when it cannot be built (an unreadable password file).
func (s *submitter) router() func(from, domain string) string {
	if s.cfg == nil {
		return nil
	}
	tr, err := newTransport(s.cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil
	}
	return func(from, domain string) string { return tr.Route(from, domain).String() }
}
