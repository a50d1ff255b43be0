package rewrite

import (
	"fmt"
	"slices"
	"strings"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// canonMap is one compiled canonical map. Lookups go from the most specific
// form to the least, as Postfix's do: the exact address, then "user@" (the
// local part at any domain), then "@domain". Within a form the first line
// of the configuration wins. Keys compare case-insensitively.
type canonMap struct {
	exact, locals, domains map[string][]rule
	n                      int
}

type rule struct {
	config.SenderRewrite
	where         string // "rewrite.senders[2]"
	local, domain string // the replacement; local "" keeps the local part
}

func compile(key string, rules []config.SenderRewrite) *canonMap {
	m := &canonMap{exact: map[string][]rule{}, locals: map[string][]rule{}, domains: map[string][]rule{}, n: len(rules)}
	for i, r := range rules {
		local, domain, _ := strings.Cut(r.Replace, "@")
		ru := rule{r, fmt.Sprintf("%s[%d] %s -> %s", key, i, r.Match, r.Replace), local, mailsyntax.NormDomain(domain)}
		ml, md, _ := strings.Cut(r.Match, "@")
		ml, md = strings.ToLower(ml), mailsyntax.NormDomain(md)
		switch {
		case ml != "" && md != "":
			m.exact[ml+"@"+md] = append(m.exact[ml+"@"+md], ru)
		case ml != "":
			m.locals[ml] = append(m.locals[ml], ru)
		default:
			m.domains[md] = append(m.domains[md], ru)
		}
	}
	return m
}

func (m *canonMap) len() int {
	if m == nil {
		return 0
	}
	return m.n
}

// lookup finds the rule for a among those applies accepts (envelope or
// header scope).
func (m *canonMap) lookup(a mailsyntax.Address, applies func(config.SenderRewrite) bool) (rule, bool) {
	if m.len() == 0 {
		return rule{}, false
	}
	local, domain := strings.ToLower(a.Local), mailsyntax.NormDomain(a.Domain)
	for _, cands := range [][]rule{m.exact[local+"@"+domain], m.locals[local], m.domains[domain]} {
		for _, r := range cands {
			if applies(r.SenderRewrite) {
				return r, true
			}
		}
	}
	return rule{}, false
}

func (r rule) apply(a mailsyntax.Address) mailsyntax.Address {
	local := r.local
	if local == "" {
		local = a.Local
	}
	return mailsyntax.Address{Local: local, Domain: r.domain}
}

// Describe lists, for people, the origin domain and every map line in the
// order they are tried.
func (rw *Rewriter) Describe() []string {
	var out []string
	if rw.origin != "" {
		out = append(out, fmt.Sprintf("origin domain: %s (%s); completes root, root@web01, scanner@localhost from this host and trusted networks", rw.origin, rw.originWhy))
	} else {
		out = append(out, fmt.Sprintf("origin domain: none (%s); a local part alone is refused, other unqualified addresses pass unchanged", rw.originWhy))
	}
	for _, name := range sortedNames(rw.networks) {
		out = append(out, describeMap("network "+name+" (first)", rw.networks[name])...)
	}
	out = append(out, describeMap("every trusted network", rw.global)...)
	return out
}

func describeMap(who string, m *canonMap) []string {
	var out []string
	for _, forms := range []map[string][]rule{m.exact, m.locals, m.domains} {
		for _, k := range sortedNames(forms) {
			for _, r := range forms[k] {
				scope := r.Scope
				if scope == "" {
					scope = config.ScopeBoth
				}
				out = append(out, fmt.Sprintf("sender map for %s: %s (%s)", who, r.where, scope))
			}
		}
	}
	return out
}

func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Explain says what becomes of a ("root", "root@web01",
// "alice@example.com") given as the sender, MAIL FROM and header From, by
// an unauthenticated client of network ("" for the generic trusted
// networks): one line per step (none when nothing changes), and the From
// address the sender policy then checks and the signer signs for.
func (rw *Rewriter) Explain(network string, a mailsyntax.Address) (from mailsyntax.Address, lines []string, err error) {
	_, esteps, eerr := rw.EnvelopeSender(network, a)
	from, hsteps := rw.HeaderAddress(network, "From", a)
	if eerr != nil {
		lines = append(lines, fmt.Sprintf("MAIL FROM:<%s> is refused (553 5.1.7): %v", show(a), eerr))
	}
	for _, s := range esteps {
		lines = append(lines, "MAIL FROM: "+s.String())
	}
	for _, s := range hsteps {
		lines = append(lines, "From: "+s.String())
	}
	if from.Domain == "" {
		return from, lines, ErrNoOrigin
	}
	return from, lines, nil
}
