package queue

import (
	"bytes"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message"

	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// DSN actions (RFC 3464 section 2.3.3) that the queue sends.
const (
	ActionFailed  = "failed"
	ActionDelayed = "delayed"
	// ActionRelayed reports a success the sender asked for (NOTIFY=SUCCESS)
	// when the next hop does not support DSN and will not report it.
	ActionRelayed = "relayed"
)

// DSN is a delivery status notification (RFC 3464) about one message.
type DSN struct {
	ReportingMTA string    // our host name: "Reporting-MTA: dns; HOST"
	From         string    // header From; "" = "MAILER-DAEMON@"+ReportingMTA
	To           string    // the original envelope sender; must not be empty
	QueueID      string    // the original message's queue ID
	Arrival      time.Time // when the original message arrived
	Date         time.Time // of the report; zero = now
	MessageID    string    // without <>; "" = generated
	Rcpts        []DSNRcpt // at least one
	Header       []byte    // header section of the original message
	EnvID        string    // the sender's ENVID: "Original-Envelope-Id"; "" = none
	// Full is the whole original message, returned instead of Header when
	// the sender asked for it (RET=FULL) in a failure notice.
	Full []byte
	// TooLarge says RET=FULL was asked for but the message was larger than
	// maxDSNFull: only the header is returned, and the text says so.
	TooLarge bool
}

// DSNRcpt is the report on one recipient.
type DSNRcpt struct {
	Addr           string    // "Final-Recipient: rfc822; ADDR"
	Action         string    // ActionFailed, ActionDelayed or ActionRelayed
	Status         string    // "5.1.1"; "" = 5.0.0 (failed), 4.0.0 (delayed) or 2.0.0 (relayed)
	RemoteMTA      string    // host name; "" = no Remote-MTA field
	DiagnosticType string    // "smtp" (the default) or "X-Inkan" for local errors
	Diagnostic     string    // the reply; "" = no Diagnostic-Code field
	LastAttempt    time.Time // zero = no Last-Attempt-Date field
	WillRetryUntil time.Time // for delayed; zero = no Will-Retry-Until field

	// OriginalRecipient is the sender's ORCPT, "rfc822;ADDR" (type;
	// address, decoded): "Original-Recipient"; "" = none.
	OriginalRecipient string
}

const (
	maxDSNHeader = 64 << 10 // bytes of the original header echoed back
	maxDSNField  = 900      // bytes of one field value; keeps lines under 998
	maxDSNFull   = 10 << 20 // bytes of a message returned whole (RET=FULL)
)

var statusRE = regexp.MustCompile(`^[245]\.[0-9]{1,3}\.[0-9]{1,3}$`)

// BuildDSN renders d as a multipart/report message (RFC 3464) with a human
// part, a message/delivery-status part, and the original header. Values are
// cleaned of line breaks and control characters, so remote replies cannot
// inject fields.
func BuildDSN(d *DSN) ([]byte, error) {
	if clean(d.To) == "" {
		return nil, errors.New("queue: DSN to the null sender")
	}
	if len(d.Rcpts) == 0 {
		return nil, errors.New("queue: DSN without recipients")
	}
	utf := !mailsyntax.IsASCII(d.To)
	for _, r := range d.Rcpts {
		if r.Action != ActionFailed && r.Action != ActionDelayed && r.Action != ActionRelayed {
			return nil, fmt.Errorf("queue: DSN action %q", r.Action)
		}
		utf = utf || !mailsyntax.IsASCII(r.Addr)
	}
	host := strings.Map(func(r rune) rune {
		if r <= ' ' || r == 0x7f {
			return -1
		}
		return r
	}, d.ReportingMTA)
	if host == "" {
		host = "localhost"
	}
	human := humanText(d, host)
	status := deliveryStatus(d, host, utf)
	orig := headerSection(d.Header)
	full := len(d.Full) > 0
	if full {
		orig = d.Full
	}

	var boundary string
	for {
		boundary = "=_" + randomToken(18)
		if !bytes.Contains(orig, []byte(boundary)) && !strings.Contains(human, boundary) {
			break
		}
	}
	h := topHeader(d, host, utf, boundary)
	var buf bytes.Buffer
	mw, err := message.CreateWriter(&buf, h)
	if err != nil {
		return nil, fmt.Errorf("queue: build DSN: %w", err)
	}
	humanEnc, statusType, headersType, enc8 := "7bit", "message/delivery-status", "text/rfc822-headers", "7bit"
	if !mailsyntax.IsASCII(human) {
		humanEnc = "quoted-printable"
	}
	if utf {
		statusType, headersType = "message/global-delivery-status", "message/global-headers"
	}
	if full {
		headersType = "message/rfc822"
		if utf {
			headersType = "message/global"
		}
	}
	if !mailsyntax.IsASCII(status) || !mailsyntax.IsASCII(orig) {
		enc8 = "8bit"
	}
	parts := []struct {
		typ, enc string
		params   map[string]string
		body     []byte
	}{
		{"text/plain", humanEnc, map[string]string{"charset": "utf-8"}, []byte(human)},
		{statusType, enc8, nil, []byte(status)},
		{headersType, enc8, nil, orig},
	}
	for _, p := range parts {
		var ph message.Header
		ph.Set("Content-Transfer-Encoding", p.enc)
		ph.SetContentType(p.typ, p.params)
		pw, err := mw.CreatePart(ph)
		if err == nil {
			_, err = pw.Write(p.body)
		}
		if err == nil {
			err = pw.Close()
		}
		if err != nil {
			return nil, fmt.Errorf("queue: build DSN: %w", err)
		}
	}
	if err := mw.Close(); err != nil {
		return nil, fmt.Errorf("queue: build DSN: %w", err)
	}
	return buf.Bytes(), nil
}

// topHeader is the DSN's own header, added bottom-up (go-message writes the
// last added field first).
func topHeader(d *DSN, host string, utf bool, boundary string) message.Header {
	date := d.Date
	if date.IsZero() {
		date = now()
	}
	from := clean(d.From)
	if from == "" {
		from = "MAILER-DAEMON@" + host
	}
	msgID := clean(d.MessageID)
	if msgID == "" {
		msgID = clean(d.QueueID) + "." + randomToken(10) + "@" + host
	}
	subject := "Undelivered Mail Returned to Sender"
	if allDelayed(d.Rcpts) {
		subject = "Delayed Mail (still being retried)"
	} else if allAction(d.Rcpts, ActionRelayed) {
		subject = "Successful Mail Delivery Report"
	}
	reportType := "delivery-status"
	if utf {
		reportType = "global-delivery-status"
	}
	var h message.Header
	h.SetContentType("multipart/report", map[string]string{"report-type": reportType, "boundary": boundary})
	h.Set("MIME-Version", "1.0")
	h.Set("Auto-Submitted", "auto-replied")
	h.Set("Message-ID", "<"+strings.Trim(msgID, "<>")+">")
	h.Set("Date", date.Format(time.RFC1123Z))
	h.Set("Subject", subject)
	h.Set("To", "<"+strings.Trim(clean(d.To), "<>")+">")
	h.Set("From", "Mail Delivery System <"+strings.Trim(from, "<>")+">")
	return h
}

func allDelayed(rs []DSNRcpt) bool { return allAction(rs, ActionDelayed) }

func allAction(rs []DSNRcpt, action string) bool {
	for _, r := range rs {
		if r.Action != action {
			return false
		}
	}
	return true
}

// humanText is the first part, for people.
func humanText(d *DSN, host string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "This is the mail system at host %s.\r\n\r\n", host)
	if allDelayed(d.Rcpts) {
		b.WriteString("This is a warning only; you do not need to send your message again.\r\n" +
			"It could not be delivered yet to the recipients below; delivery will be\r\n" +
			"retried")
		if u := d.Rcpts[0].WillRetryUntil; !u.IsZero() {
			b.WriteString(" until " + u.Format(time.RFC1123Z))
		}
		b.WriteString(".\r\n\r\n")
	} else if allAction(d.Rcpts, ActionRelayed) {
		b.WriteString("Your message was handed on to the next mail server for the recipients\r\n" +
			"below, as you asked (NOTIFY=SUCCESS). That server does not send delivery\r\n" +
			"notices, so this is the last one you will get from this path; errors\r\n" +
			"further on may still be reported by other systems.\r\n\r\n")
	} else {
		b.WriteString("I'm sorry to have to inform you that your message could not be\r\n" +
			"delivered to one or more recipients. The details are below.\r\n\r\n")
	}
	if d.TooLarge {
		b.WriteString("You asked for the whole message back (RET=FULL), but it is too large;\r\n" +
			"only its header is attached.\r\n\r\n")
	}
	if id := clean(d.QueueID); id != "" {
		fmt.Fprintf(&b, "Queue ID: %s\r\n\r\n", id)
	}
	for _, r := range d.Rcpts {
		fmt.Fprintf(&b, "<%s>: %s", clean(r.Addr), r.Action)
		if mta := clean(r.RemoteMTA); mta != "" {
			fmt.Fprintf(&b, ", host %s said", mta)
		}
		if diag := clean(r.Diagnostic); diag != "" {
			fmt.Fprintf(&b, ": %s", diag)
		}
		b.WriteString("\r\n")
	}
	return b.String()
}

// deliveryStatus is the machine-readable part (RFC 3464 section 2).
func deliveryStatus(d *DSN, host string, utf bool) string {
	var b strings.Builder
	field := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	if id := clean(d.EnvID); id != "" {
		field("Original-Envelope-Id", id)
	}
	field("Reporting-MTA", "dns; "+host)
	if id := clean(d.QueueID); id != "" {
		field("X-Inkan-Queue-ID", id)
	}
	if !d.Arrival.IsZero() {
		field("Arrival-Date", d.Arrival.Format(time.RFC1123Z))
	}
	addrType := "rfc822"
	if utf {
		addrType = "utf-8"
	}
	for _, r := range d.Rcpts {
		b.WriteString("\r\n")
		if o := clean(r.OriginalRecipient); o != "" {
			if typ, addr, ok := strings.Cut(o, ";"); ok {
				field("Original-Recipient", strings.TrimSpace(typ)+"; "+strings.TrimSpace(addr))
			}
		}
		field("Final-Recipient", addrType+"; "+clean(r.Addr))
		field("Action", r.Action)
		st := r.Status
		want := map[string]byte{ActionFailed: '5', ActionDelayed: '4', ActionRelayed: '2'}[r.Action]
		if !statusRE.MatchString(st) || st[0] != want && !(r.Action == ActionFailed && st[0] == '4') {
			st = map[string]string{ActionFailed: "5.0.0", ActionDelayed: "4.0.0", ActionRelayed: "2.0.0"}[r.Action]
		}
		field("Status", st)
		if mta := clean(r.RemoteMTA); mta != "" {
			field("Remote-MTA", "dns; "+mta)
		}
		if diag := clean(r.Diagnostic); diag != "" {
			typ := strings.Map(func(c rune) rune {
				if c < 0x80 && (c == '-' || c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
					return c
				}
				return -1
			}, r.DiagnosticType)
			if typ == "" {
				typ = "smtp"
			}
			field("Diagnostic-Code", typ+"; "+diag)
		}
		if !r.LastAttempt.IsZero() {
			field("Last-Attempt-Date", r.LastAttempt.Format(time.RFC1123Z))
		}
		if !r.WillRetryUntil.IsZero() && r.Action == ActionDelayed {
			field("Will-Retry-Until", r.WillRetryUntil.Format(time.RFC1123Z))
		}
	}
	return b.String()
}

// clean makes s safe as one header field value: no control characters, no
// invalid UTF-8, at most maxDSNField bytes.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r == utf8.RuneError, r == '\t':
			return ' '
		case r < ' ', r == 0x7f, r >= 0x80 && r < 0xa0:
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, " "))
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > maxDSNField {
		s = s[:maxDSNField]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	return s
}

// headerSection keeps the header of a message (up to the first empty line),
// with CRLF line endings, at most maxDSNHeader bytes of whole lines.
func headerSection(h []byte) []byte {
	var out bytes.Buffer
	for len(h) > 0 {
		line := h
		if i := bytes.IndexByte(h, '\n'); i >= 0 {
			line, h = h[:i], h[i+1:]
		} else {
			h = nil
		}
		line = bytes.ReplaceAll(bytes.TrimRight(line, "\r"), []byte("\r"), nil)
		if len(line) > 998 {
			line = line[:998] // the SMTP line limit
		}
		if len(line) == 0 || out.Len()+len(line)+2 > maxDSNHeader {
			break
		}
		out.Write(line)
		out.WriteString("\r\n")
	}
	return out.Bytes()
}

// readHeaderSection reads the header of a message from r (prefix + body).
func readHeaderSection(r io.Reader) ([]byte, error) {
	buf := make([]byte, maxDSNHeader)
	n, err := io.ReadFull(r, buf)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, err
	}
	buf = buf[:n]
	if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
		buf = buf[:i+2]
	}
	return headerSection(buf), nil
}

var tokenEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

func randomToken(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return tokenEncoding.EncodeToString(b)
}
