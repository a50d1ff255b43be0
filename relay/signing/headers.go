package signing

import (
	"strings"

	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// defaultSign is the header set signed when the configuration names none:
// RFC 6376 §5.4.1's recommendations plus the list headers receivers rely on.
var defaultSign = []string{
	"From", "Sender", "Reply-To", "Subject", "Date", "Message-ID", "To", "Cc",
	"In-Reply-To", "References", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
	"List-Id", "List-Unsubscribe", "List-Unsubscribe-Post",
}

// defaultOversign are signed once more than they occur, so nobody can add
// another instance (a second From or Subject) without breaking the signature.
// The list is what replay and display attacks prepend (RFC 6376 §8.15): the
// author fields, the fields a reader sees, and the MIME fields that decide
// how the body is shown.
var defaultOversign = []string{
	"From", "Sender", "Reply-To", "Subject", "Date", "Message-ID", "To", "Cc",
	"MIME-Version", "Content-Type", "Content-Transfer-Encoding",
}

// existingSignatures returns "d/s" (lower case) for each DKIM-Signature field.
func existingSignatures(h mailsyntax.Header) map[string]bool {
	var seen map[string]bool
	for _, v := range h.Values("DKIM-Signature") {
		var d, s string
		for _, tag := range strings.Split(v, ";") {
			k, v, ok := strings.Cut(tag, "=")
			if !ok {
				continue
			}
			v = strings.ToLower(strings.Join(strings.Fields(v), ""))
			switch strings.TrimSpace(k) {
			case "d":
				d = v
			case "s":
				s = v
			}
		}
		if d != "" && s != "" {
			if seen == nil {
				seen = map[string]bool{}
			}
			seen[d+"/"+s] = true
		}
	}
	return seen
}

// headerPlan decides h= for a message: each configured header as many times
// as it occurs (at most maxSignedInstances), oversigned headers once more,
// always-signed ones at least once. Verifiers pick instances bottom-up and
// sign a listed name with no instance left as empty, which is exactly how
// DKIM oversigning works (RFC 6376 5.4.2).
type headerPlan struct {
	sign   []string        // header names in h= order, canonical spelling
	over   map[string]bool // lower case
	always map[string]bool // lower case
}

func (p *headerPlan) keys(h mailsyntax.Header) []string {
	counts := map[string]int{}
	for _, f := range h {
		counts[strings.ToLower(f.Name)]++
	}
	var keys, extra []string
	for _, name := range p.sign {
		l := strings.ToLower(name)
		n := min(counts[l], maxSignedInstances)
		if n == 0 && p.always[l] && !p.over[l] {
			n = 1
		}
		for i := 0; i < n; i++ {
			keys = append(keys, name)
		}
		if p.over[l] {
			extra = append(extra, name) // the empty instance, listed last as in RFC 8463's example
		}
	}
	return append(keys, extra...)
}

// maxSignedInstances bounds how many instances of one name h= lists (the
// bottom ones; verifiers pick bottom-up). RFC 5322 allows most signed fields
// once; without a bound a header of 100,000 Cc fields would make h= longer
// than any line may be and its signing quadratic.
const maxSignedInstances = 16

// newHeaderPlan merges the configured lists. "-" or "none" as the only entry
// means an empty list (so oversigning can be switched off).
func newHeaderPlan(sign, over, always []string) *headerPlan {
	if len(sign) == 0 {
		sign = defaultSign
	}
	if len(over) == 0 {
		over = defaultOversign
	}
	p := &headerPlan{over: map[string]bool{}, always: map[string]bool{}}
	seen := map[string]bool{}
	add := func(name string) {
		if l := strings.ToLower(name); !seen[l] {
			seen[l] = true
			p.sign = append(p.sign, name)
		}
	}
	add("From") // RFC 6376 §5.4: From MUST be signed
	for _, n := range clean(sign) {
		add(n)
	}
	for _, n := range clean(over) {
		add(n) // oversigning implies signing
		p.over[strings.ToLower(n)] = true
	}
	for _, n := range clean(always) {
		add(n)
		p.always[strings.ToLower(n)] = true
	}
	return p
}

func clean(list []string) []string {
	if len(list) == 1 && (list[0] == "-" || strings.EqualFold(list[0], "none")) {
		return nil
	}
	var out []string
	for _, n := range list {
		if n = strings.TrimSpace(n); n != "" && !strings.EqualFold(n, "DKIM-Signature") {
			out = append(out, n)
		}
	}
	return out
}
