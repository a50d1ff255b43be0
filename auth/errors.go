package auth

import (
	"github.com/emersion/go-smtp"

	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// Replies this package hands to go-smtp. Constructors such as SenderNotOwned
// return a fresh *smtp.SMTPError with the same Code and EnhancedCode as the
// matching variable and a message naming the address, so compare errors by
// code, not by pointer.
var (
	ErrAuthRequired = &smtp.SMTPError{
		Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0},
		Message: "Authentication required",
	}
	ErrRelayDenied = &smtp.SMTPError{
		Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "Relay access denied: authenticate first, or send from a trusted network",
	}
	ErrSenderNotOwned = &smtp.SMTPError{
		Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "Sender address not owned by the authenticated user",
	}
	ErrHeaderFromNotOwned = &smtp.SMTPError{
		Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "Header From address not owned by the authenticated user",
	}
	ErrAuthFailed = &smtp.SMTPError{
		Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8},
		Message: "Authentication credentials invalid",
	}
	// ErrAuthTemporary is what a SASL server replies when the verify callback
	// fails with an error that is not an *smtp.SMTPError (RFC 4954 §6).
	ErrAuthTemporary = &smtp.SMTPError{
		Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
		Message: "Temporary authentication failure, try again later",
	}
	ErrTooManyFailures = &smtp.SMTPError{
		Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
		Message: "Too many authentication failures, try again later",
	}
	// ErrAuthBusy answers an AUTH attempt that found no password-checking
	// slot free in time (HashGate): a flood, not this client's fault.
	ErrAuthBusy = &smtp.SMTPError{
		Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
		Message: "Too many logins in progress, try again in a minute",
	}
	// ErrAuthMalformed answers a SASL exchange that does not parse.
	ErrAuthMalformed = &smtp.SMTPError{
		Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 2},
		Message: "Malformed authentication exchange",
	}
	// ErrAuthzidMismatch refuses AUTH PLAIN asking to act as someone else.
	ErrAuthzidMismatch = &smtp.SMTPError{
		Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8},
		Message: "Authorization identity must be empty or equal to the user name",
	}
	ErrBadRecipient = &smtp.SMTPError{
		Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 3},
		Message: "Bad recipient address syntax",
	}
	ErrBadSender = &smtp.SMTPError{
		Code: 553, EnhancedCode: smtp.EnhancedCode{5, 1, 7},
		Message: "Bad sender address syntax",
	}
	// ErrHeaderFromInvalid refuses a message whose From header has no
	// parseable address.
	ErrHeaderFromInvalid = &smtp.SMTPError{
		Code: 550, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
		Message: "Message has no valid From header address",
	}
	ErrRateLimited = &smtp.SMTPError{
		Code: 450, EnhancedCode: smtp.EnhancedCode{4, 7, 1},
		Message: "Message rate limit exceeded for this client, try again later",
	}
	ErrTLSRequired = &smtp.SMTPError{
		Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0},
		Message: "Must issue a STARTTLS command first",
	}
)

// SenderNotOwned refuses MAIL FROM:<addr> for user (553 5.7.1).
func SenderNotOwned(user, addr string) *smtp.SMTPError {
	return withMessage(ErrSenderNotOwned, who(user)+" may not send as "+angle(addr))
}

// HeaderFromNotOwned refuses a header From address for user (550 5.7.1).
// user "" means an unauthenticated client of a trusted network.
func HeaderFromNotOwned(user, addr string) *smtp.SMTPError {
	return withMessage(ErrHeaderFromNotOwned, who(user)+" may not send mail with From: "+angle(addr))
}

// NetworkSenderNotAllowed refuses MAIL FROM:<addr> from trusted network
// network (553 5.7.1).
func NetworkSenderNotAllowed(network, addr string) *smtp.SMTPError {
	return withMessage(ErrSenderNotOwned, "Network "+clean(network)+" may not send as "+angle(addr))
}

// NetworkHeaderFromNotAllowed refuses a header From address from trusted
// network network (550 5.7.1).
func NetworkHeaderFromNotAllowed(network, addr string) *smtp.SMTPError {
	return withMessage(ErrHeaderFromNotOwned, "Network "+clean(network)+" may not send mail with From: "+angle(addr))
}

// BadRecipient refuses RCPT TO:<addr> because of reason (553 5.1.3).
func BadRecipient(addr, reason string) *smtp.SMTPError {
	return withMessage(ErrBadRecipient, "Bad recipient address "+angle(addr)+": "+reason)
}

// BadSender refuses MAIL FROM:<addr> because of reason (553 5.1.7).
func BadSender(addr, reason string) *smtp.SMTPError {
	return withMessage(ErrBadSender, "Bad sender address "+angle(addr)+": "+reason)
}

func withMessage(base *smtp.SMTPError, msg string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: base.Code, EnhancedCode: base.EnhancedCode, Message: msg}
}

func who(user string) string {
	if user == "" {
		return "This client"
	}
	return "User " + clean(user)
}

func angle(addr string) string { return "<" + clean(addr) + ">" }

// clean makes client-supplied text safe to echo in a reply line.
func clean(s string) string { return mailsyntax.ReplyText(s, 100) }
