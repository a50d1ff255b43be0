package deliver

import (
	"strings"
	"testing"

	"github.com/inkan-relay/inkan/config"
)

func FuzzSplitEnhanced(f *testing.F) {
	for _, s := range []string{"2.0.0 Ok: queued as 123", "5.1.1 no such user", "no code here", "2.0.0", "4.7.10 x",
		"9.9.9 bad class", "5.01.1 x", "5.-1.1 x", "", " ", "2.0.0\nmore"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		enh, rest := splitEnhanced(s)
		if enh == "" {
			if rest != s {
				t.Fatalf("no code found but text changed: %q -> %q", s, rest)
			}
			return
		}
		if !strings.HasPrefix(s, enh+" ") && s != enh {
			t.Fatalf("code %q is not the start of %q", enh, s)
		}
		if strings.Count(enh, ".") != 2 || !strings.Contains("245", enh[:1]) {
			t.Fatalf("bad code %q from %q", enh, s)
		}
	})
}

func FuzzRoute(f *testing.F) {
	f.Add("example.com", "[10.0.0.1]:25", "a@b.test", "x.example.com", "@b.test")
	f.Add(".example.com", "relay.test", "", "a.b.example.com", "a@b.test")
	f.Add("EXAMPLE.com.", "[2001:db8::1]", "A@B.TEST", "example.com.", "@sub.b.test")
	f.Fuzz(func(t *testing.T, key, value, from, domain, sender string) {
		c := config.Delivery{
			Transport:   map[string]string{key: value},
			SenderRelay: map[string]config.Smarthost{sender: {Address: value}},
		}
		rt, err := parseRoutes(c, nil)
		if err != nil {
			return
		}
		r, rel := rt.choose(from, domain)
		switch r.Via {
		case ViaSenderRelay:
			if rel == nil || r.TLS != "encrypt" {
				t.Fatalf("sender relay route %v without relay or with tls %q", r, r.TLS)
			}
		case ViaTransport, ViaMX:
			if rel != nil || r.TLS != "may" {
				t.Fatalf("route %v has relay %v", r, rel)
			}
		default:
			t.Fatalf("unexpected route %v", r)
		}
		if r.Port < 1 || r.Port > 65535 || r.Host == "" && r.Via != ViaMX {
			t.Fatalf("bad route %v", r)
		}
		_ = r.String()
	})
}
