package main

import (
	"encoding/base64"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// abuse is the shared inkan of the abuse rows: only 127.0.0.1 is trusted,
// one user exists, AUTH locks out after 3 failures, and whatever it accepts
// goes to a loopback sink.
type abuse struct {
	h    *harness
	in   *inkan
	sk   *sink
	user string
	pass string
}

const abuseMaxFailures = 3

// abuseRow is one group of probes and its report row.
type abuseRow struct {
	name string
	run  func(a *abuse, r *result, led *ledger)
}

var abuseRows = []abuseRow{
	{"open-relay", (*abuse).openRelay},
	{"auth-bruteforce", (*abuse).bruteForce},
	{"auth-plaintext", (*abuse).plainAuth},
	{"injection", (*abuse).injection},
	{"long-lines", (*abuse).longLines},
	{"smuggling", (*abuse).smuggling},
	{"nul-bytes", (*abuse).nulBytes},
	{"big-header", (*abuse).bigHeader},
	{"nested-mime", (*abuse).nestedMIME},
	{"conn-flood", (*abuse).connFlood},
}

func runAbuse(h *harness) {
	a := &abuse{h: h, user: "alice@abuse.test", pass: "Abuse-Pass-" + randomToken(12)}
	h.addSecret("abuse user password", a.pass)
	setup := h.row("abuse/setup")
	if !a.setup(setup) {
		setup.end()
		return
	}
	setup.end()
	defer func() {
		a.in.stop(setup)
		if setup.passed() {
			// Only shown when something is wrong.
			h.dropRow(setup)
		}
	}()
	for _, ar := range abuseRows {
		name := "abuse/" + ar.name
		if !h.wants(name) {
			continue
		}
		r := h.row(name)
		led := newLedger(fmt.Sprintf("abuse-%s-%s", ar.name, randomToken(4)))
		a.sk.subscribe(func(m sunk) { led.delivered(m.to, m.data) })
		ar.run(a, r, led)
		// Everything accepted must arrive before the row is tallied.
		if _, err := a.in.waitQueueEmpty(30 * time.Second); err != nil {
			r.failf("queue did not drain: %v", err)
		}
		waitLedger(led, 10*time.Second)
		t := led.tally()
		r.tally(t)
		if t.duplicated > 0 {
			r.failf("%d duplicate deliveries", t.duplicated)
		}
		a.checkAlive(r, "the row")
		r.end()
	}
}

func (a *abuse) setup(r *result) bool {
	h := a.h
	var err error
	if a.sk, err = h.newSink("abuse", nil, nil); err != nil {
		r.failf("%v", err)
		return false
	}
	a.in, err = h.newInkan("abuse", func(cfg map[string]any) {
		routeAllTo(cfg, a.sk.addr)
		set(cfg, "auth.users_file", "") // set below, once the folder exists
		set(cfg, "auth.max_failures", abuseMaxFailures)
		set(cfg, "auth.lockout", "2m")
		set(cfg, "log.level", "debug")
	})
	if err != nil {
		r.failf("%v", err)
		return false
	}
	set(a.in.cfg, "auth.users_file", filepath.Join(a.in.dir, "users"))
	if err := a.in.writeConfig(); err != nil {
		r.failf("%v", err)
		return false
	}
	if out, code := a.in.cliInput(a.pass+"\n", "user", "add", a.user); code != 0 {
		r.failf("inkan user add: exit %d: %s", code, out)
		return false
	}
	if err := a.in.start(); err != nil {
		r.crashed("start: %v", err)
		return false
	}
	return true
}

// checkAlive checks the PID after a probe; a dead server is a crash, and
// is restarted so the next probes still run.
func (a *abuse) checkAlive(r *result, after string) {
	if a.in.alive() {
		return
	}
	r.crashed("inkan (pid %d) died after %s", a.in.pid(), after)
	a.in.collect(r)
	if err := a.in.start(); err != nil {
		r.failf("restart after the crash: %v", err)
	}
}

// listener names a way in: address, implicit TLS, STARTTLS first.
type listener struct {
	name     string
	addr     string
	implicit bool
	starttls bool
}

func (a *abuse) listeners() []listener {
	return []listener{
		{"relay", a.in.relay, false, false},
		{"submission", a.in.sub, false, false},
		{"submission+STARTTLS", a.in.sub, false, true},
		{"smtps", a.in.smtps, true, false},
	}
}

func (a *abuse) open(l listener, ip string) (*client, map[string]string, error) { return openAs(l, ip) }

// openAs connects from ip to l and says EHLO (and STARTTLS when l wants it).
func openAs(l listener, ip string) (*client, map[string]string, error) {
	c, g, err := dial(l.addr, dialOpts{local: ip, implicitTLS: l.implicit})
	if err != nil {
		return nil, nil, fmt.Errorf("connect %s from %s: %v %s", l.name, ip, err, g)
	}
	ext, rep, err := c.ehlo("probe.evil.test")
	if err == nil && l.starttls {
		if rep, err = c.startTLS(); err == nil {
			ext, rep, err = c.ehlo("probe.evil.test")
		}
	}
	if err != nil {
		c.close()
		return nil, nil, fmt.Errorf("%s from %s: %v %s", l.name, ip, err, rep)
	}
	return c, ext, nil
}

// Open-relay tricks: recipients in other domains written every way that
// has fooled a relay, and senders that pretend to be local.
var relayTricks = []struct{ from, to string }{
	{"attacker@evil.test", "victim@evil.test"},
	{"attacker@evil.test", "victim%evil.test@abuse.test"},
	{"attacker@evil.test", "@abuse.test,@relay.torture.test:victim@evil.test"},
	{"attacker@evil.test", "@abuse.test:victim@evil.test"},
	{"attacker@evil.test", `"victim@evil.test"@abuse.test`},
	{"attacker@evil.test", `"victim%evil.test"@relay.torture.test`},
	{"attacker@evil.test", "evil.test!victim@abuse.test"},
	{"attacker@evil.test", "evil.test!victim"},
	{"attacker@evil.test", "victim@[127.0.0.1]"},
	{"attacker@evil.test", "victim@[IPv6:::1]"},
	{"attacker@evil.test", "postmaster"},
	{"", "victim@evil.test"},
	{"alice@abuse.test", "victim@evil.test"},
	{"postmaster@relay.torture.test", "victim@evil.test"},
}

// openRelay tries every trick on every listener from 127.0.0.2, which is
// not trusted and not authenticated. Nothing may be queued.
func (a *abuse) openRelay(r *result, led *ledger) {
	before, _ := a.in.queueIDs()
	probes, mailOK, rcptOK, dataOK := 0, 0, 0, 0
	for _, l := range a.listeners() {
		for _, t := range relayTricks {
			probes++
			c, _, err := a.open(l, "127.0.0.2")
			if err != nil {
				r.failf("%v", err)
				continue
			}
			m, body := led.compose(orDefault(t.from, "null@evil.test"), []string{t.to}, 300, "")
			rm, _ := c.cmd("MAIL FROM:<" + t.from + ">")
			rr, _ := c.cmd("RCPT TO:<" + t.to + ">")
			rd, _ := c.cmd("DATA")
			s := submission{out: outRefused, stage: "DATA", reply: rd}
			if rm.class() == 2 {
				mailOK++
				r.failf("%s: MAIL FROM:<%s> from an untrusted client got %s", l.name, t.from, rm)
			}
			if rr.class() == 2 {
				rcptOK++
				r.failf("%s: RCPT TO:<%s> from an untrusted client got %s", l.name, t.to, rr)
			}
			if rd.code == 354 {
				dataOK++
				c.write(body + ".\r\n")
				rep, err := c.read()
				s = submission{out: outRefused, stage: "dot", reply: rep}
				if rep.code == 250 {
					s.out = outAcked
				} else if err != nil {
					s.out = outUnsure
				}
				r.failf("%s: DATA for <%s> was accepted from an untrusted client (%s)", l.name, t.to, rep)
			}
			led.record(m, s)
			c.cmd("QUIT")
			c.close()
			a.checkAlive(r, "an open-relay probe")
		}
	}
	// Commands out of order must not help either.
	for _, l := range a.listeners() {
		probes++
		if c, _, err := a.open(l, "127.0.0.2"); err == nil {
			rr, _ := c.cmd("RCPT TO:<victim@evil.test>")
			rd, _ := c.cmd("DATA")
			if rr.class() == 2 || rd.code == 354 {
				r.failf("%s: RCPT/DATA without MAIL got %s / %s", l.name, rr, rd)
			}
			c.close()
		}
	}
	after, err := a.in.queueIDs()
	if err != nil {
		r.failf("%v", err)
	}
	if len(after) > len(before) {
		r.failf("the queue grew from %d to %d messages during the open-relay probes", len(before), len(after))
	}
	r.notef("%d probes from 127.0.0.2 on relay, submission (plain and STARTTLS) and smtps: MAIL accepted %d, RCPT accepted %d, DATA accepted %d; queue unchanged",
		probes, mailOK, rcptOK, dataOK)
}

// bruteForce: wrong passwords lock an IP out (454 4.7.0, even with the right
// password), other IPs are unaffected.
func (a *abuse) bruteForce(r *result, led *ledger) {
	smtps := a.listeners()[3]
	auth := func(ip, pass string) reply {
		c, _, err := a.open(smtps, ip)
		if err != nil {
			r.failf("%v", err)
			return reply{}
		}
		defer c.close()
		c.deadline(30 * time.Second)
		rep, _ := c.cmd("AUTH PLAIN " + plainResp(a.user, pass))
		return rep
	}
	// The failures run at once: each is slowed down by inkan, in parallel.
	var wg sync.WaitGroup
	replies := make([]reply, abuseMaxFailures)
	for i := range replies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replies[i] = auth("127.0.0.2", fmt.Sprintf("wrong-%d-%s", i, a.pass))
		}()
	}
	wg.Wait()
	r.Attempts += abuseMaxFailures
	for _, rep := range replies {
		if rep.code != 535 {
			r.failf("wrong password got %s, want 535 5.7.8", rep)
		}
	}
	locked := auth("127.0.0.2", a.pass)
	r.Attempts++
	if locked.code != 454 || locked.enhanced() != "4.7.0" {
		r.failf("after %d failures the right password from the same IP got %s, want 454 4.7.0", abuseMaxFailures, locked)
	}
	other := auth("127.0.0.3", a.pass)
	r.Attempts++
	if other.code != 235 {
		r.failf("another IP with the right password got %s, want 235", other)
	}
	r.notef("%d wrong passwords: %s; then the right one from the same IP: %s; from another IP: %s",
		abuseMaxFailures, replies[0], locked, other)
	a.checkAlive(r, "the brute-force probes")

	// The other IP can really send, as itself.
	c, _, err := a.open(smtps, "127.0.0.3")
	if err != nil {
		r.failf("%v", err)
		return
	}
	defer c.close()
	if rep, _ := c.cmd("AUTH PLAIN " + plainResp(a.user, a.pass)); rep.code != 235 {
		r.failf("AUTH from 127.0.0.3: %s", rep)
		return
	}
	m, body := led.compose(a.user, []string{"friend@abuse.test"}, 500, "")
	s := c.submit(m.from, m.to, body, nil)
	led.record(m, s)
	if s.out != outAcked {
		r.failf("authenticated submission: %s", s.reply)
	}
}

// plainAuth: no AUTH before STARTTLS on submission, none on the relay
// port; after STARTTLS it works.
func (a *abuse) plainAuth(r *result, led *ledger) {
	ls := a.listeners()
	for _, l := range []listener{ls[1], ls[0]} {
		c, ext, err := a.open(l, "127.0.0.4")
		if err != nil {
			r.failf("%v", err)
			continue
		}
		if _, ok := ext["AUTH"]; ok {
			r.failf("%s offers AUTH in plain text: %q", l.name, ext["AUTH"])
		}
		for _, cmd := range []string{"AUTH PLAIN " + plainResp(a.user, a.pass), "AUTH LOGIN", "AUTH LOGIN " + base64.StdEncoding.EncodeToString([]byte(a.user))} {
			r.Attempts++
			rep, _ := c.cmd(cmd)
			if rep.class() == 2 || rep.class() == 3 {
				r.failf("%s before TLS: %q got %s (credentials would travel in clear)", l.name, strings.Fields(cmd)[0]+" "+strings.Fields(cmd)[1], rep)
				c.write("*\r\n")
				c.read()
			}
			if l.name == "submission" && cmd == "AUTH LOGIN" {
				r.notef("submission before STARTTLS: AUTH refused with %s", rep)
			}
		}
		c.close()
	}
	c, ext, err := a.open(ls[2], "127.0.0.4")
	if err != nil {
		r.failf("%v", err)
		return
	}
	defer c.close()
	if !strings.Contains(ext["AUTH"], "PLAIN") {
		r.failf("submission after STARTTLS does not offer AUTH PLAIN: %q", ext["AUTH"])
	}
	r.Attempts++
	if rep, _ := c.cmd("AUTH PLAIN " + plainResp(a.user, a.pass)); rep.code != 235 {
		r.failf("AUTH after STARTTLS: %s, want 235", rep)
	} else {
		r.notef("after STARTTLS: AUTH %s, then 235", ext["AUTH"])
	}
	a.checkAlive(r, "the plain-text AUTH probes")
}

func plainResp(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
