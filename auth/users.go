package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/inkan-relay/inkan/queue/safefile"
)

// Users is the set of accounts of a users file. It is safe for concurrent
// use; a reload swaps the whole set at once, so a Verify sees either the old
// file or the new one.
type Users struct {
	path     string
	db       atomic.Pointer[userDB]
	reloadMu sync.Mutex
}

type userDB struct {
	hashes map[string]passwordHash
	names  []string
	decoy  passwordHash // checked for unknown users: the costliest class
	// slowdown maps a hash class cheaper than the decoy to how many times
	// longer the decoy takes; failed checks of that class are padded.
	slowdown map[string]float64
	id       fileID
	cache    *verifyCache
}

// LoadUsers reads the users file at path: "name:hash" lines, '#' comments
// and blank lines. It refuses a file safefile.Check does not trust (owned by
// someone other than root or inkan's user, or readable by others or by a
// group inkan is not in), and names file:line for a bad line.
func LoadUsers(path string) (*Users, error) {
	if path == "" {
		return nil, errors.New("no users file configured (auth.users_file)")
	}
	db, err := readUsers(path)
	if err != nil {
		return nil, err
	}
	u := &Users{path: path}
	u.db.Store(db)
	return u, nil
}

func readUsers(path string) (*userDB, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("open users file: %w (create it with `inkan user add NAME`)", err)
		}
		return nil, fmt.Errorf("open users file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat users file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("users file %s is not a regular file", path)
	}
	if err := safefile.Check("users file", path, fi); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, maxUsersFile+1))
	if err != nil {
		return nil, fmt.Errorf("read users file: %w", err)
	}
	if len(data) > maxUsersFile {
		return nil, fmt.Errorf("users file %s is larger than %d bytes", path, maxUsersFile)
	}
	lines, err := parseUsers(data, path)
	if err != nil {
		return nil, err
	}
	db := newUserDB(lines)
	db.id = fileIDOf(fi)
	return db, nil
}

// newUserDB indexes lines. When the file mixes hash kinds or costs (say
// while moving from bcrypt to argon2id), each class is timed once: unknown
// users are checked against the costliest, and failed checks of cheaper
// classes are padded to its time, so no failure path is faster than another.
func newUserDB(lines []userLine) *userDB {
	db := &userDB{hashes: map[string]passwordHash{}, cache: newVerifyCache(), decoy: bcryptHash(dummyHash)}
	classes := map[string]passwordHash{}
	for _, l := range lines {
		if l.name != "" {
			db.hashes[l.name] = l.ph
			db.names = append(db.names, l.name)
			if c := l.ph.class(); classes[c] == nil {
				classes[c] = l.ph
			}
		}
	}
	sort.Strings(db.names)
	if len(classes) == 1 {
		for _, h := range classes {
			db.decoy = h.decoy()
		}
	}
	if len(classes) > 1 {
		costs := map[string]time.Duration{}
		dearest := ""
		for c, h := range classes {
			costs[c] = measureCost(h.decoy())
			if dearest == "" || costs[c] > costs[dearest] || costs[c] == costs[dearest] && c > dearest {
				dearest = c
			}
		}
		db.decoy = classes[dearest].decoy()
		db.slowdown = map[string]float64{}
		for c, d := range costs {
			if c != dearest {
				db.slowdown[c] = float64(costs[dearest]) / float64(max(d, time.Microsecond))
			}
		}
	}
	return db
}

// measureCost times a check of h: the best of at least two runs, and of up
// to ten while they add up to less than 20ms, so a cold start or a busy
// moment does not skew the ratio of a cheap class. Tests replace it.
var measureCost = func(h passwordHash) time.Duration {
	best, total := time.Duration(math.MaxInt64), time.Duration(0)
	for i := 0; i < 2 || i < 10 && total < 20*time.Millisecond; i++ {
		start := time.Now()
		h.verify("decoy")
		d := time.Since(start)
		best, total = min(best, d), total+d
	}
	return best
}

// Path returns the file the users were loaded from.
func (u *Users) Path() string { return u.path }

// Names returns the user names, sorted.
func (u *Users) Names() []string {
	return append([]string(nil), u.db.Load().names...)
}

// Len returns the number of users.
func (u *Users) Len() int { return len(u.db.Load().names) }

// Has reports whether name is a user.
func (u *Users) Has(name string) bool {
	_, ok := u.db.Load().hashes[name]
	return ok
}

// Verify reports whether password is name's password; it is Check without
// a context or a bound on concurrent hashes.
func (u *Users) Verify(name, password string) bool {
	ok, _ := u.Check(context.Background(), name, password, nil)
	return ok
}

// Check reports whether password is name's password. At most gate's number
// of hashes run at once (nil: no bound); when no slot comes free in time,
// or ctx ends first, it returns an error and checked nothing.
//
// Every failure costs the same: unknown users, and known ones with an empty
// password, are checked against a decoy of the costliest hash in the file,
// and failed checks of cheaper hashes are padded to its time (see
// newUserDB), so timing does not tell which names exist. Successful checks
// are remembered for a few minutes (until the next reload) so a client that
// logs in for every message costs one hash, not one each.
func (u *Users) Check(ctx context.Context, name, password string, gate *HashGate) (bool, error) {
	if u == nil {
		return false, nil
	}
	db := u.db.Load()
	h, known := db.hashes[name]
	known = known && password != ""
	var key [sha256.Size]byte
	if known {
		key = db.cache.key(name, password)
		if db.cache.hit(key) {
			return true, nil
		}
	}
	if err := gate.acquire(ctx); err != nil {
		return false, err
	}
	start := time.Now()
	ok := false
	if known {
		ok = h.verify(password)
	} else {
		db.decoy.verify(password)
	}
	took := time.Since(start)
	gate.release()
	if ok {
		db.cache.add(key)
		return true, nil
	}
	if f := db.slowdown[classOf(h, known)]; f > 1 {
		sleepCtx(ctx, time.Duration(float64(took)*(f-1)))
	}
	return false, nil
}

func classOf(h passwordHash, known bool) string {
	if !known {
		return ""
	}
	return h.class()
}

// LogName is how a user name given in AUTH appears in logs: as it is when it
// names a user, else "unknown user (N chars, hmac XXXXXXXX)". A name that is
// no user is often a password typed in the wrong field; the keyed hash (the
// key is random per process) lets an operator see that the same unknown
// name keeps coming back, without writing it down or letting the log be
// used to test guesses of it.
func (u *Users) LogName(name string) string {
	if u != nil && name != "" && u.Has(name) {
		return name
	}
	m := hmac.New(sha256.New, pepper)
	io.WriteString(m, "log:")
	io.WriteString(m, name)
	return fmt.Sprintf("unknown user (%d chars, hmac %x)", utf8.RuneCountInString(name), m.Sum(nil)[:4])
}

// sleepCtx waits d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// ReloadIfChanged re-reads the file when its inode, size, mode or times
// changed. On error the current users stay in force and the error is
// returned; changed reports whether new users were installed.
func (u *Users) ReloadIfChanged() (changed bool, err error) {
	u.reloadMu.Lock()
	defer u.reloadMu.Unlock()
	fi, err := os.Stat(u.path)
	if err != nil {
		return false, fmt.Errorf("stat users file: %w", err)
	}
	if fileIDOf(fi) == u.db.Load().id {
		return false, nil
	}
	db, err := readUsers(u.path)
	if err != nil {
		return false, err
	}
	u.db.Store(db)
	return true, nil
}

// Reload re-reads the file unconditionally; on error nothing changes.
func (u *Users) Reload() error {
	u.reloadMu.Lock()
	defer u.reloadMu.Unlock()
	db, err := readUsers(u.path)
	if err != nil {
		return err
	}
	u.db.Store(db)
	return nil
}

// Watch calls ReloadIfChanged every interval until ctx is done, logging
// reloads and errors (interval <= 0 means 5s). It blocks; the caller owns
// the goroutine.
func (u *Users) Watch(ctx context.Context, interval time.Duration, log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	if interval <= 0 {
		interval = 5 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changed, err := u.ReloadIfChanged()
		switch {
		case err != nil:
			log.Error("users file not reloaded, keeping current users", "file", u.path, "err", err)
		case changed:
			log.Info("users file reloaded", "file", u.path, "users", u.Len())
		}
	}
}

// Verification cache. Keys are HMAC-SHA256(pepper, name ":" password) with a
// random per-process pepper: no password is kept, and a key means nothing
// outside this process.
const (
	cacheTTL        = 5 * time.Minute
	maxCacheEntries = 4096
)

var pepper = func() []byte {
	b := make([]byte, 32)
	rand.Read(b)
	return b
}()

type verifyCache struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]time.Time // key → expiry
}

func newVerifyCache() *verifyCache {
	return &verifyCache{m: map[[sha256.Size]byte]time.Time{}}
}

func (c *verifyCache) key(name, password string) (k [sha256.Size]byte) {
	h := hmac.New(sha256.New, pepper)
	io.WriteString(h, name)
	io.WriteString(h, ":")
	io.WriteString(h, password)
	h.Sum(k[:0])
	return k
}

func (c *verifyCache) hit(k [sha256.Size]byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	exp, ok := c.m[k]
	if ok && now().After(exp) {
		delete(c.m, k)
		return false
	}
	return ok
}

func (c *verifyCache) add(k [sha256.Size]byte) {
	t := now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxCacheEntries {
		for k, exp := range c.m {
			if t.After(exp) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= maxCacheEntries {
			evictOne(c.m)
		}
	}
	c.m[k] = t.Add(cacheTTL)
}

func (c *verifyCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
