package deliver_test

import (
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/queue"
	"github.com/inkan-relay/inkan/relay/deliver"
)

func failoverTransport(t *testing.T, e *env, address string) (*deliver.Transport, *testClock, *syncBuffer) {
	t.Helper()
	c := e.config()
	c.Smarthost = &config.Smarthost{Address: address, TLS: "may"}
	logs := &syncBuffer{}
	clock := newTestClock()
	tr := newTransport(t, deliver.Options{Config: c, IdleTimeout: -1,
		Logger: slog.New(slog.NewTextHandler(io2(t, logs), &slog.HandlerOptions{Level: slog.LevelDebug}))})
	tr.SetClock(clock.Now)
	return tr, clock, logs
}

// The first smarthost of the list is down (it greets with 421): the mail
// goes to the second, the log says why it moved on, and the first is tried
// after the other until its back-off ends.
func TestFailoverFirstDownSecondUsed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	port := strconv.Itoa(e.net.port)
	down := e.net.start(t, "127.0.0.2", sinkOpts{greeting: "421 4.3.2 Service not available, closing channel"})
	up := e.net.start(t, "127.0.0.3", sinkOpts{})
	tr, clock, logs := failoverTransport(t, e, "[127.0.0.2]:"+port+", [127.0.0.3]:"+port)
	if got, want := tr.Route("a@sender.test", "x.test").String(), "smarthost -> [127.0.0.2]:"+port+", [127.0.0.3]:"+port+" tls=may"; got != want {
		t.Errorf("route %s, want %s", got, want)
	}

	res := deliverOne(t, tr, delivery("a@sender.test", "x.test", testMessage, "bob@x.test"))
	wantStatus(t, res[0], queue.Sent)
	if want := remote("127.0.0.3", "127.0.0.3", e.net.port); res[0].Remote != want {
		t.Errorf("sent through %s, want %s", res[0].Remote, want)
	}
	if got := logs.String(); !strings.Contains(got, "relay address failed; trying the next one") ||
		!strings.Contains(got, "address=[127.0.0.2]:"+port) || !strings.Contains(got, "421 4.3.2") {
		t.Errorf("the log does not say which relay failed and why:\n%s", got)
	}
	if n := down.conns.Load(); n != 1 {
		t.Fatalf("%d connections to the first relay, want 1", n)
	}

	// In back-off: the second relay is tried first.
	res = deliverOne(t, tr, delivery("a@sender.test", "x.test", testMessage, "carol@x.test"))
	wantStatus(t, res[0], queue.Sent)
	if n := down.conns.Load(); n != 1 {
		t.Errorf("the relay in back-off was tried first (%d connections)", n)
	}
	// Back-off over: the first relay comes first again.
	clock.Advance(2 * time.Minute)
	deliverOne(t, tr, delivery("a@sender.test", "x.test", testMessage, "dave@x.test"))
	if n := down.conns.Load(); n != 2 {
		t.Errorf("after the back-off the first relay got %d connections in all, want 2", n)
	}
	if n := len(up.messages()); n != 3 {
		t.Errorf("the second relay got %d messages, want 3", n)
	}
}

// A 4xx for a recipient moves it on to the next relay at once; a 5xx is
// final, and what the first relay accepted stays accepted there.
func TestFailoverTemporaryRecipientMovesOn(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	port := strconv.Itoa(e.net.port)
	first := e.net.start(t, "127.0.0.2", sinkOpts{rcpt: map[string]*smtp.SMTPError{
		"moved@x.test": {Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "try again later"},
		"gone@x.test":  {Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"},
	}})
	second := e.net.start(t, "127.0.0.3", sinkOpts{})
	tr, _, _ := failoverTransport(t, e, "[127.0.0.2]:"+port+",[127.0.0.3]:"+port)
	res := deliverOne(t, tr, delivery("a@sender.test", "x.test", testMessage, "ok@x.test", "moved@x.test", "gone@x.test"))
	wantStatus(t, res[0], queue.Sent)
	wantStatus(t, res[1], queue.Sent)
	wantStatus(t, res[2], queue.Failed)
	if !strings.Contains(res[1].Remote, "127.0.0.3") || !strings.Contains(res[0].Remote, "127.0.0.2") {
		t.Errorf("ok went to %s, moved to %s", res[0].Remote, res[1].Remote)
	}
	if len(first.messages()) != 1 || len(second.messages()) != 1 || second.messages()[0].to[0] != "moved@x.test" {
		t.Errorf("first relay got %d messages, second %+v", len(first.messages()), second.messages())
	}
}

// Every relay of the list is down: the mail is deferred, and the reason
// names each relay and what happened there (what `inkan queue show`
// prints).
func TestFailoverAllDownNamesEachRelay(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	port := strconv.Itoa(e.net.port)
	tr, _, _ := failoverTransport(t, e, "[127.0.0.5]:"+port+", [127.0.0.6]:"+port)
	res := deliverOne(t, tr, delivery("a@sender.test", "x.test", testMessage, "bob@x.test"))
	wantStatus(t, res[0], queue.Deferred)
	for _, want := range []string{"127.0.0.6", "earlier: [127.0.0.5]:" + port, "connection refused"} {
		if !strings.Contains(res[0].Message, want) {
			t.Errorf("reason %q does not say %q", res[0].Message, want)
		}
	}
}
