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

// The decoy is the costliest class whatever the order of the file, and the
// cheaper classes are padded by the measured ratio.
func TestDecoyIsCostliestClass(t *testing.T) {
	cheap := mustHash(t, func() (string, error) { return HashPasswordCost("pw", bcrypt.MinCost) })
	mid := mustHash(t, func() (string, error) { return HashPasswordCost("pw", bcrypt.MinCost+1) })
	dear := mustHash(t, func() (string, error) {
		return HashPasswordArgon2id("pw", Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1, KeyLen: 32, SaltLen: 16})
	})
	old := measureCost
	t.Cleanup(func() { measureCost = old })
	costs := map[string]time.Duration{cheap.class(): time.Millisecond, mid.class(): 2 * time.Millisecond, dear.class(): 8 * time.Millisecond}
	measureCost = func(h passwordHash) time.Duration { return costs[h.class()] }
	for _, order := range [][]passwordHash{{cheap, mid, dear}, {dear, cheap, mid}, {mid, dear, cheap}} {
		var lines []userLine
		for i, h := range order {
			lines = append(lines, userLine{name: string(rune('a' + i)), ph: h})
		}
		db := newUserDB(lines)
		if db.decoy.class() != dear.class() {
			t.Errorf("decoy class %s, want %s", db.decoy.class(), dear.class())
		}
		if db.slowdown[cheap.class()] != 8 || db.slowdown[mid.class()] != 4 || db.slowdown[dear.class()] != 0 {
			t.Errorf("slowdown %v", db.slowdown)
		}
	}
	// One class: nothing to measure or pad.
	measureCost = func(passwordHash) time.Duration { t.Fatal("measured a single class"); return 0 }
	db := newUserDB([]userLine{{name: "a", ph: cheap}, {name: "b", ph: cheap}})
	if db.decoy.class() != cheap.class() || len(db.slowdown) != 0 {
		t.Errorf("single class: decoy %s slowdown %v", db.decoy.class(), db.slowdown)
	}
}
