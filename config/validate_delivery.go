package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"strings"

	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

var (
	deliveryTLS  = []string{"none", "may", "encrypt", "verify", TLSModeDANE, TLSModeMTASTS}
	smarthostTLS = []string{"none", "may", "encrypt", "verify", "implicit"}
)

func (k *checker) dkim() {
	d := k.c.DKIM
	if _, _, err := ParseCanonicalization(d.Canonicalization); err != nil {
		k.bad("dkim.canonicalization", fmt.Sprintf("invalid value %q", d.Canonicalization), "use header/body with simple or relaxed, e.g. relaxed/relaxed")
	}
	if d.OpenDKIMConf == "" {
		switch {
		case d.KeyTable != "" && d.SigningTable == "":
			k.bad("dkim.signing_table", "is empty while key_table is set", "set both tables, or opendkim_conf")
		case d.KeyTable == "" && d.SigningTable != "":
			k.bad("dkim.key_table", "is empty while signing_table is set", "set both tables, or opendkim_conf")
		}
	}
	k.table("dkim.key_table", d.KeyTable)
	k.table("dkim.signing_table", d.SigningTable)
	for i, key := range d.Keys {
		p := fmt.Sprintf("dkim.keys[%d]", i)
		if err := mailsyntax.CheckDomain(key.Domain, mailsyntax.SigningDomain); err != nil {
			k.bad(p+".domain", fmt.Sprintf("%q is not a valid domain (%v)", key.Domain, err), "write the signing domain, e.g. example.com")
		}
		if err := mailsyntax.CheckDomain(key.Selector, mailsyntax.Selector); err != nil {
			k.bad(p+".selector", fmt.Sprintf("%q is not a valid selector (%v)", key.Selector, err), "write the DNS selector, e.g. 2024a")
		}
		if key.KeyFile == "" {
			k.bad(p+".key_file", "is empty", "set the path of the PEM private key")
		}
		k.senders(p+".senders", key.Senders)
	}
	k.headerNames("dkim.sign_headers", d.SignHeaders)
	k.headerNames("dkim.oversign_headers", d.OversignHeaders)
	for _, name := range AddedAfterSigning {
		if containsFold(d.OversignHeaders, name) {
			k.bad("dkim.oversign_headers", "lists "+name+": it is added to the message after signing (inkan's own Received, the receiver's Return-Path), so a signature that oversigns it never verifies",
				"remove "+name+" from the list")
		}
	}
	if len(d.SignHeaders) > 0 && !containsFold(d.SignHeaders, "From") {
		k.bad("dkim.sign_headers", "does not include From, which DKIM requires", "add From, or leave the list empty for the default set")
	}
	if d.Expiration < 0 {
		k.bad("dkim.expiration", "is negative", "use 0 for no expiry")
	}
}

// table checks an OpenDKIM table reference: "/path", "file:/path",
// "refile:/path" or an inline "csl:" list. Other OpenDKIM data set types
// (db:, ldap:...) are refused;
// the OpenDKIM parsers in this package read the files themselves.
func (k *checker) table(key, v string) {
	scheme, path, ok := strings.Cut(strings.TrimSpace(v), ":")
	if !ok || strings.HasPrefix(v, "/") {
		return
	}
	switch strings.ToLower(scheme) {
	case "file", "refile":
		if path == "" {
			k.bad(key, "names no file", "write "+scheme+":/path/to/table")
		}
	case "db", "dsn", "ldap", "ldaps", "ldapi", "lua", "mdb", "redis", "memcache", "socket", "erlang":
		k.bad(key, fmt.Sprintf("OpenDKIM data set type %q is not supported", scheme), "export the table to a flat file and use file:/path or refile:/path")
	}
}

func (k *checker) headerNames(key string, names []string) {
	for i, n := range names {
		ok := n != ""
		for j := 0; j < len(n); j++ {
			if n[j] <= ' ' || n[j] > '~' || n[j] == ':' {
				ok = false
			}
		}
		if !ok {
			k.bad(fmt.Sprintf("%s[%d]", key, i), fmt.Sprintf("%q is not a header field name", n), "write names like From or Subject")
		}
	}
}

// AddedAfterSigning are fields that join the message after inkan signs it:
// oversigning one (an empty instance in h=) breaks every signature.
var AddedAfterSigning = []string{"Received", "Return-Path"}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

func (k *checker) delivery() {
	d := k.c.Delivery
	k.enum("delivery.tls", d.TLS, deliveryTLS...)
	if d.TLS == "none" {
		k.warn("delivery.tls", "mail is sent without encryption even when the receiver offers it", "use may")
	}
	for _, dom := range sortedKeys(d.TLSPolicy) {
		key := "delivery.tls_policy." + dom
		if !mailsyntax.ValidDomain(dom, mailsyntax.MailDomain|mailsyntax.LeadingDot) {
			k.bad(key, fmt.Sprintf("%q is not a domain or .domain", dom), "use recipient domains as keys: example.com, or .example.com for its subdomains")
		}
		k.enum(key, d.TLSPolicy[dom], deliveryTLS...)
	}
	if d.MXPort < 1 || d.MXPort > 65535 {
		k.bad("delivery.mx_port", fmt.Sprintf("invalid port %d", d.MXPort), "use 1..65535, normally 25")
	}
	if d.Resolver != "" {
		host, port, err := net.SplitHostPort(d.Resolver)
		if _, perr := parsePort(port, false); err != nil || !isIP(host) || perr != nil {
			k.bad("delivery.resolver", fmt.Sprintf("%q is not ip:port", d.Resolver), `write e.g. "127.0.0.1:53" or "[::1]:53"; "" uses the system resolver`)
		}
	}
	for _, dom := range sortedKeys(d.Transport) {
		key := "delivery.transport." + dom
		if !mailsyntax.ValidDomain(dom, mailsyntax.MailDomain|mailsyntax.LeadingDot) {
			k.bad(key, fmt.Sprintf("%q is not a domain or .domain", dom), "use recipient domains as keys: example.com, or .example.com for its subdomains")
		}
		if _, err := ParseRoute(d.Transport[dom]); err != nil {
			k.bad(key, err.Error(), `write "[host]:port", "[host]", "host:port" or "host"`)
		}
	}
	if d.Smarthost != nil {
		k.smarthost("delivery.smarthost", d.Smarthost)
	}
	for _, pat := range sortedKeys(d.SenderRelay) {
		key := "delivery.sender_relay." + pat
		if err := checkSenderPattern(pat); err != nil {
			k.bad(key, err.Error(), `use a sender address or "@domain" as the key`)
		}
		s := d.SenderRelay[pat]
		k.smarthost(key, &s)
	}
	k.destinationPacing(d)
	k.positive("delivery.connect_timeout", d.ConnectTimeout)
	k.positive("delivery.command_timeout", d.CommandTimeout)
	k.positive("delivery.data_timeout", d.DataTimeout)
	k.atLeast("delivery.max_concurrent", d.MaxConcurrent, 1)
	k.atLeast("delivery.max_per_domain", d.MaxPerDomain, 1)
	if d.MaxPerDomain > d.MaxConcurrent && d.MaxConcurrent > 0 {
		k.warn("delivery.max_per_domain", "is larger than max_concurrent, which caps it", "lower it to max_concurrent or less")
	}
	k.transportSecurity()
}

func (k *checker) smarthost(key string, s *Smarthost) {
	if len(s.Addresses()) == 0 {
		k.bad(key+".address", "is empty", `set the relay, e.g. "[smtp.example.net]:587"`)
	}
	k.enum(key+".tls", s.TLS, smarthostTLS...)
	switch {
	case s.Password != "" && s.PasswordFile != "":
		k.bad(key+".password", "is set together with password_file", "keep only one")
	case s.Username != "" && s.Password == "" && s.PasswordFile == "" && s.OAuth2 == nil:
		k.bad(key+".username", "is set but there is no password", "set password_file (or password), or an oauth2 section")
	case s.Username == "" && (s.Password != "" || s.PasswordFile != ""):
		k.bad(key+".username", "is empty but a password is set", "set the user name to log in as")
	}
	if s.Password != "" {
		k.warn(key+".password", "the password is written in the configuration", "put it in a file and use password_file")
	}
	if sub, msg, fix := s.TLSProblem(); msg != "" {
		k.bad(key+"."+sub, msg, fix)
	}
	for i, d := range s.Domains {
		if !mailsyntax.ValidDomain(d, mailsyntax.MailDomain|mailsyntax.LeadingDot) {
			k.bad(fmt.Sprintf("%s.domains[%d]", key, i), fmt.Sprintf("%q is not a domain or .domain", d), "write example.com, or .example.com for its subdomains")
		}
	}
	k.relayExtras(key, s)
}

func (k *checker) queue() {
	q := k.c.Queue
	k.positive("queue.max_lifetime", q.MaxLifetime)
	k.positive("queue.retry_min", q.RetryMin)
	k.positive("queue.retry_max", q.RetryMax)
	if q.RetryMin > q.RetryMax {
		k.bad("queue.retry_min", fmt.Sprintf("%s is more than retry_max %s", q.RetryMin, q.RetryMax), "make retry_min at most retry_max")
	}
	if q.DelayWarning < 0 {
		k.bad("queue.delay_warning", "is negative", "use 0 for no delay notice")
	}
	if q.DelayWarning > 0 && q.DelayWarning >= q.MaxLifetime {
		k.warn("queue.delay_warning", "is not shorter than max_lifetime, so no delay notice is ever sent", "lower it, e.g. 4h, or use 0")
	}
}

func (k *checker) limits() {
	l := k.c.Limits
	if l.MaxMessageSize <= 0 {
		k.bad("limits.max_message_size", "must be positive", "set it to e.g. 25MB")
	}
	if l.MaxHeaderSize <= 0 {
		k.bad("limits.max_header_size", "must be positive", "set it to e.g. 1MB")
	}
	k.atLeast("limits.max_recipients", l.MaxRecipients, 1)
	k.atLeast("limits.max_hops", l.MaxHops, 2)
	k.atLeast("limits.max_connections", l.MaxConnections, 1)
	k.atLeast("limits.max_connections_per_ip", l.MaxConnectionsPerIP, 1)
	k.positive("limits.command_timeout", l.CommandTimeout)
	k.positive("limits.data_timeout", l.DataTimeout)
	if l.MaxConnectionsPerIP > l.MaxConnections && l.MaxConnections > 0 {
		k.warn("limits.max_connections_per_ip", "is larger than max_connections, which caps it", "lower it")
	}
	if l.MaxHeaderSize > l.MaxMessageSize && l.MaxMessageSize > 0 {
		k.warn("limits.max_header_size", "is larger than max_message_size, which caps it", "lower it")
	}
}

func (k *checker) misc() {
	c := k.c
	k.enum("log.format", c.Log.Format, "text", "json")
	k.enum("log.level", c.Log.Level, "debug", "info", "warn", "error")
	k.enum("cpu_scheduling", c.CPUScheduling, "batch", "normal")
	if c.Listen.HTTP == "" && (c.HTTP.Metrics || c.HTTP.Autoconfig) {
		k.warn("listen.http", "is empty, so http.metrics and http.autoconfig are not served", "set listen.http, e.g. 127.0.0.1:8025")
	}
	if h := c.HTTP.AutoconfigIMAP; h != "" {
		if _, port, err := net.SplitHostPort(h); err != nil || port == "" {
			k.bad("http.autoconfig_imap", fmt.Sprintf("%q is not host:port", h), "write it like imap.example.com:993")
		}
	} else if c.HTTP.Autoconfig {
		k.warn("http.autoconfig_imap", "is empty: Thunderbird refuses an autoconfig document without an incoming server", "set it to your IMAP server, e.g. imap.example.com:993")
	}
	for _, p := range []struct {
		key string
		n   int
	}{{"http.autoconfig_smtps_port", c.HTTP.AutoconfigSMTPSPort}, {"http.autoconfig_submission_port", c.HTTP.AutoconfigSubmissionPort}} {
		if p.n < 0 || p.n > 65535 {
			k.bad(p.key, fmt.Sprintf("%d is not a port", p.n), "use 1-65535, or 0 for the listener's port")
		}
	}
}

// TLSMode is the relay's tls setting, or its default when empty: verify when
// it logs in (a password goes only to a server whose certificate is
// checked), encrypt otherwise.
func (s *Smarthost) TLSMode() string {
	switch {
	case s.TLS != "":
		return s.TLS
	case s.HasCredentials():
		return "verify"
	}
	return "encrypt"
}

// RelayTLSVerifies reports whether a relay's tls mode checks the server's
// certificate: verify (STARTTLS) and implicit (TLS from the first byte) do;
// none, may and encrypt do not.
func RelayTLSVerifies(mode string) bool {
	return strings.EqualFold(mode, "verify") || strings.EqualFold(mode, "implicit")
}

// TLSProblem returns what is wrong with the relay's certificate settings:
// the key under the relay's ("tls", "tls_fingerprint"), the problem and the
// fix; msg is "" when they are fine. The rule: a relay that logs in checks
// the certificate (verify or implicit), against the system's CAs, ca_file,
// or the tls_fingerprint pin, so that its password goes to no one else.
func (s *Smarthost) TLSProblem() (sub, msg, fix string) {
	mode := s.TLSMode()
	verifies := RelayTLSVerifies(mode)
	switch {
	case s.HasCredentials() && !verifies:
		return "tls", fmt.Sprintf("%q does not check the relay's certificate, so anyone on the path could collect %s", mode, s.credentialName()),
			"use verify (STARTTLS) or implicit (port 465); for a relay with a private CA set ca_file, or pin its certificate with tls_fingerprint"
	case (s.CAFile != "" || s.TLSFingerprint != "") && !verifies:
		return "tls", fmt.Sprintf("%q does not check certificates, so ca_file and tls_fingerprint do nothing", mode), "use verify or implicit"
	case s.CAFile != "" && s.TLSFingerprint != "":
		return "tls_fingerprint", "is set together with ca_file; the pin would be checked instead of the CA", "keep only one"
	}
	if _, err := ParseFingerprints(s.TLSFingerprint); err != nil {
		return "tls_fingerprint", err.Error(), "write the 64 hex digits of `openssl x509 -noout -fingerprint -sha256 -in cert.pem` (colons allowed; several separated by commas)"
	}
	return "", "", ""
}

// ParseFingerprints parses a tls_fingerprint value: SHA-256 digests in hex,
// colons allowed, separated by commas or spaces. An empty value gives none.
func ParseFingerprints(v string) ([][sha256.Size]byte, error) {
	var out [][sha256.Size]byte
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' }) {
		h := strings.ReplaceAll(strings.TrimPrefix(strings.ToUpper(f), "SHA256:"), ":", "")
		b, err := hex.DecodeString(h)
		if err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("%q is not a SHA-256 fingerprint", f)
		}
		out = append(out, [sha256.Size]byte(b))
	}
	return out, nil
}
