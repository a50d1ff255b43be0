package auth

import (
	"strings"
	"testing"

	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

func FuzzCheckRecipient(f *testing.F) {
	for _, s := range []string{
		"alice@example.com", "user%other@example.com", "a!b@example.com", "@a,@b:c@d.example",
		`"x@y"@example.com`, `"a\"b"@example.com`, "user@[192.0.2.1]", "用户@例子.中国", "a@b@c", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		rerr, serr := CheckRecipient(addr), CheckSender(addr)
		if rerr != nil {
			if msg := rerr.Error(); strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("reply with CR/LF: %q", msg)
			}
			return
		}
		// Anything accepted as a recipient is a safe sender too.
		if serr != nil {
			t.Fatalf("recipient %q accepted, sender refused: %v", addr, serr)
		}
		a, err := mailsyntax.SplitAddress(addr)
		if err != nil {
			t.Fatalf("accepted %q does not split: %v", addr, err)
		}
		local, domain := a.Local, a.Domain
		if strings.ContainsAny(local, "%!@") && addr[0] != '"' || strings.ContainsAny(local, "%!@\r\n") {
			t.Fatalf("accepted %q has local part %q", addr, local)
		}
		if domain == "" || strings.ContainsAny(domain, "[]@%!") || len(addr) > mailsyntax.MaxAddressLen {
			t.Fatalf("accepted %q has domain %q", addr, domain)
		}
	})
}

func FuzzLoadUsers(f *testing.F) {
	f.Add([]byte("# users\nalice:$2a$04$abcdefghijklmnopqrstuuMUq4zYMFHtz7yJcrUvc3sbUuGZ0zZ.q\n"))
	f.Add([]byte("bob:$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g\r\n\n"))
	f.Add([]byte("\xef\xbb\xbfa:b\nc"))
	f.Add([]byte("x:$argon2id$v=19$m=4294967295,t=1,p=255$c2FsdHNhbHQ$aGFzaGhhc2g"))
	f.Fuzz(func(t *testing.T, data []byte) {
		lines, err := parseUsers(data, "users")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "users:") {
				t.Fatalf("error %q does not name file:line", err)
			}
			return
		}
		// What parses survives a rewrite unchanged.
		again, err := parseUsers(formatUsers(lines), "users")
		if err != nil {
			t.Fatalf("rewritten file does not parse: %v", err)
		}
		db1, db2 := newUserDB(lines), newUserDB(again)
		if strings.Join(db1.names, "\n") != strings.Join(db2.names, "\n") {
			t.Fatalf("names changed: %q -> %q", db1.names, db2.names)
		}
		for _, n := range db1.names {
			if ValidateUserName(n) != nil {
				t.Fatalf("invalid name %q accepted", n)
			}
		}
	})
}

func FuzzSenderSet(f *testing.F) {
	f.Add("alice@example.com", "ALICE@example.COM")
	f.Add("@example.com", "x@example.com")
	f.Add(`"a b"@example.com`, `"A B"@Example.com`)
	f.Add("@a.example", "x@b.example")
	f.Fuzz(func(t *testing.T, pattern, addr string) {
		s, err := NewSenderSet([]string{pattern})
		if err != nil {
			return
		}
		s.Allows(addr)
		p := strings.TrimSpace(pattern)
		if !strings.HasPrefix(p, "@") {
			// An address pattern allows itself, in any case.
			if !s.Allows(p) || !s.Allows(strings.ToUpper(p)) && strings.ToLower(strings.ToUpper(p)) == strings.ToLower(p) {
				t.Fatalf("pattern %q does not allow itself", p)
			}
		} else if !s.Allows("postmaster" + p) {
			t.Fatalf("domain pattern %q does not allow postmaster%s", p, p)
		}
	})
}
