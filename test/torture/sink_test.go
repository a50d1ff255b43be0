package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func testHarness(t *testing.T) *harness {
	t.Helper()
	h, err := newHarness(true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.stopAll()
		if h.dns != nil {
			h.dns.close()
		}
		os.RemoveAll(h.work)
	})
	return h
}

func TestDNSServer(t *testing.T) {
	h := testHarness(t)
	if err := h.startDNS(); err != nil {
		t.Fatal(err)
	}
	h.dns.setMX("a.test", "mx.a.test")
	h.dns.setMX("null.test", ".")
	h.dns.setMX("fail.test", "mx.fail.test")
	h.dns.setRcode("fail.test", dns.RcodeServerFailure)
	ask := func(name string, qt uint16) *dns.Msg {
		t.Helper()
		m := new(dns.Msg)
		m.SetQuestion(name, qt)
		resp, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(m, h.dns.addr)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return resp
	}
	if r := ask("a.test.", dns.TypeMX); len(r.Answer) != 1 || r.Answer[0].(*dns.MX).Mx != "mx.a.test." {
		t.Errorf("MX a.test: %v", r)
	}
	if r := ask("mx.a.test.", dns.TypeA); len(r.Answer) != 1 || !r.Answer[0].(*dns.A).A.IsLoopback() {
		t.Errorf("A mx.a.test: %v", r)
	}
	if r := ask("mx.a.test.", dns.TypeAAAA); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
		t.Errorf("AAAA mx.a.test should be NODATA: %v", r)
	}
	if r := ask("null.test.", dns.TypeMX); len(r.Answer) != 1 || r.Answer[0].(*dns.MX).Mx != "." || r.Answer[0].(*dns.MX).Preference != 0 {
		t.Errorf("null MX: %v", r)
	}
	if r := ask("nowhere.test.", dns.TypeMX); r.Rcode != dns.RcodeNameError {
		t.Errorf("unknown name: rcode %d", r.Rcode)
	}
	if r := ask("fail.test.", dns.TypeMX); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("forced SERVFAIL: rcode %d", r.Rcode)
	}
}

func TestSinkBehaviors(t *testing.T) {
	h := testHarness(t)
	s, err := h.newSink("unit", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	led := newLedger("sink")
	s.subscribe(func(m sunk) { led.delivered(m.to, m.data) })
	send := func(to ...string) submission {
		t.Helper()
		c, g, err := dial(s.addr, dialOpts{timeout: 2 * time.Second})
		if err != nil {
			return submission{out: outCut, reply: g, err: err}
		}
		defer c.close()
		if _, r, err := c.ehlo("unit.test"); err != nil {
			t.Fatalf("EHLO: %s %v", r, err)
		}
		m, body := led.compose("a@x.test", to, 200, "")
		sub := c.submit(m.from, m.to, body, nil)
		led.record(m, sub)
		return sub
	}
	if sub := send("ok@y.test"); sub.out != outAcked || s.count() != 1 {
		t.Fatalf("plain delivery: %+v, %d stored", sub, s.count())
	}
	s.setBehavior(sinkBehavior{reject: map[string]bool{"bad@y.test": true}})
	if sub := send("bad@y.test"); sub.out != outRefused || sub.reply.code != 550 {
		t.Fatalf("rejected recipient: %+v", sub)
	}
	s.setBehavior(sinkBehavior{greet421: true})
	c, g, err := dial(s.addr, dialOpts{timeout: 2 * time.Second})
	if err != nil || g.code != 421 {
		t.Fatalf("421 greeting: %s %v", g, err)
	}
	c.close()
	s.setBehavior(sinkBehavior{})
	s.down()
	if sub := send("ok@y.test"); sub.out != outCut || !strings.Contains(sub.err.Error(), "refused") {
		t.Fatalf("down sink: %+v", sub)
	}
	if err := s.up(); err != nil {
		t.Fatal(err)
	}
	if sub := send("ok@y.test"); sub.out != outAcked {
		t.Fatalf("sink back up: %+v", sub)
	}
	if tl := led.tally(); tl.lost != 0 || tl.delivered != 2 || len(tl.failures) != 0 {
		t.Fatalf("tally %+v", tl)
	}
}
