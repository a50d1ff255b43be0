package main

import (
	"fmt"
	"strings"
	"sync"
	"time"
)

// injectionProbe is one hostile command line, with the rest of a normal
// transaction around it. Bare CRs and NULs try to sneak a header line
// ("X-Injected") or a recipient into what inkan stores.
type injectionProbe struct {
	name, helo, mail, rcpt string
}

var injectionProbes = []injectionProbe{
	{"helo-bare-cr", "evil.test\rX-Injected: helo", "", ""},
	{"mail-param-bare-cr", "", "MAIL FROM:<a@abuse.test> ENVID=x\rX-Injected: envid", ""},
	{"mail-param-crlf", "", "MAIL FROM:<a@abuse.test> BODY=8BITMIME\r\nX-Injected: crlf", ""},
	{"rcpt-param-crlf", "", "", "RCPT TO:<victim@abuse.test> NOTIFY=NEVER\r\nX-Injected: crlf"},
	{"rcpt-param-bare-cr", "", "", "RCPT TO:<victim@abuse.test> ORCPT=rfc822;x\rX-Injected: orcpt"},
	{"mail-addr-bare-cr", "", "MAIL FROM:<a\rX-Injected: from@abuse.test>", ""},
	{"rcpt-addr-bare-cr", "", "", "RCPT TO:<victim\rX-Injected: to@abuse.test>"},
	{"mail-nul", "", "MAIL FROM:<a\x00@abuse.test>", ""},
	{"rcpt-nul-second-rcpt", "", "", "RCPT TO:<victim@abuse.test>\x00RCPT TO:<evil@evil.test>"},
	{"helo-nul", "evil\x00.test", "", ""},
	{"mail-long-param", "", "MAIL FROM:<a@abuse.test> X-LONG=" + strings.Repeat("A", 1900), ""},
	{"mail-many-params", "", "MAIL FROM:<a@abuse.test>" + strings.Repeat(" X-P=1", 250), ""},
	{"mail-size-overflow", "", "MAIL FROM:<a@abuse.test> SIZE=999999999999999999999999999", ""},
	{"mail-size-negative", "", "MAIL FROM:<a@abuse.test> SIZE=-1", ""},
	{"mail-long-local-part", "", "MAIL FROM:<" + strings.Repeat("a", 1500) + "@abuse.test>", ""},
	{"rcpt-long-domain", "", "", "RCPT TO:<victim@" + strings.Repeat("d.", 700) + "test>"},
	{"mail-utf8-no-smtputf8", "", "MAIL FROM:<ü@abuse.test>", ""},
	{"mail-bad-utf8", "", "MAIL FROM:<\xff\xfe@abuse.test> SMTPUTF8", ""},
}

// injection runs each probe on its own connection from the trusted
// 127.0.0.1 (so that it reaches the deepest code) and then checks every
// delivered copy for injected header lines and stray recipients.
func (a *abuse) injection(r *result, led *ledger) {
	for _, p := range injectionProbes {
		helo := orDefault(p.helo, "probe.test")
		mail := orDefault(p.mail, "MAIL FROM:<a@abuse.test>")
		rcpt := orDefault(p.rcpt, "RCPT TO:<victim@abuse.test>")
		c, _, err := dial(a.in.relay, dialOpts{})
		if err != nil {
			r.failf("%s: connect: %v", p.name, err)
			continue
		}
		m, body := led.compose("a@abuse.test", []string{"victim@abuse.test"}, 300, "")
		var steps []string
		s := submission{out: outRefused}
		func() {
			defer c.close()
			for i, line := range []string{"EHLO " + helo, mail, rcpt} {
				rep, err := c.cmd(line)
				if i > 0 || rep.code != 250 || p.helo != "" {
					steps = append(steps, firstLine(rep))
				}
				// A CRLF inside makes more than one command: one reply each.
				for range strings.Count(line, "\r\n") {
					extra, err := c.read()
					steps = append(steps, "injected line: "+firstLine(extra))
					if err != nil || extra.class() == 2 {
						r.failf("%s: the injected line got %s (%v), want a refusal", p.name, extra, err)
					}
				}
				if err != nil {
					r.failf("%s: no reply to %q: %v", p.name, clip(line), err)
					s.out = outCut
					return
				}
				if rep.class() != 2 {
					s.reply = rep
					return
				}
			}
			rep, err := c.cmd("DATA")
			if err != nil || rep.code != 354 {
				s.reply = rep
				return
			}
			c.write(body + ".\r\n")
			rep, err = c.read()
			steps = append(steps, "DATA: "+firstLine(rep))
			s.reply, s.stage = rep, "dot"
			switch {
			case err != nil:
				s.out = outUnsure
			case rep.code == 250:
				s.out = outAcked
			}
		}()
		led.record(m, s)
		r.notef("%s: %q", p.name, strings.Join(steps, " | "))
		a.checkAlive(r, "injection probe "+p.name)
	}
	a.tooManyRecipients(r, led)
	a.checkDelivered(r, led, "X-Injected", map[string]bool{"victim@abuse.test": true})
}

// tooManyRecipients: limits.max_recipients (100) is enforced with 452 4.5.3.
func (a *abuse) tooManyRecipients(r *result, led *ledger) {
	c, _, err := dial(a.in.relay, dialOpts{})
	if err != nil {
		r.failf("connect: %v", err)
		return
	}
	defer c.close()
	c.ehlo("probe.test")
	c.cmd("MAIL FROM:<a@abuse.test>")
	ok, over := 0, reply{}
	for i := 0; i < 150; i++ {
		rep, err := c.cmd(fmt.Sprintf("RCPT TO:<many%d@abuse.test>", i))
		if err != nil {
			r.failf("RCPT %d: %v", i+1, err)
			return
		}
		if rep.code == 250 {
			ok++
		} else if over.code == 0 {
			over = rep
		}
	}
	if ok != 100 || over.code != 452 || over.enhanced() != "4.5.3" {
		r.failf("150 RCPTs: %d accepted, then %s; want 100 then 452 4.5.3", ok, over)
	} else {
		r.notef("150 RCPTs: 100 accepted, then %s", over)
	}
	c.cmd("RSET")
}

// checkDelivered scans this row's delivered copies: no header line may
// start with badHeader and every envelope recipient must be in allowed.
func (a *abuse) checkDelivered(r *result, led *ledger, badHeader string, allowed map[string]bool) {
	if _, err := a.in.waitQueueEmpty(30 * time.Second); err != nil {
		r.failf("queue did not drain: %v", err)
	}
	for _, m := range a.sk.messages() {
		run, seq, ok := parseTorture(m.data)
		if !ok || run != led.run {
			continue
		}
		// Bare CR and LF count as line breaks here: some readers split on them.
		lines := strings.FieldsFunc(string(headerOf(m.data)), func(r rune) bool { return r == '\r' || r == '\n' })
		for _, line := range lines {
			if badHeader != "" && strings.HasPrefix(strings.ToLower(line), strings.ToLower(badHeader)) {
				r.failf("seq %d arrived with an injected header line %q", seq, line)
			}
		}
		for _, to := range m.to {
			if allowed != nil && !allowed[strings.ToLower(to)] {
				r.failf("seq %d arrived for an injected recipient <%s>", seq, to)
			}
		}
	}
}

// longLines: over-long command and DATA lines get a clear refusal, and the
// server goes on serving.
func (a *abuse) longLines(r *result, led *ledger) {
	for _, p := range []struct{ name, line string }{
		{"EHLO of 5000 bytes", "EHLO " + strings.Repeat("a", 5000)},
		{"NOOP of 200000 bytes", "NOOP " + strings.Repeat("n", 200000)},
		{"MAIL of 3000 bytes", "MAIL FROM:<" + strings.Repeat("m", 3000) + "@abuse.test>"},
	} {
		r.Attempts++
		c, _, err := dial(a.in.relay, dialOpts{})
		if err != nil {
			r.failf("%s: connect: %v", p.name, err)
			continue
		}
		rep, err := c.cmd(p.line)
		c.close()
		if rep.class() != 5 {
			r.failf("%s: got %s (%v), want a 5xx refusal", p.name, rep, err)
		}
		r.notef("%s: %s", p.name, rep)
		a.checkAlive(r, p.name)
	}
	for _, p := range []struct {
		name string
		size int
	}{{"DATA line of 1500 bytes", 1500}, {"DATA line of 5000 bytes", 5000}, {"DATA line of 300000 bytes", 300000}} {
		m, body := led.composeBody("a@abuse.test", []string{"victim@abuse.test"}, "",
			"short line\r\n"+strings.Repeat("x", p.size)+"\r\nafter\r\n", "")
		s := a.sendRaw(led, m, body)
		switch {
		case s.out == outCut && s.reply.code == 354:
			// go-smtp answers 500 and hangs up with input unread; the kernel
			// then resets the connection and the reply can be lost with it.
			r.notef("%s: connection reset during DATA (the server refused and hung up; its reply was lost in the reset)", p.name)
		case s.out != outAcked && s.out != outRefused:
			r.failf("%s: no clear answer: %s (%v)", p.name, s.reply, s.err)
		case s.out == outRefused && s.reply.class() != 5:
			r.failf("%s: got %s, want 250 or a 5xx refusal", p.name, s.reply)
		default:
			r.notef("%s: %s", p.name, s.reply)
		}
		a.checkAlive(r, p.name)
	}
	a.checkServes(r)
}

// checkServes: a fresh connection still gets a greeting and EHLO.
func (a *abuse) checkServes(r *result) {
	c, g, err := dial(a.in.relay, dialOpts{})
	if err != nil {
		r.failf("server no longer serves: %v %s", err, g)
		return
	}
	defer c.close()
	if _, rep, err := c.ehlo("after.test"); err != nil {
		r.failf("server no longer answers EHLO: %s %v", rep, err)
	}
}

// sendRaw submits a prepared message on its own connection from 127.0.0.1,
// watching for an early refusal while it sends.
func (a *abuse) sendRaw(led *ledger, m *msgRec, body string) submission {
	return a.sendRawWith(led, m, body, &submitHooks{earlyReply: true})
}

func (a *abuse) sendRawWith(led *ledger, m *msgRec, body string, hooks *submitHooks) submission {
	c, _, err := dial(a.in.relay, dialOpts{})
	if err != nil {
		s := submission{out: outCut, err: err}
		led.record(m, s)
		return s
	}
	defer c.close()
	c.deadline(60 * time.Second)
	c.ehlo("probe.test")
	s := c.submit(m.from, m.to, body, hooks)
	led.record(m, s)
	return s
}

// Separators that end DATA in a lax parser, never in a correct one.
var smuggleSeps = []struct{ name, sep string }{
	{"LF.LF", "\n.\n"},
	{"CR.CR", "\r.\r"},
	{"CRLF.LF", "\r\n.\n"},
	{"LF.CRLF", "\n.\r\n"},
	{"CR.CRLF", "\r.\r\n"},
	{"CRLF.CR", "\r\n.\r"},
}

// smuggling sends, in one write, a message whose body holds a fake end of
// data and a second transaction. Exactly one message may be queued, it must
// hold the smuggled commands as text, and the next hop (which inkan
// dot-stuffs for) must also see one message.
func (a *abuse) smuggling(r *result, led *ledger) {
	for _, v := range smuggleSeps {
		smuggled := "MAIL FROM:<smuggled@evil.test>\r\nRCPT TO:<smuggled-victim@evil.test>\r\nDATA\r\nX-Smuggled: yes\r\n\r\nsmuggled body\r\n"
		body := "line one" + v.sep + smuggled
		// What arrives depends on dot rules as well as line endings: checked
		// below by content, not byte for byte.
		m, msg := led.composeBody("m@abuse.test", []string{"victim@abuse.test"}, "", body, "")
		c, _, err := dial(a.in.relay, dialOpts{})
		if err != nil {
			r.failf("%s: connect: %v", v.name, err)
			continue
		}
		c.write("EHLO smuggler.test\r\nMAIL FROM:<m@abuse.test>\r\nRCPT TO:<victim@abuse.test>\r\nDATA\r\n" + msg + ".\r\nQUIT\r\n")
		replies := c.readAll(3 * time.Second)
		c.close()
		queued := 0
		s := submission{out: outRefused, stage: "dot"}
		for _, rep := range replies {
			if rep.code == 250 && queuedRE.MatchString(rep.text) {
				queued++
				s.out, s.reply = outAcked, rep
			}
		}
		led.record(m, s)
		if queued != 1 {
			r.failf("%s: %d messages queued from one DATA, want exactly 1 (replies: %v)", v.name, queued, replies)
		}
		a.checkAlive(r, "smuggling "+v.name)
	}
	a.checkDelivered(r, led, "X-Smuggled", map[string]bool{"victim@abuse.test": true})
	for _, m := range a.sk.messages() {
		if strings.EqualFold(m.from, "smuggled@evil.test") {
			r.failf("the next hop received the smuggled transaction (from <%s>)", m.from)
		}
		if run, seq, ok := parseTorture(m.data); ok && run == led.run && !strings.Contains(string(m.data), "MAIL FROM:<smuggled@evil.test>") {
			r.failf("seq %d: the smuggled commands are not inside the delivered message", seq)
		}
	}
	r.notef("%d separators (%s): one message each, smuggled commands kept as body text, dot-stuffed to the next hop",
		len(smuggleSeps), smuggleNames())
}

func smuggleNames() string {
	var n []string
	for _, v := range smuggleSeps {
		n = append(n, v.name)
	}
	return strings.Join(n, ", ")
}

// nulBytes: NULs in the header and body get a clear answer; if accepted,
// the message arrives unchanged.
func (a *abuse) nulBytes(r *result, led *ledger) {
	for _, p := range []struct{ name, hdr, body string }{
		{"NUL in body", "", "before\x00after\r\n\x00\x00\x00\r\n"},
		{"NUL in header", "X-Nul: a\x00b\r\n", "plain body\r\n"},
	} {
		m, msg := led.composeBody("a@abuse.test", []string{"victim@abuse.test"}, p.hdr, p.body, p.body)
		s := a.sendRaw(led, m, msg)
		if s.out != outAcked && (s.out != outRefused || s.reply.class() == 2) {
			r.failf("%s: no clear answer: %s (%v)", p.name, s.reply, s.err)
		}
		r.notef("%s: %s", p.name, s.reply)
		a.checkAlive(r, p.name)
	}
}

// bigHeader: headers just under limits.max_header_size (1 MB) are accepted
// and arrive intact, one over it is refused with a 5xx; and a long folded
// field must not cost much more than the same bytes in short fields (work
// that grows with the square of the size is a CPU amplifier).
func (a *abuse) bigHeader(r *result, led *ledger) {
	var took [2]time.Duration
	for i, p := range []struct{ name, hdr string }{
		{"900 kB header in one folded field", foldedHeader("X-Big", 900_000)},
		{"900 kB header in short fields", manyFields(900_000)},
	} {
		m, msg := led.composeBody("a@abuse.test", []string{"victim@abuse.test"}, p.hdr, "body\r\n", "body\r\n")
		start := time.Now()
		s := a.sendRawWith(led, m, msg, nil)
		took[i] = time.Since(start)
		if s.out != outAcked {
			r.failf("%s: got %s (%v), want 250 (under max_header_size)", p.name, s.reply, s.err)
		}
		r.notef("%s: %s in %s", p.name, firstLine(s.reply), took[i].Round(10*time.Millisecond))
		a.checkAlive(r, p.name)
	}
	if took[0] > time.Second && took[0] > 10*took[1] {
		r.failf("accepting a 900 kB folded header field took %s, %.0fx the %s for the same bytes in short fields: "+
			"the work grows with the square of the field size (a CPU amplifier for any client allowed to send)",
			took[0].Round(10*time.Millisecond), float64(took[0])/float64(took[1]), took[1].Round(10*time.Millisecond))
	}
	m, msg := led.composeBody("a@abuse.test", []string{"victim@abuse.test"}, foldedHeader("X-Big", 1<<20), "body\r\n", "body\r\n")
	s := a.sendRaw(led, m, msg)
	switch {
	case s.out == outCut && s.reply.code == 354:
		r.notef("1 MiB header: connection reset during DATA (refused and hung up; the reply was lost in the reset)")
	case s.reply.class() != 5:
		r.failf("1 MiB header: got %s (%v), want a 5xx refusal (over max_header_size)", s.reply, s.err)
	default:
		r.notef("1 MiB header: %s", s.reply)
	}
	a.checkAlive(r, "the 1 MiB header")
}

// manyFields is about size bytes of short header fields.
func manyFields(size int) string {
	var b strings.Builder
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "X-F%d: %s\r\n", i, strings.Repeat("f", 64))
	}
	return b.String()
}

// foldedHeader is a field of about size bytes in folded lines of 78.
func foldedHeader(name string, size int) string {
	var b strings.Builder
	b.WriteString(name + ": start")
	for b.Len() < size {
		b.WriteString("\r\n\t" + strings.Repeat("h", 76))
	}
	b.WriteString("\r\n")
	return b.String()
}

// nestedMIME: 1000 levels of multipart; accepted and delivered intact, or
// clearly refused.
func (a *abuse) nestedMIME(r *result, led *ledger) {
	const depth = 1000
	var b strings.Builder
	for i := 1; i < depth; i++ {
		fmt.Fprintf(&b, "--b%d\r\nContent-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n", i-1, i)
	}
	fmt.Fprintf(&b, "--b%d\r\nContent-Type: text/plain\r\n\r\nthe bottom\r\n", depth-1)
	for i := depth - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%d--\r\n", i)
	}
	hdr := "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b0\"\r\n"
	m, msg := led.composeBody("a@abuse.test", []string{"victim@abuse.test"}, hdr, b.String(), b.String())
	s := a.sendRaw(led, m, msg)
	if s.out != outAcked && (s.out != outRefused || s.reply.class() == 2) {
		r.failf("%d-level MIME: no clear answer: %s (%v)", depth, s.reply, s.err)
	}
	r.notef("%d nested multiparts (%d kB): %s", depth, len(msg)/1024, s.reply)
	a.checkAlive(r, "nested MIME")
}

// connFlood: one IP gets limits.max_connections_per_ip (20) connections,
// then 421 4.7.0; another IP still gets in.
func (a *abuse) connFlood(r *result, led *ledger) {
	const limit, tries = 20, 30
	var conns []*client
	var mu sync.Mutex
	greeted, refused := 0, 0
	var other reply
	for i := 0; i < tries; i++ {
		r.Attempts++
		c, g, err := dial(a.in.relay, dialOpts{local: "127.0.0.6"})
		switch {
		case err == nil && g.code == 220:
			greeted++
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		case g.code == 421 && g.enhanced() == "4.7.0":
			refused++
		default:
			r.failf("connection %d from 127.0.0.6: %s %v", i+1, g, err)
		}
	}
	if c, g, err := dial(a.in.relay, dialOpts{local: "127.0.0.7"}); err == nil {
		other = g
		c.close()
	} else {
		r.failf("another IP could not connect during the flood: %v %s", err, g)
	}
	for _, c := range conns {
		c.close()
	}
	if greeted != limit || refused != tries-limit {
		r.failf("%d connections from one IP: %d greeted, %d refused with 421 4.7.0; want %d and %d", tries, greeted, refused, limit, tries-limit)
	}
	if other.code != 220 {
		r.failf("another IP during the flood got %s, want 220", other)
	}
	r.notef("%d connections from 127.0.0.6: %d greeted, %d got 421 4.7.0; 127.0.0.7 meanwhile: %d", tries, greeted, refused, other.code)
	a.checkAlive(r, "the connection flood")
	time.Sleep(200 * time.Millisecond) // let the server count the closed ones down
	a.checkServes(r)
}

// firstLine is the reply's code and first line.
func firstLine(r reply) string {
	line, _, _ := strings.Cut(r.String(), "\n")
	return line
}

func clip(s string) string {
	if len(s) > 60 {
		return fmt.Sprintf("%s... (%d bytes)", s[:60], len(s))
	}
	return s
}
