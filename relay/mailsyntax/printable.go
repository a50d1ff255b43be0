package mailsyntax

import (
	"strings"
	"unicode/utf8"
)

// Printable returns s with everything a terminal would act on, rather than
// show, replaced by '?': C0 controls but the tab (ESC starts the sequences
// that retitle windows, clear screens or write the clipboard; CR rewrites
// the line), DEL, C1 controls (U+0080 to U+009F: U+009B is CSI), the
// Unicode bidirectional controls that make text read in another order, and
// bytes that are not UTF-8 (a raw 0x9B is CSI to a terminal in 8-bit mode).
// It is for showing remote text (SMTP replies, header fields, envelope
// names) to an administrator: one '?' per character replaced, everything
// else kept as it is.
func Printable(s string) string {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if !printable(r, n) {
			return replace(s, i)
		}
		i += n
	}
	return s
}

// replace is Printable from the first byte to replace, at i.
func replace(s string, i int) string {
	var b strings.Builder
	b.Grow(len(s))
	b.WriteString(s[:i])
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		if !printable(r, n) {
			r = '?'
		}
		b.WriteRune(r)
		i += n
	}
	return b.String()
}

// printable reports whether rune r, n bytes long in the input, may be shown.
func printable(r rune, n int) bool {
	switch {
	case r == '\t':
		return true
	case r < 0x20, r >= 0x7f && r <= 0x9f, r == utf8.RuneError && n == 1:
		return false
	case r == 0x061c, r == 0x200e, r == 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return false // ALM, LRM, RLM, LRE..RLO, LRI..PDI
	}
	return true
}

// ReplyText makes client-supplied text safe to echo in an SMTP reply line:
// Printable, no tab, at most max characters (then "...").
func ReplyText(s string, max int) string {
	s = strings.ReplaceAll(Printable(s), "\t", "?")
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	r := []rune(s)
	return string(r[:max]) + "..."
}
