package main

import (
	"bytes"
	"errors"
	"io"
	"log"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// sendmail -bs: SMTP on standard input and output, the transport Symfony
// Mailer (and so Laravel) uses by default. Each transaction is read whole,
// then submitted like any other sendmail message (Bcc removed, to the
// server or into the maildrop), and the server's reply is passed back.
// Like Postfix's sendmail -bs there is no AUTH and no STARTTLS: the caller
// is a local user, whom the server knows by uid.

func serveStdio(sub *submitter, stdin io.Reader, stdout, stderr io.Writer) int {
	conn := &stdioConn{r: stdin, w: stdout, done: make(chan struct{})}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &stdioSession{sub: sub}, nil
	}))
	srv.Domain = sub.domain
	srv.EnableSMTPUTF8 = true
	srv.EnableDSN = true
	srv.ReadTimeout = 5 * time.Minute
	srv.WriteTimeout = 5 * time.Minute
	if sub.cfg != nil {
		srv.MaxMessageBytes = int64(sub.cfg.Limits.MaxMessageSize)
	}
	srv.ErrorLog = log.New(io.Discard, "", 0)
	err := srv.Serve(&oneConnListener{c: conn})
	if err != nil && !errors.Is(err, net.ErrClosed) {
		io.WriteString(stderr, "sendmail: -bs: "+err.Error()+"\n")
		return exSoftware
	}
	return exOK
}

// stdioSession collects one transaction at a time.
type stdioSession struct {
	sub    *submitter
	env    envelope
	mailed bool
}

func (s *stdioSession) Reset()        { s.env, s.mailed = envelope{}, false }
func (s *stdioSession) Logout() error { return nil }

func (s *stdioSession) Mail(from string, opts *smtp.MailOptions) error {
	if from != "" {
		if err := mailsyntax.CheckPath(from, true); err != nil {
			return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 7}, Message: "Bad sender address syntax: " + err.Error()}
		}
	}
	s.env = envelope{from: from}
	if opts != nil {
		s.env.ret, s.env.envID = string(opts.Return), opts.EnvelopeID
	}
	s.mailed = true
	return nil
}

func (s *stdioSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	if !s.mailed {
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "Need MAIL FROM first"}
	}
	to = s.sub.qualify(to)
	if err := mailsyntax.CheckPath(to, true); err != nil {
		return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "Bad recipient address syntax: " + err.Error()}
	}
	s.env.to = append(s.env.to, to)
	if opts != nil && len(opts.Notify) > 0 {
		s.env.notify = s.env.notify[:0]
		for _, n := range opts.Notify {
			s.env.notify = append(s.env.notify, string(n))
		}
	}
	return nil
}

func (s *stdioSession) Data(r io.Reader) error {
	msg, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	msg = normalizeCRLF(msg)
	msg = stripBcc(msg, bytes.Index(msg, []byte("\r\n\r\n")))
	out := s.sub.deliver(s.env, msg)
	switch {
	case out.err != nil:
		var se *smtp.SMTPError
		if errors.As(out.err, &se) {
			return se
		}
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Try again later: " + mailsyntax.ReplyText(out.err.Error(), 200)}
	case out.dropped != "":
		return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued in the maildrop as " + out.dropped + " (inkan sends it when its server runs)"}
	}
	msgText := "Ok: queued as " + out.id
	if len(out.refused) > 0 {
		msgText += "; not sent to " + strings.Join(out.refused, "; ")
	}
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: mailsyntax.ReplyText(msgText, 400)}
}

// normalizeCRLF makes every line end CRLF (clients of -bs may send bare LF).
func normalizeCRLF(b []byte) []byte {
	if !bytes.Contains(b, []byte("\n")) || bytes.Count(b, []byte("\n")) == bytes.Count(b, []byte("\r\n")) {
		return b
	}
	s := strings.ReplaceAll(string(b), "\r\n", "\n")
	return []byte(strings.ReplaceAll(s, "\n", "\r\n"))
}

// stdioConn is standard input and output as one connection.
type stdioConn struct {
	r    io.Reader
	w    io.Writer
	once sync.Once
	done chan struct{}
}

func (c *stdioConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *stdioConn) Write(p []byte) (int, error) { return c.w.Write(p) }
func (c *stdioConn) Close() error {
	c.once.Do(func() {
		close(c.done)
		if f, ok := c.w.(*os.File); ok {
			f.Sync()
		}
	})
	return nil
}
func (c *stdioConn) LocalAddr() net.Addr              { return stdioAddr{} }
func (c *stdioConn) RemoteAddr() net.Addr             { return stdioAddr{} }
func (c *stdioConn) SetDeadline(time.Time) error      { return nil }
func (c *stdioConn) SetReadDeadline(time.Time) error  { return nil }
func (c *stdioConn) SetWriteDeadline(time.Time) error { return nil }

type stdioAddr struct{}

func (stdioAddr) Network() string { return "stdio" }
func (stdioAddr) String() string  { return "stdin" }

// oneConnListener accepts its one connection, then reports itself closed
// once that connection is.
type oneConnListener struct {
	c    *stdioConn
	used bool
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	if !l.used {
		l.used = true
		return l.c, nil
	}
	<-l.c.done
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error   { return l.c.Close() }
func (l *oneConnListener) Addr() net.Addr { return stdioAddr{} }
