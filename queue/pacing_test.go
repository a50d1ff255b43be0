package queue

import (
	"strings"
	"testing"
	"time"
)

// A recipient the transport paces (Deferred with NotBefore) is not an
// attempt: it keeps its attempt count, waits exactly until NotBefore (no
// back-off), `queue show` says it waits for pacing, and it is never
// bounced for it however often it is paced.
func TestPacedRecipientWaitsWithoutAttempt(t *testing.T) {
	clock := useFakeClock(t)
	tr := &fakeTransport{}
	const reason = "waits for pacing: delivery.smarthost.pacing allows 30 messages per 1m"
	paced := 0
	tr.setDecide(func(d *Delivery, rcpt string) Result {
		if paced < 3 {
			paced++
			return Result{Rcpt: rcpt, Status: Deferred, Enhanced: "4.4.5", Message: reason, NotBefore: now().Add(40 * time.Second)}
		}
		return answer(rcpt, Sent, 250, "2.0.0", "ok")
	})
	opts, lb := testOptions(t, t.TempDir(), tr)
	q := openQueue(t, opts)
	runQueue(t, q)
	id := commit(t, q, "s@example.com", "r@example.org")

	for round := 1; round <= 3; round++ {
		waitFor(t, "paced delivery", func() bool { return len(tr.Calls()) == round })
		settle(t, q)
		r, ok := rcptStatus(t, q, id, "r@example.org")
		if !ok || r.Status != Pending || r.Attempts != 0 {
			t.Fatalf("round %d: %+v, want pending with no attempt counted", round, r)
		}
		if !strings.Contains(r.LastReply, "waits for pacing") {
			t.Errorf("queue show says %q", r.LastReply)
		}
		if got := r.NextAttempt.Sub(clock.Now()); got != 40*time.Second {
			t.Errorf("round %d: next attempt in %s, want the pacing slot in 40s", round, got)
		}
		clock.Advance(39 * time.Second)
		q.Kick()
		settle(t, q)
		if n := len(tr.Calls()); n != round {
			t.Fatalf("delivered before its slot: %d calls", n)
		}
		clock.Advance(time.Second)
		q.Kick()
	}
	waitFor(t, "delivery", func() bool { return !inQueue(q, id) })
	if !strings.Contains(lb.String(), "status=paced") {
		t.Errorf("no paced log line:\n%s", lb.String())
	}
	if strings.Contains(lb.String(), "status=bounced") {
		t.Errorf("a paced recipient was bounced")
	}
}
