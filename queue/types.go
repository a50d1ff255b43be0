package queue

import (
	"context"
	"io"
	"time"
)

// Envelope is what the SMTP server accepted for one message.
type Envelope struct {
	From     string    `json:"from"`               // reverse-path; "" for the null sender <>
	To       []string  `json:"to"`                 // forward-paths, in RCPT order
	User     string    `json:"user,omitempty"`     // authenticated user, if any
	Client   string    `json:"client,omitempty"`   // client IP
	Helo     string    `json:"helo,omitempty"`     // HELO/EHLO name
	Received time.Time `json:"received"`           // when DATA ended
	SMTPUTF8 bool      `json:"smtputf8,omitempty"` // client asked for SMTPUTF8
	NoSign   bool      `json:"no_sign,omitempty"`  // for logs: why it was not signed

	// Body8Bit and Header8Bit say the body or the header section has a byte
	// above 127: such a message goes only to a next hop that advertises
	// 8BITMIME (RFC 6152). Files written before they existed have neither.
	Body8Bit   bool `json:"body_8bit,omitempty"`
	Header8Bit bool `json:"header_8bit,omitempty"`
}

// Transport delivers one message to some of its recipients. The queue calls it
// once per (message, destination domain) group, from several goroutines at once.
// It never sees the queue's files: Open gives it the bytes.
type Transport interface {
	Deliver(ctx context.Context, d *Delivery) []Result
}

// Delivery is one attempt at a group of recipients sharing a domain.
type Delivery struct {
	ID       string                        // queue ID, for logs
	From     string                        // reverse-path ("" = <>)
	Rcpts    []string                      // all in Domain
	Domain   string                        // lower-case destination domain
	Size     int64                         // bytes of the full message, for SIZE=
	Open     func() (io.ReadCloser, error) // the full message: prefix headers + body, CRLF
	SMTPUTF8 bool
	// The message has 8-bit bytes in its body or header (Envelope.Body8Bit,
	// Header8Bit): the next hop must advertise 8BITMIME.
	Body8Bit, Header8Bit bool
}

// Status is the outcome for one recipient.
type Status int

const (
	Pending  Status = iota // not tried yet, or deferred (will retry)
	Sent                   // accepted by the next hop
	Failed                 // permanent failure; bounced
	Deferred               // temporary failure (a Result only; stored as Pending)
)

// Result is what the transport reports for one recipient.
type Result struct {
	Rcpt     string
	Status   Status // Sent, Deferred or Failed
	Code     int    // remote SMTP reply code, 0 when there was none (DNS, connect error)
	Enhanced string // "5.1.1", "" if none
	Message  string // remote reply text, or the local error
	Remote   string // "mx1.example.com[192.0.2.1]:25", "" if none was reached
	TLS      string // "TLSv1.3 TLS_AES_128_GCM_SHA256", "" for plain
	// NotBefore, on a Deferred result, says the recipient was not tried:
	// the route's pacing lets it go at that time. The queue tries it again
	// then, without counting an attempt or backing off.
	NotBefore time.Time
}
