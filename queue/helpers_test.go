package queue

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock replaces now for the duration of a test.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func useFakeClock(t *testing.T) *fakeClock {
	t.Helper()
	c := &fakeClock{t: time.Date(2025, 11, 25, 9, 0, 0, 0, time.UTC)}
	old := now
	now = c.Now
	t.Cleanup(func() { now = old })
	return c
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// AdvanceTo moves the clock to t if t is later.
func (c *fakeClock) AdvanceTo(t time.Time) {
	c.mu.Lock()
	if t.After(c.t) {
		c.t = t
	}
	c.mu.Unlock()
}

// delivered is one call of fakeTransport.Deliver, with the message read.
type delivered struct {
	ID, From, Domain string
	Rcpts            []string
	Msg              []byte
}

// fakeTransport answers with decide (Sent when nil) and records every call.
type fakeTransport struct {
	mu     sync.Mutex
	decide func(d *Delivery, rcpt string) Result
	calls  []delivered
	block  func(ctx context.Context, d *Delivery) // optional, before answering
}

func (f *fakeTransport) Deliver(ctx context.Context, d *Delivery) []Result {
	if f.block != nil {
		f.block(ctx, d)
	}
	var msg []byte
	if rc, err := d.Open(); err == nil {
		msg, _ = io.ReadAll(rc)
		rc.Close()
	}
	f.mu.Lock()
	decide := f.decide
	f.calls = append(f.calls, delivered{ID: d.ID, From: d.From, Domain: d.Domain,
		Rcpts: append([]string(nil), d.Rcpts...), Msg: msg})
	f.mu.Unlock()
	var res []Result
	for _, r := range d.Rcpts {
		if decide == nil {
			res = append(res, Result{Rcpt: r, Status: Sent, Code: 250, Message: "ok", Remote: "mx." + d.Domain + "[192.0.2.1]:25"})
		} else {
			res = append(res, decide(d, r))
		}
	}
	return res
}

func (f *fakeTransport) setDecide(fn func(d *Delivery, rcpt string) Result) {
	f.mu.Lock()
	f.decide = fn
	f.mu.Unlock()
}

func (f *fakeTransport) Calls() []delivered {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]delivered(nil), f.calls...)
}

// callsTo returns the deliveries to rcpt.
func (f *fakeTransport) callsTo(rcpt string) []delivered {
	var out []delivered
	for _, c := range f.Calls() {
		for _, r := range c.Rcpts {
			if r == rcpt {
				out = append(out, c)
			}
		}
	}
	return out
}

func answer(rcpt string, st Status, code int, enh, msg string) Result {
	return Result{Rcpt: rcpt, Status: st, Code: code, Enhanced: enh, Message: msg, Remote: "mx.example.net[192.0.2.7]:25"}
}

// logBuffer collects log output for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func testOptions(t *testing.T, dir string, tr Transport) (Options, *logBuffer) {
	t.Helper()
	lb := &logBuffer{}
	return Options{
		Dir: dir, Transport: tr, Hostname: "relay.test",
		Logger:   slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})),
		RetryMin: time.Minute, RetryMax: 4 * time.Minute, MaxLifetime: time.Hour,
		MaxConcurrent: 4, MaxPerDomain: 2,
	}, lb
}

func openQueue(t *testing.T, opts Options) *Queue {
	t.Helper()
	q, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// runQueue starts Run and stops it when the test ends.
func runQueue(t *testing.T, q *Queue) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

const testBody = "From: Alice <alice@example.com>\r\nTo: bob@example.org\r\nSubject: hello\r\n\r\nHi Bob.\r\n"

func commit(t *testing.T, q *Queue, from string, to ...string) string {
	t.Helper()
	d, err := q.NewDraft(&Envelope{From: from, To: to, Received: now(), Client: "192.0.2.10", User: "alice"})
	if err != nil {
		t.Fatalf("NewDraft: %v", err)
	}
	if _, err := io.WriteString(d, testBody); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := d.Commit([]byte("Received: from test\r\n")); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return d.ID()
}

// waitFor polls cond until it holds; the deadline only catches hangs.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// settle waits until the scheduler has no message in flight.
func settle(t *testing.T, q *Queue) {
	t.Helper()
	waitFor(t, "idle scheduler", func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		for _, it := range q.items {
			if it.busy {
				return false
			}
		}
		return q.run == nil || q.run.inflight == 0
	})
}

func rcptStatus(t *testing.T, q *Queue, id, addr string) (RcptInfo, bool) {
	t.Helper()
	info, err := q.Get(id)
	if err != nil {
		return RcptInfo{}, false
	}
	for _, r := range info.Rcpts {
		if r.Addr == addr {
			return r, true
		}
	}
	return RcptInfo{}, false
}

func inQueue(q *Queue, id string) bool {
	_, err := q.Get(id)
	return err == nil
}

// messagesFrom returns the IDs of queued messages from sender.
func messagesFrom(t *testing.T, q *Queue, from string) []Info {
	t.Helper()
	var out []Info
	q.List(func(i Info) error {
		if i.From == from {
			out = append(out, i)
		}
		return nil
	})
	return out
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
