// Package config holds inkan's settings as plain data.
//
// Settings come from, in order: built-in defaults (Default), one YAML file,
// the INKAN_CONFIG_YAML document, then per-setting INKAN_* environment
// variables; Validate checks the result. Every mistake is reported as an
// *Error with the file and line (or variable) it came from and a fix, and all
// mistakes are reported at once. deploy/inkan.example.yaml documents every key.
//
// This package does no I/O besides reading the config file, INKAN_*_FILE
// secrets, the smarthost password file (Smarthost.ReadPassword) and the
// OpenDKIM tables it names, and listing data_dir/dkim when no DKIM key is
// configured (see AutoKeysDir); it holds no crypto.
package config

// Config is the whole configuration of one inkan instance.
type Config struct {
	Hostname string   `yaml:"hostname"` // EHLO name, Received, DSN sender, default certificate name
	DataDir  string   `yaml:"data_dir"` // spool, generated keys and certificates, ACME cache
	Listen   Listen   `yaml:"listen"`
	TLS      TLS      `yaml:"tls"`
	Auth     Auth     `yaml:"auth"`
	DKIM     DKIM     `yaml:"dkim"`
	Delivery Delivery `yaml:"delivery"`
	Queue    Queue    `yaml:"queue"`
	Limits   Limits   `yaml:"limits"`
	Quotas   Quotas   `yaml:"quotas"`
	Headers  Headers  `yaml:"headers"`
	Rewrite  Rewrite  `yaml:"rewrite"` // origin domain and sender canonical map (rewrite.go)
	Log      Log      `yaml:"log"`
	HTTP     HTTP     `yaml:"http"`

	// CPUScheduling is the Linux scheduling policy inkan serve gives its
	// threads: "batch" (SCHED_BATCH, the default) or "normal" (left as
	// started). See cmd/inkan/sched_linux.go.
	CPUScheduling string `yaml:"cpu_scheduling"`

	// Listeners holds what each SMTP listener offers: TLS profile,
	// STARTTLS, PROXY protocol (see clients.go).
	Listeners Listeners `yaml:"listeners"`

	// Source is the file the config was loaded from ("" for the embedded default).
	Source string `yaml:"-"`
	// KeysDir is DataDir/dkim when the configuration names no DKIM keys and
	// dkim.keys were filled from the DOMAIN.SELECTOR.key files there ("" otherwise).
	KeysDir string `yaml:"-"`

	src *sources // where each setting came from, for located errors; nil = unknown
}

// Listen holds listener addresses; "" disables a listener. Each value may list
// several "host:port" addresses separated by commas (IPv4 and IPv6); split it
// with SplitAddrs.
type Listen struct {
	SMTPS      string `yaml:"smtps"`      // implicit TLS (465)
	Submission string `yaml:"submission"` // STARTTLS, AUTH only after TLS (587)
	Relay      string `yaml:"relay"`      // plain SMTP for trusted networks (25)
	HTTP       string `yaml:"http"`       // metrics, health, autoconfig
	// Local is the Unix socket `inkan sendmail` submits to; the server learns
	// each client's uid from the socket (SO_PEERCRED). A relative path is
	// inside data_dir (LocalSocketPath); "" turns it off.
	Local string `yaml:"local"`
}

// TLS selects where server certificates come from: files, ACME, or (when both
// are empty) a self-signed certificate for Hostname kept in DataDir.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// RSACertFile and RSAKeyFile are a second pair, with an RSA key, for
	// clients that cannot use the first (ECDSA) one: old devices on a
	// listener or network with the legacy TLS profile.
	RSACertFile string `yaml:"rsa_cert_file"`
	RSAKeyFile  string `yaml:"rsa_key_file"`
	ACME        *ACME  `yaml:"acme"`
}

// ACME configures golang.org/x/crypto/acme/autocert.
type ACME struct {
	Domains         []string `yaml:"domains"`
	Email           string   `yaml:"email"`
	ChallengeListen string   `yaml:"challenge_listen"` // ":80" (HTTP-01) or ":443" (TLS-ALPN-01)
	DirectoryURL    string   `yaml:"directory_url"`    // "" = Let's Encrypt production
	CacheDir        string   `yaml:"cache_dir"`        // "" = DataDir/acme
	// Challenge is what challenge_listen answers: http-01 or tls-alpn-01;
	// "" = tls-alpn-01 on port 443, http-01 elsewhere (acme.go).
	Challenge string `yaml:"challenge"`
}

// Auth describes who may submit mail, and as whom.
type Auth struct {
	UsersFile       string   `yaml:"users_file"`       // "name:hash" lines, managed by `inkan user`
	TrustedNetworks []string `yaml:"trusted_networks"` // CIDRs, IPs or host names that relay without AUTH
	// Senders maps a user to the addresses it may send as: "alice@example.com"
	// (exact) or "@example.com" (any address in the domain). A user with no entry
	// may send as its own name when that name is an address, and nothing else.
	Senders map[string][]string `yaml:"senders"`
	// TrustedSenders is what trusted_networks may send as; empty = any.
	TrustedSenders []string `yaml:"trusted_senders"`
	// LocalSenders maps a local user name (sendmail over listen.local or
	// the maildrop) to the addresses it may use as sender, like Senders.
	// Root and the user inkan runs as may use any address; a user with no
	// entry only its own name at hostname.
	LocalSenders map[string][]string `yaml:"local_senders"`
	// Networks are trusted networks with their own policy (LAN devices).
	Networks []Network `yaml:"networks"`
	// Brute-force protection for AUTH. A client is an IPv4 address or an
	// IPv6 /64.
	MaxFailures      int      `yaml:"max_failures"`        // failures for one user name from one client before that pair is locked out
	MaxFailuresPerIP int      `yaml:"max_failures_per_ip"` // failures from one client, all names, before the client is locked out
	Lockout          Duration `yaml:"lockout"`             // how long a lockout lasts; failures are forgotten at max_failures per lockout
	// Password hashes checked at once (argon2id takes its m= of memory
	// while it runs); 0 = one per CPU, at most 8.
	MaxConcurrentHashes int      `yaml:"max_concurrent_hashes"`
	HashWait            Duration `yaml:"hash_wait"` // longest wait for a hashing slot before 454 4.7.0
}

// Network is a trusted network with its own policy.
type Network struct {
	Name           string   `yaml:"name"`
	CIDRs          []string `yaml:"cidrs"`            // CIDRs, IPs or host names
	Senders        []string `yaml:"senders"`          // allowed sender addresses / "@domain"; empty = any
	AllowPlainAuth bool     `yaml:"allow_plain_auth"` // offer AUTH without TLS to this network
	MaxRecipients  int      `yaml:"max_recipients"`   // 0 = limits.max_recipients
	MaxMessageSize Size     `yaml:"max_message_size"` // 0 = limits.max_message_size
	RateLimit      int      `yaml:"rate_limit"`       // messages per rate_period from one IP; 0 = unlimited
	RatePeriod     Duration `yaml:"rate_period"`      // default 1m
	// TLSProfile "legacy" lets this network's devices use TLS 1.0/1.1 and
	// RSA key exchange on any listener; "" follows the listener.
	TLSProfile string `yaml:"tls_profile"`
	// StartTLS false hides STARTTLS from this network (devices that try it
	// and fail); nil = offered.
	StartTLS *bool `yaml:"starttls"`
	// RewriteSenders is this network's sender canonical map, tried before
	// rewrite.senders (see Rewrite).
	RewriteSenders []SenderRewrite `yaml:"rewrite_senders"`
}

// DKIM configures signing.
type DKIM struct {
	OpenDKIMConf       string    `yaml:"opendkim_conf"` // read KeyTable, SigningTable, InternalHosts... from it
	KeyTable           string    `yaml:"key_table"`
	SigningTable       string    `yaml:"signing_table"` // "refile:/path" or "/path" / "file:/path"
	Keys               []DKIMKey `yaml:"keys"`
	Canonicalization   string    `yaml:"canonicalization"`    // "relaxed/relaxed"
	MultipleSignatures bool      `yaml:"multiple_signatures"` // sign with every matching rule
	SignHeaders        []string  `yaml:"sign_headers"`        // "" = default set
	OversignHeaders    []string  `yaml:"oversign_headers"`    // "" = default set
	Expiration         Duration  `yaml:"expiration"`          // x= tag; 0 = none
}

// DKIMKey is one native signing key.
type DKIMKey struct {
	Domain     string   `yaml:"domain"`
	Selector   string   `yaml:"selector"`
	KeyFile    string   `yaml:"key_file"`
	Senders    []string `yaml:"senders"`    // header From patterns it signs; empty = "@domain"
	Subdomains bool     `yaml:"subdomains"` // also sign for From addresses in subdomains
}

// Delivery configures outbound SMTP.
type Delivery struct {
	TLS            string               `yaml:"tls"`        // none | may | encrypt | verify
	TLSPolicy      map[string]string    `yaml:"tls_policy"` // per destination domain
	MXPort         int                  `yaml:"mx_port"`
	Resolver       string               `yaml:"resolver"`  // "host:port"; "" = system resolver
	Transport      map[string]string    `yaml:"transport"` // domain -> "[host]:port", "[host]", "host:port" or "host" (ParseRoute)
	Smarthost      *Smarthost           `yaml:"smarthost"`
	SenderRelay    map[string]Smarthost `yaml:"sender_relay"` // sender address or "@domain" -> relay
	ConnectTimeout Duration             `yaml:"connect_timeout"`
	CommandTimeout Duration             `yaml:"command_timeout"`
	DataTimeout    Duration             `yaml:"data_timeout"`
	MaxConcurrent  int                  `yaml:"max_concurrent"` // deliveries at once
	MaxPerDomain   int                  `yaml:"max_per_domain"` // deliveries at once per destination domain
	// RefusePrivateMX refuses MX hosts at loopback, private (RFC 1918, ULA)
	// and link-local addresses; transport and relay hosts are not affected.
	RefusePrivateMX bool `yaml:"refuse_private_mx"`
	// Pacing limits how fast mail goes to recipient domains delivered by
	// MX or transport: "example.net", ".example.net" for its subdomains.
	Pacing map[string]Pacing `yaml:"pacing"`
	// FailoverBackoff is how long a relay address that failed (4xx, no
	// answer) is tried only after the other addresses of its list.
	FailoverBackoff Duration `yaml:"failover_backoff"`
	// Transport security policies receivers publish (transport_security.go).
	MTASTS MTASTS `yaml:"mta_sts"` // RFC 8461 policies
	DANE   DANE   `yaml:"dane"`    // RFC 7672 TLSA records
	TLSRPT TLSRPT `yaml:"tls_rpt"` // RFC 8460 reports
}

// Smarthost is an upstream relay, like Postfix's relayhost.
type Smarthost struct {
	Address      string   `yaml:"address"` // "[host]:port", or several separated by commas, tried in order (Addresses)
	Username     string   `yaml:"username"`
	Password     string   `yaml:"password"`      // prefer password_file
	PasswordFile string   `yaml:"password_file"` // first line is the password
	TLS          string   `yaml:"tls"`           // none | may | encrypt | verify | implicit; default (set by Load): verify with a username, else encrypt
	Domains      []string `yaml:"domains"`       // recipient domains routed here; empty = all
	NoSign       bool     `yaml:"no_sign"`       // do not DKIM-sign mail for this route
	// CAFile is a PEM file of the CA certificates that sign the relay's
	// certificate, trusted instead of the system's (tls verify or implicit).
	CAFile string `yaml:"ca_file"`
	// TLSFingerprint pins the relay's certificate: the SHA-256 of its DER,
	// in hex (colons allowed; several separated by commas, for a change of
	// certificate). It is checked instead of the CA and the host name.
	TLSFingerprint string `yaml:"tls_fingerprint"`
	// OAuth2 logs in with an OAuth2 access token instead of a password.
	OAuth2 *OAuth2 `yaml:"oauth2"`
	// ClientCertFile and ClientKeyFile are a PEM certificate (chain) and
	// key presented to the relay, for certificate-based connectors.
	ClientCertFile string  `yaml:"client_cert_file"`
	ClientKeyFile  string  `yaml:"client_key_file"`
	Pacing         *Pacing `yaml:"pacing"` // limits how fast mail goes here
}

// Queue configures retries and lifetimes.
type Queue struct {
	MaxLifetime  Duration `yaml:"max_lifetime"`
	RetryMin     Duration `yaml:"retry_min"`
	RetryMax     Duration `yaml:"retry_max"`
	DelayWarning Duration `yaml:"delay_warning"` // 0 = no delay DSN
	// Maildrop is the folder `inkan sendmail` leaves messages in while the
	// server does not answer; the server picks them up. A relative path is
	// inside data_dir (MaildropPath); "" turns it off.
	Maildrop string `yaml:"maildrop"`
}

// Limits bound what one client may cost.
type Limits struct {
	MaxMessageSize      Size     `yaml:"max_message_size"`
	MaxRecipients       int      `yaml:"max_recipients"`
	MaxConnections      int      `yaml:"max_connections"`
	MaxConnectionsPerIP int      `yaml:"max_connections_per_ip"` // strangers: clients outside trusted networks, until they authenticate
	CommandTimeout      Duration `yaml:"command_timeout"`
	DataTimeout         Duration `yaml:"data_timeout"`
	MaxHeaderSize       Size     `yaml:"max_header_size"`
	// MaxHops refuses a message with this many Received fields or more
	// (a mail loop), as Postfix's hopcount_limit does.
	MaxHops int `yaml:"max_hops"`

	// MaxConnectionsPerTrustedIP bounds one address of a trusted network
	// (a Postfix relaying through inkan opens 20 at once); 0 = only
	// max_connections. Authenticated sessions count only in max_connections.
	MaxConnectionsPerTrustedIP int `yaml:"max_connections_per_trusted_ip"`
}

// Quotas bound how much mail one authenticated user, or one trusted network
// (its unauthenticated clients together), may send in the last hour and
// day. Over a quota, MAIL or RCPT gets 451 4.7.1.
type Quotas struct {
	User      Quota           `yaml:"user"`      // every user, unless overridden
	Network   Quota           `yaml:"network"`   // every trusted network, unless overridden
	Overrides []QuotaOverride `yaml:"overrides"` // per user or network; replaces the whole quota
}

// Quota is one sender's allowance; 0 = no limit.
type Quota struct {
	MessagesPerHour   int `yaml:"messages_per_hour"`
	MessagesPerDay    int `yaml:"messages_per_day"`
	RecipientsPerHour int `yaml:"recipients_per_hour"`
	RecipientsPerDay  int `yaml:"recipients_per_day"`
}

// QuotaOverride is the quota of one user or one network (set one of them).
// It replaces the whole default quota: a field left out is no limit.
type QuotaOverride struct {
	User              string `yaml:"user"`
	Network           string `yaml:"network"` // a name from auth.networks, or "trusted_networks"
	MessagesPerHour   int    `yaml:"messages_per_hour"`
	MessagesPerDay    int    `yaml:"messages_per_day"`
	RecipientsPerHour int    `yaml:"recipients_per_hour"`
	RecipientsPerDay  int    `yaml:"recipients_per_day"`
}

// Quota returns the override's allowance.
func (o QuotaOverride) Quota() Quota {
	return Quota{o.MessagesPerHour, o.MessagesPerDay, o.RecipientsPerHour, o.RecipientsPerDay}
}

// For returns the quota of a user (network false) or a trusted network.
func (q Quotas) For(name string, network bool) Quota {
	for _, o := range q.Overrides {
		if network && o.Network == name && name != "" || !network && o.User == name && name != "" {
			return o.Quota()
		}
	}
	if network {
		return q.Network
	}
	return q.User
}

// Headers controls RFC 6409 fix-ups.
type Headers struct {
	HideClientIP bool  `yaml:"hide_client_ip"` // Received without the client's address and HELO: received_privacy "all"
	AddMessageID *bool `yaml:"add_message_id"` // add one when missing; Default sets true, nil also means true
	AddDate      *bool `yaml:"add_date"`       // add one when missing; Default sets true, nil also means true

	// ReceivedPrivacy leaves the client's address and HELO out of the
	// Received field: "none", "authenticated" (sessions that logged in) or
	// "all" (as hide_client_ip).
	ReceivedPrivacy string `yaml:"received_privacy"`
}

// Log selects the log format.
type Log struct {
	Format string `yaml:"format"` // text | json
	Level  string `yaml:"level"`  // debug | info | warn | error
}

// HTTP selects what the HTTP listener serves.
type HTTP struct {
	Metrics    bool `yaml:"metrics"`
	Autoconfig bool `yaml:"autoconfig"`
	// Thunderbird's autoconfig format requires an incoming server: where
	// users read their mail ("host:port"; 993 = SSL, 143 = STARTTLS).
	AutoconfigIMAP string `yaml:"autoconfig_imap"`
	// Name and ports clients should use when they differ from hostname and
	// the listening ports (NAT, container port mapping). 0 = the listener's.
	AutoconfigHost           string `yaml:"autoconfig_host"`
	AutoconfigSMTPSPort      int    `yaml:"autoconfig_smtps_port"`
	AutoconfigSubmissionPort int    `yaml:"autoconfig_submission_port"`
	// The user name autoconfig offers: "address" (%EMAILADDRESS%),
	// "localpart" (%EMAILLOCALPART%), or "" to follow the users file (the
	// address when every user name there is one).
	AutoconfigUsername string `yaml:"autoconfig_username"`
	// Go's pprof handlers at /debug/pprof/ (for profiling; keep the
	// listener on loopback).
	Pprof bool `yaml:"pprof"`
	// Who sent how much against the quotas, at /status/senders (read by
	// `inkan status`); it names users, so keep the listener private.
	Status bool `yaml:"status"`
}
