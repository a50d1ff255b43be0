package main

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// byteProbe is a message with bytes that verifiers read differently from
// the signer (issue 20): refused with 554 5.6.0, or, where a repair is
// safe, accepted with want as the body that must arrive.
type byteProbe struct {
	name, hdr, body string
	want            string // "": must be refused
}

var byteProbes = []byteProbe{
	{name: "NUL in the body", body: "before\x00after\r\n"},
	{name: "NUL at the end of a 96 kB body", body: strings.Repeat("long body line\r\n", 6000) + "\x00\r\n"},
	{name: "NUL in a header value", hdr: "X-Note: a\x00b\r\n", body: "plain body\r\n"},
	{name: "bare CR inside a header value", hdr: "X-Note: abc\rdef\r\n", body: "plain body\r\n"},
	{name: "bare CR smuggling a header line", hdr: "X-Note: abc\rBcc: victim@evil.test\r\n", body: "plain body\r\n"},
	{name: "CR before the CRLF of a header line", hdr: "X-Note: x\r\r\n", body: "plain body\r\n"},
	{name: "bare CR in a folded continuation", hdr: "X-Note: a\r\n b\rc\r\n", body: "plain body\r\n"},
	{name: "bare CR in the body", body: "bare\rCR in the body\r\n", want: "bare\r\nCR in the body\r\n"},
	{name: "bare LF in the body", body: "bare\nLF in the body\r\n", want: "bare\r\nLF in the body\r\n"},
	{name: "CR CR LF in the body", body: "x\r\r\ny\r\n", want: "x\r\n\r\ny\r\n"},
}

// unverifiableBytes: alice sends each byte probe. The refused ones must get
// 554 5.6.0 and leave the queue empty; the repaired ones must arrive with
// the repaired body and a DKIM signature (d=example.com) that verifies.
func (a *attack) unverifiableBytes(r *result, led *ledger) {
	const alice = "alice@example.com"
	a.drain(r, a.in)
	snd := a.sender("alice", "127.0.0.23")
	defer snd.close()
	repaired := map[int]string{}
	var refusedN int
	for _, refuse := range []bool{true, false} {
		for _, p := range byteProbes {
			if (p.want == "") != refuse {
				continue
			}
			m, msg := led.composeBody(alice, []string{"rcpt@elsewhere.test"}, p.hdr, p.body, p.want)
			s := snd.send(led, m, alice, msg)
			switch {
			case refuse && (s.reply.code != 554 || s.reply.enhanced() != "5.6.0"):
				r.failf("%s: %s at %s (%v), want 554 5.6.0", p.name, s.reply, s.stage, s.err)
			case refuse:
				refusedN++
			case s.out != outAcked:
				r.failf("%s: %s at %s (%v), want 250 with the line ends repaired", p.name, s.reply, s.stage, s.err)
			default:
				repaired[m.seq] = p.name
			}
			a.checkAlive(r, a.in, p.name)
		}
		if refuse {
			a.queueGrew(r, a.in, "after the probes that must be refused")
		}
	}
	a.wait(r, led, a.in)
	signed := 0
	for seq, name := range repaired {
		for _, m := range a.copies(led)[seq] {
			domains, problems := a.verifyDKIM(m.data)
			for _, p := range problems {
				r.failf("%s: %s", name, p)
			}
			if !slices.Contains(domains, "example.com") {
				r.failf("%s: delivered with d=%v, want a verified d=example.com signature", name, domains)
			} else if len(problems) == 0 {
				signed++
			}
		}
	}
	r.notef("%d probes refused with 554 5.6.0, queue empty after them; %d repaired to CRLF, delivered with the repaired body, %d with a DKIM signature that verifies",
		refusedN, len(repaired), signed)
}

// receivedFields is n Received fields, each a hop of a loop.
func receivedFields(n int, name string) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "%s: from hop%d.loop.test by hop%d.loop.test with ESMTP id L%d;\r\n\tSat, 5 Dec 2026 12:00:%02d +0000\r\n", name, i, i+1, i, i%60)
	}
	return b.String()
}

// mailLoop: a message that already went round 50 times is refused with
// 554 5.4.6 and not queued, however its Received fields are spelled; one
// with 49 is accepted and delivered. Then two real loops: a route to this
// inkan's own listener must bounce at once; and with a second inkan, each
// routing loop.test to the other, alice's message must come back to her as
// a bounce after at most 50 hops and leave no copy in either queue.
func (a *attack) mailLoop(r *result, led *ledger) {
	const alice = "alice@example.com"
	to := []string{"rcpt@elsewhere.test"}
	a.drain(r, a.in)
	snd := a.sender("alice", "127.0.0.24")
	defer snd.close()
	probes := []struct {
		name, hdr string
		trusted   bool // through the relay port from the trusted 127.0.0.1, not as alice
	}{
		{"50 Received fields", receivedFields(attackMaxHops, "Received"), false},
		{"50 Received fields from a trusted network", receivedFields(attackMaxHops, "Received"), true},
		{"50 Received fields spelled RECEIVED and received", receivedFields(25, "RECEIVED") + receivedFields(25, "received"), false},
		{"200 Received fields", receivedFields(200, "Received"), false},
	}
	for _, p := range probes {
		m, msg := led.composeBody(alice, to, p.hdr, "looping body\r\n", "looping body\r\n")
		var s submission
		if p.trusted {
			s = a.sendTrusted(led, m, alice, msg)
		} else {
			s = snd.send(led, m, alice, msg)
		}
		if s.reply.code != 554 || s.reply.enhanced() != "5.4.6" {
			r.failf("%s: %s at %s (%v), want 554 5.4.6", p.name, s.reply, s.stage, s.err)
		}
	}
	a.queueGrew(r, a.in, "after the looping messages")
	m, msg := led.composeBody(alice, to, receivedFields(attackMaxHops-1, "Received"), "long path\r\n", "long path\r\n")
	if s := snd.send(led, m, alice, msg); s.out != outAcked {
		r.failf("%d Received fields: %s, want 250 (the limit is %d)", attackMaxHops-1, s.reply, attackMaxHops)
	}
	a.selfLoop(r, led)
	a.realLoop(r, led)
	r.notef("%d messages with %d or more Received fields refused with 554 5.4.6 and not queued; %d fields accepted and delivered",
		len(probes), attackMaxHops, attackMaxHops-1)
}

// sendTrusted submits through the relay port from 127.0.0.1, which the
// inkan trusts (no AUTH).
func (a *attack) sendTrusted(led *ledger, m *msgRec, from, msg string) submission {
	c, _, err := dial(a.in.relay, dialOpts{})
	if err != nil {
		s := submission{out: outCut, err: err}
		led.record(m, s)
		return s
	}
	defer c.close()
	c.deadline(60 * time.Second)
	c.ehlo("trusted.test")
	s := c.submit(from, m.to, msg, nil)
	led.record(m, s)
	return s
}

// selfLoop: self.test is routed to this inkan's own relay listener. The
// message must bounce at once ("loops back to myself"), without going round.
func (a *attack) selfLoop(r *result, led *ledger) {
	const alice, victim = "alice@example.com", "victim@self.test"
	snd := a.sender("alice", "127.0.0.24")
	defer snd.close()
	m, msg := led.compose(alice, []string{victim}, 500, "")
	if s := snd.send(led, m, alice, msg); s.out != outAcked {
		r.failf("message to a next hop that is this server: %s, want 250", s.reply)
		return
	}
	b, took, ok := a.waitBounce(led, m.seq, victim)
	switch {
	case !ok:
		r.failf("no bounce for the message to a next hop that is this server after %s", took)
	case !strings.HasPrefix(b.status, "5."):
		r.failf("the message to a next hop that is this server bounced with status %q (%s), want 5.x.x", b.status, b.diag)
	default:
		r.notef("next hop at this server's own relay address: bounced after %s, status %s, %q", took, b.status, b.diag)
	}
}

// waitBounce waits up to a minute for the DSN of one recipient.
func (a *attack) waitBounce(led *ledger, seq int, rcpt string) (dsnRcpt, time.Duration, bool) {
	start := time.Now()
	for time.Since(start) < time.Minute {
		if b, ok := bounceOf(led, seq, rcpt); ok {
			return b, time.Since(start).Round(100 * time.Millisecond), true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return dsnRcpt{}, time.Since(start).Round(100 * time.Millisecond), false
}

// bounceOf is what a DSN said about rcpt of message seq, if one came.
func bounceOf(led *ledger, seq int, rcpt string) (dsnRcpt, bool) {
	led.mu.Lock()
	defer led.mu.Unlock()
	m := led.msgs[seq]
	if m == nil {
		return dsnRcpt{}, false
	}
	b, ok := m.bounces[strings.ToLower(rcpt)]
	return b, ok
}

// realLoop starts the second inkan and sends alice's message round.
func (a *attack) realLoop(r *result, led *ledger) {
	const alice, victim = "alice@example.com", "victim@loop.test"
	if err := a.loop.start(); err != nil {
		r.crashed("start the second inkan: %v", err)
		return
	}
	defer a.loop.stop(r)
	snd := a.sender("alice", "127.0.0.25")
	defer snd.close()
	m, msg := led.compose(alice, []string{victim}, 500, "")
	if s := snd.send(led, m, alice, msg); s.out != outAcked {
		r.failf("message into the loop: %s, want 250", s.reply)
		return
	}
	b, took, ok := a.waitBounce(led, m.seq, victim)
	for _, in := range []*inkan{a.in, a.loop} {
		if ids, err := in.waitQueueEmpty(30 * time.Second); err != nil {
			r.failf("%s still holds the looping message: %v (%s)", in.name, err, strings.Join(ids, " "))
		}
	}
	if !ok {
		r.failf("no bounce for the looping message after %s", took)
		return
	}
	if !strings.HasPrefix(b.status, "5.") {
		r.failf("the looping message bounced with status %q (%s), want a permanent 5.x.x", b.status, b.diag)
	}
	hops := 0
	for _, s := range a.sk.messages() {
		if d, err := parseDSN(s.data); s.from == "" && err == nil && d.run == led.run && d.seq == m.seq {
			hops = max(hops, strings.Count(strings.ToLower(string(s.data)), "\nreceived:"))
		}
	}
	r.notef("a real loop between two inkans (loop.test routed to each other): bounced to alice after %s, status %s, %q, %d Received fields in the returned header; both queues empty",
		took, b.status, b.diag, hops)
}

// quota: carol sends past quotas.user.messages_per_hour, a session per
// message from two addresses; every message past the quota gets 451 4.7.1 at MAIL,
// and the ones before it are all delivered. Then dave, with one message
// left, sends 12 at once: the quota is checked at MAIL and counted at
// acceptance, so parallel transactions may overshoot it (auth.Quotas says
// so); the overshoot is reported, and the next message is refused again.
func (a *attack) quota(r *result, led *ledger) {
	const carol = "carol@example.com"
	to := []string{"rcpt@elsewhere.test"}
	const extra = 3
	var first451 reply
	acked := 0
	for i := range attackQuota + extra {
		ip := "127.0.0.50"
		if i >= 3 {
			ip = "127.0.0.51" // a new session from another address counts against the same user
		}
		snd := a.sender("carol", ip)
		m, msg := led.compose(carol, to, 500, "")
		s := snd.send(led, m, carol, msg)
		snd.close()
		switch {
		case i < attackQuota && s.out != outAcked:
			r.failf("carol's message %d (quota %d): %s at %s, want 250", i+1, attackQuota, s.reply, s.stage)
		case i < attackQuota:
			acked++
		case s.reply.code != 451 || s.reply.enhanced() != "4.7.1" || s.stage != "MAIL" || !strings.Contains(s.reply.text, "messages per hour"):
			r.failf("carol's message %d (quota %d): %s at %s, want 451 4.7.1 at MAIL naming the hourly quota", i+1, attackQuota, s.reply, s.stage)
		case first451.code == 0:
			first451 = s.reply
		}
	}
	r.notef("carol: %d accepted, then %d× %s", acked, extra, firstLine(first451))
	a.quotaBurst(r, led)
}

// quotaBurst: dave uses all but one message of his quota, then sends 12 at
// once on sessions opened beforehand.
func (a *attack) quotaBurst(r *result, led *ledger) {
	const dave, n = "dave@example.com", 12
	to := []string{"rcpt@elsewhere.test"}
	snd := a.sender("dave", "127.0.0.52")
	for i := range attackQuota - 1 {
		m, msg := led.compose(dave, to, 500, "")
		if s := snd.send(led, m, dave, msg); s.out != outAcked {
			r.failf("dave's message %d: %s, want 250", i+1, s.reply)
		}
	}
	snd.close()
	var clients []*client
	for range n {
		c, rep, err := a.login("127.0.0.53", "dave", a.pass["dave"])
		if err != nil || rep.code != 235 {
			r.failf("dave's parallel session: %s %v", rep, err)
			if c != nil {
				c.close()
			}
			continue
		}
		clients = append(clients, c)
	}
	subs := make([]submission, len(clients))
	var wg sync.WaitGroup
	gun := make(chan struct{})
	for i, c := range clients {
		m, msg := led.compose(dave, to, 500, "")
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.close()
			<-gun
			subs[i] = c.submit(dave, m.to, msg, nil)
			led.record(m, subs[i])
		}()
	}
	close(gun)
	wg.Wait()
	acked, refused := 0, 0
	for _, s := range subs {
		switch {
		case s.out == outAcked:
			acked++
		case s.reply.code == 451 && s.reply.enhanced() == "4.7.1":
			refused++
		default:
			r.failf("dave's parallel message: %s at %s (%v), want 250 or 451 4.7.1", s.reply, s.stage, s.err)
		}
	}
	if acked < 1 {
		r.failf("dave had 1 message left in his quota and none of %d parallel ones was accepted", len(subs))
	}
	snd = a.sender("dave", "127.0.0.52")
	defer snd.close()
	m, msg := led.compose(dave, to, 500, "")
	after := snd.send(led, m, dave, msg)
	if after.reply.code != 451 || after.reply.enhanced() != "4.7.1" {
		r.failf("dave after the burst: %s, want 451 4.7.1", after.reply)
	}
	r.notef("dave with 1 message left sent %d at once: %d accepted (%d over quotas.user.messages_per_hour=%d: checked at MAIL, counted at acceptance), %d refused with 451 4.7.1; the next one: %s",
		len(subs), acked, max(0, acked-1), attackQuota, refused, firstLine(after.reply))
}

// unqualifiedRelay: addresses without a domain, which a lax relay
// qualifies with its own domain and then treats as local. From an
// untrusted address nothing may pass MAIL or RCPT on any listener; trusted
// and authenticated clients get 5xx for an unqualified sender or recipient
// (inkan has no local delivery to qualify them for). Nothing is queued;
// alice's ordinary message is delivered.
func (a *attack) unqualifiedRelay(r *result, led *ledger) {
	a.drain(r, a.in)
	ls := []listener{
		{"relay", a.in.relay, false, false},
		{"submission", a.in.sub, false, false},
		{"submission+STARTTLS", a.in.sub, false, true},
		{"smtps", a.in.smtps, true, false},
	}
	untrusted := []struct{ from, to string }{
		{"attacker", "victim"},
		{"", "victim"},
		{"alice", "victim@evil.test"},
		{"postmaster", "victim@evil.test"},
		{"attacker@evil.test", "victim"},
		{"attacker@evil.test", "postmaster"},
	}
	probes := 0
	for _, l := range ls {
		for _, t := range untrusted {
			probes++
			c, _, err := openAs(l, "127.0.0.60")
			if err != nil {
				r.failf("%v", err)
				continue
			}
			a.rawProbe(r, led, c, l.name+" untrusted", t.from, t.to)
			c.close()
		}
	}
	// Authenticated (alice): the envelope must name domains. Trusted
	// (127.0.0.1, relay port): a malformed path is refused; a bare local
	// part is completed with the origin domain (issue 23, as Postfix's
	// myorigin does for its own network) and delivered there only.
	for _, t := range []struct{ from, to string }{{"alice", "victim@evil.test"}, {"alice@example.com", "victim"}, {"alice@example.com", "victim@"}} {
		probes++
		if c, _, err := dial(a.in.relay, dialOpts{}); err == nil {
			c.ehlo("trusted.test")
			if t.to == "victim" {
				a.completedProbe(r, led, c, t.from, t.to, t.to+"@"+originDomain)
			} else {
				a.rawProbe(r, led, c, "relay trusted", t.from, t.to)
			}
			c.close()
		}
		probes++
		if c, rep, err := a.login("127.0.0.61", "alice", a.pass["alice"]); err == nil && rep.code == 235 {
			a.rawProbe(r, led, c, "smtps as alice", t.from, t.to)
			c.close()
		} else {
			r.failf("alice's login: %s %v", rep, err)
		}
	}
	a.wait(r, led, a.in)
	a.queueGrew(r, a.in, "after the unqualified probes")
	a.sendAs(r, led, "alice", "127.0.0.61", "alice to a qualified recipient")
	r.notef("%d probes with unqualified senders or recipients (untrusted on 4 listeners, trusted, authenticated): none but the trusted client's bare recipient reached DATA, and that one went to the origin domain", probes)
}

// originDomain is the domain inkan completes bare addresses with: the
// parent of the harness's hostname (relay.torture.test).
const originDomain = "torture.test"

// completedProbe sends a trusted client's message to a bare recipient,
// which must be accepted and booked as completed (want): the ledger then
// fails the row if it is delivered anywhere else, or not at all.
func (a *attack) completedProbe(r *result, led *ledger, c *client, from, to, want string) {
	c.deadline(30 * time.Second)
	m, msg := led.compose(from, []string{want}, 300, "")
	rm, _ := c.cmd("MAIL FROM:<" + from + ">")
	rr, _ := c.cmd("RCPT TO:<" + to + ">")
	if rm.code != 250 || rr.code != 250 {
		r.failf("relay trusted: MAIL FROM:<%s> %s, RCPT TO:<%s> %s: want both accepted, the recipient completed as %s", from, firstLine(rm), to, firstLine(rr), want)
		led.record(m, submission{out: outRefused, stage: "RCPT", reply: rr})
		c.cmd("RSET")
		return
	}
	rd, _ := c.cmd("DATA")
	s := submission{out: outRefused, stage: "DATA", reply: rd}
	if rd.code == 354 {
		c.write(msg + ".\r\n")
		rep, err := c.read()
		s = submission{out: outRefused, stage: "dot", reply: rep}
		switch {
		case rep.code == 250:
			s.out = outAcked
		case err != nil:
			s.out = outUnsure
		}
	}
	if s.out != outAcked {
		r.failf("relay trusted: message to the bare <%s>: %s, want 250", to, s.reply)
	}
	led.record(m, s)
	c.cmd("RSET")
	r.notef("relay trusted: RCPT TO:<%s> %s; delivered as %s", to, firstLine(rr), want)
}

// rawProbe runs MAIL, RCPT, DATA on an open session; MAIL or RCPT must be
// refused with 5xx, or for the untrusted client with 530/554 as its
// listener says. Whatever got through DATA is booked in the ledger.
func (a *attack) rawProbe(r *result, led *ledger, c *client, where, from, to string) {
	c.deadline(30 * time.Second)
	m, msg := led.compose(orDefault(from, "null@evil.test"), []string{to}, 300, "")
	rm, _ := c.cmd("MAIL FROM:<" + from + ">")
	rr, _ := c.cmd("RCPT TO:<" + to + ">")
	rd, _ := c.cmd("DATA")
	s := submission{out: outRefused, stage: "DATA", reply: rd}
	if rm.class() == 2 && rr.class() == 2 {
		r.failf("%s: MAIL FROM:<%s> %s, RCPT TO:<%s> %s: both accepted", where, from, firstLine(rm), to, firstLine(rr))
	}
	for _, rep := range []reply{rm, rr} {
		if rep.class() != 2 && rep.class() != 5 {
			r.failf("%s: MAIL FROM:<%s> RCPT TO:<%s>: %s, want a permanent refusal", where, from, to, rep)
		}
	}
	if rd.code == 354 {
		c.write(msg + ".\r\n")
		rep, err := c.read()
		s = submission{out: outRefused, stage: "dot", reply: rep}
		if rep.code == 250 {
			s.out = outAcked
		} else if err != nil {
			s.out = outUnsure
		}
		r.failf("%s: DATA for MAIL FROM:<%s> RCPT TO:<%s> reached 354, then %s", where, from, to, rep)
	}
	led.record(m, s)
	c.cmd("RSET")
}
