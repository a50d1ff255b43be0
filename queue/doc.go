// Package queue is inkan's durable spool: it stores accepted messages on disk,
// delivers them through a Transport, retries, and bounces.
//
// Promises:
//
//   - A message is acknowledged (Draft.Commit returns nil, the SMTP server
//     answers 250) only after it is on stable storage: up to 256 KiB, its
//     whole file appended to the journal and the journal fdatasynced (one
//     sync for every message committed at that moment; see journal.go), so
//     Open puts it back if a power cut loses or cuts short its file in
//     msg/; larger, its file and its directory entry fsynced. A small
//     message may have no file at all while it waits for its first attempt
//     (memory-only, see Draft): it is delivered from memory and gets its
//     file only if it is still queued after that attempt.
//   - Every acknowledged message is eventually delivered to each recipient or
//     bounced to its sender; it is never silently lost. A message whose sender
//     is the null reverse-path <> is never bounced (no bounce of a bounce): its
//     failed recipients are dropped with an explicit log line.
//   - Per-recipient state (sent, failed, pending, attempts, last reply, next
//     attempt) survives restarts. The next attempt is saved before the
//     transport is called, so a message that crashes the server is not retried
//     in a tight loop.
//   - A crash can cause at most a duplicate delivery, never a loss: a bounce is
//     committed before the recipient is marked failed, and a recipient is
//     marked sent only after the next hop accepted it.
//   - Errors are temporary by default: a recipient without an explicit
//     permanent (5xx) result from the transport stays pending and is retried
//     with exponential backoff (RetryMin doubling up to RetryMax, small jitter)
//     until MaxLifetime, then it is bounced as expired.
//   - Broken files are moved to the corrupt/ folder and logged, never deleted.
//   - Nothing in the spool is reached through a symbolic link, and Open
//     refuses a spool (or lock, msg/, tmp/, corrupt/) that is one, or that
//     every user may write: root running `inkan queue` on the service user's
//     spool cannot be made to delete, move or create files elsewhere. What
//     root creates there is given to the spool's owner (see openDirs).
//
// On disk (Options.Dir, mode 0700):
//
//	lock           flock held by the running server (or by `inkan queue`)
//	control.sock   admin API (HTTP over a unix socket), see ServeControl
//	tmp/           drafts and state files being written; emptied at Open
//	msg/ID         one file per message: body, prefix, envelope, footer
//	msg/ID.state   per-recipient state (JSON); absent until first tried or held
//	corrupt/       files that could not be decoded
//	journal/jSEQ   journal segments: message files as committed, and "done"
//	               marks (journal.go); emptied at Open and at Close
//
// A message file is written in one streaming pass: the body (CRLF, exactly as
// received), then the prefix header lines given to Commit (sent before the
// body), then the envelope as JSON, then a 32-byte footer:
//
//	magic "INKQ" | version 1 | 3 zero bytes | body length uint64 |
//	prefix length uint32 | envelope length uint32 |
//	CRC-32C of prefix+envelope | CRC-32C of the footer's first 28 bytes
//
// (big-endian). The envelope (type Envelope) is a JSON object; fields added
// later are optional, so older files stay readable and mean the default.
// The DSN requests of RFC 3461 are such fields: "dsn_ret" ("FULL" or
// "HDRS"), "dsn_envid" (the ENVID, decoded) and "dsn_rcpt", a list in the
// order of "to" of {"notify": ["SUCCESS","FAILURE","DELAY"] or ["NEVER"],
// "orcpt_type": "RFC822" or "UTF-8", "orcpt": the address, decoded}, each
// member omitted when the client did not give it. A file without them (or
// from before them) is reported on as if no NOTIFY had been given: failures
// and delays are reported, success is not.
//
// State files are replaced whole via tmp/ → fsync → rename →
// directory fsync (safefile.CreateTemp, then the committer's batched rename
// and fsync of msg/); message files are never edited. When a message is done its
// file is removed first, then its state; state files without a message are
// removed at Open.
//
// Open keeps only a small index in memory (ID, next attempt, flags); bodies
// and envelopes stay on disk and are read when a message is delivered.
package queue
