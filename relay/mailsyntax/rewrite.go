package mailsyntax

import (
	"errors"
	"strings"
)

// Unqualified reports whether domain cannot be a mail domain on the
// Internet: empty (a local part alone, "root"), a single label (a short host
// name: "web01"), or localhost and localdomain ("scanner@localhost",
// "root@localhost.localdomain", RFC 6761's ".localhost"). Receivers refuse
// such senders ("need fully-qualified address"), so a relay completes them
// with its origin domain. A domain literal is qualified.
func Unqualified(domain string) bool {
	d := NormDomain(domain)
	if d == "" {
		return true
	}
	if d[0] == '[' {
		return false
	}
	if !strings.Contains(d, ".") {
		return true
	}
	return d == "localhost.localdomain" || strings.HasSuffix(d, ".localhost") || strings.HasSuffix(d, ".localdomain")
}

// Address fields whose values are address lists (RFC 5322 §3.6.2, §3.6.3,
// §3.6.6), lower case.
var addressFields = map[string]bool{
	"from": true, "sender": true, "reply-to": true, "to": true, "cc": true, "bcc": true,
	"resent-from": true, "resent-sender": true, "resent-to": true, "resent-cc": true, "resent-bcc": true,
	"resent-reply-to": true,
}

// IsAddressField reports whether name (any letter case) is a header field
// holding addresses: From, Sender, Reply-To, To, Cc, Bcc and their Resent-
// forms.
func IsAddressField(name string) bool { return addressFields[strings.ToLower(name)] }

// Change is one address RewriteAddresses replaced. Old has Domain "" when
// the field named a local part alone.
type Change struct {
	Field    string // as written in the header
	Old, New Address
}

// OldString is Old as written in an address field: the local part alone
// when it had no domain.
func (c Change) OldString() string {
	if c.Old.Domain == "" {
		return quoteLocal(c.Old.Local)
	}
	return c.Old.String()
}

// RewriteAddresses returns the header section hdr with addresses in its
// address fields (IsAddressField) replaced where fn says so: fn gets the
// field name as written and each address (Domain "" for a local part alone,
// see ParseAddressesBare) and returns the replacement and true, or false to
// keep it. Only the addr-spec changes: display names, comments, angle
// brackets, folding and every other field stay byte for byte, so the result
// reads as the client wrote it except for the addresses. A field whose value
// does not parse even with bare local parts allowed is left as it is (the
// strict parse that follows refuses it where that matters). A replacement
// without a domain is ignored. The input is not modified.
func RewriteAddresses(hdr []byte, fn func(field string, a Address) (Address, bool)) ([]byte, []Change) {
	var out []byte
	var changes []Change
	last := 0 // bytes of hdr before last are in out
	for _, f := range SplitFields(hdr) {
		if !IsAddressField(f.Name) {
			continue
		}
		value := string(hdr[f.Value:f.End])
		list, err := ParseAddressesBare(value)
		if err != nil {
			continue
		}
		for _, l := range list {
			n, ok := fn(f.Name, l.Address)
			if !ok || n.Domain == "" || n == l.Address {
				continue
			}
			if out == nil {
				out = make([]byte, 0, len(hdr)+64)
			}
			out = append(out, hdr[last:f.Value+l.Start]...)
			out = append(out, n.String()...)
			last = f.Value + l.End
			changes = append(changes, Change{Field: f.Name, Old: l.Address, New: n})
		}
	}
	if out == nil {
		return hdr, nil
	}
	return append(out, hdr[last:]...), changes
}

// CheckLocalPart returns why local is not a local part inkan takes in an
// address it is given to match or write (a dot-string, as CheckPath
// requires of unquoted local parts), or nil.
func CheckLocalPart(local string) error {
	switch {
	case local == "":
		return errNoLocal
	case len(local) > MaxLocalLen:
		return errors.New("local part longer than 64 characters")
	case !isDotAtom(local):
		return errors.New("local part is not a dot-atom (letters, digits, !#$%&'*+-/=?^_`{|}~ and inner dots)")
	}
	return checkLocal(local)
}
