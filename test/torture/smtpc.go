package main

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// client is a raw SMTP client: it writes exactly the bytes a test asks for
// and knows exactly what was sent before a failure, which decides whether an
// unanswered message may have been committed.
type client struct {
	conn net.Conn
	r    *bufio.Reader
	tls  bool
}

// reply is one SMTP reply; text joins its lines with "\n".
type reply struct {
	code int
	text string
}

func (r reply) String() string {
	if r.code == 0 {
		return "(no reply)"
	}
	return fmt.Sprintf("%d %s", r.code, r.text)
}

// class is the first digit of the code: 2, 3, 4 or 5.
func (r reply) class() int { return r.code / 100 }

// enhanced is the RFC 3463 code at the start of the text ("4.3.1"), if any.
func (r reply) enhanced() string {
	f, _, _ := strings.Cut(r.text, " ")
	if enhancedRE.MatchString(f) {
		return f
	}
	return ""
}

var enhancedRE = regexp.MustCompile(`^[245]\.\d{1,3}\.\d{1,3}$`)

// dialOpts: local is the source IP ("" = 127.0.0.1); implicitTLS for 465.
type dialOpts struct {
	local       string
	implicitTLS bool
	timeout     time.Duration
}

// dial connects and reads the greeting.
func dial(addr string, o dialOpts) (*client, reply, error) {
	if o.local == "" {
		o.local = "127.0.0.1"
	}
	if o.timeout == 0 {
		o.timeout = 10 * time.Second
	}
	d := net.Dialer{Timeout: o.timeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(o.local)}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, reply{}, err
	}
	c := &client{conn: conn}
	if o.implicitTLS {
		tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true, ServerName: "relay.torture.test"})
		tc.SetDeadline(time.Now().Add(o.timeout))
		if err := tc.Handshake(); err != nil {
			conn.Close()
			return nil, reply{}, fmt.Errorf("TLS handshake: %w", err)
		}
		c.conn, c.tls = tc, true
	}
	c.r = bufio.NewReaderSize(c.conn, 4096)
	c.deadline(o.timeout)
	g, err := c.read()
	if err != nil {
		c.close()
		return nil, g, err
	}
	return c, g, nil
}

func (c *client) deadline(d time.Duration) { c.conn.SetDeadline(time.Now().Add(d)) }

func (c *client) close() { c.conn.Close() }

// write sends raw bytes.
func (c *client) write(s string) error {
	_, err := io.WriteString(c.conn, s)
	return err
}

// cmd sends one line (CRLF added) and reads the reply.
func (c *client) cmd(line string) (reply, error) {
	if err := c.write(line + "\r\n"); err != nil {
		return reply{}, err
	}
	return c.read()
}

// read reads one (possibly multi-line) reply. Lines are capped at 64 KiB.
func (c *client) read() (reply, error) {
	var lines []string
	code := 0
	for {
		line, err := readLine(c.r, 64<<10)
		if err != nil {
			return reply{code: code, text: strings.Join(lines, "\n")}, err
		}
		if len(line) < 3 {
			return reply{}, fmt.Errorf("malformed reply line %q", line)
		}
		n, err := strconv.Atoi(line[:3])
		if err != nil || n < 100 || n > 599 {
			return reply{}, fmt.Errorf("malformed reply line %q", line)
		}
		code = n
		if len(line) == 3 {
			lines = append(lines, "")
			return reply{code: code, text: strings.Join(lines, "\n")}, nil
		}
		lines = append(lines, line[4:])
		if line[3] != '-' {
			return reply{code: code, text: strings.Join(lines, "\n")}, nil
		}
	}
}

func readLine(r *bufio.Reader, limit int) (string, error) {
	var b []byte
	for {
		chunk, isPrefix, err := r.ReadLine()
		if err != nil {
			return "", err
		}
		b = append(b, chunk...)
		if len(b) > limit {
			return "", errors.New("reply line too long")
		}
		if !isPrefix {
			return string(b), nil
		}
	}
}

// readAll reads replies until none comes for idle (or the connection ends).
func (c *client) readAll(idle time.Duration) []reply {
	var out []reply
	for {
		c.conn.SetReadDeadline(time.Now().Add(idle))
		r, err := c.read()
		if err != nil {
			if r.code != 0 {
				out = append(out, r)
			}
			return out
		}
		out = append(out, r)
	}
}

// ehlo says EHLO and returns the extension keywords (upper case).
func (c *client) ehlo(name string) (map[string]string, reply, error) {
	r, err := c.cmd("EHLO " + name)
	if err != nil || r.code != 250 {
		return nil, r, errOr(err, r)
	}
	ext := map[string]string{}
	for i, l := range strings.Split(r.text, "\n") {
		if i == 0 {
			continue
		}
		k, v, _ := strings.Cut(l, " ")
		ext[strings.ToUpper(k)] = v
	}
	return ext, r, nil
}

// startTLS upgrades a plain connection (certificates are not checked: the
// server under test has a self-signed one).
func (c *client) startTLS() (reply, error) {
	r, err := c.cmd("STARTTLS")
	if err != nil || r.code != 220 {
		return r, errOr(err, r)
	}
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true, ServerName: "relay.torture.test"})
	if err := tc.Handshake(); err != nil {
		return r, fmt.Errorf("TLS handshake: %w", err)
	}
	c.conn, c.tls = tc, true
	c.r = bufio.NewReaderSize(tc, 4096)
	return r, nil
}

// errOr turns an unexpected reply into an error when err is nil.
func errOr(err error, r reply) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("unexpected reply %s", r)
}

// outcome is what a client knows about one message it tried to submit.
type outcome int

const (
	outPending outcome = iota
	outAcked           // 250 to the final dot: must be delivered
	outRefused         // an error reply: must not be delivered
	outCut             // connection lost before the final dot was sent: cannot have been committed
	outUnsure          // final dot sent, no reply: may or may not have been committed
)

func (o outcome) String() string {
	return [...]string{"pending", "acked", "refused", "cut", "unsure"}[o]
}

// submission is the result of one transaction.
type submission struct {
	out   outcome
	reply reply  // the last reply received
	stage string // MAIL, RCPT, DATA, dot
	id    string // queue ID from "queued as ID"
	err   error
}

var queuedRE = regexp.MustCompile(`queued as ([0-9A-V]{16})`)

// submitHooks lets a scenario act at precise moments of a transaction.
type submitHooks struct {
	midData func() // after half of the message was written
	// earlyReply sends the message in small pieces and looks for a reply
	// between them: a server refusing a line too long answers and hangs up
	// mid-DATA, and its reply is lost if the client keeps writing into the
	// reset connection.
	earlyReply bool
}

// submit runs MAIL, RCPT..., DATA, message, final dot on an open session.
// body must use CRLF line endings and end with CRLF; it is sent as is
// (dot-stuffing is the caller's business).
func (c *client) submit(from string, to []string, body string, hooks *submitHooks) submission {
	s := submission{stage: "MAIL"}
	r, err := c.cmd("MAIL FROM:<" + from + ">")
	if done := s.step(r, err, 250); done {
		return s
	}
	s.stage = "RCPT"
	for _, t := range to {
		r, err := c.cmd("RCPT TO:<" + t + ">")
		if done := s.step(r, err, 250); done {
			return s
		}
	}
	s.stage = "DATA"
	r, err = c.cmd("DATA")
	if done := s.step(r, err, 354); done {
		return s
	}
	if hooks != nil && hooks.earlyReply {
		if done := c.writeWatching(&s, body); done {
			return s
		}
		return c.finishData(s)
	}
	half := len(body) / 2
	if err := c.write(body[:half]); err != nil {
		return c.cutShort(s, err)
	}
	if hooks != nil && hooks.midData != nil {
		hooks.midData()
	}
	if err := c.write(body[half:]); err != nil {
		return c.cutShort(s, err)
	}
	return c.finishData(s)
}

// writeWatching writes body in 4 kB pieces; true means the transaction
// ended early (a reply arrived, or the connection broke).
func (c *client) writeWatching(s *submission, body string) bool {
	for len(body) > 0 {
		n := min(len(body), 4096)
		if err := c.write(body[:n]); err != nil {
			*s = c.cutShort(*s, err)
			return true
		}
		body = body[n:]
		c.conn.SetReadDeadline(time.Now().Add(2 * time.Millisecond))
		_, err := c.r.Peek(1)
		c.conn.SetReadDeadline(time.Now().Add(60 * time.Second))
		if err == nil {
			r, _ := c.read()
			s.out, s.reply = outRefused, r
			return true
		}
	}
	return false
}

// finishData sends the final dot and reads the verdict.
func (c *client) finishData(s submission) submission {
	s.stage = "dot"
	if err := c.write(".\r\n"); err != nil {
		// Part of the dot may have gone out; count it as possibly committed.
		s.out, s.err = outUnsure, err
		return s
	}
	r, err := c.read()
	s.reply = r
	switch {
	case err != nil:
		s.out, s.err = outUnsure, err
	case r.code == 250:
		s.out = outAcked
		if m := queuedRE.FindStringSubmatch(r.text); m != nil {
			s.id = m[1]
		}
	default:
		s.out = outRefused
	}
	return s
}

// cutShort handles a write error before the final dot: the server may have
// refused the message and hung up (a line too long), so its last words are
// read if they can be. Nothing can have been committed either way.
func (c *client) cutShort(s submission, err error) submission {
	s.out, s.err = outCut, err
	c.conn.SetReadDeadline(time.Now().Add(time.Second))
	if r, rerr := c.read(); rerr == nil && r.code != 0 {
		s.out, s.reply = outRefused, r
	}
	return s
}

// step records a command's reply; true means the transaction is over.
func (s *submission) step(r reply, err error, want int) bool {
	s.reply = r
	switch {
	case err != nil:
		// Before the final dot nothing can be committed.
		s.out, s.err = outCut, err
		return true
	case r.code != want:
		s.out = outRefused
		return true
	}
	return false
}

// reset sends RSET after a refused transaction, so the session can go on.
func (c *client) reset() error {
	r, err := c.cmd("RSET")
	if err != nil {
		return err
	}
	if r.code != 250 {
		return fmt.Errorf("RSET: %s", r)
	}
	return nil
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}
