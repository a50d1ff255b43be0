package inbound

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// crlfWriter rewrites bare LF and bare CR as CRLF on the way to w. Nothing
// downstream (the DKIM hash, the spool, the next hop) ever sees a lone CR or
// LF, which closes the SMTP smuggling hole and keeps the signed bytes equal to
// the delivered ones.
type crlfWriter struct {
	w      io.Writer
	lastCR bool
	buf    []byte
}

func (c *crlfWriter) Write(p []byte) (int, error) {
	out := c.buf[:0]
	start := 0
	// Most bytes are neither CR nor LF: skip to the next one. The next CR
	// and the next LF are each searched for again only once passed, so a
	// body of bare LFs (or of CRs) costs linear time.
	nextCR, nextLF := -1, -1
	for i := 0; i < len(p); i++ {
		if !c.lastCR {
			if nextCR < i {
				nextCR = indexFrom(p, i, '\r')
			}
			if nextLF < i {
				nextLF = indexFrom(p, i, '\n')
			}
			if i = min(nextCR, nextLF); i == len(p) {
				break
			}
		}
		switch p[i] {
		case '\n':
			if !c.lastCR {
				out = append(out, p[start:i]...)
				out = append(out, '\r')
				start = i
			}
			c.lastCR = false
		case '\r':
			if c.lastCR { // previous CR was bare
				out = append(out, p[start:i]...)
				out = append(out, '\n')
				start = i
			}
			c.lastCR = true
		default:
			if c.lastCR {
				out = append(out, p[start:i]...)
				out = append(out, '\n')
				start = i
				c.lastCR = false
			}
		}
	}
	if len(out) == 0 {
		// Fast path: nothing to rewrite in this chunk.
		if _, err := c.w.Write(p); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	out = append(out, p[start:]...)
	c.buf = out
	if _, err := c.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// indexFrom is the index of the first b in p at or after i, or len(p).
func indexFrom(p []byte, i int, b byte) int {
	if j := bytes.IndexByte(p[i:], b); j >= 0 {
		return i + j
	}
	return len(p)
}

// Close ends a trailing bare CR and makes sure the message ends with CRLF.
func (c *crlfWriter) finish(endsWithNL bool) error {
	if c.lastCR {
		c.lastCR = false
		_, err := c.w.Write([]byte{'\n'})
		return err
	}
	if !endsWithNL {
		_, err := c.w.Write([]byte("\r\n"))
		return err
	}
	return nil
}

var (
	errHeaderTooLarge = errors.New("header too large")
	// Bytes RFC 5322 does not allow, which verifiers read differently from
	// the signer (dkimpy refuses a header with a bare CR; OpenDKIM stops at
	// a NUL): a message carrying them is refused, never signed. A bare CR
	// in the body and bare LFs anywhere are repaired to CRLF instead, as
	// every client's line ends are.
	errBareCRInHeader = errors.New("bare CR in the header section")
	errNUL            = errors.New("NUL byte in the message")
)

// readHeader reads the header section (through the blank line that ends it)
// with line endings normalised. If the message does not start with a header
// field, the header is empty and body starts with "\r\n" so the headers inkan
// adds stay separated from the text.
func readHeader(r *bufio.Reader, max int) (hdr []byte, bodyStart []byte, err error) {
	var buf bytes.Buffer
	norm := &crlfWriter{w: &buf}
	// end closes the header: a pending bare CR becomes CRLF, a header cut
	// by EOF still ends with CRLF, and a message that ends in its header
	// gets the empty line that ends a header section. RFC 5322 lets a
	// message without a body leave it out, but go-msgauth cannot read such
	// a message, so its signatures would not verify (TestSigningCorpus);
	// the body is empty either way.
	end := func() []byte {
		norm.finish(true)
		if buf.Len() > 0 && !bytes.HasSuffix(buf.Bytes(), []byte("\r\n")) {
			buf.WriteString("\r\n")
		}
		if b := buf.Bytes(); !bytes.HasSuffix(b, []byte("\r\n\r\n")) && string(b) != "\r\n" {
			buf.WriteString("\r\n")
		}
		return buf.Bytes()
	}
	first := true
	midLine := false // the previous piece did not end its line
	prevCR := false  // and it ended in CR
	for {
		line, err := r.ReadSlice('\n')
		partial := err == bufio.ErrBufferFull // an over-long line comes in pieces
		if partial {
			err = nil
		}
		if len(line) == 0 && err != nil {
			if err == io.EOF {
				return end(), nil, nil // header only, no body
			}
			return nil, nil, err
		}
		if !midLine {
			if first && !looksLikeField(line) {
				return nil, append([]byte("\r\n"), line...), nil
			}
			first = false
			if !isContinuationOrField(line) {
				// Not a header line and no blank separator: body starts here.
				norm.Write([]byte("\r\n"))
				return buf.Bytes(), append([]byte(nil), line...), nil
			}
		}
		if bytes.IndexByte(line, 0) >= 0 {
			return nil, nil, errNUL
		}
		if bareCR(line, prevCR) {
			return nil, nil, errBareCRInHeader
		}
		prevCR = partial && line[len(line)-1] == '\r'
		norm.Write(line)
		if buf.Len() > max {
			return nil, nil, errHeaderTooLarge
		}
		if !midLine && !partial && isBlank(line) {
			return end(), nil, nil
		}
		midLine = partial
		if err == io.EOF {
			return end(), nil, nil
		}
	}
}

// bareCR reports whether line has a CR that is not part of a CRLF. prevCR
// says the previous piece of an over-long line ended in CR; a CR at the very
// end is left to the next piece (or is the end of input, which ends the line).
func bareCR(line []byte, prevCR bool) bool {
	if prevCR && (len(line) == 0 || line[0] != '\n') {
		return true
	}
	for i := bytes.IndexByte(line, '\r'); i >= 0 && i+1 < len(line); {
		if line[i+1] != '\n' {
			return true
		}
		j := bytes.IndexByte(line[i+1:], '\r')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return false
}

func isBlank(line []byte) bool {
	return len(line) <= 2 && len(bytes.TrimRight(line, "\r\n")) == 0
}

// looksLikeField reports whether line starts a header field ("Name:").
func looksLikeField(line []byte) bool {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return isBlank(line)
	}
	for _, c := range line[:i] {
		if c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

func isContinuationOrField(line []byte) bool {
	return isBlank(line) || line[0] == ' ' || line[0] == '\t' || looksLikeField(line)
}
