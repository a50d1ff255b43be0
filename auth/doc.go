// Package auth decides who may submit mail through inkan, and as whom.
//
// It holds the users file (bcrypt or argon2id hashes, reloaded atomically
// when the file changes; a bad new file never replaces good users), the SASL
// PLAIN and LOGIN servers, the trusted networks with their own limits, the
// sender policy for MAIL FROM and the header From, and the address checks
// that refuse relay tricks.
//
// Against abuse, one file per limit: lockout.go counts AUTH failures per
// client and user name and per client (an IPv6 client is its /64), each
// reserved before the password is checked; hashgate.go bounds how many
// password hashes run at once; netrate.go is the per-network message rate;
// quota.go counts what each user and network sent in the last hour and day.
// Authenticator is the one AUTH check, used by the SMTP session and by the
// tests alike. Promises: every failed AUTH costs the same whether the name
// exists or not, a name that is no user is never logged as typed, and a
// wait (slow-down, hashing queue) ends when its context does.
//
// Every refusal a client sees is an *smtp.SMTPError with an RFC 3463
// enhanced code: 4xx replies (lockout, rate limit, temporary failure) mean
// "try again later", 5xx replies are permanent. The package keeps no state on
// disk besides the users file, which it only rewrites atomically (temporary
// file, fsync, rename), with mode 0600.
package auth
