package queue

import (
	"context"
	"io"
	"strings"
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

	// DSN requests (RFC 3461) the client made; files written before they
	// existed have none, which means the default behaviour.
	Ret     string    `json:"dsn_ret,omitempty"`   // RET: "FULL" or "HDRS"; "" = not given
	EnvID   string    `json:"dsn_envid,omitempty"` // ENVID, decoded (printable ASCII); "" = not given
	RcptDSN []RcptDSN `json:"dsn_rcpt,omitempty"`  // per recipient, in To's order; nil = none given
}

// RcptDSN is what a client asked about one recipient (RFC 3461 NOTIFY and
// ORCPT).
type RcptDSN struct {
	// Notify is "NEVER", or some of "SUCCESS", "FAILURE", "DELAY"; empty =
	// not given (failures and delays are reported, success is not).
	Notify []string `json:"notify,omitempty"`
	// ORcptType and ORcpt are the original recipient: "rfc822" or "utf-8",
	// and the address, decoded.
	ORcptType string `json:"orcpt_type,omitempty"`
	ORcpt     string `json:"orcpt,omitempty"`
}

// DSN (RFC 3461 NOTIFY) conditions.
const (
	NotifySuccess = "SUCCESS"
	NotifyFailure = "FAILURE"
	NotifyDelay   = "DELAY"
	NotifyNever   = "NEVER"
)

// Wants reports whether the sender asked for a notice on condition (one of
// NotifySuccess, NotifyFailure, NotifyDelay). Without NOTIFY, failures and
// delays are reported and success is not (RFC 3461 section 4.1).
func (d RcptDSN) Wants(condition string) bool {
	if len(d.Notify) == 0 {
		return condition != NotifySuccess
	}
	for _, n := range d.Notify {
		if strings.EqualFold(n, condition) {
			return true
		}
	}
	return false
}

// DSNOf returns the DSN requests for the i-th recipient.
func (e *Envelope) DSNOf(i int) RcptDSN {
	if i >= 0 && i < len(e.RcptDSN) {
		return e.RcptDSN[i]
	}
	return RcptDSN{}
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

	// DSN requests to pass on to a next hop that supports DSN (RFC 3461):
	// RET and ENVID of the message, NOTIFY and ORCPT of each of Rcpts (DSN
	// is nil or as long as Rcpts).
	Ret   string
	EnvID string
	DSN   []RcptDSN
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
	// TLSPolicy names the transport security policy that applied, e.g.
	// "MTA-STS policy of example.com (enforce, id 2024a)"; "" = none known.
	TLSPolicy string
	// DSNPassed says the next hop supports DSN and was given this
	// recipient's requests: a success notice is now its job (RFC 3461
	// section 6.2.1), not ours ("relayed").
	DSNPassed bool
	// NotBefore, on a Deferred result, says the recipient was not tried:
	// the route's pacing lets it go at that time. The queue tries it again
	// then, without counting an attempt or backing off.
	NotBefore time.Time
}
