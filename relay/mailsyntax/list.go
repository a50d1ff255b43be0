package mailsyntax

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// The address-list grammar of RFC 5322 §3.4 with the obsolete forms of §4.4
// (CFWS between words, empty list elements, source routes), as receivers
// and OpenDKIM accept them. net/mail is not used because it decodes encoded
// words (and fails on unknown charsets) and refuses source routes; here
// display names and comments are skipped unread, so nothing in them can
// change which address is found.

type tokKind uint8

const (
	tAtom    tokKind = iota // atext run (8-bit allowed, RFC 6532)
	tQuoted                 // quoted-string, decoded
	tLiteral                // domain literal, with brackets
	tSpecial                // one of < > @ , ; : .
)

type token struct {
	kind     tokKind
	text     string
	pos, end int // where the token is in the value (comments around it excluded)
}

// lex splits a field value into tokens, dropping white space and comments.
func lex(s string) ([]token, error) {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			i++
		case c == '(':
			depth := 0
			for ; i < len(s); i++ {
				if s[i] == '\\' {
					i++
				} else if s[i] == '(' {
					depth++
				} else if s[i] == ')' {
					if depth--; depth == 0 {
						break
					}
				}
			}
			if i >= len(s) {
				return nil, errors.New("unterminated comment")
			}
			i++
		case c == '"':
			var b strings.Builder
			start := i
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' {
					if i++; i == len(s) {
						break
					}
				}
				if s[i] != '\r' && s[i] != '\n' {
					b.WriteByte(s[i])
				}
			}
			if i >= len(s) {
				return nil, errors.New("unterminated quoted string")
			}
			i++
			toks = append(toks, token{tQuoted, b.String(), start, i})
		case c == '[':
			j := strings.IndexAny(s[i+1:], "[]\\")
			if j < 0 || s[i+1+j] != ']' {
				return nil, errors.New("unterminated domain literal")
			}
			toks = append(toks, token{tLiteral, strings.ReplaceAll(s[i:i+j+2], " ", ""), i, i + j + 2})
			i += j + 2
		case strings.IndexByte("<>@,;:.", c) >= 0:
			toks = append(toks, token{tSpecial, s[i : i+1], i, i + 1})
			i++
		case c >= utf8.RuneSelf || isAtext(c):
			j := i
			for j < len(s) && (s[j] >= utf8.RuneSelf || isAtext(s[j])) {
				j++
			}
			toks = append(toks, token{tAtom, s[i:j], i, j})
			i = j
		default:
			return nil, fmt.Errorf("unexpected character %q", c)
		}
	}
	return toks, nil
}

type listParser struct {
	toks []token
	i    int
	bare bool // accept a local part without a domain (ParseAddressesBare)
}

// Located is an address found in a field value, with the byte offsets of
// its addr-spec there (from the first word of the local part to the end of
// the domain; the display name, comments and angle brackets lie outside).
type Located struct {
	Address
	Start, End int
}

func (p *listParser) peek() (token, bool) {
	if p.i < len(p.toks) {
		return p.toks[p.i], true
	}
	return token{}, false
}

func (p *listParser) isSpecial(c string) bool {
	t, ok := p.peek()
	return ok && t.kind == tSpecial && t.text == c
}

// ParseMailboxList returns the mailboxes of a From or Resent-From value
// (RFC 5322 §3.6.2: a mailbox-list; groups are not allowed there).
func ParseMailboxList(value string) ([]Address, error) { return parseList(value, false) }

// ParseAddressList returns the mailboxes of a To, Cc or Bcc value; group
// members are included, empty groups add nothing.
func ParseAddressList(value string) ([]Address, error) { return parseList(value, true) }

// ParseMailbox returns the one mailbox of a Sender or Resent-Sender value.
func ParseMailbox(value string) (Address, error) {
	list, err := parseList(value, false)
	if err != nil {
		return Address{}, err
	}
	if len(list) != 1 {
		return Address{}, fmt.Errorf("want one mailbox, found %d", len(list))
	}
	return list[0], nil
}

func parseList(value string, groups bool) ([]Address, error) {
	list, err := scanList(value, groups, false)
	if err != nil {
		return nil, err
	}
	out := make([]Address, len(list))
	for i, l := range list {
		out[i] = l.Address
	}
	return out, nil
}

// ParseAddressesBare parses an address-list value (groups allowed) as
// ParseAddressList does, except that a mailbox may be a local part alone
// ("root", "Cron Daemon <root>", "root (Cron Daemon)"), as Unix programs
// write them; such an address has Domain "". It tells where each address
// is, so that a caller can complete or replace it in place. Only the
// rewriting of header fields uses it: everything that decides about a
// message reads the strict parsers.
func ParseAddressesBare(value string) ([]Located, error) { return scanList(value, true, true) }

func scanList(value string, groups, bare bool) ([]Located, error) {
	toks, err := lex(value)
	if err != nil {
		return nil, err
	}
	p := &listParser{toks: toks, bare: bare}
	var out []Located
	inGroup := false
	for p.i < len(p.toks) {
		if p.isSpecial(",") { // obs-mbox-list allows empty elements
			p.i++
			continue
		}
		if inGroup && p.isSpecial(";") {
			p.i++
			inGroup = false
			continue
		}
		phrase := p.phrase()
		t, ok := p.peek()
		switch {
		case ok && t.kind == tSpecial && t.text == ":" && len(phrase) > 0:
			if !groups {
				return nil, errors.New("a group is not allowed here")
			}
			if inGroup {
				return nil, errors.New("nested group")
			}
			p.i++
			inGroup = true
			continue
		case ok && t.kind == tSpecial && t.text == "<":
			p.i++
			a, err := p.angleAddr()
			if err != nil {
				return nil, err
			}
			out = append(out, a)
		case ok && t.kind == tSpecial && t.text == "@" && len(phrase) > 0:
			p.i++
			a, err := p.addrSpecAfterAt(phrase)
			if err != nil {
				return nil, err
			}
			out = append(out, Located{a, phrase[0].pos, p.toks[p.i-1].end})
		case len(phrase) > 0:
			l, err := localPart(phrase)
			if !p.bare || err != nil {
				return nil, fmt.Errorf("%q is not an address", joinTokens(phrase))
			}
			out = append(out, Located{Address{Local: l}, phrase[0].pos, phrase[len(phrase)-1].end})
		default:
			return nil, fmt.Errorf("unexpected %q", t.text)
		}
		if t, ok := p.peek(); ok && !(t.kind == tSpecial && (t.text == "," || (inGroup && t.text == ";"))) {
			return nil, fmt.Errorf("unexpected %q after an address", t.text)
		}
	}
	if inGroup {
		return nil, errors.New("group not closed with ';'")
	}
	if len(out) == 0 && !groups {
		return nil, errors.New("no address")
	}
	return out, nil
}

// phrase consumes words and dots (obs-phrase): a display name, or the local
// part of an addr-spec.
func (p *listParser) phrase() []token {
	start := p.i
	for p.i < len(p.toks) {
		t := p.toks[p.i]
		if t.kind == tAtom || t.kind == tQuoted || (t.kind == tSpecial && t.text == ".") {
			p.i++
			continue
		}
		break
	}
	return p.toks[start:p.i]
}

// angleAddr parses what follows '<': an optional obsolete source route, an
// addr-spec and '>'. The route is skipped, as RFC 5321 §C tells receivers to.
func (p *listParser) angleAddr() (Located, error) {
	if p.isSpecial("@") || p.isSpecial(",") {
		for !p.isSpecial(":") {
			switch {
			case p.isSpecial(","):
				p.i++
			case p.isSpecial("@"):
				p.i++
				if _, err := p.domain(); err != nil {
					return Located{}, fmt.Errorf("source route: %w", err)
				}
			default:
				return Located{}, errors.New("malformed source route")
			}
		}
		p.i++
	}
	local := p.phrase()
	if p.bare && len(local) > 0 && p.isSpecial(">") {
		l, err := localPart(local)
		if err != nil {
			return Located{}, err
		}
		p.i++
		return Located{Address{Local: l}, local[0].pos, local[len(local)-1].end}, nil
	}
	if !p.isSpecial("@") {
		return Located{}, errors.New("address in <> has no '@'")
	}
	p.i++
	a, err := p.addrSpecAfterAt(local)
	if err != nil {
		return Located{}, err
	}
	loc := Located{a, local[0].pos, p.toks[p.i-1].end}
	if !p.isSpecial(">") {
		return Located{}, errors.New("missing '>'")
	}
	p.i++
	return loc, nil
}

// addrSpecAfterAt builds an address from the local-part words and the
// domain that follows the '@' just consumed.
func (p *listParser) addrSpecAfterAt(local []token) (Address, error) {
	l, err := localPart(local)
	if err != nil {
		return Address{}, err
	}
	d, err := p.domain()
	if err != nil {
		return Address{}, err
	}
	return Address{Local: l, Domain: d}, nil
}

// localPart joins word ("." word)* (obs-local-part: CFWS between them).
func localPart(toks []token) (string, error) {
	if len(toks) == 0 {
		return "", errNoLocal
	}
	var b strings.Builder
	wantWord := true
	for _, t := range toks {
		isDot := t.kind == tSpecial
		if isDot == wantWord {
			return "", fmt.Errorf("malformed local part %q", joinTokens(toks))
		}
		if !isDot && !utf8.ValidString(t.text) {
			return "", errors.New("invalid UTF-8 in the local part")
		}
		b.WriteString(t.text)
		wantWord = !wantWord
	}
	if wantWord {
		return "", fmt.Errorf("local part %q ends with '.'", joinTokens(toks))
	}
	if b.Len() == 0 {
		return "", errNoLocal
	}
	if b.Len() > MaxLocalLen {
		return "", fmt.Errorf("local part longer than %d characters", MaxLocalLen)
	}
	return b.String(), nil
}

// domain parses a dot-atom / obs-domain or a domain literal.
func (p *listParser) domain() (string, error) {
	t, ok := p.peek()
	if !ok {
		return "", errNoDomain
	}
	if t.kind == tLiteral {
		p.i++
		if !ValidLiteral(t.text) {
			return "", fmt.Errorf("invalid domain literal %s", t.text)
		}
		return t.text, nil
	}
	var b strings.Builder
	for {
		t, ok := p.peek()
		if !ok || t.kind != tAtom {
			return "", errNoDomain
		}
		b.WriteString(t.text)
		p.i++
		if !p.isSpecial(".") {
			break
		}
		p.i++
		b.WriteByte('.')
	}
	d := b.String()
	if err := CheckDomain(d, Underscore|Unicode); err != nil {
		return "", fmt.Errorf("domain %q: %w", d, err)
	}
	return d, nil
}

func joinTokens(toks []token) string {
	var parts []string
	for _, t := range toks {
		parts = append(parts, t.text)
	}
	return strings.Join(parts, " ")
}
