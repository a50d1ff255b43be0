package queue

import (
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"
)

// commitDSN queues testBody with DSN requests for each recipient.
func commitDSN(t *testing.T, q *Queue, env *Envelope) string {
	t.Helper()
	env.Received = now()
	d, err := q.NewDraft(env)
	if err != nil {
		t.Fatalf("NewDraft: %v", err)
	}
	io.WriteString(d, testBody)
	if err := d.Commit([]byte("Received: from test\r\n")); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return d.ID()
}

// NOTIFY=SUCCESS to a next hop without DSN: inkan reports "relayed", with
// the sender's ENVID and ORCPT; a next hop that took the parameters
// reports itself, so inkan stays silent.
func TestNotifySuccessRelayed(t *testing.T) {
	useFakeClock(t)
	tr := &fakeTransport{}
	tr.setDecide(func(d *Delivery, rcpt string) Result {
		r := answer(rcpt, Sent, 250, "2.0.0", "ok: queued as X")
		r.DSNPassed = rcpt == "dsn-capable@example.net"
		return r
	})
	opts, _ := testOptions(t, t.TempDir(), tr)
	q := openQueue(t, opts)
	runQueue(t, q)
	success := RcptDSN{Notify: []string{"SUCCESS", "FAILURE"}, ORcptType: "RFC822", ORcpt: "bob@old.example.org"}
	id := commitDSN(t, q, &Envelope{From: "alice@example.com", To: []string{"bob@example.org", "dsn-capable@example.net", "quiet@example.org"},
		Ret: "HDRS", EnvID: "ticket-42", RcptDSN: []RcptDSN{success, {Notify: []string{"SUCCESS"}}, {}}})
	waitFor(t, "success notice", func() bool { return !inQueue(q, id) && len(dsnsTo(t, tr, "alice@example.com")) == 1 })
	settle(t, q)
	// The transport got the requests to pass on.
	for _, c := range tr.Calls() {
		if c.ID == id && c.Domain == "example.org" && len(c.Rcpts) != 2 {
			t.Errorf("example.org group = %v", c.Rcpts)
		}
	}
	p := dsnsTo(t, tr, "alice@example.com")[0]
	if p.Header.Get("Subject") != "Successful Mail Delivery Report" {
		t.Errorf("Subject = %q", p.Header.Get("Subject"))
	}
	if p.Message.Get("Original-Envelope-Id") != "ticket-42" {
		t.Errorf("per-message fields = %v", p.Message.Map())
	}
	if len(p.Rcpts) != 1 {
		t.Fatalf("notice lists %d recipients, want only bob (the others: DSN passed on, or no NOTIFY)", len(p.Rcpts))
	}
	r := p.Rcpts[0]
	for k, v := range map[string]string{
		"Final-Recipient": "rfc822; bob@example.org", "Original-Recipient": "rfc822; bob@old.example.org",
		"Action": "relayed", "Status": "2.0.0", "Remote-MTA": "dns; mx.example.net",
	} {
		if got := r.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if !strings.Contains(p.Orig, "Subject: hello") || strings.Contains(p.Orig, "Hi Bob") {
		t.Errorf("returned content = %q, want the header only", p.Orig)
	}
}

// The requests reach the transport, in the order of the group's
// recipients.
func TestDSNRequestsPassedToTransport(t *testing.T) {
	useFakeClock(t)
	var got *Delivery
	tr := &fakeTransport{}
	tr.setDecide(func(d *Delivery, rcpt string) Result {
		got = d
		return answer(rcpt, Sent, 250, "", "ok")
	})
	opts, _ := testOptions(t, t.TempDir(), tr)
	q := openQueue(t, opts)
	runQueue(t, q)
	id := commitDSN(t, q, &Envelope{From: "alice@example.com", To: []string{"a@example.org", "b@example.org"},
		Ret: "FULL", EnvID: "e1", RcptDSN: []RcptDSN{{Notify: []string{"NEVER"}}, {Notify: []string{"DELAY", "FAILURE"}, ORcptType: "RFC822", ORcpt: "b@x.example"}}})
	waitFor(t, "delivery", func() bool { return !inQueue(q, id) })
	if got == nil || got.Ret != "FULL" || got.EnvID != "e1" || len(got.DSN) != 2 ||
		strings.Join(got.DSN[0].Notify, ",") != "NEVER" || got.DSN[1].ORcpt != "b@x.example" {
		t.Fatalf("delivery = %+v", got)
	}
}

// NOTIFY=NEVER (or a NOTIFY without FAILURE): a permanent failure is not
// bounced; the recipient is done, with a log line. Without NOTIFY the
// sender gets the bounce as before.
func TestNotifyNeverSuppressesBounce(t *testing.T) {
	useFakeClock(t)
	tr := &fakeTransport{}
	tr.setDecide(func(d *Delivery, rcpt string) Result { return answer(rcpt, Failed, 550, "5.1.1", "no such user") })
	opts, lb := testOptions(t, t.TempDir(), tr)
	q := openQueue(t, opts)
	runQueue(t, q)
	never := commitDSN(t, q, &Envelope{From: "tickets@example.com", To: []string{"gone@example.org", "gone2@example.org"},
		RcptDSN: []RcptDSN{{Notify: []string{"NEVER"}}, {Notify: []string{"SUCCESS", "DELAY"}}}})
	waitFor(t, "done", func() bool { return !inQueue(q, never) })
	settle(t, q)
	if n := len(dsnsTo(t, tr, "tickets@example.com")); n != 0 {
		t.Fatalf("%d bounces for NOTIFY without FAILURE", n)
	}
	if !strings.Contains(lb.String(), "no notice: the sender's NOTIFY leaves it out") {
		t.Errorf("no log line for the suppressed bounce:\n%s", lb)
	}
	plain := commitDSN(t, q, &Envelope{From: "alice@example.com", To: []string{"gone@example.org"}})
	waitFor(t, "bounce", func() bool { return !inQueue(q, plain) && len(dsnsTo(t, tr, "alice@example.com")) == 1 })
}

// RET=FULL returns the whole message in a failure notice; RET=HDRS (and no
// RET) the header only.
func TestRetFullReturnsMessage(t *testing.T) {
	useFakeClock(t)
	tr := &fakeTransport{}
	tr.setDecide(func(d *Delivery, rcpt string) Result {
		if d.From == "" {
			return answer(rcpt, Sent, 250, "", "ok")
		}
		return answer(rcpt, Failed, 550, "5.1.1", "no such user")
	})
	opts, _ := testOptions(t, t.TempDir(), tr)
	q := openQueue(t, opts)
	runQueue(t, q)
	commitDSN(t, q, &Envelope{From: "full@example.com", To: []string{"gone@example.org"}, Ret: "FULL", EnvID: "x1",
		RcptDSN: []RcptDSN{{Notify: []string{"FAILURE"}, ORcptType: "RFC822", ORcpt: "gone@example.org"}}})
	commitDSN(t, q, &Envelope{From: "hdrs@example.com", To: []string{"gone@example.org"}, Ret: "HDRS"})
	waitFor(t, "bounces", func() bool {
		return len(dsnsTo(t, tr, "full@example.com")) == 1 && len(dsnsTo(t, tr, "hdrs@example.com")) == 1
	})
	full := tr.callsTo("full@example.com")[0].Msg
	if !strings.Contains(string(full), "Content-Type: message/rfc822") || !strings.Contains(string(full), "Hi Bob.") {
		t.Errorf("RET=FULL bounce lacks the message:\n%s", full)
	}
	p := dsnsTo(t, tr, "full@example.com")[0]
	if p.Message.Get("Original-Envelope-Id") != "x1" || p.Rcpts[0].Get("Original-Recipient") != "rfc822; gone@example.org" {
		t.Errorf("ENVID/ORCPT: %v %v", p.Message.Map(), p.Rcpts[0].Map())
	}
	hdrs := tr.callsTo("hdrs@example.com")[0].Msg
	if strings.Contains(string(hdrs), "Hi Bob.") || !strings.Contains(string(hdrs), "text/rfc822-headers") {
		t.Errorf("RET=HDRS bounce:\n%s", hdrs)
	}
}

// NOTIFY without DELAY: no delay warning; NOTIFY=DELAY: one.
func TestNotifyDelay(t *testing.T) {
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
	quiet := commitDSN(t, q, &Envelope{From: "quiet@example.com", To: []string{"full@example.org"}, RcptDSN: []RcptDSN{{Notify: []string{"FAILURE"}}}})
	loud := commitDSN(t, q, &Envelope{From: "loud@example.com", To: []string{"full2@example.org"}, RcptDSN: []RcptDSN{{Notify: []string{"DELAY"}}}})
	for attempt := 1; attempt <= 4; attempt++ {
		waitFor(t, "attempt", func() bool {
			return len(tr.callsTo("full@example.org")) >= attempt && len(tr.callsTo("full2@example.org")) >= attempt
		})
		settle(t, q)
		a, _ := rcptStatus(t, q, quiet, "full@example.org")
		b, _ := rcptStatus(t, q, loud, "full2@example.org")
		clock.AdvanceTo(maxTime(a.NextAttempt, b.NextAttempt))
		q.Kick()
	}
	waitFor(t, "delay DSN", func() bool { return len(dsnsTo(t, tr, "loud@example.com")) == 1 })
	settle(t, q)
	if n := len(dsnsTo(t, tr, "quiet@example.com")); n != 0 {
		t.Errorf("%d delay warnings for NOTIFY=FAILURE", n)
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// A spool file written before DSN support decodes with no requests: the
// default behaviour (bounce failures, no success notice).
func TestEnvelopeWithoutDSNFields(t *testing.T) {
	old := `{"from":"a@example.com","to":["b@example.org"],"client":"192.0.2.1","received":"2026-01-02T03:04:05Z"}`
	var env Envelope
	if err := json.Unmarshal([]byte(old), &env); err != nil {
		t.Fatal(err)
	}
	d := env.DSNOf(0)
	if !d.Wants(NotifyFailure) || !d.Wants(NotifyDelay) || d.Wants(NotifySuccess) || env.Ret != "" || env.EnvID != "" {
		t.Fatalf("old envelope: %+v %+v", env, d)
	}
	tr, err := encodeTrailer(0, nil, &Envelope{From: "a@example.com", To: []string{"b@example.org"}, Ret: "HDRS", EnvID: "q",
		RcptDSN: []RcptDSN{{Notify: []string{"NEVER"}}}})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := decodeRecord(strings.NewReader(string(tr)), int64(len(tr)))
	if err != nil || rec.Env.Ret != "HDRS" || rec.Env.EnvID != "q" || rec.Env.DSNOf(0).Wants(NotifyFailure) {
		t.Fatalf("round trip: %+v %v", rec, err)
	}
}
