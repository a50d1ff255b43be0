package deliver_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/queue"
	"github.com/inkan-relay/inkan/relay/deliver"
)

// waiting is a delivery the simulated queue holds until at.
type waiting struct {
	d  *queue.Delivery
	at time.Time
}

// runPaced plays the queue's part: it delivers what is due, keeps paced
// deliveries until their NotBefore, and moves the clock to the next one.
// It fails the test on any result other than Sent or paced, and returns
// the (test clock) times of the sends and the number of Deliver calls.
func runPaced(t *testing.T, tr *deliver.Transport, clock *testClock, ds []*queue.Delivery) (sent map[string]time.Time, calls int) {
	t.Helper()
	sent = map[string]time.Time{}
	var todo []waiting
	for _, d := range ds {
		todo = append(todo, waiting{d, clock.Now()})
	}
	for len(todo) > 0 {
		var due, later []waiting
		for _, w := range todo {
			if w.at.After(clock.Now()) {
				later = append(later, w)
			} else {
				due = append(due, w)
			}
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, w := range due {
			calls++
			wg.Go(func() {
				res := tr.Deliver(context.Background(), w.d)
				mu.Lock()
				defer mu.Unlock()
				switch r := res[0]; {
				case r.Status == queue.Sent:
					if _, dup := sent[w.d.ID]; dup {
						t.Errorf("%s sent twice", w.d.ID)
					}
					sent[w.d.ID] = clock.Now()
				case r.Status == queue.Deferred && !r.NotBefore.IsZero():
					if !strings.Contains(r.Message, "waits for pacing") {
						t.Errorf("paced result says %q", r.Message)
					}
					later = append(later, waiting{w.d, r.NotBefore})
				default:
					t.Errorf("%s: %v %s %s: pacing must never refuse", w.d.ID, r.Status, r.Enhanced, r.Message)
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		todo = later
		if len(todo) > 0 {
			next := slices.MinFunc(todo, func(a, b waiting) int { return a.at.Compare(b.at) }).at
			clock.AdvanceTo(next)
		}
	}
	return sent, calls
}

// A burst of 100 messages through a smarthost limited to 30 a minute:
// all are delivered once, never more than 30 in any minute, each waits at
// most once (it comes back at its slot, not in a herd), and the burst
// takes about the three and a third minutes the limit implies, on a test
// clock.
func TestPacingBurstThroughSmarthost(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.net.start(t, "127.0.0.4", sinkOpts{})
	c := e.config()
	c.Smarthost = &config.Smarthost{Address: "[127.0.0.4]:" + strconv.Itoa(e.net.port), TLS: "may",
		Pacing: &config.Pacing{Messages: 30, Period: config.Duration(time.Minute)}}
	tr := newTransport(t, deliver.Options{Config: c})
	clock := newTestClock()
	tr.SetClock(clock.Now)
	start := clock.Now()
	var ds []*queue.Delivery
	for i := range 100 {
		d := delivery("a@sender.test", "x.test", testMessage, fmt.Sprintf("r%d@x.test", i))
		d.ID = fmt.Sprintf("BURST%03d", i)
		ds = append(ds, d)
	}
	sent, calls := runPaced(t, tr, clock, ds)
	if len(sent) != 100 || len(s.messages()) != 100 {
		t.Fatalf("%d sent, the relay got %d; want 100", len(sent), len(s.messages()))
	}
	var times []time.Time
	for _, at := range sent {
		times = append(times, at)
	}
	slices.SortFunc(times, time.Time.Compare)
	for i := range times {
		j := i
		for j < len(times) && times[j].Sub(times[i]) < time.Minute {
			j++
		}
		if j-i > 30 {
			t.Fatalf("%d messages within a minute from %s", j-i, times[i].Sub(start))
		}
	}
	if took := times[len(times)-1].Sub(start); took < 3*time.Minute || took > 3*time.Minute+10*time.Second {
		t.Errorf("the burst took %s, want a little over 3m (30 a minute)", took)
	}
	if calls > 170 {
		t.Errorf("%d deliveries for 100 messages: paced messages came back more than once", calls)
	}
}

// Recipients per day: a delivery whose recipients would pass the day's
// allowance waits until enough of the day has passed.
func TestPacingRecipientsPerDay(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.net.start(t, "127.0.0.4", sinkOpts{})
	c := e.config()
	c.Smarthost = &config.Smarthost{Address: "[127.0.0.4]:" + strconv.Itoa(e.net.port), TLS: "may",
		Pacing: &config.Pacing{RecipientsPerDay: 5}}
	tr := newTransport(t, deliver.Options{Config: c})
	clock := newTestClock()
	tr.SetClock(clock.Now)
	start := clock.Now()
	for i, want := range []queue.Status{queue.Sent, queue.Sent, queue.Deferred} {
		d := delivery("a@sender.test", "x.test", testMessage, fmt.Sprintf("a%d@x.test", i), fmt.Sprintf("b%d@x.test", i))
		d.ID = fmt.Sprintf("DAY%d", i)
		res := deliverOne(t, tr, d)
		for _, r := range res {
			wantStatus(t, r, want)
		}
		if want != queue.Deferred {
			continue
		}
		if wait := res[0].NotBefore.Sub(start); wait < 24*time.Hour || wait > 24*time.Hour+5*time.Second {
			t.Errorf("the third message waits %s, want a day", wait)
		}
		if !strings.Contains(res[0].Message, "5 recipients a day") || res[0].Code != 0 {
			t.Errorf("paced result %d %q", res[0].Code, res[0].Message)
		}
	}
}

// delivery.pacing paces a destination domain delivered by MX, like
// Postfix's destination_rate_delay; other domains are not held back.
func TestPacingDestinationDomain(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.zone.add(t, "paced-mx.test. 300 IN MX 10 mx.paced-mx.test.", "mx.paced-mx.test. 300 IN A 127.0.0.3",
		"free-mx.test. 300 IN MX 10 mx.paced-mx.test.")
	e.net.start(t, "127.0.0.3", sinkOpts{})
	c := e.config()
	c.Pacing = map[string]config.Pacing{"paced-mx.test": {Messages: 1, Period: config.Duration(10 * time.Second)}}
	// Pacers outlive a Transport (a reload keeps counting), so an earlier
	// run of this test in the process would still be pacing the domain.
	deliver.ForgetPacer("delivery.pacing.paced-mx.test")
	tr := newTransport(t, deliver.Options{Config: c})
	clock := newTestClock()
	tr.SetClock(clock.Now)
	one := delivery("a@sender.test", "paced-mx.test", testMessage, "a@paced-mx.test")
	two := delivery("a@sender.test", "paced-mx.test", testMessage, "b@paced-mx.test")
	two.ID = "SECOND"
	wantStatus(t, deliverOne(t, tr, one)[0], queue.Sent)
	res := deliverOne(t, tr, two)[0]
	wantStatus(t, res, queue.Deferred)
	if !strings.Contains(res.Message, "delivery.pacing.paced-mx.test") || res.NotBefore.Sub(clock.Now()) < 10*time.Second {
		t.Errorf("paced result %q until %s", res.Message, res.NotBefore.Sub(clock.Now()))
	}
	wantStatus(t, deliverOne(t, tr, delivery("a@sender.test", "free-mx.test", testMessage, "c@free-mx.test"))[0], queue.Sent)
	clock.AdvanceTo(res.NotBefore)
	wantStatus(t, deliverOne(t, tr, two)[0], queue.Sent)
}
