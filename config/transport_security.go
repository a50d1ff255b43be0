package config

import (
	"fmt"
	"strings"

	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// MTASTS configures MTA-STS (RFC 8461): recipient domains that publish a
// policy get mail only over TLS with a valid certificate, to the MX hosts the
// policy names. Policies are cached in data_dir/mta-sts.
type MTASTS struct {
	// Enabled looks up and applies policies; on by default (nil also means
	// on), as RFC 8461 intends for senders that implement it.
	Enabled *bool `yaml:"enabled"`
	// Skip lists recipient domains (".example.com" for its subdomains)
	// whose policy is neither fetched nor applied.
	Skip []string `yaml:"skip"`
}

// DANE configures DANE for SMTP (RFC 7672): MX hosts whose TLSA records are
// signed with DNSSEC get mail only over TLS whose certificate matches them.
// It needs a validating resolver whose AD bit can be trusted:
// delivery.resolver, or a loopback server in /etc/resolv.conf.
type DANE struct {
	Enabled *bool `yaml:"enabled"` // on by default; nil also means on
}

// On reports whether MTA-STS policies are applied.
func (m MTASTS) On() bool { return m.Enabled == nil || *m.Enabled }

// On reports whether DANE is applied.
func (d DANE) On() bool { return d.Enabled == nil || *d.Enabled }

// TLSRPT configures TLS reporting (RFC 8460): once a day, a domain that
// publishes a _smtp._tls record gets the counts of TLS sessions to it that
// succeeded and failed under its MTA-STS or DANE policy.
type TLSRPT struct {
	Enabled bool `yaml:"enabled"`
	// From is the address reports are sent from (envelope and header);
	// "" = tls-reports@hostname. It should be a domain inkan signs for.
	From string `yaml:"from"`
	// Organization is the report's organization-name; "" = hostname.
	Organization string `yaml:"organization"`
	// Contact is the report's contact-info; "" = the From address.
	Contact string `yaml:"contact"`
}

// Delivery TLS modes beyond none|may|encrypt|verify: "dane" and "mta-sts"
// require that policy of the recipient domain and defer mail to a domain
// that publishes none.
const (
	TLSModeDANE   = "dane"
	TLSModeMTASTS = "mta-sts"
)

// transportSecurity checks delivery.mta_sts, dane and tls_rpt, and the
// policy modes of delivery.tls and tls_policy.
func (k *checker) transportSecurity() {
	d := k.c.Delivery
	for i, dom := range d.MTASTS.Skip {
		if !mailsyntax.ValidDomain(dom, mailsyntax.MailDomain|mailsyntax.LeadingDot) {
			k.bad(fmt.Sprintf("delivery.mta_sts.skip[%d]", i), fmt.Sprintf("%q is not a domain or .domain", dom),
				"write recipient domains: example.com, or .example.com for its subdomains")
		}
	}
	modes := map[string]string{"delivery.tls": d.TLS}
	for dom, m := range d.TLSPolicy {
		modes["delivery.tls_policy."+dom] = m
	}
	for _, key := range sortedKeys(modes) {
		switch modes[key] {
		case TLSModeMTASTS:
			if !d.MTASTS.On() {
				k.bad(key, "requires MTA-STS, but delivery.mta_sts.enabled is false", "set delivery.mta_sts.enabled: true, or use verify")
			}
		case TLSModeDANE:
			if !d.DANE.On() {
				k.bad(key, "requires DANE, but delivery.dane.enabled is false", "set delivery.dane.enabled: true, or use verify")
			}
		}
	}
	switch d.TLS {
	case TLSModeMTASTS, TLSModeDANE:
		k.warn("delivery.tls", fmt.Sprintf("%s for every domain defers all mail to domains that publish no %s policy", d.TLS, d.TLS),
			"use may, and require it per domain with delivery.tls_policy")
	}
	r := d.TLSRPT
	if r.From != "" {
		if err := mailsyntax.CheckPath(r.From, false); err != nil {
			k.bad("delivery.tls_rpt.from", fmt.Sprintf("%q is not an address (%v)", r.From, err), "write e.g. tls-reports@example.com, or leave it empty")
		}
	}
	if strings.ContainsAny(r.Organization+r.Contact, "\r\n") {
		k.bad("delivery.tls_rpt", "organization or contact holds a line break", "write them on one line")
	}
}
