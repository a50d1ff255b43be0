package auth

import (
	"context"
	"errors"
	"runtime"
	"time"
)

// HashGate bounds how many password hashes run at once. An argon2id check
// takes its m= of memory (64 MiB with the defaults) for as long as it runs,
// and every AUTH attempt runs one, unknown user names included; without a
// bound a flood of attempts exhausts memory before any lockout starts.
// Attempts beyond the bound wait up to Wait for a slot, then fail with
// ErrAuthBusy (454 4.7.0: try again later).
type HashGate struct {
	slots chan struct{}
	wait  time.Duration
}

// Defaults of NewHashGate.
const (
	// MaxDefaultHashSlots caps the automatic size: 8 argon2id checks at
	// 64 MiB are 512 MiB, what a typical container memory limit allows.
	MaxDefaultHashSlots = 8
	DefaultHashWait     = 5 * time.Second
)

// DefaultHashSlots is the automatic size of a HashGate: one hash per CPU
// Go may use (more would only queue for the CPU), at most
// MaxDefaultHashSlots.
func DefaultHashSlots() int { return max(1, min(runtime.GOMAXPROCS(0), MaxDefaultHashSlots)) }

// NewHashGate lets slots hashes run at once (DefaultHashSlots when <= 0);
// others wait up to wait (DefaultHashWait when <= 0).
func NewHashGate(slots int, wait time.Duration) *HashGate {
	if slots <= 0 {
		slots = DefaultHashSlots()
	}
	if wait <= 0 {
		wait = DefaultHashWait
	}
	return &HashGate{slots: make(chan struct{}, slots), wait: wait}
}

// Slots returns how many hashes may run at once.
func (g *HashGate) Slots() int { return cap(g.slots) }

// errHashBusy: no hashing slot came free in time.
var errHashBusy = errors.New("too many password checks at once")

// acquire waits for a slot, at most g.wait and never past ctx. A nil gate
// admits everyone.
func (g *HashGate) acquire(ctx context.Context) error {
	if g == nil {
		return nil
	}
	select {
	case g.slots <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(g.wait)
	defer t.Stop()
	select {
	case g.slots <- struct{}{}:
		return nil
	case <-t.C:
		return errHashBusy
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *HashGate) release() {
	if g != nil {
		<-g.slots
	}
}
