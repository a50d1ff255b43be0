package deliver

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/inkan-relay/inkan/queue"
)

// Outbound PIPELINING (RFC 2920). go-smtp's client waits for the reply to
// each command; to a next hop that advertises PIPELINING, MAIL, the RCPTs
// and DATA go out in one write and their replies are read afterwards, on
// s.wire itself, as conn.rset does: between go-smtp commands its buffers
// are empty. Every outcome and every decision to keep the connection is
// that of the sequential path (transact.go), reply for reply.

// pipeGroup bounds the commands written before their replies are read. We
// read nothing while writing, so a group's replies must fit in the socket
// buffers, or the server stops reading and both sides wait; 100 (RFC 5321's
// minimum recipient count) is one write for nearly every message.
const pipeGroup = 100

var (
	replyReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}
	bodyWriters  = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 32<<10) }}
)

// pipe is the command stream of one pipelined transaction.
type pipe struct {
	s       *conn
	timeout time.Duration // commandTimeout
	cmds    []byte        // MAIL, the RCPTs, DATA, each with CRLF
	ends    []int         // where command j ends in cmds
	sent    int           // commands written so far
	br      *bufio.Reader
	tp      textproto.Reader
}

// pipelined is transact after its checks, for a server with PIPELINING.
// sent = false means nothing was sent, and the sequential path must run:
// go-smtp would refuse this envelope (a CR or LF in the sender, a bad DSN
// parameter) before sending it, with an error the sequential path turns
// into its verdict; or no recipient is valid; or the message cannot be
// opened (the sequential path opens it again and reports that after the
// RCPTs, as before).
func (t *Transport) pipelined(s *conn, d *queue.Delivery, st *outcome, opts *smtp.MailOptions, dsn bool, todo []int) (v *verdict, keep, sent bool) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	p := &pipe{s: s, timeout: t.commandTimeout}
	var ok bool
	if p.cmds, ok = mailCmd((*bp)[:0], s.smtp, d.From, opts); !ok {
		return nil, false, false
	}
	p.ends = append(make([]int, 0, len(todo)+2), len(p.cmds))
	utf8, _ := s.smtp.Extension("SMTPUTF8")
	for _, i := range todo {
		if invalidRcpt(st.rcpts[i]) {
			continue // not sent; resolved in order below
		}
		var r *queue.RcptDSN
		if dsn && i < len(d.DSN) {
			r = &d.DSN[i]
		}
		if p.cmds, ok = rcptCmd(p.cmds, st.rcpts[i], r, utf8); !ok {
			return nil, false, false
		}
		p.ends = append(p.ends, len(p.cmds))
	}
	if len(p.ends) == 1 {
		return nil, false, false
	}
	p.cmds = append(p.cmds, "DATA\r\n"...)
	p.ends = append(p.ends, len(p.cmds))
	body, err := d.Open()
	if err != nil {
		return nil, false, false
	}
	defer body.Close()

	p.br = replyReaders.Get().(*bufio.Reader)
	p.br.Reset(s.wire)
	p.tp.R = p.br
	defer func() {
		p.br.Reset(nil)
		replyReaders.Put(p.br)
	}()
	defer s.raw.SetDeadline(time.Time{})
	v, keep = t.pipeline(p, st, dsn, todo, body)
	// The server says nothing unasked, so after the last reply the reader
	// holds no bytes, and go-smtp's reader (QUIT) or the next transaction's
	// loses none. Bytes left over mean the server did speak unasked: the
	// replies can no longer be matched to commands, so drop it.
	if keep && p.br.Buffered() > 0 {
		keep = false
	}
	return v, keep, true
}

// pipeline runs the transaction whose commands p holds; its returns are
// those of transact, and it takes the same decision as the sequential path
// at each reply.
func (t *Transport) pipeline(p *pipe, st *outcome, dsn bool, todo []int, body io.Reader) (*verdict, bool) {
	s := p.s
	if err := p.reply(0, 250); err != nil {
		v, ends := fromError(err, s.remote, "after MAIL FROM")
		if ends {
			return v.at(s.remote, s.tls), false
		}
		st.resolve(todo, v.at(s.remote, s.tls))
		// The RCPTs and DATA sent with MAIL get replies (503 most likely):
		// read them all, or the next transaction reads them as its own.
		return nil, p.drain(1, false)
	}
	j := 1 // the next command whose reply is due: the RCPTs were sent in todo's order
	accepted, end := rcptResults(s, st, todo, func(int) error {
		err := p.reply(j, 25)
		j++
		return err
	})
	if end != nil {
		return end, false
	}
	if len(accepted) == 0 {
		// The sequential path sends RSET here, and no DATA; ours may have
		// gone out already (command j), and its reply comes first.
		return nil, p.drain(j, true)
	}
	if err := p.reply(j, 354); err != nil {
		v, ends := fromError(err, s.remote, "after DATA")
		if ends {
			return v.at(s.remote, s.tls), false
		}
		st.resolve(accepted, v.at(s.remote, s.tls))
		// The refused DATA may leave MAIL and RCPT in force on the server
		// (RFC 5321 4.1.1.4): clear them before the next use.
		return nil, p.rset()
	}
	countTLS(s)
	// From here on the message may reach the server: no other host is tried.
	bw := bodyWriters.Get().(*bufio.Writer)
	bw.Reset(s.wire)
	defer func() {
		bw.Reset(nil)
		bodyWriters.Put(bw)
	}()
	dw := &dotWriter{w: bw}
	if v := t.send(s, dw, body); v != nil {
		// A read error must not end the DATA (a partial message would be
		// accepted): the unflushed buffer is dropped with the connection.
		st.resolve(accepted, v.at(s.remote, s.tls))
		return nil, false
	}
	// As the sequential path: dataTimeout for the last write, and again
	// for the reply (go-smtp's SubmissionTimeout).
	s.raw.SetDeadline(now().Add(t.dataTimeout))
	dw.close()
	var text string
	err := bw.Flush()
	if err == nil {
		s.raw.SetDeadline(now().Add(t.dataTimeout))
		_, text, err = p.read(250)
	}
	if err != nil {
		v, ends := fromError(err, s.remote, "after end of data (the message may have been delivered)")
		st.resolve(accepted, v.at(s.remote, s.tls))
		return nil, !ends
	}
	delivered(s, st, accepted, text, dsn)
	return nil, true
}

// reply reads the reply to command j, writing the group that holds j first
// if it has not gone out yet. A reply other than expect (textproto's rule:
// 25 takes any 25x) comes back as the *smtp.SMTPError go-smtp would return,
// so that fromError judges it alike.
func (p *pipe) reply(j, expect int) error {
	if j >= p.sent {
		start := 0
		if p.sent > 0 {
			start = p.ends[p.sent-1]
		}
		p.sent = min(p.sent+pipeGroup, len(p.ends))
		if err := p.write(p.cmds[start:p.ends[p.sent-1]]); err != nil {
			return err
		}
	}
	p.s.raw.SetDeadline(now().Add(p.timeout))
	_, _, err := p.read(expect)
	return err
}

func (p *pipe) write(b []byte) error {
	p.s.raw.SetDeadline(now().Add(p.timeout))
	_, err := p.s.wire.Write(b)
	return err
}

// read reads one reply under the deadline already set.
func (p *pipe) read(expect int) (int, string, error) {
	code, text, err := p.tp.ReadResponse(expect)
	var te *textproto.Error
	if errors.As(err, &te) {
		err = toSMTPError(te)
	}
	return code, text, err
}

// drain reads the replies to the commands from j on that went out before
// the transaction failed, and says whether the connection can be reused.
// reset: send RSET after them (the sequential path does when no recipient
// was accepted).
func (p *pipe) drain(j int, reset bool) bool {
	taken := false // the server accepted a RCPT (though MAIL was refused)
	for ; j < p.sent; j++ {
		p.s.raw.SetDeadline(now().Add(p.timeout))
		code, _, err := p.read(0)
		if err != nil || code == 421 {
			return false
		}
		if j < len(p.ends)-1 { // a RCPT
			taken = taken || code/100 == 2
			continue
		}
		switch {
		case code == 354 && !taken:
			// DATA accepted with no recipient (a non-conforming server):
			// RFC 2920 section 3.1 ends it with a lone dot.
			if err := p.write([]byte(".\r\n")); err != nil {
				return false
			}
			if code, _, err := p.read(0); err != nil || code == 421 {
				return false
			}
			reset = true
		case code/100 != 4 && code/100 != 5:
			// 354 for a recipient the server took though it refused MAIL
			// (a lone dot might deliver an empty message), or a reply
			// that makes no sense: hang up.
			return false
		}
	}
	if reset {
		return p.rset()
	}
	return true
}

// rset is conn.rset through the transaction's reader, which may hold no
// bytes then (the server spoke unasked: drop the connection).
func (p *pipe) rset() bool {
	if p.br.Buffered() > 0 || p.write([]byte("RSET\r\n")) != nil {
		return false
	}
	_, _, err := p.read(250)
	return err == nil
}

// toSMTPError is go-smtp's toSMTPErr (client.go): the reply as the client
// returns it, with its RFC 3463 code split off.
func toSMTPError(te *textproto.Error) *smtp.SMTPError {
	se := &smtp.SMTPError{Code: te.Code, Message: te.Msg}
	first, rest, ok := strings.Cut(te.Msg, " ")
	if !ok {
		return se
	}
	parts := strings.Split(first, ".")
	if len(parts) != 3 {
		return se
	}
	var enh smtp.EnhancedCode
	for i, part := range parts {
		n, err := strconv.Atoi(part)
		if err != nil {
			return se
		}
		enh[i] = n
	}
	se.EnhancedCode = enh
	se.Message = strings.ReplaceAll(rest, "\n"+first+" ", "\n")
	return se
}

// mailCmd appends the MAIL command go-smtp's Client.Mail would send, with
// its parameters in its order; false where Mail would return an error
// without sending anything.
func mailCmd(b []byte, c *smtp.Client, from string, opts *smtp.MailOptions) ([]byte, bool) {
	if strings.ContainsAny(from, "\r\n") {
		return b, false
	}
	b = append(b, "MAIL FROM:<"...)
	b = append(b, from...)
	b = append(b, '>')
	if ok, _ := c.Extension("8BITMIME"); ok {
		b = append(b, " BODY=8BITMIME"...)
	}
	if ok, _ := c.Extension("SIZE"); ok && opts.Size != 0 {
		b = append(b, " SIZE="...)
		b = strconv.AppendInt(b, opts.Size, 10)
	}
	if opts.RequireTLS || opts.Auth != nil {
		return b, false // never set by transact; not mirrored here
	}
	if opts.UTF8 {
		if ok, _ := c.Extension("SMTPUTF8"); !ok {
			return b, false
		}
		b = append(b, " SMTPUTF8"...)
	}
	if ok, _ := c.Extension("DSN"); ok {
		switch opts.Return {
		case smtp.DSNReturnFull, smtp.DSNReturnHeaders:
			b = append(b, " RET="...)
			b = append(b, opts.Return...)
		case "":
		default:
			return b, false
		}
		if opts.EnvelopeID != "" {
			if !printableASCII(opts.EnvelopeID) {
				return b, false
			}
			b = append(b, " ENVID="...)
			b = appendXtext(b, opts.EnvelopeID, xtext)
		}
	}
	return append(b, "\r\n"...), true
}

// rcptCmd appends the RCPT command go-smtp's Client.Rcpt would send for
// rcptOptions; r is nil unless the server has DSN and the recipient has
// DSN requests. false where Rcpt would return an error.
func rcptCmd(b []byte, to string, r *queue.RcptDSN, utf8 bool) ([]byte, bool) {
	b = append(b, "RCPT TO:<"...)
	b = append(b, to...)
	b = append(b, '>')
	if r == nil {
		return append(b, "\r\n"...), true
	}
	if len(r.Notify) > 0 {
		if !notifySet(r.Notify) {
			return b, false
		}
		b = append(b, " NOTIFY="...)
		for i, n := range r.Notify {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, n...)
		}
	}
	if r.ORcpt != "" {
		typ := strings.ToUpper(r.ORcptType)
		b = append(b, " ORCPT="...)
		b = append(b, typ...)
		b = append(b, ';')
		switch smtp.DSNAddressType(typ) {
		case smtp.DSNAddressTypeRFC822:
			if !printableASCII(r.ORcpt) {
				return b, false
			}
			b = appendXtext(b, r.ORcpt, xtext)
		case smtp.DSNAddressTypeUTF8:
			if utf8 {
				b = appendXtext(b, r.ORcpt, utf8Unitext)
			} else {
				b = appendXtext(b, r.ORcpt, utf8Xtext)
			}
		default:
			return b, false
		}
	}
	return append(b, "\r\n"...), true
}

// Encodings of DSN parameters, as go-smtp writes them (conn.go).
const (
	xtext       = iota // RFC 3461: "+HEX"
	utf8Xtext          // utf-8-addr-xtext (RFC 6533): "\x{HEX}"
	utf8Unitext        // utf-8-addr-unitext: the same, but non-ASCII as is
)

// appendXtext encodes s as go-smtp does: printable ASCII but '+' and '='
// as is, any other code point in upper-case hex.
func appendXtext(b []byte, s string, enc int) []byte {
	for _, ch := range s {
		switch {
		case ch >= '!' && ch <= '~' && ch != '+' && ch != '=':
			b = append(b, byte(ch))
		case enc == utf8Unitext && ch > 0x7f:
			b = append(b, string(ch)...)
		case enc == xtext:
			b = append(b, '+')
			b = appendHex(b, ch)
		default:
			b = append(b, `\x{`...)
			b = appendHex(b, ch)
			b = append(b, '}')
		}
	}
	return b
}

func appendHex(b []byte, ch rune) []byte {
	n := len(b)
	b = strconv.AppendInt(b, int64(ch), 16)
	for i := n; i < len(b); i++ {
		if b[i] >= 'a' {
			b[i] -= 'a' - 'A'
		}
	}
	return b
}

// printableASCII is go-smtp's isPrintableASCII: space through '~'.
func printableASCII(s string) bool {
	for _, ch := range s {
		if ch < ' ' || '~' < ch {
			return false
		}
	}
	return true
}

// notifySet is go-smtp's checkNotifySet: known values, none twice, NEVER
// alone.
func notifySet(values []string) bool {
	seen := 0
	for _, v := range values {
		bit := 0
		switch smtp.DSNNotify(v) {
		case smtp.DSNNotifyNever:
			bit = 1
		case smtp.DSNNotifyDelayed:
			bit = 2
		case smtp.DSNNotifyFailure:
			bit = 4
		case smtp.DSNNotifySuccess:
			bit = 8
		default:
			return false
		}
		if seen&bit != 0 {
			return false
		}
		seen |= bit
	}
	return seen&1 == 0 || seen == 1
}

// dotWriter writes DATA as textproto's DotWriter (go-smtp's DATA) does, to
// the byte: a dot doubled at the start of a line, a bare LF sent as CRLF,
// a CR copied with the byte after it whatever that is. It copies runs of
// bytes rather than one byte at a time.
type dotWriter struct {
	w     *bufio.Writer
	state int
}

const (
	dotBegin     = iota // nothing written
	dotBeginLine        // after LF
	dotData             // inside a line
	dotCR               // after CR
)

func (d *dotWriter) Write(b []byte) (int, error) {
	n := len(b)
	w := d.w
	for len(b) > 0 {
		switch d.state {
		case dotBegin, dotBeginLine:
			if b[0] == '.' {
				w.WriteByte('.')
			}
			d.state = dotData
		case dotCR:
			d.state = dotData
			if b[0] == '\n' {
				d.state = dotBeginLine
			}
			w.WriteByte(b[0])
			b = b[1:]
		default:
			lf := bytes.IndexByte(b, '\n')
			line := b
			if lf >= 0 {
				line = b[:lf]
			}
			if cr := bytes.IndexByte(line, '\r'); cr >= 0 {
				if cr+1 == lf { // CRLF, the usual case
					w.Write(b[:lf+1])
					b, d.state = b[lf+1:], dotBeginLine
				} else {
					w.Write(b[:cr+1])
					b, d.state = b[cr+1:], dotCR
				}
				continue
			}
			if lf < 0 {
				w.Write(b)
				b = nil
				continue
			}
			w.Write(b[:lf])
			w.WriteString("\r\n")
			b, d.state = b[lf+1:], dotBeginLine
		}
	}
	// bufio.Writer keeps its first error and returns it on every call.
	if _, err := w.Write(nil); err != nil {
		return 0, err
	}
	return n, nil
}

// close ends the data as DotWriter.Close does: CRLF if the last line has
// none, then ".\r\n". The caller flushes.
func (d *dotWriter) close() {
	switch d.state {
	case dotBeginLine:
		d.w.WriteString(".\r\n")
	case dotCR:
		d.w.WriteString("\n.\r\n")
	default:
		d.w.WriteString("\r\n.\r\n")
	}
}
