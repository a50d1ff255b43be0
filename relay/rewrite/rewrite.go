// Package rewrite completes and rewrites the addresses of mail submitted by
// this host's programs and by trusted networks, before the sender policy
// checks them and the DKIM key signs them: first the origin domain
// (Postfix's myorigin) for addresses without a fully-qualified domain
// (root, root@web01, scanner@localhost), then the sender canonical map
// (Postfix's sender_canonical_maps: rewrite.senders and each network's
// rewrite_senders).
//
// Promises: the SMTP session, "inkan check -print" and "inkan dkim explain"
// use this one Rewriter, so what they say is what happens. Authenticated
// users are never rewritten (the session does not call it for them). A map
// never produces an unqualified address (config refuses such a replace),
// and a domain named in delivery.transport is never completed. Nothing here
// parses mail syntax: addresses come from and go to relay/mailsyntax.
package rewrite

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/relay/mailsyntax"
	"github.com/inkan-relay/inkan/relay/signing"
)

// ErrNoOrigin is returned for a local part alone ("root") when no origin
// domain is known to complete it.
var ErrNoOrigin = errors.New("no origin domain to complete it with: set rewrite.origin_domain")

// Step is one change made to an address, with the setting that made it.
type Step struct {
	Old, New mailsyntax.Address
	Why      string // "rewrite.origin_domain (the only DKIM signing domain)", "rewrite.senders[0]"
}

func (s Step) String() string {
	return fmt.Sprintf("%s -> %s (%s)", show(s.Old), s.New, s.Why)
}

// show writes an address as a client gave it: the local part alone when
// it had no domain.
func show(a mailsyntax.Address) string {
	if a.Domain == "" {
		return mailsyntax.Change{Old: a}.OldString()
	}
	return a.String()
}

// Rewriter holds the origin domain and the compiled canonical maps of one
// configuration.
type Rewriter struct {
	origin    string
	originWhy string
	global    *canonMap
	networks  map[string]*canonMap // by network name
	keep      map[string]bool      // recipient domains never completed
}

// New compiles cfg's rewrite settings. signingDomains are the d= domains
// of the configured keys (signing.Signer.Domains), for the default origin.
// cfg has been validated, so the maps compile.
func New(cfg *config.Config, signingDomains []string) *Rewriter {
	rw := &Rewriter{networks: map[string]*canonMap{}, keep: map[string]bool{}}
	rw.origin, rw.originWhy = Origin(cfg, signingDomains)
	rw.global = compile("rewrite.senders", cfg.Rewrite.Senders)
	for i, n := range cfg.Auth.Networks {
		if len(n.RewriteSenders) > 0 {
			rw.networks[n.Name] = compile(fmt.Sprintf("auth.networks[%d].rewrite_senders", i), n.RewriteSenders)
		}
	}
	for d := range cfg.Delivery.Transport {
		rw.keep[mailsyntax.NormDomain(d)] = true
	}
	return rw
}

// ForSigner is New with the signing domains of s's keys (s may be nil: no
// keys).
func ForSigner(cfg *config.Config, s *signing.Signer) *Rewriter {
	var domains []string
	for _, d := range s.Domains() {
		domains = append(domains, d.Name)
	}
	return New(cfg, domains)
}

// Origin returns the origin domain of cfg and why it is that one:
// rewrite.origin_domain when set, else the only signing domain when exactly
// one is configured, else the domain of hostname (mail.example.com gives
// example.com, example.com itself). It returns "" when none of these gives a
// fully-qualified domain, with the reason and the fix.
func Origin(cfg *config.Config, signingDomains []string) (domain, why string) {
	if d := cfg.Rewrite.OriginDomain; d != "" {
		return mailsyntax.NormDomain(d), "set in rewrite.origin_domain"
	}
	var ds []string
	for _, d := range signingDomains {
		d = mailsyntax.NormDomain(d)
		if mailsyntax.ValidDomain(d, mailsyntax.SigningDomain) && !slices.Contains(ds, d) {
			ds = append(ds, d)
		}
	}
	if len(ds) == 1 {
		return ds[0], "rewrite.origin_domain unset: the only DKIM signing domain"
	}
	h := mailsyntax.NormDomain(cfg.Hostname)
	if !mailsyntax.Unqualified(h) && mailsyntax.ValidDomain(h, mailsyntax.HostName) {
		if labels := strings.Split(h, "."); len(labels) > 2 {
			h = strings.Join(labels[1:], ".")
		}
		return h, fmt.Sprintf("rewrite.origin_domain unset: the domain of hostname %s (%d DKIM signing domains)", cfg.Hostname, len(ds))
	}
	return "", fmt.Sprintf("rewrite.origin_domain unset, %d DKIM signing domains and hostname %q is not fully qualified: set rewrite.origin_domain", len(ds), cfg.Hostname)
}

// OriginDomain returns the origin domain ("" when none) and why.
func (rw *Rewriter) OriginDomain() (string, string) { return rw.origin, rw.originWhy }

// complete fills in the origin domain of an unqualified address. A local
// part alone without an origin is ErrNoOrigin; other unqualified addresses
// pass unchanged then (the start-up warning says why).
func (rw *Rewriter) complete(a mailsyntax.Address, steps []Step) (mailsyntax.Address, []Step, error) {
	if !mailsyntax.Unqualified(a.Domain) || rw.keep[mailsyntax.NormDomain(a.Domain)] {
		return a, steps, nil
	}
	if rw.origin == "" {
		if a.Domain == "" {
			return a, steps, ErrNoOrigin
		}
		return a, steps, nil
	}
	n := mailsyntax.Address{Local: a.Local, Domain: rw.origin}
	return n, append(steps, Step{a, n, "origin domain " + rw.origin + " (" + rw.originWhy + ")"}), nil
}

// EnvelopeSender returns the MAIL FROM address of a client of network (its
// name; "" for none) that gave a: completed, then mapped. The null sender
// never reaches it.
func (rw *Rewriter) EnvelopeSender(network string, a mailsyntax.Address) (mailsyntax.Address, []Step, error) {
	a, steps, err := rw.complete(a, nil)
	if err != nil {
		return a, steps, err
	}
	a, steps = rw.canonical(network, a, steps, config.SenderRewrite.Envelope)
	return a, steps, nil
}

// Recipient returns a RCPT TO address, completed. The canonical maps are
// for senders only.
func (rw *Rewriter) Recipient(a mailsyntax.Address) (mailsyntax.Address, []Step, error) {
	return rw.complete(a, nil)
}

// senderFields are the header fields the sender map rewrites (Postfix's
// header sender class).
var senderFields = map[string]bool{
	"from": true, "sender": true, "reply-to": true,
	"resent-from": true, "resent-sender": true, "resent-reply-to": true,
}

// HeaderAddress returns what address a in header field field (as written)
// becomes for a client of network: completed in every address field, and
// mapped in the sender fields. A local part alone without an origin stays
// as it is (the strict parse of the sender fields then refuses it).
func (rw *Rewriter) HeaderAddress(network, field string, a mailsyntax.Address) (mailsyntax.Address, []Step) {
	a, steps, err := rw.complete(a, nil)
	if err != nil {
		return a, nil
	}
	if senderFields[strings.ToLower(field)] {
		a, steps = rw.canonical(network, a, steps, config.SenderRewrite.Header)
	}
	return a, steps
}

// Header rewrites the address fields of a header section in place (see
// mailsyntax.RewriteAddresses) and returns it with the steps taken, each
// Why prefixed with the field name.
func (rw *Rewriter) Header(network string, hdr []byte) ([]byte, []Step) {
	var steps []Step
	out, _ := mailsyntax.RewriteAddresses(hdr, func(field string, a mailsyntax.Address) (mailsyntax.Address, bool) {
		n, s := rw.HeaderAddress(network, field, a)
		for _, st := range s {
			st.Why = field + ": " + st.Why
			steps = append(steps, st)
		}
		return n, len(s) > 0
	})
	return out, steps
}

func (rw *Rewriter) canonical(network string, a mailsyntax.Address, steps []Step, applies func(config.SenderRewrite) bool) (mailsyntax.Address, []Step) {
	for _, m := range []*canonMap{rw.networks[network], rw.global} {
		if r, ok := m.lookup(a, applies); ok {
			n := r.apply(a)
			return n, append(steps, Step{a, n, r.where})
		}
	}
	return a, steps
}

// Active reports whether the rewriter can change anything for a client of
// network: an origin domain, or a map that applies to it.
func (rw *Rewriter) Active(network string) bool {
	return rw.origin != "" || rw.global.len() > 0 || rw.networks[network].len() > 0
}

// Kept reports whether the origin never completes domain: delivery.transport
// names it, so mail for it has a route of its own ("bob@intranet").
func (rw *Rewriter) Kept(domain string) bool { return rw.keep[mailsyntax.NormDomain(domain)] }

// Warnings says what an operator should hear at start: no origin domain
// can be derived, so unqualified senders leave as written.
func (rw *Rewriter) Warnings() []string {
	if rw.origin != "" {
		return nil
	}
	return []string{"rewrite.origin_domain: no origin domain (" + rw.originWhy + "): mail from this host and trusted networks " +
		"naming root@web01 or scanner@localhost leaves as written, which receivers refuse (\"need fully-qualified address\"), " +
		"and a local part alone (root) is refused with 553 5.1.7; set rewrite.origin_domain to the domain this host's mail comes from"}
}
