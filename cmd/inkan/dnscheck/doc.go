// Package dnscheck checks the DNS records a sending domain needs: the DKIM
// key record, SPF and DMARC. It asks one configurable recursive resolver
// (miekg/dns; default: the first nameserver in /etc/resolv.conf) and never
// anything else.
//
// Promises:
//   - Every check returns a Finding (PASS, WARN or FAIL) with a sentence that
//     says what to change; a DNS failure (timeout, SERVFAIL) is a WARN
//     ("could not check"), never a FAIL, since the records may be fine.
//   - CheckDKIM compares the published key with the private key, for RSA and
//     Ed25519 alike, joining TXT records split into several strings.
//   - CheckSPF is a real RFC 7208 evaluator: qualifiers, all, include, a, mx,
//     ip4, ip6, exists, redirect=, macros, the 10-lookup and 2-void-lookup
//     limits (permerror beyond them) and "several SPF records" (permerror).
//     ptr counts toward the limit but is not evaluated (deprecated), with a
//     WARN.
//   - CheckDMARC reads _dmarc.DOMAIN, falling back to the organizational
//     domain guessed as the last two labels (wrong under suffixes like
//     co.uk; the finding says when the fallback was used).
package dnscheck
