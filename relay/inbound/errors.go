package inbound

import (
	"fmt"

	"github.com/emersion/go-smtp"

	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// Replies the server gives that are not about authentication or policy (those
// live in package auth). Each has an RFC 3463 enhanced code and a sentence.
var (
	ErrTooManyConnections = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many connections, try again later"}
	ErrTooManyRecipients  = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3}, Message: "Too many recipients for one message; send the rest in another"}
	ErrMessageTooLarge    = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Message too large for this server"}
	ErrHeaderTooLarge     = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Message header section too large"}
	ErrSpoolFailed        = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Could not queue the message, try again later"}
	ErrDiskFull           = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "Insufficient system storage, try again later"}
	ErrSignFailed         = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Could not sign the message, try again later"}
	ErrNoMailFrom         = &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "Need MAIL FROM first"}
	ErrDataTimeout        = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Timeout while reading the message"}
	ErrShuttingDown       = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Server shutting down, try again later"}
	ErrLineTooLong        = &smtp.SMTPError{Code: 500, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Line too long: this server accepts lines of up to 2000 characters (RFC 5321 section 4.5.3.1.6 allows 1000)"}
	ErrNeedSMTPUTF8       = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 6, 7}, Message: "Non-ASCII address needs the SMTPUTF8 parameter on MAIL FROM (RFC 6531)"}
	ErrNoFromNullSender   = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Message has no From header and the null sender (MAIL FROM:<>) names nobody to put there; RFC 5322 requires a From"}
	ErrBadMessage         = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Message content rejected"}
	ErrNULByte            = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Message contains a NUL byte, which RFC 5322 does not allow and DKIM verifiers read differently; remove it or send the content as a MIME attachment"}
	ErrBareCRInHeader     = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Header section contains a carriage return (CR) that does not end a line, which RFC 5322 does not allow; fix the sending program"}
)

// malformedAuthor refuses a message whose sender fields inkan cannot read
// (550 5.6.0): it signs only mail whose author it knows.
func malformedAuthor(fe *mailsyntax.FieldError) *smtp.SMTPError {
	return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
		Message: clean(fmt.Sprintf("Malformed %s header (%v): inkan signs only mail whose sender it can read", fe.Field, fe.Err))}
}

// tooManyHops refuses a looping message (554 5.4.6, as Postfix's
// hopcount_limit).
func tooManyHops(n int) *smtp.SMTPError {
	return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 4, 6},
		Message: fmt.Sprintf("Too many hops: the message already has %d Received fields (mail loop?)", n)}
}

// clean keeps client text echoed in a reply on one printable line.
func clean(s string) string { return mailsyntax.ReplyText(s, 200) }
