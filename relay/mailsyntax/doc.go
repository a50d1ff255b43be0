// Package mailsyntax is inkan's one home for mail syntax: header sections and
// fields (RFC 5322 §2.2), addresses and address lists (RFC 5322 §3.4, with the
// obsolete forms of §4.4), domain names (RFC 5321 §4.1.2, RFC 1123, RFC 6531
// U-labels) and the ASCII checks SMTPUTF8 needs.
//
// Promise: every package that needs to know who a message is from, whether a
// name is a domain, or whether a string is ASCII asks this package, so the
// sender policy and the DKIM signer can never read the same bytes two ways.
// The parsers never decode RFC 2047 encoded words: display names are thrown
// away, so an unknown charset or an encoded "<bob@other>" cannot change which
// address is found.
package mailsyntax
