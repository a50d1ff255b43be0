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
	fail := func(stage string, err error) *verdict {
		v, _ := fromError(err, s.remote, stage)
		return v.at(s.remote, s.tls)
	}
	if s.reused {
		if err := s.rset(t.commandTimeout); err != nil {
			return fail("after RSET", err), false
		}
	}
	todo := st.pending()
	if limit, ok := s.smtp.MaxMessageSize(); ok && limit > 0 && d.Size > int64(limit) {
		st.resolve(todo, permanent("5.3.4", "message size %d exceeds the size limit %d of %s", d.Size, limit, s.remote).at(s.remote, s.tls))
		return nil, true
	}
	opts := &smtp.MailOptions{Size: d.Size}
	if d.SMTPUTF8 {
		if ok, _ := s.smtp.Extension("SMTPUTF8"); ok {
			opts.UTF8 = true
		} else if !mailsyntax.IsASCII(d.From) || slices.ContainsFunc(d.Rcpts, nonASCII) {
			st.resolve(todo, permanent("5.6.7", "%s does not support SMTPUTF8, which the non-ASCII addresses need", s.remote).at(s.remote, s.tls))
			return nil, true
		}
	}
	if err := s.smtp.Mail(d.From, opts); err != nil {
		v, ends := fromError(err, s.remote, "after MAIL FROM")
		if ends {
			return v.at(s.remote, s.tls), false
		}
		st.resolve(todo, v.at(s.remote, s.tls))
		return nil, true
	}
	var accepted []int
	for _, i := range todo {
		rcpt := st.rcpts[i]
		if rcpt == "" || strings.ContainsAny(rcpt, "\r\n<>") {
			st.resolve([]int{i}, permanent("5.1.3", "invalid recipient address %q", rcpt))
			continue
		}
		err := s.smtp.Rcpt(rcpt, nil)
		if err == nil {
			accepted = append(accepted, i)
			continue
		}
		v, ends := fromError(err, s.remote, "after RCPT TO")
		if ends {
			return v.at(s.remote, s.tls), false
		}
		st.resolve([]int{i}, v.at(s.remote, s.tls))
	}
	if len(accepted) == 0 {
		return nil, s.smtp.Reset() == nil
	}
	body, err := d.Open()
	if err != nil {
		st.resolve(accepted, temporary("4.3.0", "cannot read the queued message: %v", err).at(s.remote, s.tls))
		return nil, s.smtp.Reset() == nil
	}
	defer body.Close()
	w, err := s.smtp.Data()
	if err != nil {
		v, ends := fromError(err, s.remote, "after DATA")
		if ends {
			return v.at(s.remote, s.tls), false
		}
		st.resolve(accepted, v.at(s.remote, s.tls))
		return nil, true
	}
	if s.tls != "" {
		tlsTotal.WithLabelValues("tls").Inc()
	} else {
		tlsTotal.WithLabelValues("plain").Inc()
	}
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
	st.resolve(accepted, sentReply(resp.StatusText).at(s.remote, s.tls))
	return nil, true
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

func errText(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Sprintf("timed out (%v)", err)
	}
	return err.Error()
}

func nonASCII(s string) bool { return !mailsyntax.IsASCII(s) }
