package mailsyntax

import (
	"errors"
	"fmt"
	"strings"
)

// Field is one header field, unfolded: CRLFs inside the value removed and
// the white space around it trimmed. Name is as written.
type Field struct {
	Name  string
	Value string
}

// Header is a header section in order.
type Header []Field

// ParseHeader splits a header section whose lines end in CRLF (the blank
// line that ends it is optional) into fields, unfolded. A continuation line
// joins the field before it; a line that is neither a field nor a
// continuation is skipped with its continuation lines (the SMTP reader ends
// the header section before such a line, so it only occurs in header
// sections built by inkan itself). SplitFields says where each field is.
// The cost is linear in the size of the section however long one field is.
func ParseHeader(b []byte) Header {
	raw := SplitFields(b)
	h := make(Header, 0, len(raw))
	for _, f := range raw {
		h = append(h, Field{Name: f.Name, Value: unfold(string(b[f.Value:f.End]))})
	}
	return h
}

// isFieldName reports whether s is an RFC 5322 field-name: printable ASCII
// but ':', no white space. The SMTP reader ends the header section at a line
// whose name is not one ("From : x" with the obsolete space is body text
// there), and this parser agrees, so no one reads such a line as a field.
func isFieldName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// Has reports whether a field called name (any letter case) is present.
func (h Header) Has(name string) bool { return h.Count(name) > 0 }

// Count returns how many fields are called name.
func (h Header) Count(name string) int {
	n := 0
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			n++
		}
	}
	return n
}

// Values returns the values of the fields called name, in order.
func (h Header) Values(name string) []string {
	var vs []string
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			vs = append(vs, f.Value)
		}
	}
	return vs
}

// ErrNoFrom is returned by Authors when the header has no From field.
var ErrNoFrom = errors.New("no From header field")

// Authors is who a header section says a message is from: the mailboxes of
// its one From field (the author, whose domain DKIM signs and DMARC aligns
// with), and those of Sender, Resent-From and Resent-Sender, which mail
// programs also show as the sender ("X on behalf of Y").
type Authors struct {
	From   []Address
	Others []Address
}

// All returns From and Others together.
func (a Authors) All() []Address {
	return append(append([]Address(nil), a.From...), a.Others...)
}

// FieldError says which field did not parse and why.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return fmt.Sprintf("%s header: %v", e.Field, e.Err) }
func (e *FieldError) Unwrap() error { return e.Err }

// Authors parses the sender fields. It fails with ErrNoFrom when there is no
// From field (Others are filled in all the same), and with a *FieldError when a sender field does not parse or
// occurs more often than RFC 5322 §3.6 allows (From and Sender once each):
// a second From is how a message shows one author to the signer and another
// to the reader.
func (h Header) Authors() (Authors, error) {
	var a Authors
	froms := h.Values("From")
	if len(froms) > 1 {
		return a, &FieldError{"From", fmt.Errorf("%d From fields; a message has exactly one", len(froms))}
	}
	if len(froms) == 1 {
		var err error
		if a.From, err = ParseMailboxList(froms[0]); err != nil {
			return a, &FieldError{"From", err}
		}
	}
	// The other sender fields are read whether or not there is a From: a
	// caller that fills in a missing From must still check them.
	if n := h.Count("Sender"); n > 1 {
		return a, &FieldError{"Sender", fmt.Errorf("%d Sender fields; a message has at most one", n)}
	}
	for _, name := range []string{"Sender", "Resent-Sender"} {
		for _, v := range h.Values(name) {
			m, err := ParseMailbox(v)
			if err != nil {
				return a, &FieldError{name, err}
			}
			a.Others = append(a.Others, m)
		}
	}
	for _, v := range h.Values("Resent-From") {
		list, err := ParseMailboxList(v)
		if err != nil {
			return a, &FieldError{"Resent-From", err}
		}
		a.Others = append(a.Others, list...)
	}
	if len(a.From) == 0 {
		return a, ErrNoFrom
	}
	return a, nil
}
