package inbound_test

import (
	"io"
	"net"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/inkan-relay/inkan/relay/inbound"
)

// BenchmarkSession is one whole SMTP transaction over loopback to the real
// server: EHLO, MAIL, RCPT, DATA (4 KB), Ed25519 signing, spool commit with
// fsync, 250. Connections are reused, as smtp-source does.
func BenchmarkSession(b *testing.B) {
	e := start(b, nil)
	body := "From: bench@example.com\r\nTo: x@example.net\r\nSubject: bench\r\n\r\n" + strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_\r\n", 62)
	addr := e.addr(inbound.KindRelay)
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
		conn, err := d.Dial("tcp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		c := smtp.NewClient(conn)
		defer c.Close()
		if err := c.Hello("bench"); err != nil {
			b.Error(err)
			return
		}
		for pb.Next() {
			if err := c.Mail("bench@example.com", nil); err != nil {
				b.Error(err)
				return
			}
			if err := c.Rcpt("x@example.net", nil); err != nil {
				b.Error(err)
				return
			}
			w, err := c.Data()
			if err != nil {
				b.Error(err)
				return
			}
			io.WriteString(w, body)
			if err := w.Close(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
