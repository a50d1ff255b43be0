package config

import (
	"strings"
	"testing"
)

func FuzzParseSigningTable(f *testing.F) {
	f.Add([]byte("*@example.com mail\nalice@* alice:alice@%\n* %\n"), true)
	f.Add([]byte("user@host.example.com k\n.example.com p\n*\tc # x\n"), false)
	f.Add([]byte("*@(x k\n\n#c\n"), true)
	f.Fuzz(func(t *testing.T, data []byte, regex bool) {
		st, err := opendkimParseSigningTable(data, "fuzz", regex)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz:") {
				t.Fatalf("error without location: %v", err)
			}
			return
		}
		for _, addr := range []string{"user@host.example.com", "a@b", "@", "x", "USER@EXAMPLE.COM"} {
			one := st.Lookup(addr, false)
			all := st.Lookup(addr, true)
			if len(one) > 1 || (len(one) == 1 && (len(all) == 0 || all[0] != one[0])) {
				t.Fatalf("%q: first match %q is not the head of all matches %q", addr, one, all)
			}
		}
	})
}

func FuzzParseKeyTable(f *testing.F) {
	f.Add([]byte("mail example.com:mail:/etc/keys/mail.private\n"))
	f.Add([]byte("k %:s:./k # c\nj example.org:s1:MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"))
	f.Add([]byte("k a:b\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := opendkimParseKeyTable(data, "fuzz")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz:") {
				t.Fatalf("error without location: %v", err)
			}
			return
		}
		for _, e := range entries {
			if e.Name == "" || e.Domain == "" || e.Selector == "" || (e.KeyFile == "") == (e.KeyData == "") || e.Line < 1 {
				t.Fatalf("incomplete entry %+v", e)
			}
		}
	})
}
