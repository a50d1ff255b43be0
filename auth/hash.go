package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// DefaultBcryptCost is the cost HashPassword uses: about 50-100 ms per check,
// which the verification cache pays once per client every few minutes.
const DefaultBcryptCost = 10

// Argon2Params are argon2id parameters; see RFC 9106 §4.
type Argon2Params struct {
	Time      uint32 // passes
	MemoryKiB uint32
	Threads   uint8
	KeyLen    uint32
	SaltLen   uint32
}

// DefaultArgon2Params is RFC 9106's second recommended option (64 MiB, t=3,
// p=4).
var DefaultArgon2Params = Argon2Params{Time: 3, MemoryKiB: 64 * 1024, Threads: 4, KeyLen: 32, SaltLen: 16}

// passwordHash is one parsed users-file hash.
type passwordHash interface {
	verify(password string) bool
	// decoy returns a hash of the same kind and cost that no password
	// matches, to check unknown users against.
	decoy() passwordHash
	// class names the kind and cost: hashes of one class take as long to
	// check as each other.
	class() string
}

type bcryptHash []byte

func (h bcryptHash) verify(pw string) bool {
	return bcrypt.CompareHashAndPassword(h, []byte(pw)) == nil
}

func (h bcryptHash) decoy() passwordHash {
	return bcryptHash(string(h[:7]) + dummyHash[7:]) // same version and cost
}

func (h bcryptHash) class() string {
	c, _ := bcrypt.Cost(h)
	return fmt.Sprintf("bcrypt/%d", c)
}

type argon2Hash struct {
	p    Argon2Params
	salt []byte
	key  []byte
}

func (h argon2Hash) verify(pw string) bool {
	k := argon2.IDKey([]byte(pw), h.salt, h.p.Time, h.p.MemoryKiB, h.p.Threads, uint32(len(h.key)))
	return subtle.ConstantTimeCompare(k, h.key) == 1
}

func (h argon2Hash) decoy() passwordHash {
	// An all-zero key is never the output of argon2id in practice.
	return argon2Hash{p: h.p, salt: h.salt, key: make([]byte, len(h.key))}
}

func (h argon2Hash) class() string {
	return fmt.Sprintf("argon2id/m=%d,t=%d,p=%d,k=%d", h.p.MemoryKiB, h.p.Time, h.p.Threads, len(h.key))
}

// dummyHash is a bcrypt hash at DefaultBcryptCost of a random password
// nobody knows. Unknown users of an empty users file are checked against it;
// otherwise against the decoy of the costliest hash in the file (see
// newUserDB), so they take as long as known ones.
const dummyHash = "$2a$10$wjIcBVf.GfkepXy8IFRxVOIO9zdNGspXtExqn/bXG9VUPDXfP3Db."

var errUnsupportedHash = errors.New("unsupported password hash: want bcrypt ($2a$, $2b$, $2y$) or argon2id ($argon2id$v=19$m=...,t=...,p=...$salt$hash); create one with `inkan user passwd`")

// parseHash recognises the hash formats of the users file.
func parseHash(s string) (passwordHash, error) {
	// base64 decoders skip newlines; a hash must never carry one into the file.
	if strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return nil, errors.New("password hash contains white space or control characters")
	}
	switch {
	case strings.HasPrefix(s, "$2a$"), strings.HasPrefix(s, "$2b$"), strings.HasPrefix(s, "$2y$"):
		if _, err := bcrypt.Cost([]byte(s)); err != nil {
			return nil, fmt.Errorf("invalid bcrypt hash: %w", err)
		}
		// bcrypt.Cost does not check the length or alphabet of the rest.
		if len(s) != 60 || !isBcryptBase64(s[7:]) {
			return nil, errors.New("invalid bcrypt hash: want 60 characters")
		}
		return bcryptHash(s), nil
	case strings.HasPrefix(s, "$argon2id$"):
		return parseArgon2id(s)
	}
	return nil, errUnsupportedHash
}

func isBcryptBase64(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '/') {
			return false
		}
	}
	return true
}

// parseArgon2id reads the PHC string format:
// $argon2id$v=19$m=65536,t=3,p=4$<salt>$<hash>, base64 without padding.
func parseArgon2id(s string) (passwordHash, error) {
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" {
		return nil, errors.New("invalid argon2id hash: want $argon2id$v=19$m=...,t=...,p=...$salt$hash")
	}
	if parts[2] != "v=19" {
		return nil, fmt.Errorf("invalid argon2id hash: version %q, want v=19", parts[2])
	}
	var p Argon2Params
	var threads uint32
	if n, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.MemoryKiB, &p.Time, &threads); err != nil || n != 3 ||
		fmt.Sprintf("m=%d,t=%d,p=%d", p.MemoryKiB, p.Time, threads) != parts[3] {
		return nil, fmt.Errorf("invalid argon2id parameters %q: want m=<KiB>,t=<passes>,p=<threads>", parts[3])
	}
	if p.Time < 1 || threads < 1 || threads > 255 || p.MemoryKiB < 8*threads {
		return nil, fmt.Errorf("invalid argon2id parameters %q: need t>=1, 1<=p<=255, m>=8*p", parts[3])
	}
	p.Threads = uint8(threads)
	salt, err1 := decodeB64(parts[4])
	key, err2 := decodeB64(parts[5])
	if err1 != nil || err2 != nil {
		return nil, errors.New("invalid argon2id hash: salt or hash is not base64")
	}
	if len(salt) < 8 || len(key) < 4 || len(key) > 1024 {
		return nil, errors.New("invalid argon2id hash: salt shorter than 8 bytes or hash not 4-1024 bytes")
	}
	p.SaltLen, p.KeyLen = uint32(len(salt)), uint32(len(key))
	return argon2Hash{p: p, salt: salt, key: key}, nil
}

func decodeB64(s string) ([]byte, error) {
	return base64.RawStdEncoding.Strict().DecodeString(strings.TrimRight(s, "="))
}

// HashPassword returns a bcrypt hash of pw at DefaultBcryptCost.
func HashPassword(pw string) (string, error) {
	return HashPasswordCost(pw, DefaultBcryptCost)
}

// HashPasswordCost returns a bcrypt hash of pw at cost. bcrypt reads at most
// 72 bytes, so longer passwords are refused (use argon2id for those).
func HashPasswordCost(pw string, cost int) (string, error) {
	if pw == "" {
		return "", errors.New("empty password")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// HashPasswordArgon2id returns an argon2id PHC string of pw.
func HashPasswordArgon2id(pw string, p Argon2Params) (string, error) {
	if pw == "" {
		return "", errors.New("empty password")
	}
	if p.Time < 1 || p.Threads < 1 || p.MemoryKiB < 8*uint32(p.Threads) || p.KeyLen < 4 || p.SaltLen < 8 {
		return "", fmt.Errorf("hash password: invalid argon2id parameters %+v", p)
	}
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	key := argon2.IDKey([]byte(pw), salt, p.Time, p.MemoryKiB, p.Threads, p.KeyLen)
	return fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", p.MemoryKiB, p.Time, p.Threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}
