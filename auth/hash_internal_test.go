package auth

import (
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// Unknown users are checked against a decoy of the same kind and cost as a
// real hash, which no password matches.
func TestDecoy(t *testing.T) {
	bh, _ := HashPasswordCost("pw", bcrypt.MinCost)
	yh := "$2y$" + strings.TrimPrefix(bh, "$2a$")
	ah, _ := HashPasswordArgon2id("pw", Argon2Params{Time: 1, MemoryKiB: 64, Threads: 1, KeyLen: 32, SaltLen: 16})
	for _, s := range []string{bh, yh, ah} {
		h, err := parseHash(s)
		if err != nil {
			t.Fatal(err)
		}
		d := h.decoy()
		for _, pw := range []string{"pw", "", "x"} {
			if d.verify(pw) {
				t.Errorf("decoy of %s matched %q", s, pw)
			}
		}
		switch d := d.(type) {
		case bcryptHash:
			if c, err := bcrypt.Cost(d); err != nil || c != bcrypt.MinCost || string(d[:4]) != s[:4] {
				t.Errorf("bcrypt decoy %s: cost %d, %v", d, c, err)
			}
		case argon2Hash:
			if d.p != h.(argon2Hash).p {
				t.Errorf("argon2 decoy params %+v", d.p)
			}
		}
	}
	db := newUserDB(nil)
	if c, _ := bcrypt.Cost(db.decoy.(bcryptHash)); c != DefaultBcryptCost {
		t.Errorf("empty file decoy cost %d", c)
	}
}
