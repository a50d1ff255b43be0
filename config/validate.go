package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"strings"

	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// Validate checks every setting and returns all problems at once
// (errors.Join of *Error), each located at the file line or env variable the
// value came from. It only checks syntax and consistency: it opens no files.
func (c *Config) Validate() error {
	errs, _ := c.check()
	return errors.Join(errs...)
}

// Warnings returns advice about settings that are valid but probably not what
// was meant (an open relay, a non-qualified hostname...), formatted like errors.
func (c *Config) Warnings() []string {
	_, warns := c.check()
	return warns
}

type checker struct {
	c     *Config
	errs  []error
	warns []string
}

func (c *Config) check() ([]error, []string) {
	k := &checker{c: c}
	k.general()
	k.listen()
	k.local()
	k.tls()
	k.auth()
	k.dkim()
	k.delivery()
	k.queue()
	k.limits()
	k.abuse()
	k.clients()
	k.misc()
	k.rewrite()
	return k.errs, k.warns
}

func (k *checker) bad(key, msg, fix string) { k.errs = append(k.errs, k.c.NewError(key, msg, fix)) }

func (k *checker) warn(key, msg, fix string) {
	k.warns = append(k.warns, k.c.NewError(key, msg, fix).Error())
}

func (k *checker) enum(key, v string, allowed ...string) {
	if !slices.Contains(allowed, v) {
		k.bad(key, fmt.Sprintf("invalid value %q", v), "use one of: "+strings.Join(allowed, ", "))
	}
}

func (k *checker) positive(key string, d Duration) {
	if d <= 0 {
		k.bad(key, "must be a positive duration", "set it to e.g. 5m")
	}
}

func (k *checker) atLeast(key string, n, min int) {
	if n < min {
		k.bad(key, fmt.Sprintf("is %d, must be at least %d", n, min), "")
	}
}

func (k *checker) hostnames(key string, names []string) {
	for i, h := range names {
		if err := mailsyntax.CheckDomain(h, mailsyntax.HostName); err != nil {
			k.bad(fmt.Sprintf("%s[%d]", key, i), fmt.Sprintf("%q is not a valid domain name (%v)", h, err), "write a name like example.com")
		}
	}
}

func (k *checker) senders(key string, pats []string) {
	if len(pats) == 1 && strings.TrimSpace(pats[0]) == "*" {
		return // any sender, said explicitly
	}
	for i, p := range pats {
		if strings.HasPrefix(p, "@.") {
			p = "@" + p[2:] // every subdomain of a domain
		}
		if err := checkSenderPattern(p); err != nil {
			k.bad(fmt.Sprintf("%s[%d]", key, i), err.Error(), `write "alice@example.com" for one address, "@example.com" for a domain, "@.example.com" for its subdomains, or ["*"] alone for any address`)
		}
	}
}

// openRelayFix is the advice for a trusted network that covers a whole
// address family.
const openRelayFix = "list only your own networks, e.g. 192.168.1.0/24; clients elsewhere should use AUTH on the submission port"

// networks checks one list of trusted network entries and returns the
// prefixes it trusts (host names are resolved later, by auth). An entry, or
// the list as a whole, that covers every IPv4 or IPv6 address is an open
// relay: coverage is computed, so "0.0.0.0/1, 128.0.0.0/1" and
// "::ffff:0:0/96" are caught as well as "0.0.0.0/0".
func (k *checker) networks(key string, nets []string) []netip.Prefix {
	var all []netip.Prefix
	alone := map[string]bool{} // families one entry opens by itself
	for i, n := range nets {
		ik := fmt.Sprintf("%s[%d]", key, i)
		p, w, err := checkNetwork(n)
		switch {
		case err != nil:
			k.bad(ik, err.Error(), "write a CIDR like 192.168.1.0/24, an IP address, or a host name")
		case w != "":
			k.warn(ik, w, "write the network address")
		}
		if !p.IsValid() {
			continue
		}
		all = append(all, p)
		if open := OpenTo([]netip.Prefix{p}); len(open) > 0 {
			k.warn(ik, fmt.Sprintf("trusts every address: this is an open relay for %s clients", strings.Join(open, " and ")), openRelayFix)
			for _, f := range open {
				alone[f] = true
			}
		}
	}
	if open := unreported(OpenTo(all), alone); len(open) > 0 {
		k.warn(key, fmt.Sprintf("together trust every address: this is an open relay for %s clients", strings.Join(open, " and ")), openRelayFix)
	}
	return all
}

// unreported drops the families in seen from open and adds them to seen.
func unreported(open []string, seen map[string]bool) []string {
	var out []string
	for _, f := range open {
		if !seen[f] {
			out = append(out, f)
			seen[f] = true
		}
	}
	return out
}

func (k *checker) general() {
	c := k.c
	h := c.Hostname
	switch nameErr := mailsyntax.CheckDomain(h, mailsyntax.HostName); {
	case h == "":
		k.bad("hostname", "is empty", "set it to this server's DNS name, e.g. mail.example.com")
	case isIP(h):
		k.bad("hostname", fmt.Sprintf("%q is an IP address", h), "set it to this server's DNS name, e.g. mail.example.com")
	case nameErr != nil:
		k.bad("hostname", fmt.Sprintf("%q is not a valid host name (%v)", h, nameErr), "use letters, digits, hyphens and dots, e.g. mail.example.com")
	case !strings.Contains(h, "."):
		k.warn("hostname", fmt.Sprintf("%q is not fully qualified; receiving servers may reject it in EHLO", h),
			"set hostname to this server's public DNS name, e.g. mail.example.com")
	}
	switch {
	case c.DataDir == "":
		k.bad("data_dir", "is empty", "set it to a directory inkan may write, e.g. /var/lib/inkan")
	case !filepath.IsAbs(c.DataDir):
		k.warn("data_dir", fmt.Sprintf("%q is relative to the working directory", c.DataDir), "use an absolute path")
	}
}

func isIP(s string) bool { _, err := netip.ParseAddr(s); return err == nil }

func (k *checker) listen() {
	l := k.c.Listen
	seen := make(map[string]string)
	anySMTP := false
	for _, e := range []struct{ key, val string }{
		{"listen.smtps", l.SMTPS}, {"listen.submission", l.Submission}, {"listen.relay", l.Relay}, {"listen.http", l.HTTP},
	} {
		for _, a := range SplitAddrs(e.val) {
			if err := checkListenAddr(a); err != nil {
				k.bad(e.key, err.Error(), `write host:port, e.g. "127.0.0.1:2525" or "[::1]:2525", several separated by ","; "" disables`)
				continue
			}
			if e.key != "listen.http" {
				anySMTP = true
			}
			norm := strings.ToLower(a)
			if other, dup := seen[norm]; dup && !strings.HasSuffix(a, ":0") {
				k.bad(e.key, fmt.Sprintf("%s is also used by %s", a, other), "give each listener its own port")
			}
			seen[norm] = e.key
			selfSigned := k.c.TLS.CertFile == "" && k.c.TLS.ACME == nil
			if selfSigned && (e.key == "listen.smtps" || e.key == "listen.submission") && !isLoopbackAddr(a) {
				k.warn(e.key, a+" is reachable from the network but the certificate is self-signed; clients will refuse it",
					"set tls.cert_file/key_file or tls.acme")
			}
		}
	}
	if !anySMTP {
		k.warn("listen", "no SMTP listener is enabled, so no mail can be submitted", "set listen.submission, listen.smtps or listen.relay")
	}
	k.pprof()
}

// pprof refuses Go's profiler on a listener others can reach: it hands out
// goroutine stacks and heap profiles, and a CPU profile costs a core.
func (k *checker) pprof() {
	if !k.c.HTTP.Pprof {
		return
	}
	for _, a := range SplitAddrs(k.c.Listen.HTTP) {
		if checkListenAddr(a) == nil && !isLoopbackAddr(a) {
			k.bad("http.pprof", fmt.Sprintf("is on while listen.http %q is reachable from the network: whoever connects could read goroutine stacks and heap profiles and keep a CPU busy", a),
				`bind listen.http to loopback, e.g. "127.0.0.1:8025", and reach it through an SSH tunnel or kubectl port-forward; or set http.pprof: false`)
			return
		}
	}
}

func isLoopbackAddr(a string) bool {
	host, _, err := net.SplitHostPort(a)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func (k *checker) tls() {
	t := k.c.TLS
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		k.bad("tls.key_file", "is empty while cert_file is set", "set both cert_file and key_file, or neither for a self-signed certificate")
	case t.CertFile == "" && t.KeyFile != "":
		k.bad("tls.cert_file", "is empty while key_file is set", "set both cert_file and key_file, or neither for a self-signed certificate")
	}
	a := t.ACME
	if a == nil {
		return
	}
	if t.CertFile != "" || t.KeyFile != "" {
		k.bad("tls.acme", "cannot be combined with cert_file/key_file", "remove either acme or cert_file and key_file")
	}
	if len(a.Domains) == 0 {
		k.bad("tls.acme.domains", "is empty; ACME needs the names to get a certificate for", "list them, e.g. [mail.example.com]")
	}
	k.hostnames("tls.acme.domains", a.Domains)
	if a.Email != "" && (checkSenderPattern(a.Email) != nil || strings.HasPrefix(a.Email, "@")) {
		k.bad("tls.acme.email", fmt.Sprintf("%q is not an email address", a.Email), "write e.g. postmaster@example.com or leave it empty")
	}
	if err := checkListenAddr(a.ChallengeListen); err != nil {
		k.bad("tls.acme.challenge_listen", err.Error(), `write ":80" (HTTP-01) or ":443" (TLS-ALPN-01)`)
	} else if _, p, _ := net.SplitHostPort(a.ChallengeListen); p != "80" && p != "443" {
		k.warn("tls.acme.challenge_listen", "the CA connects to port 80 or 443 only", "forward one of them here, or listen on :80 / :443")
	}
	k.acmeChallenge(a)
	if a.DirectoryURL != "" {
		if u, err := url.Parse(a.DirectoryURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			k.bad("tls.acme.directory_url", fmt.Sprintf("%q is not an http(s) URL", a.DirectoryURL), "leave it empty for Let's Encrypt")
		}
	}
}

func (k *checker) auth() {
	a := k.c.Auth
	trusted := k.networks("auth.trusted_networks", a.TrustedNetworks)
	seen := map[string]bool{}
	for _, f := range OpenTo(trusted) {
		seen[f] = true
	}
	for _, user := range sortedKeys(a.Senders) {
		key := "auth.senders." + user
		if user == "" || strings.ContainsAny(user, " \t:") {
			k.bad(key, fmt.Sprintf("%q is not a valid user name", user), "use the names from the users file")
		}
		k.senders(key, a.Senders[user])
	}
	k.senders("auth.trusted_senders", a.TrustedSenders)
	names := make(map[string]bool)
	for i, n := range a.Networks {
		key := fmt.Sprintf("auth.networks[%d]", i)
		switch {
		case n.Name == "":
			k.bad(key+".name", "is empty", "name each network; the name appears in logs")
		case names[n.Name]:
			k.bad(key+".name", fmt.Sprintf("%q names two networks", n.Name), "give each network its own name")
		}
		names[n.Name] = true
		if len(n.CIDRs) == 0 {
			k.bad(key+".cidrs", "is empty", "list the network's addresses, e.g. [192.168.1.0/24]")
		}
		cidrs := k.networks(key+".cidrs", n.CIDRs)
		for _, f := range OpenTo(cidrs) {
			seen[f] = true
		}
		trusted = append(trusted, cidrs...)
		k.senders(key+".senders", n.Senders)
		k.atLeast(key+".max_recipients", n.MaxRecipients, 0)
		k.atLeast(key+".rate_limit", n.RateLimit, 0)
		if n.MaxMessageSize < 0 {
			k.bad(key+".max_message_size", "is negative", "use 0 for limits.max_message_size")
		}
		if n.RateLimit > 0 {
			k.positive(key+".rate_period", n.RatePeriod)
		}
	}
	if open := unreported(OpenTo(trusted), seen); len(open) > 0 {
		k.warn("auth", fmt.Sprintf("auth.trusted_networks and auth.networks together trust every address: this is an open relay for %s clients", strings.Join(open, " and ")), openRelayFix)
	}
	k.atLeast("auth.max_failures", a.MaxFailures, 0)
	if a.MaxFailures > 0 {
		k.positive("auth.lockout", a.Lockout)
	}
	if k.c.Listen.Relay != "" && len(a.TrustedNetworks) == 0 && len(a.Networks) == 0 {
		k.warn("listen.relay", "accepts mail only from trusted networks, and none are set",
			"set auth.trusted_networks or auth.networks, or disable the relay listener")
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
