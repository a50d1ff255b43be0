package config

import (
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// Default returns the built-in configuration used when no file is given. It
// works on a fresh machine, as root or not: listeners are on unprivileged
// loopback ports (IPv4 and IPv6), TLS uses a self-signed certificate, and
// mail is delivered directly to MX hosts.
//
// DataDir is $STATE_DIRECTORY (systemd), /var/lib/inkan for root, otherwise
// $XDG_STATE_HOME/inkan or $HOME/.local/state/inkan. Without any of these
// it is empty and Validate asks for data_dir: a fallback under /tmp would be
// a name another user can create first.
func Default() *Config {
	return defaults(os.Geteuid(), os.Hostname, os.LookupEnv)
}

func defaults(euid int, hostname func() (string, error), env func(string) (string, bool)) *Config {
	yes := func() *bool { b := true; return &b }
	return &Config{
		Hostname: defaultHostname(hostname),
		DataDir:  defaultDataDir(euid, env),
		Listen: Listen{
			SMTPS:      "127.0.0.1:2465,[::1]:2465",
			Submission: "127.0.0.1:2587,[::1]:2587",
			Relay:      "127.0.0.1:2525,[::1]:2525",
			Local:      "sendmail.sock",
			HTTP:       "127.0.0.1:8025",
		},
		Auth: Auth{
			TrustedNetworks:  []string{"127.0.0.0/8", "::1/128"},
			MaxFailures:      5,
			MaxFailuresPerIP: 20,
			Lockout:          Duration(15 * time.Minute),
			HashWait:         Duration(5 * time.Second),
		},
		DKIM: DKIM{Canonicalization: "relaxed/relaxed"},
		Delivery: Delivery{
			TLS:            "may",
			MXPort:         25,
			ConnectTimeout: Duration(30 * time.Second),
			CommandTimeout: Duration(5 * time.Minute),
			DataTimeout:    Duration(10 * time.Minute),
			MaxConcurrent:  100,
			MaxPerDomain:   20,
			MTASTS:         MTASTS{Enabled: yes()},
			DANE:           DANE{Enabled: yes()},
		},
		Queue: Queue{
			MaxLifetime: Duration(5 * 24 * time.Hour),
			RetryMin:    Duration(5 * time.Minute),
			RetryMax:    Duration(time.Hour),
			Maildrop:    "maildrop",
		},
		Limits: Limits{
			MaxMessageSize:      25 * 1000 * 1000,
			MaxRecipients:       100,
			MaxConnections:      500,
			MaxConnectionsPerIP: 20,
			CommandTimeout:      Duration(5 * time.Minute),
			DataTimeout:         Duration(10 * time.Minute),
			MaxHeaderSize:       1000 * 1000,
			MaxHops:             50,

			MaxConnectionsPerTrustedIP: 200,
		},
		// Generous per-user quotas stop a stolen password or a runaway
		// device from burning the domain's reputation; trusted networks
		// (often a whole organisation's MTA) are not limited by default.
		Quotas: Quotas{
			User: Quota{MessagesPerHour: 1000, MessagesPerDay: 10000, RecipientsPerHour: 5000, RecipientsPerDay: 20000},
		},
		Headers: Headers{AddMessageID: yes(), AddDate: yes(), ReceivedPrivacy: PrivacyNone},
		Log:     Log{Format: "text", Level: "info"},

		CPUScheduling: "batch",

		Listeners: Listeners{
			SMTPS:      ListenerOptions{TLSProfile: TLSModern},
			Submission: ListenerOptions{TLSProfile: TLSModern, StartTLS: yes()},
			Relay:      ListenerOptions{TLSProfile: TLSModern, StartTLS: yes()},
		},
	}
}

// defaultHostname uses the machine's name when it is a valid host name, so
// the default configuration always validates.
func defaultHostname(hostname func() (string, error)) string {
	h, err := hostname()
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if err != nil || !mailsyntax.ValidDomain(h, mailsyntax.HostName) {
		return "localhost"
	}
	return h
}

func defaultDataDir(euid int, env func(string) (string, bool)) string {
	// systemd's StateDirectory= tells the service where its state lives.
	if d, ok := env("STATE_DIRECTORY"); ok && filepath.IsAbs(d) {
		return d
	}
	if euid == 0 {
		return "/var/lib/inkan"
	}
	if d, ok := env("XDG_STATE_HOME"); ok && filepath.IsAbs(d) {
		return filepath.Join(d, "inkan")
	}
	if h, ok := env("HOME"); ok && filepath.IsAbs(h) {
		return filepath.Join(h, ".local", "state", "inkan")
	}
	return ""
}

// finalize fills defaults that depend on other settings.
func finalize(c *Config) {
	for i := range c.Auth.Networks {
		if n := &c.Auth.Networks[i]; n.RateLimit > 0 && n.RatePeriod == 0 {
			n.RatePeriod = Duration(time.Minute)
		}
	}
	if s := c.Delivery.Smarthost; s != nil {
		s.TLS = s.TLSMode()
	}
	finalizeRelays(c)
	for k, s := range c.Delivery.SenderRelay {
		s.TLS = s.TLSMode()
		c.Delivery.SenderRelay[k] = s
	}
	if a := c.TLS.ACME; a != nil && a.ChallengeListen == "" {
		a.ChallengeListen = ":80"
	}
}

// SplitAddrs splits a listen value into its addresses: "127.0.0.1:2465,
// [::1]:2465" gives both; spaces are trimmed and empty items dropped, so ""
// (a disabled listener) gives none.
func SplitAddrs(s string) []string {
	return splitList(s, ",")
}
