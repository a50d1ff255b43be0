package auth_test

import (
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/inkan-relay/inkan/auth"
	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

func TestSenderSet(t *testing.T) {
	s, err := auth.NewSenderSet([]string{"alice@example.com", "@Example.ORG", `"john doe"@example.net`})
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{
		"alice@example.com":         true,
		"ALICE@EXAMPLE.COM":         true,
		"alice@Example.Com":         true,
		`"alice"@example.com`:       true,
		"bob@example.com":           false,
		"alice@example.com.evil":    false,
		"anyone@example.org":        true,
		"X@EXAMPLE.ORG":             true,
		"x@sub.example.org":         false,
		"x@example.org.evil":        false,
		`"John Doe"@example.net`:    true,
		"johndoe@example.net":       false,
		"":                          false,
		"alice":                     false,
		"alice@example.com@evil.ex": false,
	} {
		if got := s.Allows(addr); got != want {
			t.Errorf("Allows(%q) = %v, want %v", addr, got, want)
		}
	}
	var any *auth.SenderSet
	if !any.Allows("whoever@anywhere.example") {
		t.Error("nil set must allow any address")
	}
	empty, err := auth.NewSenderSet(nil)
	if err != nil || empty.Allows("a@example.com") {
		t.Errorf("empty set: %v, allows = %v", err, empty.Allows("a@example.com"))
	}
	if got := s.Patterns(); strings.Join(got, " ") != `@example.org alice@example.com john doe@example.net` {
		t.Errorf("Patterns() = %q", got)
	}
}

func TestNewSenderSetErrors(t *testing.T) {
	for _, p := range []string{"example.com", "@", "@exa mple.com", "a%b@example.com", "a@", "@a..b", "x@[1.2.3]"} {
		if _, err := auth.NewSenderSet([]string{p}); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("NewSenderSet(%q) = %v, want an error naming the pattern", p, err)
		}
	}
}

func TestPolicyCheckUser(t *testing.T) {
	p, err := auth.NewPolicy(map[string][]string{
		"bob":             {"bob@example.com", "@shared.example"},
		"nobody@site.exa": {},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		user, addr string
		ok         bool
	}{
		{"alice@example.com", "alice@example.com", true},
		{"alice@example.com", "Alice@EXAMPLE.com", true},
		{"alice@example.com", "", true},
		{"alice@example.com", "other@example.com", false},
		{"alice@example.com", "alice@example.org", false},
		{"bob", "bob@example.com", true},
		{"bob", "x@shared.example", true},
		{"bob", "alice@example.com", false},
		{"bob", "", true},
		{"carol", "carol@example.com", false},
		{"carol", "", true},
		{"nobody@site.exa", "nobody@site.exa", false}, // an entry replaces the default
	}
	for _, tc := range tests {
		err := p.CheckUser(tc.user, tc.addr)
		if tc.ok {
			if err != nil {
				t.Errorf("CheckUser(%q, %q) = %v, want nil", tc.user, tc.addr, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("CheckUser(%q, %q) = nil, want refusal", tc.user, tc.addr)
			continue
		}
		se := wantSMTP(t, err, 553, smtp.EnhancedCode{5, 7, 1})
		if !strings.Contains(se.Message, tc.user) || !strings.Contains(se.Message, "<"+tc.addr+">") {
			t.Errorf("message %q should name %q and %q", se.Message, tc.user, tc.addr)
		}
	}
	var nilPolicy *auth.Policy
	if err := nilPolicy.CheckUser("a@example.com", "a@example.com"); err != nil {
		t.Errorf("nil policy, own address: %v", err)
	}
	if _, err := auth.NewPolicy(map[string][]string{"x": {"bad pattern"}}); err == nil || !strings.Contains(err.Error(), `"x"`) {
		t.Errorf("NewPolicy with a bad pattern: %v", err)
	}
}

func TestPolicyCheckAuthors(t *testing.T) {
	p, _ := auth.NewPolicy(map[string][]string{"bob": {"@example.com"}})
	addrs := func(list ...string) []mailsyntax.Address {
		var out []mailsyntax.Address
		for _, a := range list {
			m, err := mailsyntax.SplitAddress(a)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, m)
		}
		return out
	}
	if err := p.CheckAuthors("bob", nil, addrs("bob@example.com", "team@EXAMPLE.com")); err != nil {
		t.Errorf("owned From: %v", err)
	}
	err := p.CheckAuthors("bob", nil, addrs("bob@example.com", "ceo@other.example"))
	se := wantSMTP(t, err, 550, smtp.EnhancedCode{5, 7, 1})
	if !strings.Contains(se.Message, "ceo@other.example") {
		t.Errorf("message %q", se.Message)
	}

	n := networkWithSenders(t, "@lan.example")
	if err := p.CheckAuthors("", n, addrs("printer@lan.example")); err != nil {
		t.Errorf("network From: %v", err)
	}
	wantSMTP(t, p.CheckAuthors("", n, addrs("x@example.com")), 550, smtp.EnhancedCode{5, 7, 1})
	wantSMTP(t, p.CheckAuthors("", nil, addrs("x@example.com")), 554, smtp.EnhancedCode{5, 7, 1})
	if !auth.Restricted("bob", nil) || !auth.Restricted("", n) || auth.Restricted("", &auth.Network{}) {
		t.Error("Restricted is wrong")
	}
}

func networkWithSenders(t *testing.T, senders ...string) *auth.Network {
	t.Helper()
	s, err := auth.NewSenderSet(senders)
	if err != nil {
		t.Fatal(err)
	}
	return &auth.Network{Name: "lan", Senders: s}
}

func TestPolicyCheckNetwork(t *testing.T) {
	p, _ := auth.NewPolicy(nil)
	n := networkWithSenders(t, "@lan.example", "scanner@example.com")
	for addr, ok := range map[string]bool{
		"":                    true,
		"printer@lan.example": true,
		"Scanner@Example.com": true,
		"boss@example.com":    false,
	} {
		err := p.CheckNetwork(n, addr)
		if ok != (err == nil) {
			t.Errorf("CheckNetwork(%q) = %v", addr, err)
		}
		if err != nil {
			se := wantSMTP(t, err, 553, smtp.EnhancedCode{5, 7, 1})
			if !strings.Contains(se.Message, "lan") {
				t.Errorf("message %q should name the network", se.Message)
			}
		}
	}
	if err := p.CheckNetwork(&auth.Network{Name: "any"}, "whoever@example.com"); err != nil {
		t.Errorf("nil Senders must allow any: %v", err)
	}
	if err := p.CheckNetwork(nil, "a@example.com"); err != auth.ErrRelayDenied {
		t.Errorf("nil network: %v", err)
	}
}

func TestSenderSetSubdomainsAndAny(t *testing.T) {
	s, err := auth.NewSenderSet([]string{"@.example.com", "@example.org"})
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{
		"a@mail.example.com": true, "a@x.y.example.com": true, "a@example.com": false,
		"a@example.org": true, "a@sub.example.org": false, "a@badexample.com": false, "a@example.com.evil.example": false,
	} {
		if got := s.Allows(addr); got != want {
			t.Errorf("Allows(%s) = %v, want %v", addr, got, want)
		}
	}
	if any, err := auth.NewSenderSet([]string{"*"}); err != nil || any != nil || !any.Allows("x@anything.example") {
		t.Errorf(`["*"] = %v, %v; want the nil set that allows any sender`, any, err)
	}
}
