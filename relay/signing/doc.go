// Package signing DKIM-signs mail as it streams through the relay.
//
// Promises:
//   - Keys and tables are read once, by New (keys whose path depends on the
//     From domain through OpenDKIM's "%" are read on first use, then kept).
//     A key file anyone may read, an encrypted key or an RSA key under 2048
//     bits is refused, with the command that fixes it; group-readable keys
//     only warn.
//   - A SigningTable line naming a key the KeyTable lacks is an error from
//     New, so start and reload refuse it. A "%" key name the KeyTable lacks,
//     or a "%" key file that does not exist, leaves that mail unsigned with
//     the reason in the Decision (OpenDKIM would tempfail it).
//   - "%" stands for the From domain only when that domain is a host name
//     (mailsyntax.SigningDomain): a domain literal or anything holding "/"
//     never reaches a key path or d=. At most 1024 "%" lookups are cached.
//   - The signing domain is chosen from the header From (never the envelope),
//     so a signature inkan adds aligns for DMARC. Native rules (dkim.keys):
//     every key whose sender patterns match signs, which is how dual
//     RSA+Ed25519 signing is configured. OpenDKIM tables: the first
//     SigningTable match, or all of them with MultipleSignatures, with the
//     exact lookup order of OpenDKIM 2.11 (see package config).
//   - A key whose d= and s= already sign the message is skipped, so a
//     Postfix+OpenDKIM left in the path does not cause duplicate signatures.
//   - The body is never held in memory: Stream hashes it as it is written,
//     on the writer's goroutine, once for all keys, and Finish returns only
//     the DKIM-Signature fields to prepend. The header section is kept (the
//     SMTP session bounds it) and split by mailsyntax.SplitFields, the rules
//     the sender policy read it with, so the h= fields signed are the fields
//     that were checked. Finish refuses a header it cannot sign so that
//     verifiers agree (a line that is not a field, a lone CR or LF): the
//     SMTP session never passes one (FuzzPolicyAndSigner), other callers
//     get the error. h= lists at most 16 instances of a name, and an h=
//     over 900 octets is folded, so no line passes 998 octets.
//   - Signing problems never look like spool failures: Stream.Write cannot
//     fail; Finish reports them, and Decision.Err marks a key that exists in
//     the configuration but cannot be used, so the caller can defer (451)
//     instead of sending mail unsigned.
//
// Metrics: inkan_dkim_signatures_total{domain,algorithm} (configured d=
// domains, plus the first 100 others "%" keys signed for; the rest count as
// domain="other") and
// inkan_dkim_unsigned_total{reason} with reason in no_rule, no_from,
// already_signed, disabled, error.
package signing
