package auth

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// mustHash parses a hash made by HashPasswordCost or HashPasswordArgon2id.
func mustHash(t *testing.T, mk func() (string, error)) passwordHash {
	t.Helper()
	s, err := mk()
	if err != nil {
		t.Fatal(err)
	}
	h, err := parseHash(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// A users file with a cheap hash first and an expensive one second: a failed
// AUTH must take as long for an unknown name, and for the user with the
// cheap hash, as for the user with the expensive one, or timing tells which
// names exist.
func TestAttackUnknownUserTiming(t *testing.T) {
	cheap := mustHash(t, func() (string, error) { return HashPasswordCost("pw", bcrypt.MinCost) })
	dear := mustHash(t, func() (string, error) {
		return HashPasswordArgon2id("pw", Argon2Params{Time: 2, MemoryKiB: 16 * 1024, Threads: 1, KeyLen: 32, SaltLen: 16})
	})
	u := &Users{}
	u.db.Store(newUserDB([]userLine{{name: "cheap", ph: cheap}, {name: "dear", ph: dear}}))
	a := &Authenticator{Users: u}
	ip := netip.MustParseAddr("192.0.2.1")
	took := func(user string) time.Duration {
		best := time.Hour
		for range 5 {
			start := time.Now()
			a.Authenticate(context.Background(), ip, user, "wrong")
			best = min(best, time.Since(start))
		}
		return best
	}
	ref := took("dear")
	for _, user := range []string{"nobody", "cheap"} {
		if d := took(user); d < ref*6/10 {
			t.Errorf("failed AUTH as %q took %v, as the user with the expensive hash %v: timing tells them apart", user, d, ref)
		}
	}
}
