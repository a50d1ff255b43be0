package inbound

import (
	"bytes"
	"crypto/tls"
	"net"
)

// barePathConn lets a client of this host or a trusted network give a
// MAIL FROM or RCPT TO path without a domain ("MAIL FROM:<root>", as old
// Unix programs and scripts write it; RFC 5321 §4.5.1 requires accepting
// RCPT TO:<postmaster>), which go-smtp's parser refuses with 501 before the
// session sees it. It reads ahead of go-smtp and gives such a path the
// reserved domain bareMark, which the session takes as the local part alone
// and completes with the origin domain (rewrite.go), or refuses with 553
// 5.1.7 / 5.1.3 and a sentence.
//
// Only command lines are touched. The message after DATA passes unchanged
// up to its lone "." line; after BDAT or STARTTLS (binary chunks, TLS
// records) everything passes unchanged for the rest of the connection. A
// DATA the server refuses leaves the watcher taking what follows for the
// message until a "." line: at worst a bare path then gets go-smtp's 501,
// as it would without the watcher; a byte of a message is never changed.
type barePathConn struct {
	net.Conn
	line   []byte // a command line not yet complete
	out    []byte // examined bytes for go-smtp, from off on
	off    int
	err    error // the read error to return once out is drained
	inData bool  // between DATA and the end-of-data line
	ds     int   // in data: the state of dataLen
	opaque bool  // after BDAT or STARTTLS: pass everything
	marked bool  // a path was given bareMark: replies may quote it
}

// maxBareLine is the longest command line examined; longer lines pass.
const maxBareLine = 2048

// watchBarePaths wraps c, the plain-text stream go-smtp reads, so bare
// paths reach the session. An implicit-TLS connection is left alone: go-smtp
// must see the *tls.Conn itself to know the session is encrypted, and below
// it the bytes are TLS records. So over TLS (465, or after STARTTLS) a bare
// path gets go-smtp's 501 5.5.2; the clients that write them (scripts, old
// devices on the relay port) speak plain SMTP.
func watchBarePaths(c net.Conn) net.Conn {
	if _, ok := c.(*tls.Conn); ok {
		return c
	}
	return &barePathConn{Conn: c}
}

// barePathListener watches every connection of the local listener:
// `inkan sendmail -f root` passes the name as Postfix's sendmail does, and
// the session completes it.
type barePathListener struct{ net.Listener }

func (l barePathListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return watchBarePaths(c), nil
}

// NetConn lets trackedOf find the connection below.
func (b *barePathConn) NetConn() net.Conn { return b.Conn }

func (b *barePathConn) Read(p []byte) (int, error) {
	if b.off == len(b.out) && b.err == nil && len(b.line) == 0 && (b.opaque || b.inData) {
		// Nothing pending, and the bytes pass unchanged: read them in
		// place (most of a message), feeding only what follows its end.
		b.out, b.off = b.out[:0], 0
		n, err := b.Conn.Read(p)
		if b.opaque {
			return n, err
		}
		k := b.dataLen(p[:n])
		if k < n {
			b.feed(p[k:n])
			b.err = err // returned once the bytes fed are read
			err = nil
		}
		return k, err
	}
	for b.off == len(b.out) {
		b.out, b.off = b.out[:0], 0
		if b.err != nil {
			err := b.err
			b.err = nil
			if len(b.line) > 0 {
				b.out, b.line = b.line, nil // an unfinished last line
				b.err = err
				break
			}
			return 0, err
		}
		if b.opaque && len(b.line) == 0 {
			return b.Conn.Read(p)
		}
		n, err := b.Conn.Read(p)
		b.feed(p[:n])
		b.err = err
	}
	n := copy(p, b.out[b.off:])
	b.off += n
	return n, nil
}

// feed examines bytes from the client.
func (b *barePathConn) feed(p []byte) {
	for len(p) > 0 {
		switch {
		case b.opaque:
			b.out = append(b.out, p...)
			return
		case b.inData:
			n := b.dataLen(p)
			b.out = append(b.out, p[:n]...)
			p = p[n:]
		default:
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				b.line = append(b.line, p...)
				if len(b.line) > maxBareLine {
					b.out, b.line = append(b.out, b.line...), nil
				}
				return
			}
			b.line = append(b.line, p[:i+1]...)
			p = p[i+1:]
			b.command(b.line)
			b.line = b.line[:0]
		}
	}
}

// command hands on one complete command line, rewritten if it is MAIL or
// RCPT with a bare path, and notes DATA, BDAT and STARTTLS.
func (b *barePathConn) command(line []byte) {
	verb := bytes.ToUpper(bytes.TrimRight(line, "\r\n"))
	switch {
	case bytes.Equal(verb, []byte("DATA")):
		b.inData, b.ds = true, dsBeginLine
	case bytes.HasPrefix(verb, []byte("BDAT")) || bytes.Equal(verb, []byte("STARTTLS")):
		b.opaque = true
	case bytes.HasPrefix(verb, []byte("MAIL FROM:")):
		line = b.mark(line, len("MAIL FROM:"))
	case bytes.HasPrefix(verb, []byte("RCPT TO:")):
		line = b.mark(line, len("RCPT TO:"))
	}
	b.out = append(b.out, line...)
}

func (b *barePathConn) mark(line []byte, verbLen int) []byte {
	out := markBare(line, verbLen)
	b.marked = b.marked || len(out) != len(line)
	return out
}

// quotedMark is bareMark as go-smtp quotes a path in its 250 replies ("I'll
// make sure <root@bare.invalid> gets this").
var quotedMark = []byte("@" + bareMark + ">")

// Write takes bareMark out of the replies: the client sees the path as it
// wrote it, not the placeholder. go-smtp flushes each reply whole, so a
// quoted path is never split across two writes.
func (b *barePathConn) Write(p []byte) (int, error) {
	if !b.marked || !bytes.Contains(p, quotedMark) {
		return b.Conn.Write(p)
	}
	if _, err := b.Conn.Write(bytes.ReplaceAll(p, quotedMark, []byte(">"))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// dataLen returns how many bytes of p belong to the message, through its
// end-of-data line, ending data mode when that is in p. It follows
// go-smtp's own reader byte for byte (its dataReader, from net/textproto):
// only CRLF starts a line, and only ".\r\n" at a line start ends the
// message, so the watcher and the server never disagree about where the
// message ends.
func (b *barePathConn) dataLen(p []byte) int {
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch b.ds {
		case dsBeginLine:
			switch c {
			case '.':
				b.ds = dsDot
			case '\r':
				b.ds = dsCR
			default:
				b.ds = dsData
			}
		case dsDot:
			b.ds = dsData
			if c == '\r' {
				b.ds = dsDotCR
			}
		case dsDotCR:
			b.ds = dsData
			if c == '\n' {
				b.inData, b.ds = false, dsBeginLine
				return i + 1
			}
		case dsCR:
			b.ds = dsData
			if c == '\n' {
				b.ds = dsBeginLine
			}
		case dsData:
			// Most of a message: skip to the next CR.
			j := bytes.IndexByte(p[i:], '\r')
			if j < 0 {
				return len(p)
			}
			i += j
			b.ds = dsCR
		}
	}
	return len(p)
}

// States of dataLen, as go-smtp's dataReader names them.
const (
	dsBeginLine = iota
	dsDot
	dsDotCR
	dsCR
	dsData
)

// markBare gives the path after the command verb (at offset at) the domain
// bareMark when it has none: "<root>", "< root >", "root".
func markBare(line []byte, at int) []byte {
	rest := line[at:]
	trimmed := bytes.TrimLeft(rest, " ")
	start := at + len(rest) - len(trimmed)
	end := bytes.IndexAny(trimmed, " \r\n")
	if end < 0 {
		end = len(trimmed)
	}
	path := trimmed[:end]
	inner := bytes.TrimSuffix(bytes.TrimPrefix(path, []byte("<")), []byte(">"))
	if len(inner) == 0 || bytes.ContainsAny(inner, "@\"<>:,\\") || len(inner) > 64 {
		return line
	}
	pos := start + len(path)
	if bytes.HasSuffix(path, []byte(">")) {
		pos--
	}
	out := make([]byte, 0, len(line)+len(bareMark)+1)
	out = append(out, line[:pos]...)
	out = append(out, '@')
	out = append(out, bareMark...)
	return append(out, line[pos:]...)
}
