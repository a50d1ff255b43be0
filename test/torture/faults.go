package main

import (
	"crypto/tls"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// faultCase is one misbehaving next hop (or DNS answer) with a fresh inkan
// pointed at it through the harness DNS (MX records, delivery.mx_port).
type faultCase struct {
	name   string
	tls    string // delivery.tls_policy for the domain; "" keeps "may"
	cert   bool   // the next hop offers STARTTLS with a self-signed certificate
	config func(cfg map[string]any)
	run    func(f *faultRun)
}

var faultCases = []faultCase{
	{name: "mx-refused", run: func(f *faultRun) {
		f.mx.down()
		m := f.send("a@" + f.dom)
		f.expectDeferred(m, "connection refused")
		f.fix("MX back up", func() error { return f.mx.up() })
		f.expectDelivered(m, false)
	}},
	{name: "mx-greeting-timeout", config: func(cfg map[string]any) { set(cfg, "delivery.command_timeout", "1s") }, run: func(f *faultRun) {
		f.mx.setBehavior(sinkBehavior{blackhole: true})
		m := f.send("a@" + f.dom)
		f.expectDeferred(m, "timeout")
		f.fix("MX answers again", func() error { f.mx.setBehavior(sinkBehavior{}); return nil })
		f.expectDelivered(m, false)
	}},
	{name: "mx-data-timeout", config: func(cfg map[string]any) { set(cfg, "delivery.data_timeout", "1s") }, run: func(f *faultRun) {
		f.mx.setBehavior(sinkBehavior{stallData: true})
		m := f.send("a@" + f.dom)
		f.expectDeferred(m, "timeout")
		f.fix("MX answers the final dot again", func() error { f.mx.setBehavior(sinkBehavior{}); return nil })
		f.expectDelivered(m, false)
	}},
	{name: "mx-drop-mid-data", run: func(f *faultRun) {
		f.mx.setBehavior(sinkBehavior{dropData: true})
		m := f.send("a@" + f.dom)
		f.expectDeferred(m, "")
		f.fix("MX stops dropping", func() error { f.mx.setBehavior(sinkBehavior{}); return nil })
		f.expectDelivered(m, false)
	}},
	{name: "mx-421", run: func(f *faultRun) {
		f.mx.setBehavior(sinkBehavior{greet421: true})
		m := f.send("a@" + f.dom)
		f.expectDeferred(m, "421")
		f.fix("MX greets with 220 again", func() error { f.mx.setBehavior(sinkBehavior{}); return nil })
		f.expectDelivered(m, false)
	}},
	{name: "mx-4xx-then-2xx", run: func(f *faultRun) {
		f.mx.setBehavior(sinkBehavior{tempFail: 2})
		m := f.send("a@" + f.dom)
		f.expectDelivered(m, false)
		if n := f.mx.rcptCount(); n < 3 {
			f.r.failf("the MX saw %d RCPTs; want 2 answered 451 and then one accepted", n)
		} else {
			f.r.notef("2 RCPTs answered 451 4.3.0, delivered on attempt 3")
		}
	}},
	{name: "mx-5xx-some-rcpts", run: func(f *faultRun) {
		bad := "bad@" + f.dom
		f.mx.setBehavior(sinkBehavior{reject: map[string]bool{bad: true}})
		m := f.send("ok1@"+f.dom, bad, "ok2@"+f.dom)
		f.expectBounced(m, bad, "5.1.1", "550 5.1.1")
		f.expectDelivered(m, false)
	}},
	{name: "starttls-broken-may", cert: true, run: func(f *faultRun) {
		f.mx.setBehavior(sinkBehavior{brokenTLS: true})
		m := f.send("a@" + f.dom)
		f.expectDelivered(m, false)
		if !f.in.logContains("retrying without TLS") {
			f.r.failf("log does not say the handshake failed and plain text was used")
		}
	}},
	{name: "starttls-broken-encrypt", cert: true, tls: "encrypt", run: func(f *faultRun) {
		f.mx.setBehavior(sinkBehavior{brokenTLS: true})
		m := f.send("a@" + f.dom)
		f.expectDeferred(m, "TLS")
		f.fix("STARTTLS works again", func() error { f.mx.setBehavior(sinkBehavior{}); return nil })
		f.expectDelivered(m, true)
	}},
	{name: "badcert-encrypt", cert: true, tls: "encrypt", run: func(f *faultRun) {
		m := f.send("a@" + f.dom)
		f.expectDelivered(m, true)
	}},
	{name: "badcert-verify", cert: true, tls: "verify", run: func(f *faultRun) {
		m := f.send("a@" + f.dom)
		f.expectDeferred(m, "certificate")
		f.fix("policy relaxed to encrypt (SIGHUP reload)", f.reloadPolicy("encrypt"))
		f.expectDelivered(m, true)
	}},
	{name: "dns-servfail", run: func(f *faultRun) {
		f.h.dns.setRcode(f.dom, dns.RcodeServerFailure)
		m := f.send("a@" + f.dom)
		f.expectDeferred(m, "SERVFAIL")
		f.fix("DNS answers again", func() error { f.h.dns.setRcode(f.dom, 0); return nil })
		f.expectDelivered(m, false)
	}},
	{name: "dns-nxdomain", run: func(f *faultRun) {
		m := f.send("a@nx-" + f.dom)
		f.expectBounced(m, "a@nx-"+f.dom, "5.1.2", "not found")
	}},
	{name: "null-mx", run: func(f *faultRun) {
		f.h.dns.setMX(f.dom, ".")
		m := f.send("a@" + f.dom)
		f.expectBounced(m, "a@"+f.dom, "5.1.10", "null MX")
	}},
}

// runFaults runs the fault cases, a few at a time; each is a report row.
func runFaults(h *harness) {
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for _, fc := range faultCases {
		name := "fault/" + fc.name
		if !h.wants(name) {
			continue
		}
		r := h.row(name)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			defer r.end()
			runFault(h, r, fc)
		}()
	}
	wg.Wait()
}

// faultRun is one fault case in progress.
type faultRun struct {
	h    *harness
	r    *result
	fc   faultCase
	dom  string
	led  *ledger
	mx   *sink
	dsn  *sink
	in   *inkan
	dsns []*dsnReport
	mu   sync.Mutex
}

const faultSender = "sender@sender.test"

func runFault(h *harness, r *result, fc faultCase) {
	f := &faultRun{h: h, r: r, fc: fc, dom: fc.name + ".fault.test", led: newLedger("fault-" + fc.name)}
	h.dns.setMX(f.dom, "mx."+f.dom)
	var err error
	if f.dsn, err = h.newSink(fc.name+"-dsn", nil, nil); err != nil {
		r.failf("%v", err)
		return
	}
	f.dsn.subscribe(f.gotDSN)
	var cert = certOrNil(fc.cert, "mx."+f.dom)
	if f.mx, err = h.newSink(fc.name+"-mx", cert, nil); err != nil {
		r.failf("%v", err)
		return
	}
	f.mx.subscribe(func(m sunk) { f.led.delivered(m.to, m.data) })
	f.in, err = h.newInkan("fault-"+fc.name, func(cfg map[string]any) {
		set(cfg, "delivery.mx_port", mustAtoi(portOf(f.mx.addr)))
		set(cfg, "delivery.transport", map[string]any{"sender.test": "[127.0.0.1]:" + portOf(f.dsn.addr)})
		if fc.tls != "" {
			set(cfg, "delivery.tls_policy", map[string]any{f.dom: fc.tls})
		}
		if fc.config != nil {
			fc.config(cfg)
		}
	})
	if err != nil {
		r.failf("%v", err)
		return
	}
	if err := f.in.start(); err != nil {
		r.crashed("start: %v", err)
		return
	}
	fc.run(f)
	if !f.in.alive() {
		r.crashed("inkan is not running at the end of the case")
	}
	f.in.stop(r)
	t := f.led.tally()
	r.tally(t)
	if t.duplicated > 0 {
		r.failf("%d duplicate deliveries", t.duplicated)
	}
}

func certOrNil(want bool, name string) *tls.Certificate {
	if !want {
		return nil
	}
	c, err := selfSigned(name, "localhost")
	if err != nil {
		panic(err)
	}
	return c
}

// gotDSN parses a bounce that reached the sender's domain.
func (f *faultRun) gotDSN(m sunk) {
	if m.from != "" {
		f.r.failf("the sender's domain got a message that is not a bounce, from <%s>", m.from)
		return
	}
	if len(m.to) != 1 || !strings.EqualFold(m.to[0], faultSender) {
		f.r.failf("bounce sent to %v, want <%s>", m.to, faultSender)
	}
	d, err := parseDSN(m.data)
	if err != nil {
		f.r.failf("bounce does not parse as a DSN: %v", err)
		return
	}
	f.mu.Lock()
	f.dsns = append(f.dsns, d)
	f.mu.Unlock()
	f.led.bounced(d)
}

func (f *faultRun) dsnCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.dsns)
}

// send submits one message from faultSender; it must be accepted.
func (f *faultRun) send(rcpts ...string) *msgRec {
	m, body := f.led.compose(faultSender, rcpts, 2000, "")
	c, _, err := dial(f.in.relay, dialOpts{})
	if err != nil {
		f.r.failf("connect: %v", err)
		f.led.record(m, submission{out: outCut, err: err})
		return m
	}
	defer c.close()
	if _, rep, err := c.ehlo("fault.test"); err != nil {
		f.r.failf("EHLO: %v %s", err, rep)
		f.led.record(m, submission{out: outCut, err: err})
		return m
	}
	s := c.submit(faultSender, rcpts, body, nil)
	f.led.record(m, s)
	if s.out != outAcked {
		f.r.failf("submission refused: %s (%v)", s.reply, s.err)
	}
	c.cmd("QUIT")
	return m
}

var lastReplyRE = regexp.MustCompile(`(?m)^\s+last reply: (.*)$`)

// expectDeferred waits for the first delivery attempt and checks the
// message is still queued, with a last reply containing want.
func (f *faultRun) expectDeferred(m *msgRec, want string) {
	deadline := time.Now().Add(20 * time.Second)
	var show string
	for time.Now().Before(deadline) {
		show = f.in.queueShow(m.sub.id)
		if show == "" || (attempts(show) >= 1 && lastReplyRE.MatchString(show)) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	switch {
	case show == "":
		f.r.failf("expected deferred, but %s left the queue (delivered %d, bounces %d)", m.sub.id, f.mx.count(), f.dsnCount())
		return
	case attempts(show) < 1:
		f.r.failf("no delivery attempt within 20s:\n%s", show)
		return
	}
	reply := lastReplyRE.FindStringSubmatch(show)[1]
	if want != "" && !strings.Contains(strings.ToLower(reply), strings.ToLower(want)) {
		f.r.failf("deferred with %q, want a reply mentioning %q", reply, want)
	}
	if f.mx.count() > 0 || f.dsnCount() > 0 {
		f.r.failf("deferred message was delivered (%d) or bounced (%d)", f.mx.count(), f.dsnCount())
	}
	f.r.notef("deferred: %s", reply)
}

// fix repairs the fault and notes how.
func (f *faultRun) fix(what string, fn func() error) {
	if err := fn(); err != nil {
		f.r.failf("%s: %v", what, err)
		return
	}
	f.r.notef("then: %s", what)
}

// expectDelivered waits until every recipient of m that is not bounced got
// a copy (over TLS when wantTLS) and the queue is empty, with no bounce.
func (f *faultRun) expectDelivered(m *msgRec, wantTLS bool) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		f.led.mu.Lock()
		done := allArrived(m)
		f.led.mu.Unlock()
		if done {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := f.in.waitQueueEmpty(15 * time.Second); err != nil {
		f.r.failf("queue not empty after delivery: %v", err)
	}
	msgs := f.mx.messages()
	if len(msgs) == 0 {
		f.r.failf("not delivered within 30s")
		return
	}
	for _, s := range msgs {
		if s.tls != wantTLS {
			f.r.failf("delivered with TLS=%v, want TLS=%v", s.tls, wantTLS)
		}
	}
	f.led.mu.Lock()
	bounced := len(m.bounces) > 0
	f.led.mu.Unlock()
	if !bounced && f.dsnCount() > 0 {
		f.r.failf("a bounce was sent for a message that was delivered")
	}
	f.r.notef("delivered (TLS=%v) after %d connection(s) to the MX", wantTLS, f.mx.connections())
}

// expectBounced waits for a DSN about rcpt and checks its fields.
func (f *faultRun) expectBounced(m *msgRec, rcpt, status, diag string) {
	deadline := time.Now().Add(20 * time.Second)
	var got *dsnRcpt
	for time.Now().Before(deadline) && got == nil {
		f.mu.Lock()
		for _, d := range f.dsns {
			for i, rc := range d.rcpts {
				if strings.EqualFold(rc.addr, rcpt) {
					got = &d.rcpts[i]
				}
			}
		}
		f.mu.Unlock()
		time.Sleep(50 * time.Millisecond)
	}
	if got == nil {
		f.r.failf("no DSN about <%s> within 20s", rcpt)
		return
	}
	if got.action != "failed" {
		f.r.failf("DSN Action %q, want failed", got.action)
	}
	if got.status != status {
		f.r.failf("DSN Status %q, want %s", got.status, status)
	}
	if !strings.Contains(got.diag, diag) {
		f.r.failf("DSN Diagnostic-Code %q, want it to mention %q", got.diag, diag)
	}
	f.r.notef("bounced: Action %s, Status %s, Diagnostic-Code %q", got.action, got.status, got.diag)
	if _, err := f.in.waitQueueEmpty(15 * time.Second); err != nil {
		f.r.failf("queue not empty after the bounce: %v", err)
	}
}

// reloadPolicy changes the domain's TLS policy and sends SIGHUP.
func (f *faultRun) reloadPolicy(mode string) func() error {
	return func() error {
		set(f.in.cfg, "delivery.tls_policy", map[string]any{f.dom: mode})
		if err := f.in.writeConfig(); err != nil {
			return err
		}
		if err := syscall.Kill(f.in.pid(), syscall.SIGHUP); err != nil {
			return err
		}
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if f.in.logContains(`msg=reloaded`) {
				return nil
			}
			time.Sleep(50 * time.Millisecond)
		}
		return fmt.Errorf("no \"reloaded\" in the log after SIGHUP")
	}
}

func mustAtoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		panic(err)
	}
	return n
}
