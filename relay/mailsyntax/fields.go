package mailsyntax

import "strings"

// RawField is where one header field sits in a header section: its name as
// written and byte offsets into the section. The field runs from Start
// through End (its last line's line ending included); its value, still
// folded, from Value to End.
type RawField struct {
	Name       string
	Start, End int
	Value      int
}

// SplitFields finds the fields of a header section by the rules ParseHeader
// reads them with (ParseHeader is built on it), so code that edits a field
// in place and the parse that follows see the same fields: a line starting
// with white space continues the field before it; a line that is neither a
// field nor a continuation is skipped together with its own continuation
// lines; the first blank line after a field ends the section.
func SplitFields(b []byte) []RawField {
	var out []RawField
	s := string(b)
	skipping := false // the last line that was not a continuation was skipped
	for pos := 0; pos < len(s); {
		end := strings.IndexByte(s[pos:], '\n') + 1
		if end == 0 {
			end = len(s) - pos
		}
		line := strings.TrimRight(s[pos:pos+end], "\r\n")
		start := pos
		pos += end
		switch {
		case line == "":
			if len(out) > 0 {
				return out
			}
		case line[0] == ' ' || line[0] == '\t':
			if len(out) > 0 && !skipping {
				out[len(out)-1].End = pos
			}
		default:
			name, _, ok := strings.Cut(line, ":")
			skipping = !ok || !isFieldName(name)
			if !skipping {
				out = append(out, RawField{Name: name, Start: start, Value: start + len(name) + 1, End: pos})
			}
		}
	}
	return out
}

// unfold returns the value of a field as ParseHeader gives it: the first
// line's value trimmed, each continuation line appended without its line
// ending, and the result trimmed.
func unfold(raw string) string {
	first, rest, folded := strings.Cut(raw, "\n")
	v := strings.TrimSpace(strings.TrimRight(first, "\r"))
	if !folded {
		return v
	}
	var b strings.Builder
	b.WriteString(v)
	for line := range strings.SplitSeq(rest, "\n") {
		b.WriteString(strings.TrimRight(line, "\r"))
	}
	return strings.TrimSpace(b.String())
}
