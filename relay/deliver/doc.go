// Package deliver is inkan's outbound SMTP transport: it implements
// queue.Transport by looking up where a group of recipients should go and
// handing the message to that host over SMTP.
//
// Routing, first match wins (Route reports the choice):
//
//  1. delivery.sender_relay, by envelope sender address, then "@domain" of
//     the sender (Postfix sender_dependent_relayhost_maps); an entry with a
//     domains list serves only those recipient domains; the null sender <>
//     matches no entry;
//  2. delivery.transport, by recipient domain: the exact domain, then
//     ".parent" entries for its subdomains (Postfix transport_maps);
//  3. delivery.smarthost, for every domain or only those in its domains list;
//  4. the recipient domain's MX records (RFC 5321 section 5.1).
//
// Promises:
//
//   - Deliver returns exactly one Result per recipient, in order.
//   - A recipient is reported Sent only when the server answered the end of
//     DATA with 250; it is Failed only on a permanent answer (a 5xx reply
//     to MAIL, RCPT or DATA, NXDOMAIN, a null MX, a message larger than the
//     server's SIZE) or when every host tried failed permanently. Everything
//     else is Deferred: errors are temporary by default.
//   - Hosts are tried in MX preference order (equal preferences shuffled),
//     IPv6 addresses before IPv4. A host that cannot be reached, greets or
//     answers EHLO with an error, cannot do the required TLS, or drops the
//     connection before the message is sent, makes Deliver try the next one.
//     Once message bytes have been sent, the attempt ends with that host: a
//     connection lost after the final dot may mean a duplicate, never a loss.
//   - At most 10 addresses are tried per delivery.
//   - TLS follows delivery.tls / tls_policy (none, may, encrypt, verify) for
//     MX and transport routes, and the relay's own tls setting (none, may,
//     encrypt, verify, implicit) for smarthosts. verify and implicit check
//     the certificate: against Options.RootCAs for the MX or relay host
//     name, or for a relay against its ca_file, or its tls_fingerprint pin
//     instead. Under may, a host whose TLS handshake fails is retried once in
//     plain text; under encrypt and verify, a host without working TLS is
//     skipped.
//   - On MX routes the receiver's DANE TLSA records and MTA-STS policy
//     apply on top (tlspolicy.go: DANE first, then MTA-STS, never a
//     plain-text retry under them); tls_policy dane or mta-sts require
//     them. Each Result names the policy in TLSPolicy.
//   - A password is sent only over TLS whose certificate was checked: New
//     refuses a relay with a username and tls none, may or encrypt, naming
//     the key and the fix; a relay whose certificate fails the check gets no
//     AUTH and the mail is deferred with a reason that says so. A refused
//     login defers the mail rather than bouncing it.
//   - A relay may log in with OAuth2 instead of a password (SASL XOAUTH2,
//     or OAUTHBEARER, RFC 7628; package oauth gets the tokens). The token is
//     fetched before any server is dialled; without one the mail is
//     deferred with the reason and the fix, and no other address is tried.
//     A relay that refuses the token gets a new one once, on the same
//     connection. A client certificate (client_cert_file) is presented
//     under the same rule as a password: only where the relay's
//     certificate is checked.
//   - A relay's address may be a failover list, tried in order per message
//     (failover.go). An address that failed before the message was sent (no
//     connection, a TLS or AUTH failure, a 4xx reply) is tried after the
//     others for delivery.failover_backoff, and the recipients it answered
//     with 4xx go to the next address at once; a 5xx for a recipient is
//     final. Deferred results name each address tried and why.
//   - A route may be paced (pacing.go): a delivery that would pass its
//     limits is not tried, and its result (Deferred, NotBefore set) tells
//     the queue when its turn comes; the queue does not count it as an
//     attempt (only queue.max_lifetime still applies to a message that
//     waits that long). A paced delivery that reached
//     no server gives its allowance back.
//   - A next hop that is this server (one of Options.Listen, address and
//     port, a wildcard listener counting every local address) or the
//     unspecified address 0.0.0.0 or :: is never dialled. As in Postfix,
//     MX hosts from that preference on are dropped; when no better one
//     exists the mail bounces: "mail for D loops back to myself" (5.4.6).
//     Loopback and private MX hosts are allowed unless
//     delivery.refuse_private_mx is set.
//   - Connections are reused: after a transaction the connection waits idle
//     for Options.IdleTimeout (at most Options.MaxIdle per host, address,
//     TLS mode and login; none is used for more than 5 minutes); the next
//     delivery there uses it at once (only a connection whose last
//     transaction ended cleanly is kept, so no RSET is needed; a refused
//     DATA is followed by RSET). A reused connection that fails
//     before the message is sent is dropped and a fresh one dialed, without
//     counting against the message. Close closes idle connections and stops
//     the goroutine that expires them.
//   - DNS answers are cached for their TTL (at most an hour; NXDOMAIN and
//     NODATA for at most a minute); failures are not cached.
//
// Ports: MX hosts and transport entries without a port use
// delivery.mx_port; a smarthost without a port uses 465 with tls implicit,
// delivery.mx_port otherwise.
//
// To a next hop that advertises PIPELINING (RFC 2920), MAIL, the RCPTs and
// DATA go out in one write and their replies are read after it
// (pipeline.go), with the same results as one command at a time, which is
// how the rest are served (go-smtp's client).
package deliver
