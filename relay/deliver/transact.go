package deliver

import (
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"

	"github.com/emersion/go-smtp"
	"github.com/inkan-relay/inkan/queue"
	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// transact runs one mail transaction for the pending recipients and records
// their results in st. It returns a verdict only for a session-level failure
// that happened before any message byte was sent (the recipients it leaves
// pending may go to the next host), and whether the connection can be
// reused.
func (t *Transport) transact(s *conn, d *queue.Delivery, st *outcome) (*verdict, bool) {
	// A pooled connection ended its last transaction cleanly (see the
	// returns below), so no RSET is sent first: a round trip per message
	// saved. If the server dropped it meanwhile, MAIL fails and attempt
	// dials a new one.
	todo := st.pending()
	if limit, ok := s.smtp.MaxMessageSize(); ok && limit > 0 && d.Size > int64(limit) {
		st.resolve(todo, permanent("5.3.4", "message size %d exceeds the size limit %d of %s", d.Size, limit, s.remote).at(s.remote, s.tls))
		return nil, true
	}
	opts := &smtp.MailOptions{Size: d.Size}
	// DSN requests go on to a next hop that supports DSN (go-smtp sends
	// them only then); it reports on those recipients from here.
	dsn, _ := s.smtp.Extension("DSN")
	if dsn {
		opts.Return, opts.EnvelopeID = smtp.DSNReturn(d.Ret), d.EnvID
	}
	if d.SMTPUTF8 {
		if ok, _ := s.smtp.Extension("SMTPUTF8"); ok {
			opts.UTF8 = true
		} else if !mailsyntax.IsASCII(d.From) || slices.ContainsFunc(d.Rcpts, nonASCII) {
			st.resolve(todo, permanent("5.6.7", "%s does not support SMTPUTF8, which the non-ASCII addresses need", s.remote).at(s.remote, s.tls))
			return nil, true
		}
	}
	if v := eightBit(s, d, opts); v != nil {
		st.resolve(todo, v.at(s.remote, s.tls))
		return nil, true
	}
	if ok, _ := s.smtp.Extension("PIPELINING"); ok {
		if v, keep, sent := t.pipelined(s, d, st, opts, dsn, todo); sent {
			return v, keep
		}
		// Nothing was sent (an envelope go-smtp would refuse, no valid
		// recipient, a message that cannot be opened): the path below
		// reports it as it always has.
	}
	return t.sequential(s, d, st, opts, dsn, todo)
}

// sequential is transact without PIPELINING: one round trip per command.
func (t *Transport) sequential(s *conn, d *queue.Delivery, st *outcome, opts *smtp.MailOptions, dsn bool, todo []int) (*verdict, bool) {
	if err := s.smtp.Mail(d.From, opts); err != nil {
		v, ends := fromError(err, s.remote, "after MAIL FROM")
		if ends {
			return v.at(s.remote, s.tls), false
		}
		st.resolve(todo, v.at(s.remote, s.tls))
		return nil, true
	}
	accepted, end := rcptResults(s, st, todo, func(i int) error { return s.smtp.Rcpt(st.rcpts[i], rcptOptions(d, i)) })
	if end != nil {
		return end, false
	}
	if len(accepted) == 0 {
		return nil, s.rset(t.commandTimeout) == nil
	}
	body, err := d.Open()
	if err != nil {
		st.resolve(accepted, temporary("4.3.0", "cannot read the queued message: %v", err).at(s.remote, s.tls))
		return nil, s.rset(t.commandTimeout) == nil
	}
	defer body.Close()
	w, err := s.smtp.Data()
	if err != nil {
		v, ends := fromError(err, s.remote, "after DATA")
		if ends {
			return v.at(s.remote, s.tls), false
		}
		st.resolve(accepted, v.at(s.remote, s.tls))
		// The refused DATA may leave MAIL and RCPT in force on the
		// server (RFC 5321 4.1.1.4): clear them before the next use.
		return nil, s.rset(t.commandTimeout) == nil
	}
	countTLS(s)
	// From here on the message may reach the server: no other host is tried.
	if v := t.send(s, w, body); v != nil {
		st.resolve(accepted, v.at(s.remote, s.tls))
		return nil, false
	}
	s.raw.SetDeadline(now().Add(t.dataTimeout))
	resp, err := w.CloseWithResponse()
	if err != nil {
		v, ends := fromError(err, s.remote, "after end of data (the message may have been delivered)")
		st.resolve(accepted, v.at(s.remote, s.tls))
		return nil, !ends
	}
	delivered(s, st, accepted, resp.StatusText, dsn)
	return nil, true
}

// rcptResults is the RCPT step of a transaction, sequential or pipelined:
// reply gives the server's answer for recipient i (sending the command, or
// reading the reply to one already sent). An address that cannot go into a
// command fails without one. Recipients the server takes come back; a reply
// that ends the connection stops the step and comes back as end.
func rcptResults(s *conn, st *outcome, todo []int, reply func(i int) error) (accepted []int, end *verdict) {
	for _, i := range todo {
		rcpt := st.rcpts[i]
		if invalidRcpt(rcpt) {
			st.resolve([]int{i}, permanent("5.1.3", "invalid recipient address %q", rcpt))
			continue
		}
		err := reply(i)
		if err == nil {
			accepted = append(accepted, i)
			continue
		}
		v, ends := fromError(err, s.remote, "after RCPT TO")
		if ends {
			return accepted, v.at(s.remote, s.tls)
		}
		st.resolve([]int{i}, v.at(s.remote, s.tls))
	}
	return accepted, nil
}

// invalidRcpt: a recipient that cannot go into a RCPT command.
func invalidRcpt(rcpt string) bool { return rcpt == "" || strings.ContainsAny(rcpt, "\r\n<>") }

// countTLS counts a message whose DATA was accepted, by TLS or not.
func countTLS(s *conn) {
	if s.tls != "" {
		tlsTotal.WithLabelValues("tls").Inc()
	} else {
		tlsTotal.WithLabelValues("plain").Inc()
	}
}

// delivered records the 250 reply to the end of DATA for the accepted
// recipients.
func delivered(s *conn, st *outcome, accepted []int, text string, dsn bool) {
	st.resolve(accepted, sentReply(text).at(s.remote, s.tls))
	for _, i := range accepted {
		st.res[i].DSNPassed = dsn && st.res[i].Status == queue.Sent
	}
}

// rcptOptions are the NOTIFY and ORCPT of recipient i of d, or nil.
func rcptOptions(d *queue.Delivery, i int) *smtp.RcptOptions {
	if i >= len(d.DSN) {
		return nil
	}
	r := d.DSN[i]
	o := &smtp.RcptOptions{}
	for _, n := range r.Notify {
		o.Notify = append(o.Notify, smtp.DSNNotify(n))
	}
	if r.ORcpt != "" {
		o.OriginalRecipientType, o.OriginalRecipient = smtp.DSNAddressType(strings.ToUpper(r.ORcptType)), r.ORcpt
	}
	return o
}

// send copies the message into DATA. DataTimeout bounds each stall, not the
// whole transfer, so a large message on a slow link is not cut off. A read
// error must not end the DATA: the caller drops the connection instead, so
// that a partial message is never accepted.
func (t *Transport) send(s *conn, w io.Writer, body io.Reader) *verdict {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			s.raw.SetDeadline(now().Add(t.dataTimeout))
			if _, err := w.Write(buf[:n]); err != nil {
				return temporary("4.4.2", "lost connection with %s while sending the message: %v", s.remote, errText(err))
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return temporary("4.3.0", "cannot read the queued message: %v", rerr)
		}
	}
}

// eightBit applies RFC 6152 and RFC 6531 to a message with bytes above
// 127 (queue.Envelope.Body8Bit, Header8Bit): it goes to a next hop that
// advertises 8BITMIME (go-smtp's client then says BODY=8BITMIME, as it does
// to every such server); to one that does not, it is not sent at all and
// its recipients fail (5.6.3): the DKIM signature made at submission covers
// the body, so converting it to 7 bits here would break the signature, and
// 8-bit bytes to a 7-bit server are what the RFCs forbid. UTF-8 header fields of an SMTPUTF8 message need SMTPUTF8 of the
// next hop as well (5.6.7).
func eightBit(s *conn, d *queue.Delivery, opts *smtp.MailOptions) *verdict {
	if d.SMTPUTF8 && d.Header8Bit && !opts.UTF8 {
		return permanent("5.6.7", "%s does not support SMTPUTF8, which the message's UTF-8 header fields need (RFC 6531)", s.remote)
	}
	if !d.Body8Bit && !d.Header8Bit {
		return nil
	}
	if ok, _ := s.smtp.Extension("8BITMIME"); !ok {
		return permanent("5.6.3", "%s does not accept 8-bit data (no 8BITMIME), and converting the signed message to 7 bits would break its DKIM signature (RFC 6152)", s.remote)
	}
	return nil
}

func errText(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Sprintf("timed out (%v)", err)
	}
	return err.Error()
}

func nonASCII(s string) bool { return !mailsyntax.IsASCII(s) }
