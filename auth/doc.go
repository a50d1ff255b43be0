// Package auth decides who may submit mail through inkan, and as whom.
//
// It holds the users file (bcrypt or argon2id hashes, reloaded atomically
// when the file changes; a bad new file never replaces good users), the SASL
// PLAIN and LOGIN servers, the per-client AUTH failure limiter, the trusted
// networks with their own limits, the sender policy for MAIL FROM and the
// header From, and the address checks that refuse relay tricks.
//
// Every refusal a client sees is an *smtp.SMTPError with an RFC 3463
// enhanced code: 4xx replies (lockout, rate limit, temporary failure) mean
// "try again later", 5xx replies are permanent. The package keeps no state on
// disk besides the users file, which it only rewrites atomically (temporary
// file, fsync, rename), with mode 0600.
package auth
