package mailsyntax

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestUnqualified(t *testing.T) {
	for d, want := range map[string]bool{
		"": true, "web01": true, "localhost": true, "LOCALHOST.": true, "localhost.localdomain": true,
		"box.localdomain": true, "printer.localhost": true,
		"example.com": false, "web01.example.com": false, "[192.0.2.1]": false, "example.test": false,
	} {
		if got := Unqualified(d); got != want {
			t.Errorf("Unqualified(%q) = %v, want %v", d, got, want)
		}
	}
}

func TestParseAddressesBare(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  []string // local@domain, and the span's text
	}{
		{"root", []string{"root@", "root"}},
		{" root (Cron Daemon)", []string{"root@", "root"}},
		{"Cron Daemon <root>", []string{"root@", "root"}},
		{"\"Web\" <www-data@web01>, ops@example.com", []string{"www-data@web01", "www-data@web01", "ops@example.com", "ops@example.com"}},
		{"undisclosed-recipients:;", nil},
		{"team: a, b@x.example;", []string{"a@", "a", "b@x.example", "b@x.example"}},
		{"\"john doe\"@web01", []string{"john doe@web01", "\"john doe\"@web01"}},
	} {
		got, err := ParseAddressesBare(tc.value)
		if err != nil {
			t.Errorf("%q: %v", tc.value, err)
			continue
		}
		var flat []string
		for _, l := range got {
			flat = append(flat, l.Local+"@"+l.Domain, tc.value[l.Start:l.End])
		}
		if strings.Join(flat, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%q: got %q, want %q", tc.value, flat, tc.want)
		}
	}
	// The strict parsers still refuse a local part alone.
	if _, err := ParseMailboxList("root"); err == nil {
		t.Error("ParseMailboxList accepts a local part alone")
	}
	if _, err := ParseAddressList("Cron <root>"); err == nil {
		t.Error("ParseAddressList accepts <root>")
	}
	for _, bad := range []string{"John Smith", "a@", "<a b>", "a,,\"b"} {
		if _, err := ParseAddressesBare(bad); err == nil {
			t.Errorf("ParseAddressesBare(%q) accepted", bad)
		}
	}
}

func complete(domain string) func(string, Address) (Address, bool) {
	return func(_ string, a Address) (Address, bool) {
		if !Unqualified(a.Domain) {
			return a, false
		}
		return Address{Local: a.Local, Domain: domain}, true
	}
}

func TestRewriteAddresses(t *testing.T) {
	in := "Received: from x by y; Thu, 1 Jan 2026 00:00:00 +0000\r\n" +
		"From: root (Cron Daemon)\r\n" +
		"To: ops@example.net,\r\n\t\"Web Admin\" <www-data@web01>\r\n" +
		"Subject: root@web01 is not an address field\r\n" +
		"Cc: undisclosed:;\r\n" +
		"Reply-To: broken <<\r\n" +
		"\r\n"
	want := "Received: from x by y; Thu, 1 Jan 2026 00:00:00 +0000\r\n" +
		"From: root@example.test (Cron Daemon)\r\n" +
		"To: ops@example.net,\r\n\t\"Web Admin\" <www-data@example.test>\r\n" +
		"Subject: root@web01 is not an address field\r\n" +
		"Cc: undisclosed:;\r\n" +
		"Reply-To: broken <<\r\n" +
		"\r\n"
	out, changes := RewriteAddresses([]byte(in), complete("example.test"))
	if string(out) != want {
		t.Fatalf("got\n%s\nwant\n%s", out, want)
	}
	if len(changes) != 2 || changes[0].Field != "From" || changes[0].OldString() != "root" ||
		changes[1].Old.String() != "www-data@web01" || changes[1].New.String() != "www-data@example.test" {
		t.Errorf("changes %+v", changes)
	}
	a, err := ParseHeader(out).Authors()
	if err != nil || a.From[0].String() != "root@example.test" {
		t.Errorf("strict parse of the result: %v %v", a, err)
	}
	// Nothing to do: the very same slice comes back.
	same := []byte("From: a@example.com\r\n\r\n")
	if got, ch := RewriteAddresses(same, complete("example.test")); &got[0] != &same[0] || ch != nil {
		t.Error("an unchanged header was copied")
	}
}

func TestSplitFieldsAgreesWithParseHeader(t *testing.T) {
	hdr := []byte("A: 1\r\n b\r\nnot a field\r\n continued junk\r\nB:  2 \r\n\r\nC: body\r\n")
	checkSplit(t, hdr)
	h := ParseHeader(hdr)
	if len(h) != 2 || h[0].Value != "1 b" || h[1].Value != "2" {
		t.Errorf("ParseHeader = %q", h)
	}
}

func checkSplit(t *testing.T, hdr []byte) {
	t.Helper()
	h := ParseHeader(hdr)
	raw := SplitFields(hdr)
	if len(raw) != len(h) {
		t.Fatalf("%q: %d raw fields, %d parsed", hdr, len(raw), len(h))
	}
	for i, f := range raw {
		one := ParseHeader(hdr[f.Start:f.End])
		if len(one) != 1 || one[0] != h[i] || f.Name != h[i].Name || string(hdr[f.Start:f.Value-1]) != f.Name {
			t.Fatalf("%q: field %d alone parses as %q, in the section as %q", hdr, i, one, h[i])
		}
	}
}

// FuzzRewriteAddresses: the one field splitter is the one ParseHeader uses;
// a rewrite changes only the addresses it reports, and every field keeps its
// name and place.
func FuzzRewriteAddresses(f *testing.F) {
	f.Add([]byte("From: root (Cron Daemon)\r\nTo: root, a@b.example\r\n\r\n"))
	f.Add([]byte("From: \"x\" <a@web01>\r\nSender: <@r.example:s@localhost>\r\nSubject: x\r\n folded\r\n\r\n"))
	f.Add([]byte("To: g: a, \"b c\"@h;\r\nCc: (c) d (e)\r\n"))
	f.Fuzz(func(t *testing.T, hdr []byte) {
		checkSplit(t, hdr)
		out, changes := RewriteAddresses(hdr, complete("example.test"))
		checkSplit(t, out)
		before, after := ParseHeader(hdr), ParseHeader(out)
		if len(before) != len(after) {
			t.Fatalf("%d fields became %d", len(before), len(after))
		}
		for i := range before {
			if before[i].Name != after[i].Name || !IsAddressField(before[i].Name) && before[i] != after[i] {
				t.Fatalf("field %d %q became %q", i, before[i], after[i])
			}
		}
		if len(changes) == 0 && !bytes.Equal(hdr, out) {
			t.Fatal("bytes changed without a reported change")
		}
		for _, c := range changes {
			if !Unqualified(c.Old.Domain) || c.New.Domain != "example.test" {
				t.Fatalf("change %+v", c)
			}
		}
	})
}

func TestEightBit(t *testing.T) {
	for _, s := range []string{"", "plain ascii\r\n", "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x93\xa8", "latin-1 caf\xe9",
		"cut \xe6\x97", "\xe6\x97A", "\xff", "\xc0\xaf", "ok\xed\xa0\x80"} {
		wantEight, wantUTF8 := !IsASCII(s), utf8.ValidString(s)
		// Every way of cutting s in two, and one byte at a time.
		for cut := 0; cut <= len(s); cut++ {
			var e EightBit
			e.Write([]byte(s[:cut]))
			e.Write([]byte(s[cut:]))
			if e.Any() != wantEight || e.UTF8() != wantUTF8 {
				t.Errorf("%q cut at %d: Any %v UTF8 %v, want %v %v", s, cut, e.Any(), e.UTF8(), wantEight, wantUTF8)
			}
		}
		var e EightBit
		for i := 0; i < len(s); i++ {
			e.Write([]byte{s[i]})
		}
		if e.Any() != wantEight || e.UTF8() != wantUTF8 {
			t.Errorf("%q byte by byte: Any %v UTF8 %v, want %v %v", s, e.Any(), e.UTF8(), wantEight, wantUTF8)
		}
	}
}

func FuzzEightBit(f *testing.F) {
	f.Add([]byte("caf\xc3\xa9"), 3)
	f.Fuzz(func(t *testing.T, b []byte, step int) {
		if step <= 0 || step > 64 {
			step = 1
		}
		var e EightBit
		for i := 0; i < len(b); i += step {
			e.Write(b[i:min(i+step, len(b))])
		}
		if e.Any() != !IsASCII(b) || e.UTF8() != utf8.Valid(b) {
			t.Fatalf("%q step %d: Any %v UTF8 %v", b, step, e.Any(), e.UTF8())
		}
	})
}
