package queue

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

// parsedDSN is a DSN read back with go-message.
type parsedDSN struct {
	Header  message.Header
	Human   string
	Message textproto.Header   // per-message fields
	Rcpts   []textproto.Header // per-recipient fields
	Orig    string             // text/rfc822-headers part
}

func parseDSN(t testing.TB, raw []byte) *parsedDSN {
	t.Helper()
	p, err := parseDSNErr(raw)
	if err != nil {
		t.Fatalf("parse DSN: %v\n%s", err, raw)
	}
	return p
}

func parseDSNErr(raw []byte) (*parsedDSN, error) {
	e, err := message.Read(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	typ, params, err := e.Header.ContentType()
	if err != nil || typ != "multipart/report" || !strings.HasSuffix(params["report-type"], "delivery-status") {
		return nil, errors.New("not a multipart/report: " + typ)
	}
	out := &parsedDSN{Header: e.Header}
	mr := e.MultipartReader()
	for i := 0; ; i++ {
		part, err := mr.NextPart()
		if err == io.EOF {
			if i != 3 {
				return nil, errors.New("want 3 parts")
			}
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		body, err := io.ReadAll(part.Body)
		if err != nil {
			return nil, err
		}
		pt, _, _ := part.Header.ContentType()
		switch i {
		case 0:
			out.Human = string(body)
		case 1:
			if !strings.HasSuffix(pt, "delivery-status") {
				return nil, errors.New("part 2 is " + pt)
			}
			br := bufio.NewReader(bytes.NewReader(body))
			if out.Message, err = textproto.ReadHeader(br); err != nil {
				return nil, err
			}
			for {
				if _, err := br.Peek(1); err == io.EOF {
					break
				}
				h, err := textproto.ReadHeader(br)
				if err != nil {
					return nil, err
				}
				out.Rcpts = append(out.Rcpts, h)
			}
		case 2:
			out.Orig = string(body)
		}
	}
}

func TestBuildDSN(t *testing.T) {
	arrival := time.Date(2025, 11, 25, 9, 0, 0, 0, time.UTC)
	raw, err := BuildDSN(&DSN{
		ReportingMTA: "relay.test", To: "alice@example.com", QueueID: "0CO1MBLB8S7J5D2E",
		Arrival: arrival, Date: arrival.Add(time.Hour),
		Rcpts: []DSNRcpt{{
			Addr: "bob@example.org", Action: ActionFailed, Status: "5.1.1", RemoteMTA: "mx.example.org",
			Diagnostic: "550 5.1.1 no such user\r\nX-Injected: yes", LastAttempt: arrival.Add(time.Minute),
		}, {
			Addr: "carol@example.org", Action: ActionFailed, Status: "bogus",
		}},
		Header: []byte("Subject: hello\nFrom: alice@example.com\r\n\r\nbody must not appear"),
	})
	if err != nil {
		t.Fatal(err)
	}
	p := parseDSN(t, raw)
	if got := p.Header.Get("From"); got != "Mail Delivery System <MAILER-DAEMON@relay.test>" {
		t.Errorf("From = %q", got)
	}
	if p.Header.Get("To") != "<alice@example.com>" || p.Header.Get("Auto-Submitted") != "auto-replied" ||
		p.Header.Get("Subject") != "Undelivered Mail Returned to Sender" {
		t.Errorf("header = %v", p.Header.Map())
	}
	if p.Message.Get("Reporting-MTA") != "dns; relay.test" ||
		p.Message.Get("Arrival-Date") != arrival.Format(time.RFC1123Z) {
		t.Errorf("per-message fields = %v", p.Message.Map())
	}
	if len(p.Rcpts) != 2 {
		t.Fatalf("%d recipient blocks", len(p.Rcpts))
	}
	r := p.Rcpts[0]
	want := map[string]string{
		"Final-Recipient": "rfc822; bob@example.org", "Action": "failed", "Status": "5.1.1",
		"Remote-MTA": "dns; mx.example.org", "Diagnostic-Code": "smtp; 550 5.1.1 no such user X-Injected: yes",
		"Last-Attempt-Date": arrival.Add(time.Minute).Format(time.RFC1123Z),
	}
	for k, v := range want {
		if got := r.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if p.Rcpts[1].Get("Status") != "5.0.0" || p.Rcpts[1].Has("Remote-MTA") || p.Rcpts[1].Has("Diagnostic-Code") {
		t.Errorf("second recipient = %v", p.Rcpts[1].Map())
	}
	if p.Orig != "Subject: hello\r\nFrom: alice@example.com\r\n" {
		t.Errorf("original headers = %q", p.Orig)
	}
	if !strings.Contains(p.Human, "<bob@example.org>") || !strings.Contains(p.Human, "relay.test") {
		t.Errorf("human part = %q", p.Human)
	}

	if _, err := BuildDSN(&DSN{To: "", Rcpts: []DSNRcpt{{Addr: "x@y", Action: ActionFailed}}}); err == nil {
		t.Error("BuildDSN to the null sender succeeded")
	}
}

func TestBuildDSNUTF8(t *testing.T) {
	raw, err := BuildDSN(&DSN{ReportingMTA: "relay.test", To: "alice@example.com",
		Rcpts: []DSNRcpt{{Addr: "jürgen@bücher.example", Action: ActionDelayed, Diagnostic: "451 später"}}})
	if err != nil {
		t.Fatal(err)
	}
	p := parseDSN(t, raw)
	if got := p.Rcpts[0].Get("Final-Recipient"); got != "utf-8; jürgen@bücher.example" {
		t.Errorf("Final-Recipient = %q", got)
	}
	if p.Rcpts[0].Get("Status") != "4.0.0" || p.Header.Get("Subject") != "Delayed Mail (still being retried)" {
		t.Errorf("delayed DSN: %v %v", p.Rcpts[0].Map(), p.Header.Map())
	}
	if !strings.Contains(p.Human, "jürgen") {
		t.Errorf("human part = %q", p.Human)
	}
}

// dsnsTo returns the DSNs the transport delivered to rcpt, parsed.
func dsnsTo(t *testing.T, tr *fakeTransport, rcpt string) []*parsedDSN {
	t.Helper()
	var out []*parsedDSN
	for _, c := range tr.callsTo(rcpt) {
		if c.From == "" {
			out = append(out, parseDSN(t, c.Msg))
		}
	}
	return out
}

func TestPermanentFailureBounces(t *testing.T) {
	useFakeClock(t)
	tr := &fakeTransport{}
	tr.setDecide(func(d *Delivery, rcpt string) Result {
		if rcpt == "nobody@example.org" {
			return answer(rcpt, Failed, 550, "5.1.1", "no such user")
		}
		return answer(rcpt, Sent, 250, "2.0.0", "ok")
	})
	opts, lb := testOptions(t, t.TempDir(), tr)
	q := openQueue(t, opts)
	runQueue(t, q)
	id := commit(t, q, "alice@example.com", "bob@example.org", "nobody@example.org")
	waitFor(t, "bounce delivered", func() bool {
		return !inQueue(q, id) && len(dsnsTo(t, tr, "alice@example.com")) == 1
	})
	p := dsnsTo(t, tr, "alice@example.com")[0]
	if len(p.Rcpts) != 1 {
		t.Fatalf("DSN lists %d recipients, want 1", len(p.Rcpts))
	}
	r := p.Rcpts[0]
	for k, v := range map[string]string{
		"Final-Recipient": "rfc822; nobody@example.org", "Action": "failed", "Status": "5.1.1",
		"Remote-MTA": "dns; mx.example.net", "Diagnostic-Code": "smtp; 550 5.1.1 no such user",
	} {
		if got := r.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if !r.Has("Last-Attempt-Date") || !p.Message.Has("Arrival-Date") || p.Message.Get("Reporting-MTA") != "dns; relay.test" {
		t.Errorf("missing dates: %v %v", r.Map(), p.Message.Map())
	}
	if !strings.Contains(p.Orig, "Subject: hello") || !strings.Contains(p.Orig, "Received: from test") ||
		strings.Contains(p.Orig, "Hi Bob") {
		t.Errorf("original headers part = %q", p.Orig)
	}
	if len(tr.callsTo("bob@example.org")) != 1 {
		t.Errorf("bob got %d deliveries", len(tr.callsTo("bob@example.org")))
	}
	if !strings.Contains(lb.String(), "status=bounced") || !strings.Contains(lb.String(), "bounce queued") {
		t.Errorf("logs lack the bounce:\n%s", lb)
	}
}

func TestExpiryBounces(t *testing.T) {
	clock := useFakeClock(t)
	tr := &fakeTransport{}
	tr.setDecide(func(d *Delivery, rcpt string) Result {
		if d.From == "" {
			return answer(rcpt, Sent, 250, "", "ok")
		}
		return answer(rcpt, Deferred, 451, "4.4.1", "connection timed out")
	})
	opts, _ := testOptions(t, t.TempDir(), tr)
	opts.RetryMin, opts.RetryMax, opts.MaxLifetime = 10*time.Minute, 20*time.Minute, 30*time.Minute
	q := openQueue(t, opts)
	runQueue(t, q)
	id := commit(t, q, "alice@example.com", "slow@example.org")
	for attempt := 1; inQueue(q, id); attempt++ {
		waitFor(t, "attempt", func() bool { return len(tr.callsTo("slow@example.org")) >= attempt || !inQueue(q, id) })
		settle(t, q)
		r, _ := rcptStatus(t, q, id, "slow@example.org")
		clock.AdvanceTo(r.NextAttempt)
		q.Kick()
		if attempt > 10 {
			t.Fatal("never expired")
		}
	}
	waitFor(t, "expiry DSN", func() bool { return len(dsnsTo(t, tr, "alice@example.com")) == 1 })
	r := dsnsTo(t, tr, "alice@example.com")[0].Rcpts[0]
	if r.Get("Action") != "failed" || r.Get("Status") != "4.4.1" ||
		r.Get("Diagnostic-Code") != "smtp; 451 4.4.1 connection timed out" {
		t.Errorf("expiry DSN = %v", r.Map())
	}
	// The last attempt happened at the expiry time, not after it.
	calls := tr.callsTo("slow@example.org")
	if len(calls) != 3 {
		t.Errorf("%d attempts within a 30m lifetime (retries at 10m, 30m), want 3", len(calls))
	}
}

func TestNullSenderNeverBounced(t *testing.T) {
	useFakeClock(t)
	tr := &fakeTransport{}
	tr.setDecide(func(d *Delivery, rcpt string) Result {
		return answer(rcpt, Failed, 550, "5.1.1", "no such user")
	})
	opts, lb := testOptions(t, t.TempDir(), tr)
	q := openQueue(t, opts)
	runQueue(t, q)
	id := commit(t, q, "", "nobody@example.org")
	waitFor(t, "drop", func() bool { return !inQueue(q, id) })
	settle(t, q)
	if n, _ := q.Stats(); n != 0 {
		t.Errorf("%d messages queued: a bounce of a bounce?", n)
	}
	if len(tr.Calls()) != 1 {
		t.Errorf("%d transport calls, want 1", len(tr.Calls()))
	}
	if !strings.Contains(lb.String(), "not bouncing mail from the null sender") {
		t.Errorf("no log line for the dropped bounce:\n%s", lb)
	}
}

func TestDelayWarningOnce(t *testing.T) {
	clock := useFakeClock(t)
	tr := &fakeTransport{}
	tr.setDecide(func(d *Delivery, rcpt string) Result {
		if d.From == "" {
			return answer(rcpt, Sent, 250, "", "ok")
		}
		return answer(rcpt, Deferred, 452, "4.2.2", "mailbox full")
	})
	opts, _ := testOptions(t, t.TempDir(), tr)
	opts.DelayWarning = 3 * time.Minute
	q := openQueue(t, opts)
	runQueue(t, q)
	id := commit(t, q, "alice@example.com", "full@example.org")
	for attempt := 1; attempt <= 4; attempt++ {
		waitFor(t, "attempt", func() bool { return len(tr.callsTo("full@example.org")) >= attempt })
		settle(t, q)
		r, _ := rcptStatus(t, q, id, "full@example.org")
		clock.AdvanceTo(r.NextAttempt)
		q.Kick()
	}
	waitFor(t, "delay DSN", func() bool { return len(dsnsTo(t, tr, "alice@example.com")) >= 1 })
	settle(t, q)
	dsns := dsnsTo(t, tr, "alice@example.com")
	if len(dsns) != 1 {
		t.Fatalf("%d delay warnings, want 1", len(dsns))
	}
	r := dsns[0].Rcpts[0]
	if r.Get("Action") != "delayed" || r.Get("Status") != "4.2.2" || !r.Has("Will-Retry-Until") {
		t.Errorf("delay DSN = %v", r.Map())
	}
}

func TestAdminBounce(t *testing.T) {
	useFakeClock(t)
	tr := &fakeTransport{}
	opts, _ := testOptions(t, t.TempDir(), nil) // not running: admin only
	q := openQueue(t, opts)
	id := commit(t, q, "alice@example.com", "bob@example.org")
	if err := q.Bounce(id); err != nil {
		t.Fatal(err)
	}
	if inQueue(q, id) {
		t.Fatal("bounced message still queued")
	}
	dsns := messagesFrom(t, q, "")
	if len(dsns) != 1 || dsns[0].Rcpts[0].Addr != "alice@example.com" {
		t.Fatalf("queued DSNs = %+v", dsns)
	}
	q.opts.Transport = tr
	runQueue(t, q)
	waitFor(t, "DSN delivered", func() bool { return len(dsnsTo(t, tr, "alice@example.com")) == 1 })
	r := dsnsTo(t, tr, "alice@example.com")[0].Rcpts[0]
	if r.Get("Diagnostic-Code") != "X-Inkan; deleted by administrator" || r.Get("Status") != "5.0.0" {
		t.Errorf("admin bounce = %v", r.Map())
	}
}
