package inbound

import (
	"bufio"
	"io"

	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// Header hygiene: fields a submission server adds so that receivers take
// the message as it was meant (RFC 6409 §8 lets it), the same on every
// listener and for `inkan sendmail` (which submits over SMTP). Each is
// added only when missing, and before the signature is made, so the
// signature covers it; nothing is changed after signing.
//
//   - Date and Message-ID (headers.add_date, headers.add_message_id; fixups).
//   - From, from the envelope sender, when there is none (RFC 6409 §8.1).
//   - To: undisclosed-recipients:; when there is neither To nor Cc, as
//     Postfix adds it (RFC 5322 allows a message without, SpamAssassin and
//     some receivers do not).
//   - MIME-Version: 1.0 when a Content-Type is given without it.
//   - A body with bytes above 127 and no Content-Type gets MIME-Version: 1.0,
//     Content-Type: text/plain; charset=utf-8 (or charset=unknown-8bit,
//     RFC 1428, when the bytes are not UTF-8) and Content-Transfer-Encoding:
//     8bit (RFC 2045 otherwise means 7bit US-ASCII: what SpamAssassin's
//     PP_MIME_FAKE_ASCII_TEXT catches).
//
// The last rule needs the whole body before the header is signed. DKIM
// signs the header after the body hash, but go-msgauth reads the message in
// order, so the fields inkan adds must be known before the body is hashed.
// A message with a Content-Type needs no look at its body and streams as
// before. One without: when the rest of it fits the 32 KiB read buffer (cron
// output, a scanner's notice, most unlabelled mail) it is already there to
// look at, and streams as before; a longer one is spooled first, then
// signed from the spool file (Draft.Reread), which costs one more read of it
// from the page cache. The declared BODY=8BITMIME cannot decide it: clients
// send 8-bit without declaring it and declare it for 7-bit mail.

// bodyShape is what the body says about the labels it needs.
type bodyShape struct {
	known    bool // decided: labelled already, or the body was seen
	labelled bool // has a Content-Type: nothing to decide
	eight    bool // has bytes above 127
	utf8     bool // and they are UTF-8
}

// peekBody decides the shape of the body that follows bodyStart in br
// when the header has no Content-Type and the rest of the message is in
// br's buffer; otherwise the shape is not known yet (the caller spools
// first). Reading errors are the client's.
func peekBody(br *bufio.Reader, h mailsyntax.Header, bodyStart []byte) (bodyShape, error) {
	if h.Has("Content-Type") {
		return bodyShape{known: true, labelled: true}, nil
	}
	rest, err := br.Peek(br.Size())
	switch {
	case err == nil:
		return bodyShape{}, nil // longer than the buffer
	case err != io.EOF:
		return bodyShape{}, err
	}
	var e mailsyntax.EightBit
	e.Write(bodyStart)
	e.Write(rest)
	return bodyShape{known: true, eight: e.Any(), utf8: e.UTF8()}, nil
}

// hygiene returns the fields to add to a message with header h and body
// shape b (known), after fixups' Date and Message-ID.
func hygiene(h mailsyntax.Header, b bodyShape) []byte {
	var out []byte
	if !h.Has("To") && !h.Has("Cc") {
		out = append(out, "To: undisclosed-recipients:;\r\n"...)
	}
	addType := !b.labelled && b.eight && !h.Has("Content-Type")
	if !h.Has("MIME-Version") && (h.Has("Content-Type") || addType) {
		out = append(out, "MIME-Version: 1.0\r\n"...)
	}
	if addType {
		charset := "utf-8"
		if !b.utf8 {
			charset = "unknown-8bit"
		}
		out = append(out, "Content-Type: text/plain; charset="+charset+"\r\n"...)
		if !h.Has("Content-Transfer-Encoding") {
			out = append(out, "Content-Transfer-Encoding: 8bit\r\n"...)
		}
	}
	return out
}
