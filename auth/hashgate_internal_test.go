package auth

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// slowHash is a hash that takes a while and records how many run at once.
type slowHash struct {
	cur, peak *atomic.Int32
	d         time.Duration
}

func (h slowHash) verify(string) bool {
	n := h.cur.Add(1)
	for {
		p := h.peak.Load()
		if n <= p || h.peak.CompareAndSwap(p, n) {
			break
		}
	}
	time.Sleep(h.d)
	h.cur.Add(-1)
	return false
}

func (h slowHash) decoy() passwordHash { return h }
func (h slowHash) class() string       { return "slow" }

// Every AUTH attempt, unknown users included, runs a hash; 64 MiB argon2id
// hashes without a bound on how many run at once exhaust memory.
func TestAttackConcurrentHashing(t *testing.T) {
	var cur, peak atomic.Int32
	u := &Users{}
	u.db.Store(newUserDB([]userLine{{name: "alice", ph: slowHash{&cur, &peak, 20 * time.Millisecond}}}))
	a := &Authenticator{Users: u, Hashes: NewHashGate(4, time.Minute)}
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ip := netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})
			if err := a.Authenticate(context.Background(), ip, "nobody", "x"); err != ErrAuthFailed {
				t.Errorf("attempt %d: %v, want 535 after waiting its turn", i, err)
			}
		}()
	}
	wg.Wait()
	if p := peak.Load(); p > 4 {
		t.Errorf("%d password hashes ran at once, want at most 4", p)
	}
}

// Waiting for a hashing slot is bounded: then 454 4.7.0, a temporary
// failure that counts as no guess; the wait also ends with the connection.
func TestHashGateWaitIsBounded(t *testing.T) {
	var cur, peak atomic.Int32
	u := &Users{}
	u.db.Store(newUserDB([]userLine{{name: "alice", ph: slowHash{&cur, &peak, time.Millisecond}}}))
	gate := NewHashGate(1, 50*time.Millisecond)
	lim := NewFailureLimiter(1, time.Hour)
	a := &Authenticator{Users: u, Hashes: gate, Limiter: lim}
	ip := netip.MustParseAddr("192.0.2.1")
	gate.slots <- struct{}{} // a long hash holds the only slot
	start := time.Now()
	if err := a.Authenticate(context.Background(), ip, "alice", "x"); err != ErrAuthBusy {
		t.Fatalf("no free slot: %v, want ErrAuthBusy", err)
	}
	if d := time.Since(start); d < 50*time.Millisecond || d > 5*time.Second {
		t.Errorf("waited %v for a slot, want about 50ms", d)
	}
	if ErrAuthBusy.Code != 454 || ErrAuthBusy.EnhancedCode != [3]int{4, 7, 0} {
		t.Errorf("ErrAuthBusy is %d %v", ErrAuthBusy.Code, ErrAuthBusy.EnhancedCode)
	}
	if lim.Locked(ip, "alice") {
		t.Error("an attempt that checked nothing counted as a failure")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	gate.wait = time.Hour
	if err := a.Authenticate(ctx, ip, "alice", "x"); err != ErrAuthBusy {
		t.Fatalf("closed connection: %v, want ErrAuthBusy at once", err)
	}
	<-gate.slots
	if err := a.Authenticate(context.Background(), ip, "alice", "x"); err != ErrAuthFailed {
		t.Fatalf("free slot: %v", err)
	}
	if NewHashGate(0, 0).Slots() != DefaultHashSlots() || DefaultHashSlots() > MaxDefaultHashSlots || DefaultHashSlots() < 1 {
		t.Errorf("default slots %d", DefaultHashSlots())
	}
}
