package config

import (
	"fmt"
	"strings"

	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// Rewrite completes and rewrites the addresses of unauthenticated local and
// trusted-network submissions, before the sender policy and the DKIM
// signature see them (package relay/rewrite applies it). Authenticated users
// are never rewritten.
type Rewrite struct {
	// OriginDomain completes addresses that have no domain or an unqualified
	// one (root, root@web01, scanner@localhost: mailsyntax.Unqualified), in
	// the envelope and the address header fields, like Postfix's myorigin.
	// "" derives it: the only signing domain when exactly one is configured,
	// else the domain of hostname.
	OriginDomain string `yaml:"origin_domain"`
	// Senders is the canonical map for sender addresses (Postfix's
	// sender_canonical_maps), applied after the origin domain for every
	// trusted network; a network's own rewrite_senders come first.
	Senders []SenderRewrite `yaml:"senders"`
}

// SenderRewrite is one line of a sender canonical map.
type SenderRewrite struct {
	// Match is "alice@nas.lan" (that address), "@nas.lan" (any address in
	// the domain) or "root@" (that local part at any domain). Exact
	// addresses win over "user@", which wins over "@domain".
	Match string `yaml:"match"`
	// Replace is an address, or "@domain" to keep the local part.
	Replace string `yaml:"replace"`
	// Scope is "both" (default, "" too), "envelope" (MAIL FROM) or "header"
	// (From, Sender, Reply-To and their Resent- forms).
	Scope string `yaml:"scope"`
}

// The scopes of a SenderRewrite.
const (
	ScopeBoth     = "both"
	ScopeEnvelope = "envelope"
	ScopeHeader   = "header"
)

// Envelope reports whether r rewrites the envelope sender.
func (r SenderRewrite) Envelope() bool { return r.Scope != ScopeHeader }

// Header reports whether r rewrites header sender fields.
func (r SenderRewrite) Header() bool { return r.Scope != ScopeEnvelope }

const (
	rewriteMatchFix   = `write "alice@nas.lan" for one address, "@nas.lan" for a domain, or "root@" for a local part at any domain`
	rewriteReplaceFix = `write a fully-qualified address ("alerts@example.com"), or "@example.com" to keep the local part`
)

// rewrite checks rewrite.origin_domain, rewrite.senders and each network's
// rewrite_senders.
func (k *checker) rewrite() {
	r := k.c.Rewrite
	if d := r.OriginDomain; d != "" {
		if err := mailsyntax.CheckDomain(d, mailsyntax.MailDomain); err != nil || mailsyntax.Unqualified(d) {
			why := "it is not fully qualified, so it would not complete anything"
			if err != nil {
				why = err.Error()
			}
			k.bad("rewrite.origin_domain", fmt.Sprintf("%q is not a mail domain (%s)", d, why),
				"write the domain this host's mail comes from, e.g. example.com, or leave it empty to derive it")
		}
	}
	k.senderRewrites("rewrite.senders", r.Senders)
	for i, n := range k.c.Auth.Networks {
		k.senderRewrites(fmt.Sprintf("auth.networks[%d].rewrite_senders", i), n.RewriteSenders)
	}
}

func (k *checker) senderRewrites(key string, rules []SenderRewrite) {
	seen := map[string]int{}
	for i, r := range rules {
		ik := fmt.Sprintf("%s[%d]", key, i)
		if err := CheckRewriteMatch(r.Match); err != nil {
			k.bad(ik+".match", err.Error(), rewriteMatchFix)
		} else if j, dup := seen[strings.ToLower(r.Match)]; dup {
			k.warn(ik+".match", fmt.Sprintf("%q is also matched by %s[%d], which wins", r.Match, key, j), "remove one of them")
		} else {
			seen[strings.ToLower(r.Match)] = i
		}
		if err := CheckRewriteReplace(r.Replace); err != nil {
			k.bad(ik+".replace", err.Error(), rewriteReplaceFix)
		}
		if r.Scope != "" {
			k.enum(ik+".scope", r.Scope, ScopeBoth, ScopeEnvelope, ScopeHeader)
		}
	}
}

// CheckRewriteMatch returns why m is not a SenderRewrite.Match, or nil.
// Unqualified domains are allowed: they are what maps are for.
func CheckRewriteMatch(m string) error {
	local, domain, ok := strings.Cut(m, "@")
	switch {
	case m == "":
		return fmt.Errorf("is empty")
	case !ok || strings.Contains(domain, "@"):
		return fmt.Errorf("%q has no '@' or more than one", m)
	case local == "" && domain == "":
		return fmt.Errorf("%q matches nothing", m)
	}
	if local != "" {
		if err := mailsyntax.CheckLocalPart(local); err != nil {
			return fmt.Errorf("%q: %v", m, err)
		}
	}
	if domain != "" {
		if err := mailsyntax.CheckDomain(domain, mailsyntax.MailDomain); err != nil {
			return fmt.Errorf("%q has an invalid domain (%v)", m, err)
		}
	}
	return nil
}

// CheckRewriteReplace returns why r is not a SenderRewrite.Replace, or nil:
// the result must be fully qualified.
func CheckRewriteReplace(r string) error {
	local, domain, ok := strings.Cut(r, "@")
	switch {
	case r == "":
		return fmt.Errorf("is empty")
	case !ok || strings.Contains(domain, "@"):
		return fmt.Errorf("%q has no '@' or more than one", r)
	}
	if local != "" {
		if err := mailsyntax.CheckLocalPart(local); err != nil {
			return fmt.Errorf("%q: %v", r, err)
		}
	}
	if err := mailsyntax.CheckDomain(domain, mailsyntax.MailDomain); err != nil {
		return fmt.Errorf("%q has an invalid domain (%v)", r, err)
	}
	if mailsyntax.Unqualified(domain) {
		return fmt.Errorf("%q is not fully qualified: receivers refuse such senders", r)
	}
	return nil
}
