package config

import (
	"fmt"
	"net/netip"
	"strings"
)

// TLS profiles of a listener or a trusted network.
const (
	// TLSModern is TLS 1.2 and 1.3 with forward-secret AEAD suites.
	TLSModern = "modern"
	// TLSLegacy adds TLS 1.0 and 1.1, RSA key exchange and CBC suites, for
	// old printers, scanners and NAS boxes; an RSA certificate is served to
	// clients that cannot use an ECDSA one.
	TLSLegacy = "legacy"
)

// Received privacy settings (headers.received_privacy).
const (
	PrivacyNone          = "none"
	PrivacyAuthenticated = "authenticated"
	PrivacyAll           = "all"
)

// Listeners holds what each SMTP listener offers; the addresses are in
// Listen.
type Listeners struct {
	SMTPS      ListenerOptions `yaml:"smtps"`
	Submission ListenerOptions `yaml:"submission"`
	Relay      ListenerOptions `yaml:"relay"`
}

// ListenerOptions are the settings of one SMTP listener.
type ListenerOptions struct {
	// TLSProfile is "modern" (TLS 1.2+, the default) or "legacy" (TLS 1.0+,
	// RSA key exchange and CBC suites).
	TLSProfile string `yaml:"tls_profile"`
	// StartTLS false leaves STARTTLS out of EHLO (submission and relay
	// only); nil = offered.
	StartTLS *bool `yaml:"starttls"`
	// ProxyProtocolFrom lists the proxies (CIDRs or addresses) whose
	// connections start with a PROXY protocol header, v1 or v2; the address
	// it carries is the client's. Other clients connect directly, and a
	// PROXY header from them is refused. Empty = no PROXY protocol.
	ProxyProtocolFrom []string `yaml:"proxy_protocol_from"`
}

// Options returns the options of the listener with the given key
// ("smtps", "submission" or "relay").
func (l *Listeners) Options(kind string) *ListenerOptions {
	switch kind {
	case "smtps":
		return &l.SMTPS
	case "submission":
		return &l.Submission
	case "relay":
		return &l.Relay
	}
	return nil
}

// OffersStartTLS reports whether STARTTLS is offered (nil means yes).
func (o *ListenerOptions) OffersStartTLS() bool { return o.StartTLS == nil || *o.StartTLS }

// Legacy reports whether the listener allows old TLS.
func (o *ListenerOptions) Legacy() bool { return o.TLSProfile == TLSLegacy }

// ProxyPrefixes parses ProxyProtocolFrom; entries Validate refused are
// skipped.
func (o *ListenerOptions) ProxyPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range o.ProxyProtocolFrom {
		if p, err := parsePrefixOrAddr(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// OffersStartTLS reports whether STARTTLS is offered to the network (nil
// means yes).
func (n *Network) OffersStartTLS() bool { return n.StartTLS == nil || *n.StartTLS }

// NetworkNamed returns the auth.networks entry called name, or nil.
func (c *Config) NetworkNamed(name string) *Network {
	for i := range c.Auth.Networks {
		if c.Auth.Networks[i].Name == name {
			return &c.Auth.Networks[i]
		}
	}
	return nil
}

// UsesLegacyTLS lists where the legacy TLS profile is on ("listeners.relay",
// "auth.networks[printers]"), for the start-up warning and for knowing
// whether an RSA certificate is needed.
func (c *Config) UsesLegacyTLS() []string {
	var where []string
	for _, k := range []string{"smtps", "submission", "relay"} {
		if c.Listeners.Options(k).Legacy() && c.listenAddr(k) != "" {
			where = append(where, "listeners."+k)
		}
	}
	for _, n := range c.Auth.Networks {
		if n.TLSProfile == TLSLegacy {
			where = append(where, fmt.Sprintf("auth.networks[%s]", n.Name))
		}
	}
	return where
}

func (c *Config) listenAddr(kind string) string {
	switch kind {
	case "smtps":
		return c.Listen.SMTPS
	case "submission":
		return c.Listen.Submission
	case "relay":
		return c.Listen.Relay
	}
	return ""
}

// Privacy is the effective received_privacy: hide_client_ip true means
// "all"; "" means "none".
func (h Headers) Privacy() string {
	if h.HideClientIP {
		return PrivacyAll
	}
	if h.ReceivedPrivacy == "" {
		return PrivacyNone
	}
	return h.ReceivedPrivacy
}

// parsePrefixOrAddr reads "10.0.0.0/8", "192.0.2.1" or "[::1]" as a prefix
// (IPv4 unmapped).
func parsePrefixOrAddr(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// clients checks the settings for the clients of issue 12: listener options,
// per-network TLS, connection limits and Received privacy.
func (k *checker) clients() {
	c := k.c
	for _, kind := range []string{"smtps", "submission", "relay"} {
		o := c.Listeners.Options(kind)
		key := "listeners." + kind
		if o.TLSProfile != "" {
			k.enum(key+".tls_profile", o.TLSProfile, TLSModern, TLSLegacy)
		}
		if kind == "smtps" && o.StartTLS != nil {
			k.warn(key+".starttls", "has no effect: the smtps listener speaks TLS from the first byte", "remove it")
		}
		if kind == "submission" && !o.OffersStartTLS() {
			k.warn(key+".starttls", "is false: clients cannot log in on the submission listener without TLS, except from networks with allow_plain_auth",
				"leave it on, and turn STARTTLS off only for the networks of devices that fail at it (auth.networks[].starttls: false)")
		}
		for i, s := range o.ProxyProtocolFrom {
			p, err := parsePrefixOrAddr(s)
			ik := fmt.Sprintf("%s.proxy_protocol_from[%d]", key, i)
			switch {
			case err != nil:
				k.bad(ik, fmt.Sprintf("%q is not a CIDR or an IP address", s), "list the addresses of your proxies or load balancers, e.g. 10.0.0.0/8")
			case p.Bits() == 0:
				k.bad(ik, fmt.Sprintf("%q lets every client claim any address with a PROXY header", s),
					"list only the addresses of your proxies or load balancers, e.g. 10.42.0.0/16")
			}
		}
	}
	for i, n := range c.Auth.Networks {
		if n.TLSProfile != "" {
			k.enum(fmt.Sprintf("auth.networks[%d].tls_profile", i), n.TLSProfile, TLSModern, TLSLegacy)
		}
	}
	for _, where := range c.UsesLegacyTLS() {
		key := where + ".tls_profile"
		if strings.HasPrefix(where, "auth.networks[") {
			key = where + " tls_profile"
		}
		k.warn(key, "is legacy: TLS 1.0/1.1 and RSA key exchange (no forward secrecy) are accepted there, for old devices",
			"keep it to the listener or network those devices use; modern clients still get TLS 1.3 there")
	}
	k.atLeast("limits.max_connections_per_trusted_ip", c.Limits.MaxConnectionsPerTrustedIP, 0)
	if h := c.Headers.ReceivedPrivacy; h != "" {
		k.enum("headers.received_privacy", h, PrivacyNone, PrivacyAuthenticated, PrivacyAll)
	}
	if c.Headers.HideClientIP && c.Headers.ReceivedPrivacy != "" && c.Headers.ReceivedPrivacy != PrivacyAll {
		k.warn("headers.hide_client_ip", fmt.Sprintf("is true, which hides the client in every Received field, whatever received_privacy (%q) says", c.Headers.ReceivedPrivacy),
			"set received_privacy alone and drop hide_client_ip")
	}
	if len(c.UsesLegacyTLS()) > 0 && c.TLS.CertFile != "" && c.TLS.RSACertFile == "" {
		k.warn("tls.rsa_cert_file", "is empty while "+strings.Join(c.UsesLegacyTLS(), ", ")+" use the legacy TLS profile: old devices that know only RSA cannot use an ECDSA cert_file",
			"set rsa_cert_file and rsa_key_file to an RSA certificate, or make cert_file an RSA one")
	}
	switch t := c.TLS; {
	case t.RSACertFile != "" && t.RSAKeyFile == "":
		k.bad("tls.rsa_key_file", "is empty while rsa_cert_file is set", "set both rsa_cert_file and rsa_key_file, or neither")
	case t.RSACertFile == "" && t.RSAKeyFile != "":
		k.bad("tls.rsa_cert_file", "is empty while rsa_key_file is set", "set both rsa_cert_file and rsa_key_file, or neither")
	case t.RSACertFile != "" && t.CertFile == "":
		k.bad("tls.rsa_cert_file", "is set without cert_file", "set cert_file and key_file as well (self-signed and ACME certificates come in RSA by themselves)")
	}
}
