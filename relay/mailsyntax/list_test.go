package mailsyntax

import (
	"strings"
	"testing"
)

func TestParseMailboxList(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"alice@example.com", "alice@example.com"},
		{"Alice <alice@example.com>", "alice@example.com"},
		{`"Alice, A." <alice@example.com>`, "alice@example.com"},
		{"=?x-unknown?q?a?= <alice@example.com>", "alice@example.com"},
		{`=?x-unknown?q?a?= "<bob@other.example>" <alice@example.com>`, "alice@example.com"},
		{"=?utf-8?q?=3Cbob=40other.example=3E?= <alice@example.com>", "alice@example.com"},
		{"(<bob@other.example>) alice@example.com", "alice@example.com"},
		{"alice@example.com (<bob@other.example>)", "alice@example.com"},
		{"alice(work)@example.test", "alice@example.test"},
		{"bob@(work)other.test", "bob@other.test"},
		{"Alice <carol(work)@example.test>", "carol@example.test"},
		{"<@relay.test:alice@other.test>", "alice@other.test"},
		{"<@a.test,@b.test:alice@other.test>", "alice@other.test"},
		{`"john doe"@example.com`, `"john doe"@example.com`},
		{`"bob@other.example"@example.com`, `"bob@other.example"@example.com`},
		{"first . last @ example . com", "first.last@example.com"},
		{"J\xfcrgen <j@example.com>", "j@example.com"},
		{"J\xc3\xbcrgen <j\xc3\xbc@b\xc3\xbccher.example>", "j\xc3\xbc@b\xc3\xbccher.example"},
		{"a@example.com, B <b@example.org>", "a@example.com b@example.org"},
		{"a@example.com,, ,b@example.org", "a@example.com b@example.org"},
		{"alice@[192.0.2.1]", "alice@[192.0.2.1]"},
		{"Alice . Smith <a@example.com>", "a@example.com"},
		{"a@under_score.example", "a@under_score.example"},
	} {
		got, err := ParseMailboxList(tc.in)
		var s []string
		for _, a := range got {
			s = append(s, a.String())
		}
		if err != nil || strings.Join(s, " ") != tc.want {
			t.Errorf("ParseMailboxList(%q) = %q, %v; want %q", tc.in, s, err, tc.want)
		}
	}
}

func TestParseMailboxListRefuses(t *testing.T) {
	for _, in := range []string{
		"", "   ", "(only a comment)", "Alice", `"<bob@other.example> <alice@example.com>`,
		"<bob@other.example", "bob@other.example>", "friends: bob@other.example;", "undisclosed:;",
		"J\xfcrgen <bob@other.example> <alice@example.com>", "bob@other.example <alice@example.com>",
		"alice@example.com.", "alice@", "@example.com", "alice@exa!mple.com", "alice@-x.example",
		"alice@[300.1.1.1]", "a..b@example.com", ".a@example.com", "a\x00@example.com",
		"alice@example.com)", "alice@example.com (unclosed", "<@relay.test alice@other.test>",
		"alice@192.0.2.1", "a\xff@example.com",
	} {
		if got, err := ParseMailboxList(in); err == nil {
			t.Errorf("ParseMailboxList(%q) = %v, want an error", in, got)
		}
	}
}

func TestParseAddressListGroups(t *testing.T) {
	got, err := ParseAddressList("undisclosed-recipients:;, team: a@example.com, b@example.com;, c@example.com")
	if err != nil || len(got) != 3 || got[2].String() != "c@example.com" {
		t.Fatalf("got %v, %v", got, err)
	}
	if _, err := ParseAddressList("team: a@example.com"); err == nil {
		t.Fatal("unclosed group accepted")
	}
}

func TestAuthors(t *testing.T) {
	h := ParseHeader([]byte("From: A <a@example.com>\r\nSender: s@example.org\r\nResent-From: r@example.net\r\nSubject: x\r\n y\r\n\r\nBody: no\r\n"))
	a, err := h.Authors()
	if err != nil || len(a.From) != 1 || len(a.Others) != 2 || a.Others[1].Domain != "example.net" {
		t.Fatalf("Authors = %+v, %v", a, err)
	}
	if v := h.Values("subject"); len(v) != 1 || v[0] != "x y" {
		t.Fatalf("Subject = %q", v)
	}
	if h.Has("Body") {
		t.Fatal("read past the end of the header section")
	}
	for _, in := range []string{
		"Subject: x\r\n\r\n",
		"From: a@example.com\r\nFrom: b@example.com\r\n\r\n",
		"From: a@example.com\r\nSender: a@example.com, b@example.com\r\n\r\n",
		"From: a@example.com\r\nSender: a@example.com\r\nSender: b@example.com\r\n\r\n",
		"From: a@example.com\r\nResent-From: <bad\r\n\r\n",
	} {
		if a, err := ParseHeader([]byte(in)).Authors(); err == nil {
			t.Errorf("Authors(%q) = %+v, want an error", in, a)
		}
	}
}

func TestCheckDomain(t *testing.T) {
	for _, tc := range []struct {
		in   string
		opts DomainOpt
		ok   bool
	}{
		{"example.com", 0, true}, {"EXAMPLE.com", 0, true}, {"example.com.", 0, false},
		{"example.com.", TrailingDot, true}, {".example.com", LeadingDot, true}, {".example.com", 0, false},
		{"_dmarc.example.com", 0, false}, {"_dmarc.example.com", Underscore, true},
		{"bücher.example", 0, false}, {"bücher.example", Unicode, true}, {"xn--bcher-kva.example", 0, true},
		{"localhost", 0, true}, {"localhost", MultiLabel, false}, {"192.0.2.1", 0, false},
		{"-a.example", 0, false}, {"a-.example", 0, false}, {"a..example", 0, false}, {"", 0, false},
		{strings.Repeat("a", 64) + ".example", 0, false}, {strings.Repeat("a.", 127) + "a", 0, false},
	} {
		if got := ValidDomain(tc.in, tc.opts); got != tc.ok {
			t.Errorf("ValidDomain(%q, %b) = %v, want %v", tc.in, tc.opts, got, tc.ok)
		}
	}
}

func FuzzParseMailboxList(f *testing.F) {
	for _, s := range []string{"A <a@b.example>", `"x" <@r.example:y@z.example>`, "a(b)@c.example, d@e.example", "=?x?q?a?= <a@b.c>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		list, err := ParseMailboxList(s)
		if err != nil {
			return
		}
		for _, a := range list {
			// What the parser returns must read back as itself, both as a
			// header address and as an envelope address.
			again, err := ParseMailboxList(a.String())
			if err != nil || len(again) != 1 || again[0] != a {
				t.Fatalf("%q: address %q reads back as %v, %v", s, a.String(), again, err)
			}
			if sp, err := SplitAddress(a.String()); err != nil || sp != a {
				t.Fatalf("%q: SplitAddress(%q) = %v, %v", s, a.String(), sp, err)
			}
		}
	})
}

func TestSplitAddress(t *testing.T) {
	tests := []struct {
		in, local, domain string
		err               bool
	}{
		{"alice@example.com", "alice", "example.com", false},
		{"Alice@Example.COM", "Alice", "Example.COM", false},
		{`"john doe"@example.com`, "john doe", "example.com", false},
		{`"a\"b\\c"@example.com`, `a"b\c`, "example.com", false},
		{`"a@b"@example.com`, "a@b", "example.com", false},
		{"a@b@example.com", "a@b", "example.com", false},
		{"", "", "", true},
		{"alice", "", "", true},
		{"alice@", "", "", true},
		{"@example.com", "", "", true},
		{`"open@example.com`, "", "", true},
		{`"x"y@example.com`, "", "", true},
		{`"x\`, "", "", true},
	}
	for _, tc := range tests {
		a, err := SplitAddress(tc.in)
		if (err != nil) != tc.err || a.Local != tc.local || a.Domain != tc.domain {
			t.Errorf("SplitAddress(%q) = %+v, %v; want %q, %q, err=%v", tc.in, a, err, tc.local, tc.domain, tc.err)
		}
	}
	for in, want := range map[string]string{"alice@Example.COM.": "example.com", "a@b@C.example": "c.example", "nodomain": "", `"x@y"@z.example`: "z.example"} {
		if got := DomainOf(in); got != want {
			t.Errorf("DomainOf(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFormatMailbox(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"", "a@example.com"},
		{`Cron "Daemon"`, `"Cron \"Daemon\"" <a@example.com>`},
		{"Jürgen", "=?utf-8?q?J=C3=BCrgen?= <a@example.com>"},
	} {
		got := FormatMailbox(tc.name, "a@example.com")
		if got != tc.want {
			t.Errorf("FormatMailbox(%q) = %q, want %q", tc.name, got, tc.want)
		}
		if list, err := ParseMailboxList(got); err != nil || list[0].String() != "a@example.com" {
			t.Errorf("%q does not read back: %v %v", got, list, err)
		}
	}
}
