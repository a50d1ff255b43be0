package queue

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestDeliverAndRemove(t *testing.T) {
	useFakeClock(t)
	tr := &fakeTransport{}
	opts, lb := testOptions(t, t.TempDir(), tr)
	q := openQueue(t, opts)
	runQueue(t, q)
	id := commit(t, q, "alice@example.com", "bob@example.org", "carol@example.org", "dave@example.net")
	waitFor(t, "delivery", func() bool { return !inQueue(q, id) })
	calls := tr.Calls()
	if len(calls) != 2 {
		t.Fatalf("%d transport calls, want 2 (one per domain): %+v", len(calls), calls)
	}
	for _, c := range calls {
		if c.Domain == "example.org" && len(c.Rcpts) != 2 {
			t.Errorf("example.org call has rcpts %v", c.Rcpts)
		}
		if !strings.HasPrefix(string(c.Msg), "Received: from test\r\n"+testBody[:20]) || c.From != "alice@example.com" {
			t.Errorf("transport got %q from %q", c.Msg, c.From)
		}
	}
	logs := lb.String()
	for _, want := range []string{"queue_id=" + id, "status=sent", "to=dave@example.net", "relay=", "attempt=1", "delay="} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}

func TestStateSurvivesReopen(t *testing.T) {
	clock := useFakeClock(t)
	dir := t.TempDir()
	tr := &fakeTransport{}
	tr.setDecide(func(d *Delivery, rcpt string) Result {
		if rcpt == "c@z.example" {
			return answer(rcpt, Deferred, 451, "4.3.0", "try later")
		}
		return answer(rcpt, Sent, 250, "2.0.0", "ok")
	})
	opts, _ := testOptions(t, dir, tr)
	q := openQueue(t, opts)
	stop := runQueue(t, q)
	id := commit(t, q, "s@example.com", "a@x.example", "b@y.example", "c@z.example")
	waitFor(t, "first round", func() bool {
		r, _ := rcptStatus(t, q, id, "c@z.example")
		return r.Attempts == 1 && r.LastReply != ""
	})
	stop()
	q.Close()

	tr2 := &fakeTransport{}
	opts.Transport = tr2
	q = openQueue(t, opts)
	info, err := q.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Status{"a@x.example": Sent, "b@y.example": Sent, "c@z.example": Pending}
	for _, r := range info.Rcpts {
		if r.Status != want[r.Addr] {
			t.Errorf("after reopen %s is %v, want %v", r.Addr, r.Status, want[r.Addr])
		}
	}
	if r := info.Rcpts[2]; r.LastReply != "451 4.3.0 try later" || r.Remote == "" {
		t.Errorf("last reply not kept: %+v", r)
	}
	runQueue(t, q)
	clock.Advance(2 * time.Minute)
	q.Kick()
	waitFor(t, "retry", func() bool { return !inQueue(q, id) })
	calls := tr2.Calls()
	if len(calls) != 1 || len(calls[0].Rcpts) != 1 || calls[0].Rcpts[0] != "c@z.example" {
		t.Errorf("after reopen the transport got %+v, want only c@z.example", calls)
	}
}

func TestRetryBackoff(t *testing.T) {
	clock := useFakeClock(t)
	tr := &fakeTransport{}
	tr.setDecide(func(d *Delivery, rcpt string) Result {
		return answer(rcpt, Deferred, 450, "4.2.0", "mailbox busy")
	})
	opts, lb := testOptions(t, t.TempDir(), tr)
	opts.MaxLifetime = 24 * time.Hour
	q := openQueue(t, opts)
	runQueue(t, q)
	id := commit(t, q, "s@example.com", "r@example.org")
	wantDelay := []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 4 * time.Minute}
	for n, d := range wantDelay {
		attempt := n + 1
		var r RcptInfo
		waitFor(t, "attempt", func() bool {
			r, _ = rcptStatus(t, q, id, "r@example.org")
			return r.Attempts == attempt && len(tr.Calls()) == attempt
		})
		settle(t, q)
		r, _ = rcptStatus(t, q, id, "r@example.org")
		got := r.NextAttempt.Sub(clock.Now())
		if got < d || got > d+d/10 {
			t.Errorf("after attempt %d next attempt in %v, want %v + up to 10%%", attempt, got, d)
		}
		// Not due yet: a kick must not deliver early.
		q.Kick()
		clock.Advance(got - time.Second)
		q.Kick()
		settle(t, q)
		if c := len(tr.Calls()); c != attempt {
			t.Fatalf("delivered early: %d calls after attempt %d", c, attempt)
		}
		clock.Advance(time.Second)
		q.Kick()
	}
	if !strings.Contains(lb.String(), "status=deferred") {
		t.Errorf("no deferred log line")
	}
}

func TestMaxPerDomainNoHeadOfLineBlocking(t *testing.T) {
	useFakeClock(t)
	tr := &fakeTransport{}
	release := make(chan struct{})
	var mu sync.Mutex
	inFlight, maxInFlight := map[string]int{}, map[string]int{}
	tr.block = func(ctx context.Context, d *Delivery) {
		mu.Lock()
		inFlight[d.Domain]++
		maxInFlight[d.Domain] = max(maxInFlight[d.Domain], inFlight[d.Domain])
		mu.Unlock()
		if d.Domain == "slow.example" {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		mu.Lock()
		inFlight[d.Domain]--
		mu.Unlock()
	}
	opts, _ := testOptions(t, t.TempDir(), tr)
	opts.MaxPerDomain = 1
	q := openQueue(t, opts)
	runQueue(t, q)
	var slow []string
	for range 3 {
		slow = append(slow, commit(t, q, "s@example.com", "r@slow.example"))
	}
	fast := commit(t, q, "s@example.com", "r@fast.example")
	// fast is delivered while slow.example is stuck.
	waitFor(t, "fast delivery", func() bool { return !inQueue(q, fast) })
	close(release)
	waitFor(t, "slow deliveries", func() bool {
		for _, id := range slow {
			if inQueue(q, id) {
				return false
			}
		}
		return true
	})
	mu.Lock()
	defer mu.Unlock()
	if maxInFlight["slow.example"] != 1 {
		t.Errorf("max deliveries to slow.example at once = %d, want 1", maxInFlight["slow.example"])
	}
}

func TestShutdownCancelsAndKeepsState(t *testing.T) {
	useFakeClock(t)
	dir := t.TempDir()
	tr := &fakeTransport{}
	started := make(chan struct{}, 1)
	tr.block = func(ctx context.Context, d *Delivery) {
		started <- struct{}{}
		<-ctx.Done()
	}
	tr.setDecide(func(d *Delivery, rcpt string) Result {
		return Result{Rcpt: rcpt, Status: Deferred, Message: "context canceled"}
	})
	opts, _ := testOptions(t, dir, tr)
	q := openQueue(t, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	id := commit(t, q, "s@example.com", "r@example.org")
	<-started
	sctx, scancel := context.WithCancel(context.Background())
	scancel() // no patience: cancel the delivery
	if err := q.Shutdown(sctx); err != context.Canceled {
		t.Errorf("Shutdown = %v, want context.Canceled", err)
	}
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
	cancel()
	r, _ := rcptStatus(t, q, id, "r@example.org")
	if r.Status != Pending || r.Attempts != 1 || r.NextAttempt.After(now()) {
		t.Errorf("after shutdown: %+v (want pending, retry at once)", r)
	}
	q.Close()

	tr2 := &fakeTransport{}
	opts.Transport = tr2
	q = openQueue(t, opts)
	runQueue(t, q)
	waitFor(t, "delivery after restart", func() bool { return !inQueue(q, id) })
}

func TestHoldRelease(t *testing.T) {
	useFakeClock(t)
	dir := t.TempDir()
	tr := &fakeTransport{}
	opts, _ := testOptions(t, dir, tr)
	opts.MaxConcurrent = 1 // messages go one at a time, oldest first
	q := openQueue(t, opts)
	held := commit(t, q, "s@example.com", "held@example.org")
	if err := q.Hold(held); err != nil {
		t.Fatal(err)
	}
	q.Close()
	q = openQueue(t, opts)
	if info, _ := q.Get(held); !info.Held {
		t.Fatalf("hold not kept across reopen: %+v", info)
	}
	runQueue(t, q)
	other := commit(t, q, "s@example.com", "other@example.org")
	waitFor(t, "other delivered", func() bool { return !inQueue(q, other) })
	if len(tr.callsTo("held@example.org")) != 0 || !inQueue(q, held) {
		t.Fatalf("held message was delivered")
	}
	if err := q.Release(held); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "released delivered", func() bool { return !inQueue(q, held) })
}

func TestAdminRetryDelete(t *testing.T) {
	clock := useFakeClock(t)
	tr := &fakeTransport{}
	tr.setDecide(func(d *Delivery, rcpt string) Result {
		return answer(rcpt, Deferred, 421, "4.7.0", "later")
	})
	opts, lb := testOptions(t, t.TempDir(), tr)
	q := openQueue(t, opts)
	runQueue(t, q)
	a := commit(t, q, "s@example.com", "a@example.org")
	b := commit(t, q, "s@example.com", "b@example.org")
	waitFor(t, "first attempts", func() bool { return len(tr.Calls()) == 2 })
	settle(t, q)
	clock.Advance(10 * time.Second)
	if err := q.Retry(AllMessages); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "retried", func() bool { return len(tr.Calls()) == 4 })
	settle(t, q)
	if err := q.Delete(a); err != nil {
		t.Fatal(err)
	}
	if inQueue(q, a) || !inQueue(q, b) {
		t.Errorf("Delete removed the wrong message")
	}
	if err := q.Delete(a); err != ErrNotFound {
		t.Errorf("second Delete = %v", err)
	}
	if err := q.Delete(AllMessages); err != nil || inQueue(q, b) {
		t.Errorf("Delete(ALL) = %v", err)
	}
	if !strings.Contains(lb.String(), "deleted by administrator") {
		t.Errorf("no log line for delete")
	}
}

func TestNextAttemptSavedBeforeDelivery(t *testing.T) {
	clock := useFakeClock(t)
	tr := &fakeTransport{}
	var saved *state
	var q *Queue
	tr.block = func(ctx context.Context, d *Delivery) {
		saved, _ = q.readState(d.ID) // what a crash right now would leave
	}
	dir := t.TempDir()
	opts, _ := testOptions(t, dir, tr)
	// A message found at Open (here: committed by an earlier process) gets
	// its state saved before its first attempt; only a message committed by
	// this process may skip that write (item.fresh).
	q0 := openQueue(t, opts)
	id := commit(t, q0, "s@example.com", "r@example.org")
	q0.Close()
	q = openQueue(t, opts)
	runQueue(t, q)
	waitFor(t, "delivery", func() bool { return !inQueue(q, id) })
	if saved == nil {
		t.Fatal("no state file during delivery")
	}
	r := saved.Rcpts[0]
	if saved.Attempts != 1 || r.Attempts != 1 || r.Status != Pending || !r.Next.After(clock.Now()) {
		t.Errorf("state during delivery = %+v", saved)
	}
}

// A slot freed between the round that parked a message and its rescheduling
// wakes it at once, not after parkDelay (scale run: 1 min delays under
// per-domain saturation).
func TestSlotFreedWhileParkingWakes(t *testing.T) {
	useFakeClock(t) // never advanced: a parked message would wait forever
	tr := &fakeTransport{}
	release := make(chan struct{})
	var first sync.Once
	tr.block = func(ctx context.Context, d *Delivery) {
		first.Do(func() {
			select {
			case <-release:
			case <-ctx.Done():
			}
		})
	}
	opts, _ := testOptions(t, t.TempDir(), tr)
	opts.MaxPerDomain = 1
	q := openQueue(t, opts)
	a := commit(t, q, "s@example.com", "r@slow.example")
	var once sync.Once
	testHookAttempted = func(id string) {
		if id == a {
			return
		}
		once.Do(func() {
			close(release) // a finishes and frees slow.example's slot
			waitFor(t, "slot freed", func() bool {
				q.mu.Lock()
				defer q.mu.Unlock()
				return q.domains["slow.example"] == 0
			})
		})
	}
	t.Cleanup(func() { testHookAttempted = nil })
	runQueue(t, q)
	waitFor(t, "a in delivery", func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.domains["slow.example"] == 1
	})
	b := commit(t, q, "s@example.com", "r2@slow.example")
	waitFor(t, "a delivered", func() bool { return !inQueue(q, a) })
	waitFor(t, "b delivered without waiting parkDelay", func() bool { return !inQueue(q, b) })
}
