package deliver_test

import (
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/inkan-relay/inkan/queue"
	"github.com/inkan-relay/inkan/relay/deliver"
)

// Outbound PIPELINING (RFC 2920): each test runs a scenario against two
// rawMX servers alike but for PIPELINING in their EHLO reply, and requires
// the same results of both; the one without PIPELINING sees go-smtp's
// client, one command per round trip, as before.

// pair is a pipelining rawMX (piped, at piped.test) and one without
// PIPELINING (plain, at plain.test), with a pooling transport.
type pair struct {
	t            *testing.T
	tr           *deliver.Transport
	piped, plain *rawMX
	port         int
}

func newPair(t *testing.T, ehlo ...string) *pair {
	t.Helper()
	e := newEnv(t)
	e.zone.add(t, "piped.test. 300 IN A 127.0.0.2", "plain.test. 300 IN A 127.0.0.3")
	port := strconv.Itoa(e.net.port)
	p := &pair{
		t:     t,
		piped: startRawMX(t, "127.0.0.2:"+port, append([]string{"PIPELINING"}, ehlo...)...),
		plain: startRawMX(t, "127.0.0.3:"+port, ehlo...),
		port:  e.net.port,
	}
	// After the servers, so that its Close (QUIT to pooled connections)
	// runs before they wait for their connections to end.
	p.tr = newTransport(t, deliver.Options{Config: e.config(), IdleTimeout: time.Minute})
	return p
}

// both delivers to each server the delivery mk(domain) makes, requires the
// same results of both, but for the server's name, and returns those of
// the pipelining server.
func (p *pair) both(mk func(domain string) *queue.Delivery) []queue.Result {
	p.t.Helper()
	a := deliverOne(p.t, p.tr, mk("piped.test"))
	b := deliverOne(p.t, p.tr, mk("plain.test"))
	norm := func(res []queue.Result, host, ip string) []queue.Result {
		r := remote(host, ip, p.port)
		out := slices.Clone(res)
		for i := range out {
			out[i].Rcpt = strings.Split(out[i].Rcpt, "@")[0]
			out[i].Remote = strings.ReplaceAll(out[i].Remote, r, "MX")
			out[i].Message = strings.ReplaceAll(strings.ReplaceAll(out[i].Message, r, "MX"), host, "D")
		}
		return out
	}
	na, nb := norm(a, "piped.test", "127.0.0.2"), norm(b, "plain.test", "127.0.0.3")
	if !slices.Equal(na, nb) {
		p.t.Errorf("pipelined results differ from sequential ones:\n piped %+v\n plain %+v", na, nb)
	}
	return a
}

// set sets up both servers alike.
// wantCmds checks the commands each server saw, all on one connection.
func (p *pair) wantCmds(t *testing.T, piped, plain string) {
	t.Helper()
	for _, c := range []struct {
		name string
		m    *rawMX
		want string
	}{{"pipelining server", p.piped, piped}, {"plain server", p.plain, plain}} {
		if cmds, _, _, _, conns := c.m.record(); cmds != c.want || conns != 1 {
			t.Errorf("%s: %q on %d connections, want %q on 1", c.name, cmds, conns, c.want)
		}
	}
}

func (p *pair) set(f func(m *rawMX)) {
	for _, m := range []*rawMX{p.piped, p.plain} {
		m.mu.Lock()
		f(m)
		m.mu.Unlock()
	}
}

func (m *rawMX) record() (cmds string, lines, reads, bodies []string, conns int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return strings.Join(m.cmds, " "), slices.Clone(m.lines), slices.Clone(m.reads), slices.Clone(m.bodies), m.conns
}

// msgTo is a delivery of msg from a@sender.test to the local parts at domain.
func msgTo(msg string, locals ...string) func(string) *queue.Delivery {
	return func(domain string) *queue.Delivery {
		var rcpts []string
		for _, l := range locals {
			rcpts = append(rcpts, l+"@"+domain)
		}
		return delivery("a@sender.test", domain, msg, rcpts...)
	}
}

// TestPipelineOneWrite: to a server with PIPELINING, MAIL, every RCPT and
// DATA arrive in one read, and the message, dot-stuffed, byte for byte as
// go-smtp's client sends it to a server without: leading dots doubled, a
// bare LF sent as CRLF, a last line without CRLF given one, and a large
// message whose CRs and LFs fall across the 32 KiB chunks it is read in.
func TestPipelineOneWrite(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	res := p.both(msgTo(testMessage, "a", "b", "c"))
	for _, r := range res {
		wantStatus(t, r, queue.Sent)
	}
	_, _, reads, _, _ := p.piped.record()
	want := "MAIL FROM:<a@sender.test> SIZE=" + strconv.Itoa(len(testMessage)) + "\r\n" +
		"RCPT TO:<a@piped.test>\r\nRCPT TO:<b@piped.test>\r\nRCPT TO:<c@piped.test>\r\nDATA\r\n"
	if !slices.Contains(reads, want) {
		t.Errorf("no read of the pipelining server is %q; reads %q", want, reads)
	}

	rng := rand.New(rand.NewPCG(1, 2))
	big := make([]byte, 200<<10)
	for i := range big {
		big[i] = ".\r\nxy"[rng.IntN(5)]
	}
	msgs := []string{
		testMessage,
		"Subject: no newline at the end\r\n\r\nlast line",
		"Subject: ends in CR\r\n\r\n.line\r",
		"Subject: bare LF\n\n.dot\nmixed\r\n\r\r\n.\r.\n..",
		"",
		".",
		string(big),
	}
	for _, msg := range msgs {
		for _, r := range p.both(msgTo(msg, "x")) {
			wantStatus(t, r, queue.Sent)
		}
	}
	_, _, _, piped, _ := p.piped.record()
	_, _, _, plain, _ := p.plain.record()
	if len(piped) != 1+len(msgs) || !slices.Equal(piped, plain) {
		t.Fatalf("the data differs:\n piped %q\n plain %q", piped, plain)
	}
	// And it is the message, dot-stuffed.
	if want := strings.ReplaceAll(testMessage, "\r\n.", "\r\n.."); piped[0] != want {
		t.Errorf("data %q, want %q", piped[0], want)
	}
	if want := "Subject: no newline at the end\r\n\r\nlast line\r\n"; piped[2] != want {
		t.Errorf("data %q, want %q", piped[2], want)
	}
}

// TestPipelineRcptReplies: a mix of accepted, refused, deferred (one with
// a multi-line reply) and invalid recipients gets the sequential path's
// results, and the connection is kept; with none accepted, RSET follows.
func TestPipelineRcptReplies(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.set(func(m *rawMX) {
		m.rcptReply = map[string]string{}
		for _, d := range []string{"piped.test", "plain.test"} {
			m.rcptReply["b@"+d] = "550 5.1.1 no such user"
			m.rcptReply["c@"+d] = "450 4.2.1 mailbox busy"
			m.rcptReply["d@"+d] = "452-4.5.3 too many\r\n452-4.5.3 recipients\r\n452 4.5.3 here"
		}
	})
	res := p.both(msgTo(testMessage, "a", "b", "c", "x>y", "d", "e"))
	want := []queue.Status{queue.Sent, queue.Failed, queue.Deferred, queue.Failed, queue.Deferred, queue.Sent}
	for i, r := range res {
		wantStatus(t, r, want[i])
	}
	if r := res[4]; r.Code != 452 || r.Enhanced != "4.5.3" || r.Message != "too many recipients here" {
		t.Errorf("multi-line reply: %+v", r)
	}
	// None accepted.
	res = p.both(msgTo(testMessage, "b", "c"))
	wantStatus(t, res[0], queue.Failed)
	wantStatus(t, res[1], queue.Deferred)
	for _, r := range p.both(msgTo(testMessage, "e")) {
		wantStatus(t, r, queue.Sent)
	}
	// The pipelined DATA gets 554 (no valid recipients), then RSET.
	p.wantCmds(t, "EHLO MAIL RCPT RCPT RCPT RCPT RCPT DATA MAIL RCPT RCPT DATA RSET MAIL RCPT DATA",
		"EHLO MAIL RCPT RCPT RCPT RCPT RCPT DATA MAIL RCPT RCPT RSET MAIL RCPT DATA")
}

// TestPipelineMailRefused: a refused MAIL (550, 451) gives every recipient
// its reply, as without pipelining; the RCPT and DATA replies that follow
// (503, 554) are read, and the connection is used again without RSET. A
// server that answers DATA with 354 though it took no recipient gets a
// lone dot (RFC 2920 section 3.1), then RSET.
func TestPipelineMailRefused(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.set(func(m *rawMX) { m.mailReplies = []string{"550 5.7.1 sender refused", "451 4.3.0 try again"} })
	for _, st := range []queue.Status{queue.Failed, queue.Deferred} {
		for _, r := range p.both(msgTo(testMessage, "a", "b")) {
			wantStatus(t, r, st)
		}
	}
	for _, r := range p.both(msgTo(testMessage, "c")) {
		wantStatus(t, r, queue.Sent)
	}
	p.wantCmds(t, "EHLO MAIL RCPT RCPT DATA MAIL RCPT RCPT DATA MAIL RCPT DATA", "EHLO MAIL MAIL MAIL RCPT DATA")

	q := newPair(t)
	q.set(func(m *rawMX) {
		m.mailReplies = []string{"550 5.7.1 sender refused"}
		m.loneDot354 = true
	})
	for _, r := range q.both(msgTo(testMessage, "a")) {
		wantStatus(t, r, queue.Failed)
	}
	for _, r := range q.both(msgTo(testMessage, "b")) {
		wantStatus(t, r, queue.Sent)
	}
	cmds, _, _, bodies, conns := q.piped.record()
	if want := "EHLO MAIL RCPT DATA RSET MAIL RCPT DATA"; cmds != want || conns != 1 {
		t.Errorf("lone dot: %q on %d connections, want %q on 1", cmds, conns, want)
	}
	if len(bodies) != 1 {
		t.Errorf("the server got %d messages, want 1", len(bodies))
	}
}

// TestPipelineDataRefused: DATA refused after accepted recipients fails
// them as without pipelining, and RSET clears the transaction before the
// next one on the same connection.
func TestPipelineDataRefused(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.set(func(m *rawMX) { m.refuseData = 1 })
	for _, r := range p.both(msgTo(testMessage, "a", "b")) {
		wantStatus(t, r, queue.Failed)
		if r.Code != 554 {
			t.Errorf("%+v", r)
		}
	}
	for _, r := range p.both(msgTo(testMessage, "c")) {
		wantStatus(t, r, queue.Sent)
	}
	want := "EHLO MAIL RCPT RCPT DATA RSET MAIL RCPT DATA"
	p.wantCmds(t, want, want)
}

// TestPipeline421: a server that says 421 to a RCPT and hangs up leaves
// the recipients it did not refuse pending for another host (here none:
// they are deferred with the 421), and the connection is not used again.
func TestPipeline421(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.set(func(m *rawMX) {
		m.rcptReply = map[string]string{
			"b@piped.test": "550 5.1.1 no such user", "b@plain.test": "550 5.1.1 no such user",
			"c@piped.test": "421 4.3.2 shutting down", "c@plain.test": "421 4.3.2 shutting down",
		}
	})
	res := p.both(msgTo(testMessage, "a", "b", "c", "d"))
	want := []queue.Status{queue.Deferred, queue.Failed, queue.Deferred, queue.Deferred}
	for i, r := range res {
		wantStatus(t, r, want[i])
		if i != 1 && r.Code != 421 {
			t.Errorf("%+v, want the 421", r)
		}
	}
	for _, r := range p.both(msgTo(testMessage, "e")) {
		wantStatus(t, r, queue.Sent)
	}
	for _, m := range []*rawMX{p.piped, p.plain} {
		if _, _, _, bodies, conns := m.record(); conns != 2 || len(bodies) != 1 {
			t.Errorf("%d connections, %d messages; want 2, 1", conns, len(bodies))
		}
	}
}

// TestPipelineParameters: MAIL and RCPT carry the same parameters, to the
// byte, as go-smtp writes them: BODY=8BITMIME, SIZE, SMTPUTF8, RET and
// ENVID in xtext, NOTIFY, ORCPT in xtext or utf-8-addr-unitext, or
// utf-8-addr-xtext to a server without SMTPUTF8; none of DSN's to a server
// without DSN. A NOTIFY go-smtp refuses to send gets the same result.
func TestPipelineParameters(t *testing.T) {
	t.Parallel()
	msg := "Subject: caf\xc3\xa9\r\n\r\ncaf\xc3\xa9\r\n"
	mk := func(domain string) *queue.Delivery {
		d := delivery("\xc3\xa4@sender.test", domain, msg, "a@"+domain, "b@"+domain, "c@"+domain, "d@"+domain)
		d.SMTPUTF8, d.Body8Bit, d.Header8Bit = true, true, true
		d.Ret, d.EnvID = "HDRS", "env id+=1"
		d.DSN = []queue.RcptDSN{
			{Notify: []string{"SUCCESS", "FAILURE"}, ORcptType: "rfc822", ORcpt: "orig+x=y@example.test"},
			{Notify: []string{"NEVER"}, ORcptType: "utf-8", ORcpt: "\xc3\xbc ser@\xe4\xbe\x8b.test"},
			{},
			{Notify: []string{"DELAY"}},
		}
		return d
	}
	ascii := func(domain string) *queue.Delivery {
		d := mk(domain)
		d.From, d.SMTPUTF8, d.Header8Bit = "a@sender.test", false, false
		return d
	}
	for _, c := range []struct {
		ehlo []string
		mk   func(string) *queue.Delivery
	}{
		{[]string{"8BITMIME", "SMTPUTF8", "DSN"}, mk},
		{[]string{"8BITMIME", "DSN"}, ascii},
		{[]string{"8BITMIME"}, ascii},
	} {
		p := newPair(t, c.ehlo...)
		for _, r := range p.both(c.mk) {
			wantStatus(t, r, queue.Sent)
		}
		_, a, reads, _, _ := p.piped.record()
		if !slices.ContainsFunc(reads, func(r string) bool { return strings.Count(r, "\r\n") == 6 && strings.HasSuffix(r, "DATA\r\n") }) {
			t.Errorf("EHLO %s: not pipelined: reads %q", c.ehlo, reads)
		}
		if slices.Contains(c.ehlo, "SMTPUTF8") && (!strings.Contains(a[1], " SMTPUTF8 RET=HDRS ENVID=env+20id+2B+3D1") ||
			!strings.HasSuffix(a[3], "ORCPT=UTF-8;\xc3\xbc\\x{20}ser@\xe4\xbe\x8b.test")) {
			t.Errorf("EHLO %s: commands %q", c.ehlo, a)
		}
		// A NOTIFY go-smtp refuses to send (with DSN): the sequential path
		// reports it as it always has.
		p.both(func(domain string) *queue.Delivery {
			d := c.mk(domain)
			d.DSN[3].Notify = []string{"NEVER", "DELAY"}
			return d
		})
		_, a, _, _, _ = p.piped.record()
		_, b, _, _, _ := p.plain.record()
		fix := func(l []string, domain string) string {
			return strings.ReplaceAll(strings.Join(l[1:], "\n"), domain, "D")
		}
		if fa, fb := fix(a, "piped.test"), fix(b, "plain.test"); fa != fb {
			t.Errorf("EHLO %s: commands differ:\n piped %s\n plain %s", c.ehlo, fa, fb)
		}
		if len(a) < 2 || (slices.Contains(c.ehlo, "DSN") != strings.Contains(a[2], "NOTIFY=SUCCESS,FAILURE ORCPT=RFC822;orig+2Bx+3Dy@example.test")) {
			t.Errorf("EHLO %s: commands %q", c.ehlo, a)
		}
	}
}

// TestPipelineReuse: two messages over one pooled connection are both
// pipelined, with no RSET between them.
func TestPipelineReuse(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	for _, rcpt := range []string{"a", "b"} {
		for _, r := range p.both(msgTo(testMessage, rcpt)) {
			wantStatus(t, r, queue.Sent)
		}
	}
	cmds, _, reads, bodies, conns := p.piped.record()
	if want := "EHLO MAIL RCPT DATA MAIL RCPT DATA"; cmds != want || conns != 1 || len(bodies) != 2 {
		t.Errorf("%q on %d connections, %d messages; want %q on 1, 2", cmds, conns, len(bodies), want)
	}
	n := 0
	for _, r := range reads {
		if strings.HasPrefix(r, "MAIL FROM:") && strings.HasSuffix(r, "\r\nDATA\r\n") {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d reads held MAIL to DATA, want 2: %q", n, reads)
	}
	if p.tr.IdleConns() != 2 {
		t.Errorf("%d idle connections, want 2", p.tr.IdleConns())
	}
}

// TestPipelineGroups: more recipients than one write holds go out in
// groups, each written when its first reply is due; results as without
// pipelining. After a refused MAIL only the first group was sent, and only
// its replies are read.
func TestPipelineGroups(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	var locals []string
	for i := range 250 {
		locals = append(locals, "r"+strconv.Itoa(i))
	}
	p.set(func(m *rawMX) {
		m.rcptReply = map[string]string{"r150@piped.test": "550 5.1.1 no", "r150@plain.test": "550 5.1.1 no"}
	})
	for i, r := range p.both(msgTo(testMessage, locals...)) {
		if i == 150 {
			wantStatus(t, r, queue.Failed)
		} else {
			wantStatus(t, r, queue.Sent)
		}
	}
	p.set(func(m *rawMX) { m.mailReplies = []string{"550 5.7.1 no"} })
	for _, r := range p.both(msgTo(testMessage, locals...)) {
		wantStatus(t, r, queue.Failed)
	}
	for _, r := range p.both(msgTo(testMessage, "z")) {
		wantStatus(t, r, queue.Sent)
	}
	cmds, _, _, bodies, conns := p.piped.record()
	want := "EHLO MAIL" + strings.Repeat(" RCPT", 250) + " DATA MAIL" + strings.Repeat(" RCPT", 99) + " MAIL RCPT DATA"
	if cmds != want || conns != 1 || len(bodies) != 2 {
		t.Errorf("%q on %d connections, %d messages; want %q on 1, 2", cmds, conns, len(bodies), want)
	}
}

// TestPipelineBodyReadError: a queued message that cannot be read to its
// end is never ended with a dot (the server would accept the part sent):
// the connection is dropped, and the recipients deferred, as without
// pipelining.
func TestPipelineBodyReadError(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	res := p.both(func(domain string) *queue.Delivery {
		d := delivery("a@sender.test", domain, "", "a@"+domain)
		d.Open = func() (io.ReadCloser, error) {
			return io.NopCloser(io.MultiReader(strings.NewReader("Subject: x\r\n\r\npart\r\n"), iotest.ErrReader(errors.New("disk on fire")))), nil
		}
		return d
	})
	wantStatus(t, res[0], queue.Deferred)
	if !strings.Contains(res[0].Message, "disk on fire") {
		t.Errorf("%+v", res[0])
	}
	for _, r := range p.both(msgTo(testMessage, "b")) {
		wantStatus(t, r, queue.Sent)
	}
	for _, m := range []*rawMX{p.piped, p.plain} {
		if _, _, _, bodies, conns := m.record(); conns != 2 || len(bodies) != 1 || bodies[0] != strings.ReplaceAll(testMessage, "\r\n.", "\r\n..") {
			t.Errorf("%d connections, messages %q; want 2 connections, 1 message", conns, bodies)
		}
	}
}
