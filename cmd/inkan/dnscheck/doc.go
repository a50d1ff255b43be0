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
//     domain (public suffix list + one label; the finding says when the
//     fallback was used). CheckReportAuth checks that report addresses in
//     another organization have agreed to take the reports
//     (DOMAIN._report._dmarc.RUADOMAIN, RFC 7489 §7.1).
//   - The mistakes of the usual guides are named with what to publish
//     instead (Finding.Publish, in zone-file form, when one record fixes
//     it): several SPF records (merged into one), more than 10 SPF lookups
//     over the whole record (SPFLookups, with each term's cost), +all, ?all
//     or no all; DKIM keys split into several TXT records, quotes or
//     backslashes stored in the value, a value cut at 255 characters, a key
//     at the wrong name, RSA keys under 2048 bits; _adsp records (CheckADSP);
//     a sending domain without MX, or with a null MX (CheckMX); an address
//     whose PTR is missing or does not resolve back, or a greeting name that
//     does not resolve to it (CheckHost).
//   - CheckMTASTS and CheckTLSRPT (transport.go) check the operator's own
//     _mta-sts record, the policy it announces (fetched as senders fetch it,
//     and compared with the domain's MX hosts) and the _smtp._tls record,
//     with the parsers delivery uses; a domain that publishes neither gets
//     no finding.
//   - TXT values are compared as the bytes on the wire (the presentation
//     escapes of miekg/dns undone).
package dnscheck
