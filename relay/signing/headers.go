package signing

import (
	"bytes"
	"errors"
	"mime"
	"net/mail"
	"strings"
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
var defaultOversign = []string{"From", "Subject", "To", "Cc", "Date", "Reply-To"}

// field is one unfolded header field.
type field struct {
	name  string
	value string
}

// parseHeader splits a header block into fields. It stops at the blank line
// and tolerates bare LF line ends.
func parseHeader(h []byte) []field {
	var fields []field
	for len(h) > 0 {
		line := h
		next := len(h)
		if i := bytes.IndexByte(h, '\n'); i >= 0 {
			line, next = h[:i], i+1
		}
		h = h[next:]
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) == 0 {
			break
		}
		if (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			fields[len(fields)-1].value += " " + strings.TrimSpace(string(line))
			continue
		}
		name, value, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		fields = append(fields, field{name: strings.TrimSpace(string(name)), value: strings.TrimSpace(string(value))})
	}
	return fields
}

var addrParser = mail.AddressParser{WordDecoder: &mime.WordDecoder{}}

// fromAddresses returns the mailbox addresses of a From field value. It falls
// back to a plain scan for "<local@domain>" or a bare local@domain when the
// field is not strict RFC 5322 (unknown charsets in display names, stray
// quotes), since the signing decision only needs the address.
func fromAddresses(value string) ([]string, error) {
	if list, err := addrParser.ParseList(value); err == nil && len(list) > 0 {
		out := make([]string, len(list))
		for i, a := range list {
			out[i] = a.Address
		}
		return out, nil
	}
	if i := strings.IndexByte(value, '<'); i >= 0 {
		if j := strings.IndexByte(value[i:], '>'); j > 0 {
			if a := value[i+1 : i+j]; validAddr(a) {
				return []string{a}, nil
			}
		}
	}
	for _, tok := range strings.FieldsFunc(value, func(r rune) bool { return r == ' ' || r == '\t' || r == ',' || r == '"' }) {
		if validAddr(tok) {
			return []string{tok}, nil
		}
	}
	return nil, errors.New("no address in From header")
}

func validAddr(a string) bool {
	at := strings.LastIndexByte(a, '@')
	return at > 0 && at < len(a)-1 && !strings.ContainsAny(a, " \t<>()[]\\,;:\"")
}

// splitAddr returns the local part and the lower-cased domain.
func splitAddr(a string) (local, domain string) {
	at := strings.LastIndexByte(a, '@')
	if at < 0 {
		return a, ""
	}
	return a[:at], strings.ToLower(strings.TrimSuffix(a[at+1:], "."))
}

// existingSignatures returns "d/s" (lower case) for each DKIM-Signature field.
func existingSignatures(fields []field) map[string]bool {
	var seen map[string]bool
	for _, f := range fields {
		if !strings.EqualFold(f.name, "DKIM-Signature") {
			continue
		}
		var d, s string
		for _, tag := range strings.Split(f.value, ";") {
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
// as it occurs, oversigned headers once more, always-signed ones at least
// once. go-msgauth picks instances bottom-up and signs a listed name with no
// instance left as empty, which is exactly how DKIM oversigning works.
type headerPlan struct {
	sign   []string        // header names in h= order, canonical spelling
	over   map[string]bool // lower case
	always map[string]bool // lower case
}

func (p *headerPlan) keys(fields []field) []string {
	counts := map[string]int{}
	for _, f := range fields {
		counts[strings.ToLower(f.name)]++
	}
	var keys, extra []string
	for _, name := range p.sign {
		l := strings.ToLower(name)
		n := counts[l]
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
