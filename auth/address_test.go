package auth_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/inkan-relay/inkan/auth"
)

// wantSMTP fails unless err is an *smtp.SMTPError with code and enhanced code.
func wantSMTP(t *testing.T, err error, code int, enh smtp.EnhancedCode) *smtp.SMTPError {
	t.Helper()
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T) is not an *smtp.SMTPError", err, err)
	}
	if se.Code != code || se.EnhancedCode != enh {
		t.Fatalf("got %d %v %q, want %d %v", se.Code, se.EnhancedCode, se.Message, code, enh)
	}
	if strings.ContainsAny(se.Message, "\r\n") {
		t.Fatalf("reply message %q contains CR or LF", se.Message)
	}
	return se
}

var goodAddresses = []string{
	"alice@example.com",
	"a.b+tag@sub.example.co.uk",
	"o'brien@example.com",
	"x@localhost",
	"under_score@my_host.example",
	`"john doe"@example.com`,
	`"quoted\"escape"@example.com`,
	"用户@例子.中国",
	"UPPER@EXAMPLE.COM",
	strings.Repeat("l", 64) + "@example.com",
}

// The classic relay tricks and malformed addresses, with a word the reply
// must contain.
var badRecipients = []struct{ addr, why string }{
	{"", "empty"},
	{"user%other@example.com", "percent"},
	{"user%other.example@relay.example", "percent"},
	{"user!host@example.com", "bang"},
	{"host!user", "missing domain"},
	{"@a,@b:user@c.example", "source route"},
	{"@relay.example:user@c.example", "source route"},
	{"@example.com", "missing local part"},
	{`"user@other"@example.com`, "quoted"},
	{`"user%other"@example.com`, "quoted"},
	{`"a!b"@example.com`, "quoted"},
	{`"a\@b"@example.com`, "quoted"},
	{"user", "missing domain"},
	{"user@", "missing domain"},
	{"user@[192.0.2.1]", "domain literal"},
	{"user@[IPv6:2001:db8::1]", "domain literal"},
	{"us\r\ner@example.com", "control"},
	{"user@exa\x00mple.com", "control"},
	{"user\x7f@example.com", "control"},
	{"\xff@example.com", "UTF-8"},
	{strings.Repeat("l", 65) + "@example.com", "local part longer"},
	{"a@" + strings.Repeat("d", 63) + "." + strings.Repeat("d", 63) + "." + strings.Repeat("d", 63) + "." + strings.Repeat("d", 61), "longer than 254"},
	{"a@" + strings.Repeat("d", 64) + ".example", "label longer"},
	{"a@b@example.com", "more than one '@'"},
	{"user@example..com", "empty label"},
	{"user@.example.com", "empty label"},
	{"user@example.com.", "empty label"},
	{"user name@example.com", "invalid character"},
	{`us"er@example.com`, "invalid character"},
	{`"unterminated@example.com`, "quoted"},
	{`"a"b@example.com`, "quoted"},
	{`""@example.com`, "empty local part"},
	{"user@exa mple.com", "invalid character"},
	{"user@example.com>", "invalid character"},
	{"<user@example.com>", "invalid character"},
	{"user(comment)@example.com", "invalid character"},
}

func TestCheckRecipient(t *testing.T) {
	for _, a := range goodAddresses {
		if err := auth.CheckRecipient(a); err != nil {
			t.Errorf("CheckRecipient(%q) = %v, want nil", a, err)
		}
	}
	for _, tc := range badRecipients {
		err := auth.CheckRecipient(tc.addr)
		if err == nil {
			t.Errorf("CheckRecipient(%q) = nil, want refusal (%s)", tc.addr, tc.why)
			continue
		}
		se := wantSMTP(t, err, 553, smtp.EnhancedCode{5, 1, 3})
		if !strings.Contains(strings.ToLower(se.Message), strings.ToLower(tc.why)) {
			t.Errorf("CheckRecipient(%q) = %q, want it to mention %q", tc.addr, se.Message, tc.why)
		}
	}
}

func TestCheckSender(t *testing.T) {
	for _, a := range append(goodAddresses, "", "user@[192.0.2.1]", "user@[IPv6:2001:db8::1]") {
		if err := auth.CheckSender(a); err != nil {
			t.Errorf("CheckSender(%q) = %v, want nil", a, err)
		}
	}
	for _, a := range []string{
		"user%other@example.com", "a!b@example.com", "@a:b@c.example", "user@[999.1.1.1]",
		"user@[2001:db8::1]", "user@[IPv6:192.0.2.1]", "user@[192.0.2.1", "user@[]", "user", "us\ner@example.com",
	} {
		err := auth.CheckSender(a)
		if err == nil {
			t.Errorf("CheckSender(%q) = nil, want refusal", a)
			continue
		}
		wantSMTP(t, err, 553, smtp.EnhancedCode{5, 1, 7})
	}
}

// The reply echoes the address; a CR/LF in it must not split the reply.
func TestRepliesAreSanitized(t *testing.T) {
	err := auth.CheckRecipient("x\r\n250 OK@example.com")
	se := wantSMTP(t, err, 553, smtp.EnhancedCode{5, 1, 3})
	if !strings.Contains(se.Message, "x??250 OK@example.com") {
		t.Errorf("message %q", se.Message)
	}
	se = auth.SenderNotOwned("al\nice", strings.Repeat("x", 500))
	if strings.ContainsAny(se.Message, "\r\n") || len(se.Message) > 300 {
		t.Errorf("message %q not sanitized", se.Message)
	}
}
