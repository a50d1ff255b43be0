package auth

import (
	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// CheckRecipient refuses RCPT TO addresses a relay must not accept (see
// mailsyntax.CheckPath; domain literals are refused for recipients). The
// error is a BadRecipient (553 5.1.3).
func CheckRecipient(addr string) error {
	if err := mailsyntax.CheckPath(addr, false); err != nil {
		return BadRecipient(addr, err.Error())
	}
	return nil
}

// CheckSender applies CheckRecipient's rules to MAIL FROM, except that a
// domain literal naming a valid IP address is allowed and the null sender ""
// is accepted. The error is a BadSender (553 5.1.7).
func CheckSender(addr string) error {
	if addr == "" {
		return nil
	}
	if err := mailsyntax.CheckPath(addr, true); err != nil {
		return BadSender(addr, err.Error())
	}
	return nil
}
