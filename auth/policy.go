package auth

import (
	"fmt"
	"sort"
	"strings"

	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// SenderSet is a list of addresses a user or network may send as. Patterns
// are "alice@example.com" (that address), "@example.com" (any address in
// the domain) or "@.example.com" (any address in a subdomain of it). Both parts compare case-insensitively, as Postfix does; a
// quoted local part compares by its decoded text.
type SenderSet struct {
	exact   map[string]struct{} // canonical addresses
	domains map[string]struct{} // lower-case domains
	parents map[string]struct{} // lower-case domains whose subdomains match
}

// NewSenderSet compiles patterns. An empty list gives a set that allows
// nothing; ["*"] gives the nil *SenderSet, which allows any sender.
func NewSenderSet(patterns []string) (*SenderSet, error) {
	if len(patterns) == 1 && strings.TrimSpace(patterns[0]) == "*" {
		return nil, nil
	}
	s := &SenderSet{exact: map[string]struct{}{}, domains: map[string]struct{}{}, parents: map[string]struct{}{}}
	for _, p := range patterns {
		p = strings.TrimSpace(p)
		if d, ok := strings.CutPrefix(p, "@."); ok {
			if mailsyntax.CheckDomain(d, mailsyntax.Underscore|mailsyntax.Unicode) != nil {
				return nil, fmt.Errorf("sender pattern %q: invalid domain", p)
			}
			s.parents[mailsyntax.NormDomain(d)] = struct{}{}
			continue
		}
		if d, ok := strings.CutPrefix(p, "@"); ok {
			if mailsyntax.CheckDomain(d, mailsyntax.Underscore|mailsyntax.Unicode) != nil {
				return nil, fmt.Errorf("sender pattern %q: invalid domain", p)
			}
			s.domains[strings.ToLower(d)] = struct{}{}
			continue
		}
		if !strings.Contains(p, "@") {
			return nil, fmt.Errorf("sender pattern %q: want an address (alice@example.com) or a domain (@example.com)", p)
		}
		key, ok := canonical(p)
		if !ok || mailsyntax.CheckPath(p, true) != nil {
			return nil, fmt.Errorf("sender pattern %q: invalid address", p)
		}
		s.exact[key] = struct{}{}
	}
	return s, nil
}

// Allows reports whether addr matches a pattern. A nil set allows every
// address; the null sender "" matches no pattern (Policy allows it anyway).
func (s *SenderSet) Allows(addr string) bool {
	if s == nil {
		return true
	}
	key, ok := canonical(addr)
	if !ok {
		return false
	}
	if _, ok := s.exact[key]; ok {
		return true
	}
	d := key[strings.LastIndexByte(key, '@')+1:]
	if _, ok := s.domains[d]; ok {
		return true
	}
	for i := strings.IndexByte(d, '.'); i >= 0; i = strings.IndexByte(d, '.') {
		d = d[i+1:]
		if _, ok := s.parents[d]; ok {
			return true
		}
	}
	return false
}

// Patterns returns the set's patterns in canonical form, sorted.
func (s *SenderSet) Patterns() []string {
	if s == nil {
		return nil
	}
	var out []string
	for k := range s.exact {
		out = append(out, k)
	}
	for d := range s.domains {
		out = append(out, "@"+d)
	}
	for d := range s.parents {
		out = append(out, "@."+d)
	}
	sort.Strings(out)
	return out
}

// canonical lower-cases the decoded local part and the domain.
func canonical(addr string) (string, bool) {
	a, err := mailsyntax.SplitAddress(addr)
	if err != nil {
		return "", false
	}
	return a.Key(), true
}

// Policy decides which sender addresses an authenticated user or a trusted
// network may use, both in MAIL FROM and in the header From.
type Policy struct {
	users map[string]*SenderSet
}

// NewPolicy compiles auth.senders: user name → patterns. A user with no entry
// may send only as its own name, when that name is an address.
func NewPolicy(senders map[string][]string) (*Policy, error) {
	p := &Policy{users: make(map[string]*SenderSet, len(senders))}
	for user, patterns := range senders {
		s, err := NewSenderSet(patterns)
		if err != nil {
			return nil, fmt.Errorf("auth.senders[%q]: %w", user, err)
		}
		p.users[user] = s
	}
	return p, nil
}

// UserAllows reports whether user may send as addr. The null sender is
// allowed for everyone, so users can send bounces and receipts.
func (p *Policy) UserAllows(user, addr string) bool {
	if addr == "" {
		return true
	}
	if p != nil {
		if s, ok := p.users[user]; ok {
			return s.Allows(addr)
		}
	}
	own, ok := canonical(user)
	if !ok {
		return false
	}
	key, ok := canonical(addr)
	return ok && key == own
}

// CheckUser returns nil when user may use addr as MAIL FROM, else a
// SenderNotOwned reply (553 5.7.1). A nil Policy applies the default rule.
func (p *Policy) CheckUser(user, addr string) error {
	if p.UserAllows(user, addr) {
		return nil
	}
	return SenderNotOwned(user, addr)
}

// CheckNetwork returns nil when a client of trusted network n may use addr as
// MAIL FROM (n.Senders nil = any address), else NetworkSenderNotAllowed.
// A nil n (not a trusted network) is refused with ErrRelayDenied.
func (p *Policy) CheckNetwork(n *Network, addr string) error {
	if n == nil {
		return ErrRelayDenied
	}
	if addr == "" || n.Senders.Allows(addr) {
		return nil
	}
	return NetworkSenderNotAllowed(n.Name, addr)
}

// CheckAuthors applies the sender rule of an authenticated user (user != "")
// or of trusted network n to every address a header section names as its
// sender (mailsyntax.Authors: From, Sender, Resent-From, Resent-Sender):
// nil when all are allowed, else HeaderFromNotOwned (550 5.7.1) naming the
// first that is not. Unrestricted networks (n.Senders nil) allow any.
func (p *Policy) CheckAuthors(user string, n *Network, authors []mailsyntax.Address) error {
	for _, a := range authors {
		addr := a.String()
		switch {
		case user != "":
			if !p.UserAllows(user, addr) {
				return HeaderFromNotOwned(user, addr)
			}
		case n == nil:
			return ErrRelayDenied
		case !n.Senders.Allows(addr):
			return NetworkHeaderFromNotAllowed(n.Name, addr)
		}
	}
	return nil
}

// Restricted reports whether the sender rule limits user (or, for an
// unauthenticated client, network n) to some addresses: users always are;
// a trusted network only when it lists senders.
func Restricted(user string, n *Network) bool {
	return user != "" || (n != nil && n.Senders != nil)
}
