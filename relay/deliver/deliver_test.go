package deliver_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/queue"
	"github.com/inkan-relay/inkan/relay/deliver"
)

func TestMXPriorityOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// mx1 (preference 10) refuses connections: nothing listens on 127.0.0.2.
	e.zone.add(t,
		"prio.test. 300 IN MX 20 mx2.prio.test.",
		"prio.test. 300 IN MX 10 mx1.prio.test.",
		"prio.test. 300 IN MX 30 mx3.prio.test.",
		"mx1.prio.test. 300 IN A 127.0.0.2",
		"mx2.prio.test. 300 IN A 127.0.0.3",
		"mx3.prio.test. 300 IN A 127.0.0.4",
	)
	mx2 := e.net.start(t, "127.0.0.3", sinkOpts{})
	mx3 := e.net.start(t, "127.0.0.4", sinkOpts{})
	tr := newTransport(t, deliver.Options{Config: e.config()})

	res := deliverOne(t, tr, delivery("alice@sender.test", "prio.test", testMessage, "bob@prio.test"))
	wantStatus(t, res[0], queue.Sent)
	if want := remote("mx2.prio.test", "127.0.0.3", e.net.port); res[0].Remote != want {
		t.Errorf("remote %q, want %q", res[0].Remote, want)
	}
	if len(mx2.messages()) != 1 || mx3.conns.Load() != 0 {
		t.Errorf("mx2 got %d messages, mx3 %d connections; want 1 and 0", len(mx2.messages()), mx3.conns.Load())
	}

	// Now the preferred host is up: it gets the mail.
	mx1 := e.net.start(t, "127.0.0.2", sinkOpts{})
	res = deliverOne(t, tr, delivery("alice@sender.test", "prio.test", testMessage, "carol@prio.test"))
	wantStatus(t, res[0], queue.Sent)
	if len(mx1.messages()) != 1 || len(mx2.messages()) != 1 {
		t.Errorf("mx1 got %d, mx2 %d messages; want 1 and 1", len(mx1.messages()), len(mx2.messages()))
	}
}

func TestAllHostsRefuse(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.zone.add(t, "down.test. 300 IN MX 10 mx1.down.test.", "mx1.down.test. 300 IN A 127.0.0.2")
	tr := newTransport(t, deliver.Options{Config: e.config()})
	res := deliverOne(t, tr, delivery("a@sender.test", "down.test", testMessage, "x@down.test", "y@down.test"))
	for _, r := range res {
		wantStatus(t, r, queue.Deferred)
		if r.Code != 0 || r.Enhanced != "4.4.1" || !strings.Contains(r.Message, "connect to mx1.down.test[127.0.0.2]") ||
			!strings.Contains(r.Message, "connection refused") {
			t.Errorf("result %+v", r)
		}
	}
}

func TestImplicitMX(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.zone.add(t, "implicit.test. 300 IN A 127.0.0.2", "implicit.test. 300 IN TXT \"v=spf1 -all\"")
	s := e.net.start(t, "127.0.0.2", sinkOpts{})
	tr := newTransport(t, deliver.Options{Config: e.config()})
	res := deliverOne(t, tr, delivery("a@sender.test", "implicit.test", testMessage, "bob@implicit.test"))
	wantStatus(t, res[0], queue.Sent)
	if want := remote("implicit.test", "127.0.0.2", e.net.port); res[0].Remote != want {
		t.Errorf("remote %q, want %q", res[0].Remote, want)
	}
	if len(s.messages()) != 1 {
		t.Errorf("sink got %d messages", len(s.messages()))
	}
}

func TestCNAMEs(t *testing.T) {
	t.Parallel()
	for _, chase := range []bool{true, false} {
		t.Run("chase="+strconv.FormatBool(chase), func(t *testing.T) {
			e := newEnv(t)
			e.zone.noChase = !chase // a resolver that stops at the CNAME: the transport asks again
			e.zone.add(t,
				"alias.test. 300 IN CNAME real.test.",
				"real.test. 300 IN MX 10 mail.alias.test.",
				"mail.alias.test. 300 IN CNAME host.real.test.",
				"host.real.test. 300 IN A 127.0.0.3",
			)
			s := e.net.start(t, "127.0.0.3", sinkOpts{})
			tr := newTransport(t, deliver.Options{Config: e.config()})
			res := deliverOne(t, tr, delivery("a@sender.test", "alias.test", testMessage, "bob@alias.test"))
			wantStatus(t, res[0], queue.Sent)
			if want := remote("mail.alias.test", "127.0.0.3", e.net.port); res[0].Remote != want {
				t.Errorf("remote %q, want %q", res[0].Remote, want)
			}
			if len(s.messages()) != 1 {
				t.Errorf("sink got %d messages", len(s.messages()))
			}
		})
	}
}

func TestIPv6First(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.zone.add(t, "dual.test. 300 IN AAAA ::1", "dual.test. 300 IN A 127.0.0.2")
	v4 := e.net.start(t, "127.0.0.2", sinkOpts{})
	var v6 *sink
	if ln, err := net.Listen("tcp", net.JoinHostPort("::1", strconv.Itoa(e.net.port))); err == nil {
		ln.Close()
		v6 = e.net.start(t, "::1", sinkOpts{})
	}
	tr := newTransport(t, deliver.Options{Config: e.config()})
	res := deliverOne(t, tr, delivery("a@sender.test", "dual.test", testMessage, "bob@dual.test"))
	wantStatus(t, res[0], queue.Sent)
	if v6 != nil {
		// IPv6 works here: it must have been chosen first.
		if len(v6.messages()) != 1 || v4.conns.Load() != 0 || res[0].Remote != remote("dual.test", "::1", e.net.port) {
			t.Errorf("v6 %d messages, v4 %d connections, remote %s", len(v6.messages()), v4.conns.Load(), res[0].Remote)
		}
	} else if len(v4.messages()) != 1 {
		// No IPv6 here: ::1 failed, and IPv4 took over.
		t.Errorf("v4 got %d messages", len(v4.messages()))
	}
}

func TestSMTPUTF8(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.zone.add(t, "xn--bcher-kva.test. 300 IN A 127.0.0.2", "ascii.test. 300 IN A 127.0.0.3")
	s := e.net.start(t, "127.0.0.2", sinkOpts{})
	old := e.net.start(t, "127.0.0.3", sinkOpts{noUTF8: true})
	tr := newTransport(t, deliver.Options{Config: e.config()})

	d := delivery("\u00e9lise@sender.test", "b\u00fccher.test", testMessage, "j\u00fcrgen@b\u00fccher.test")
	d.SMTPUTF8 = true
	res := deliverOne(t, tr, d)
	wantStatus(t, res[0], queue.Sent)
	if m := s.messages(); len(m) != 1 || !m[0].utf8 || m[0].to[0] != "j\u00fcrgen@b\u00fccher.test" {
		t.Errorf("sink messages %+v", m)
	}

	d = delivery("\u00e9lise@sender.test", "ascii.test", testMessage, "bob@ascii.test")
	d.SMTPUTF8 = true
	res = deliverOne(t, tr, d)
	wantStatus(t, res[0], queue.Failed)
	if res[0].Enhanced != "5.6.7" {
		t.Errorf("result %+v", res[0])
	}
	d = delivery("elise@sender.test", "ascii.test", testMessage, "bob@ascii.test")
	d.SMTPUTF8 = true // asked for, but all addresses are ASCII: send without
	wantStatus(t, deliverOne(t, tr, d)[0], queue.Sent)
	if m := old.messages(); len(m) != 1 || m[0].utf8 {
		t.Errorf("old sink messages %+v", m)
	}
}

func TestDNSFailures(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.zone.add(t,
		"null.test. 300 IN MX 0 .",
		"exists.test. 300 IN TXT \"no mail here\"",
		"badmx.test. 300 IN MX 10 nowhere.badmx.test.",
	)
	e.zone.fail("broken.test", dns.RcodeServerFailure)
	tr := newTransport(t, deliver.Options{Config: e.config()})
	for _, tc := range []struct {
		domain   string
		status   queue.Status
		enhanced string
		text     string
	}{
		{"null.test", queue.Failed, "5.1.10", "does not accept mail (null MX)"},
		{"nxdomain.test", queue.Failed, "5.1.2", "NXDOMAIN"},
		{"broken.test", queue.Deferred, "4.4.3", "SERVFAIL"},
		{"exists.test", queue.Failed, "5.4.4", "no A or AAAA records"},
		{"badmx.test", queue.Failed, "5.4.4", "cannot resolve nowhere.badmx.test"},
	} {
		t.Run(tc.domain, func(t *testing.T) {
			res := deliverOne(t, tr, delivery("a@sender.test", tc.domain, testMessage, "x@"+tc.domain, "y@"+tc.domain))
			for _, r := range res {
				wantStatus(t, r, tc.status)
				if r.Enhanced != tc.enhanced || r.Code != 0 || !strings.Contains(r.Message, tc.text) || r.Remote != "" {
					t.Errorf("result %+v, want %s and %q", r, tc.enhanced, tc.text)
				}
			}
		})
	}
}

func TestSTARTTLSMay(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.zone.add(t, "tls.test. 300 IN MX 10 mx1.tls.test.", "mx1.tls.test. 300 IN A 127.0.0.2")
	s := e.net.start(t, "127.0.0.2", sinkOpts{tls: serverTLS(t)})
	tr := newTransport(t, deliver.Options{Config: e.config()})
	res := deliverOne(t, tr, delivery("a@sender.test", "tls.test", testMessage, "bob@tls.test"))
	wantStatus(t, res[0], queue.Sent)
	if !strings.HasPrefix(res[0].TLS, "TLSv1.3 TLS_") {
		t.Errorf("TLS %q, want TLSv1.3 and a cipher", res[0].TLS)
	}
	if m := s.messages(); len(m) != 1 || !m[0].tls {
		t.Errorf("sink messages %+v, want one over TLS", m)
	}
}

func TestMayFallsBackToPlainOnHandshakeFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.zone.add(t, "badtls.test. 300 IN A 127.0.0.2")
	broken := &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return nil, errors.New("no certificate today")
	}}
	s := e.net.start(t, "127.0.0.2", sinkOpts{tls: broken})
	tr := newTransport(t, deliver.Options{Config: e.config()})
	res := deliverOne(t, tr, delivery("a@sender.test", "badtls.test", testMessage, "bob@badtls.test"))
	wantStatus(t, res[0], queue.Sent)
	if res[0].TLS != "" {
		t.Errorf("TLS %q, want plain", res[0].TLS)
	}
	if m := s.messages(); len(m) != 1 || m[0].tls || s.conns.Load() != 2 {
		t.Errorf("sink: %d messages, %d connections; want 1 plain message over the 2nd connection", len(m), s.conns.Load())
	}
}

func TestEncryptRequiresSTARTTLS(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.zone.add(t,
		"enc.test. 300 IN MX 10 mx1.enc.test.",
		"mx1.enc.test. 300 IN A 127.0.0.2",
		"enc2.test. 300 IN MX 10 mx1.enc2.test.",
		"enc2.test. 300 IN MX 20 mx2.enc2.test.",
		"mx1.enc2.test. 300 IN A 127.0.0.2",
		"mx2.enc2.test. 300 IN A 127.0.0.3",
	)
	plain := e.net.start(t, "127.0.0.2", sinkOpts{})
	withTLS := e.net.start(t, "127.0.0.3", sinkOpts{tls: serverTLS(t)})
	c := e.config()
	c.TLSPolicy = map[string]string{"enc.test": "encrypt", "enc2.test": "encrypt"}
	tr := newTransport(t, deliver.Options{Config: c})

	res := deliverOne(t, tr, delivery("a@sender.test", "enc.test", testMessage, "bob@enc.test"))
	wantStatus(t, res[0], queue.Deferred)
	if res[0].Enhanced != "4.7.5" || !strings.Contains(res[0].Message, "STARTTLS") {
		t.Errorf("result %+v", res[0])
	}
	if plain.mails.Load() != 0 {
		t.Error("mail was sent to the plain host")
	}

	res = deliverOne(t, tr, delivery("a@sender.test", "enc2.test", testMessage, "bob@enc2.test"))
	wantStatus(t, res[0], queue.Sent)
	if m := withTLS.messages(); len(m) != 1 || !m[0].tls || res[0].TLS == "" {
		t.Errorf("mx2 messages %+v, TLS %q", m, res[0].TLS)
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.zone.add(t, "verify.test. 300 IN MX 10 mx1.verify.test.", "mx1.verify.test. 300 IN A 127.0.0.2",
		"wrongname.test. 300 IN MX 10 mx.wrongname.test.", "mx.wrongname.test. 300 IN A 127.0.0.2")
	s := e.net.start(t, "127.0.0.2", sinkOpts{tls: serverTLS(t)})
	c := e.config()
	c.TLSPolicy = map[string]string{"verify.test": "verify", "wrongname.test": "verify"}
	_, pool := selfSigned(t)

	system := newTransport(t, deliver.Options{Config: c}) // system roots: self-signed fails
	res := deliverOne(t, system, delivery("a@sender.test", "verify.test", testMessage, "bob@verify.test"))
	wantStatus(t, res[0], queue.Deferred)
	if res[0].Enhanced != "4.7.5" || !strings.Contains(res[0].Message, "certificate") {
		t.Errorf("result %+v", res[0])
	}

	trusting := newTransport(t, deliver.Options{Config: c, RootCAs: pool})
	res = deliverOne(t, trusting, delivery("a@sender.test", "wrongname.test", testMessage, "bob@wrongname.test"))
	wantStatus(t, res[0], queue.Deferred) // trusted, but not for that name
	res = deliverOne(t, trusting, delivery("a@sender.test", "verify.test", testMessage, "bob@verify.test"))
	wantStatus(t, res[0], queue.Sent)
	if m := s.messages(); len(m) != 1 || !m[0].tls {
		t.Errorf("sink messages %+v", m)
	}
}

func TestPerRecipientReplies(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.zone.add(t, "mix.test. 300 IN A 127.0.0.2")
	s := e.net.start(t, "127.0.0.2", sinkOpts{rcpt: map[string]*smtp.SMTPError{
		"full@mix.test":     {Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"},
		"nobody@mix.test":   {Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"},
		"plain5xx@mix.test": {Code: 553, EnhancedCode: smtp.NoEnhancedCode, Message: "rejected"},
	}})
	tr := newTransport(t, deliver.Options{Config: e.config()})
	rcpts := []string{"ok@mix.test", "full@mix.test", "nobody@mix.test", "ok2@mix.test", "plain5xx@mix.test"}
	res := deliverOne(t, tr, delivery("a@sender.test", "mix.test", testMessage, rcpts...))
	wantStatus(t, res[0], queue.Sent)
	wantStatus(t, res[1], queue.Deferred)
	wantStatus(t, res[2], queue.Failed)
	wantStatus(t, res[3], queue.Sent)
	wantStatus(t, res[4], queue.Failed)
	if r := res[1]; r.Code != 452 || r.Enhanced != "4.2.2" || r.Message != "mailbox full" {
		t.Errorf("deferred result %+v", r)
	}
	if r := res[2]; r.Code != 550 || r.Enhanced != "5.1.1" || r.Message != "no such user" {
		t.Errorf("failed result %+v", r)
	}
	if r := res[4]; r.Code != 553 || r.Enhanced != "" || r.Message != "rejected" {
		t.Errorf("failed result without enhanced code %+v", r)
	}
	if r := res[0]; r.Code != 250 || r.Enhanced != "2.0.0" || r.Remote != remote("mix.test", "127.0.0.2", e.net.port) {
		t.Errorf("sent result %+v", r)
	}
	m := s.messages()
	if len(m) != 1 || strings.Join(m[0].to, ",") != "ok@mix.test,ok2@mix.test" {
		t.Fatalf("sink messages %+v", m)
	}
	if m[0].size != int64(len(testMessage)) {
		t.Errorf("SIZE=%d, want %d", m[0].size, len(testMessage))
	}
}

func TestDataReplyAppliesToAll(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.zone.add(t, "data.test. 300 IN A 127.0.0.2")
	e.net.start(t, "127.0.0.2", sinkOpts{dataErr: &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "spam"}})
	tr := newTransport(t, deliver.Options{Config: e.config()})
	res := deliverOne(t, tr, delivery("a@sender.test", "data.test", testMessage, "x@data.test", "y@data.test"))
	for _, r := range res {
		wantStatus(t, r, queue.Failed)
		if r.Code != 554 || r.Enhanced != "5.7.1" {
			t.Errorf("result %+v", r)
		}
	}
}

func TestGreeting421TriesNextMX(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.zone.add(t,
		"busy.test. 300 IN MX 10 mx1.busy.test.",
		"busy.test. 300 IN MX 20 mx2.busy.test.",
		"mx1.busy.test. 300 IN A 127.0.0.2",
		"mx2.busy.test. 300 IN A 127.0.0.3",
		"allbusy.test. 300 IN MX 10 mx1.busy.test.",
	)
	e.net.start(t, "127.0.0.2", sinkOpts{greeting: "421 4.3.2 too busy"})
	s := e.net.start(t, "127.0.0.3", sinkOpts{})
	tr := newTransport(t, deliver.Options{Config: e.config()})
	res := deliverOne(t, tr, delivery("a@sender.test", "busy.test", testMessage, "bob@busy.test"))
	wantStatus(t, res[0], queue.Sent)
	if len(s.messages()) != 1 {
		t.Errorf("mx2 got %d messages", len(s.messages()))
	}
	res = deliverOne(t, tr, delivery("a@sender.test", "allbusy.test", testMessage, "bob@allbusy.test"))
	wantStatus(t, res[0], queue.Deferred)
	if r := res[0]; r.Code != 421 || r.Enhanced != "4.3.2" || r.Message != "too busy" ||
		r.Remote != remote("mx1.busy.test", "127.0.0.2", e.net.port) {
		t.Errorf("result %+v", r)
	}
}

func TestRcpt421TriesNextMX(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.zone.add(t,
		"r421.test. 300 IN MX 10 mx1.r421.test.",
		"r421.test. 300 IN MX 20 mx2.r421.test.",
		"mx1.r421.test. 300 IN A 127.0.0.2",
		"mx2.r421.test. 300 IN A 127.0.0.3",
	)
	e.net.start(t, "127.0.0.2", sinkOpts{rcpt: map[string]*smtp.SMTPError{
		"b@r421.test": {Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 5}, Message: "shutting down"},
		"c@r421.test": {Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "unknown"},
	}})
	mx2 := e.net.start(t, "127.0.0.3", sinkOpts{})
	tr := newTransport(t, deliver.Options{Config: e.config()})
	res := deliverOne(t, tr, delivery("a@sender.test", "r421.test", testMessage, "c@r421.test", "a@r421.test", "b@r421.test"))
	wantStatus(t, res[0], queue.Failed) // mx1's 550 is an answer
	wantStatus(t, res[1], queue.Sent)
	wantStatus(t, res[2], queue.Sent)
	if m := mx2.messages(); len(m) != 1 || strings.Join(m[0].to, ",") != "a@r421.test,b@r421.test" {
		t.Errorf("mx2 messages %+v", m)
	}
}

func TestDropMidData(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.zone.add(t, "drop.test. 300 IN MX 10 mx1.drop.test.", "drop.test. 300 IN MX 20 mx2.drop.test.",
		"mx1.drop.test. 300 IN A 127.0.0.2", "mx2.drop.test. 300 IN A 127.0.0.3")
	e.net.start(t, "127.0.0.2", sinkOpts{dropData: true})
	mx2 := e.net.start(t, "127.0.0.3", sinkOpts{})
	tr := newTransport(t, deliver.Options{Config: e.config()})
	res := deliverOne(t, tr, delivery("a@sender.test", "drop.test", testMessage, "x@drop.test"))
	wantStatus(t, res[0], queue.Deferred)
	if res[0].Enhanced != "4.4.2" || !strings.Contains(res[0].Message, "lost connection") {
		t.Errorf("result %+v", res[0])
	}
	if mx2.conns.Load() != 0 {
		t.Error("after message bytes were sent, another MX was tried")
	}
}

func TestMessageBytesIntact(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.zone.add(t, "bytes.test. 300 IN A 127.0.0.2")
	s := e.net.start(t, "127.0.0.2", sinkOpts{})
	tr := newTransport(t, deliver.Options{Config: e.config()})
	msg := testMessage + "8-bit: caf\xc3\xa9\r\n.\r\n..\r\n. \r\n" + strings.Repeat(strings.Repeat("x", 76)+"\r\n.", 1000) + "end\r\n"
	res := deliverOne(t, tr, delivery("", "bytes.test", msg, "bob@bytes.test"))
	wantStatus(t, res[0], queue.Sent)
	m := s.messages()
	if len(m) != 1 {
		t.Fatalf("got %d messages", len(m))
	}
	if !equalBytes(m[0].data, msg) {
		t.Errorf("message changed in transit:\ngot  %q\nwant %q", trim(m[0].data), trim([]byte(msg)))
	}
	if m[0].from != "" {
		t.Errorf("MAIL FROM %q, want <>", m[0].from)
	}
}

func trim(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}

func TestSizeLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.zone.add(t, "small.test. 300 IN A 127.0.0.2")
	s := e.net.start(t, "127.0.0.2", sinkOpts{maxSize: 100})
	tr := newTransport(t, deliver.Options{Config: e.config()})
	res := deliverOne(t, tr, delivery("a@sender.test", "small.test", strings.Repeat("x", 4096), "bob@small.test"))
	wantStatus(t, res[0], queue.Failed)
	if res[0].Enhanced != "5.3.4" || s.mails.Load() != 0 {
		t.Errorf("result %+v, %d MAIL commands", res[0], s.mails.Load())
	}
}

func TestOpenError(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.zone.add(t, "open.test. 300 IN A 127.0.0.2")
	s := e.net.start(t, "127.0.0.2", sinkOpts{})
	tr := newTransport(t, deliver.Options{Config: e.config()})
	d := delivery("a@sender.test", "open.test", testMessage, "bob@open.test")
	d.Open = func() (io.ReadCloser, error) { return nil, errors.New("disk on fire") }
	res := deliverOne(t, tr, d)
	wantStatus(t, res[0], queue.Deferred)
	if res[0].Enhanced != "4.3.0" || len(s.messages()) != 0 {
		t.Errorf("result %+v", res[0])
	}
}

func writePassword(t *testing.T, pw string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(p, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSmarthostAuthOverSTARTTLS(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.net.start(t, "127.0.0.4", sinkOpts{tls: serverTLS(t), user: "relayuser", pass: "s3cret"})
	c := e.config()
	c.Smarthost = &config.Smarthost{Address: "[127.0.0.4]", Username: "relayuser", PasswordFile: writePassword(t, "s3cret")}
	_, pool := selfSigned(t)
	tr := newTransport(t, deliver.Options{Config: c, RootCAs: pool})
	// A relay that logs in checks the certificate by default.
	if r := tr.Route("a@sender.test", "anywhere.test"); r.Via != deliver.ViaSmarthost || r.TLS != "verify" || r.User != "relayuser" {
		t.Errorf("route %v", r)
	}
	res := deliverOne(t, tr, delivery("a@sender.test", "anywhere.test", testMessage, "bob@anywhere.test"))
	wantStatus(t, res[0], queue.Sent)
	m := s.messages()
	if len(m) != 1 || m[0].user != "relayuser" || !m[0].tls || res[0].TLS == "" {
		t.Errorf("sink messages %+v, result %+v", m, res[0])
	}
	if e.zone.queries.Load() != 0 {
		t.Errorf("%d DNS queries for an IP smarthost", e.zone.queries.Load())
	}

	bad := c
	bad.Smarthost = &config.Smarthost{Address: "[127.0.0.4]", Username: "relayuser", Password: "wrong"}
	tr2 := newTransport(t, deliver.Options{Config: bad, RootCAs: pool})
	res = deliverOne(t, tr2, delivery("a@sender.test", "anywhere.test", testMessage, "bob@anywhere.test"))
	wantStatus(t, res[0], queue.Deferred) // a bad password keeps the mail
	if !strings.Contains(res[0].Message, "535 5.7.8") {
		t.Errorf("result %+v", res[0])
	}
}

func TestSmarthostLoginAndPlainRefusal(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.net.start(t, "127.0.0.4", sinkOpts{tls: serverTLS(t), user: "u", pass: "p", loginOnly: true})
	plain := e.net.start(t, "127.0.0.5", sinkOpts{user: "u", pass: "p"}) // no TLS at all
	c := e.config()
	c.Smarthost = &config.Smarthost{Address: "[127.0.0.4]", Username: "u", Password: "p", TLS: "verify"}
	c.SenderRelay = map[string]config.Smarthost{"@plain.test": {Address: "[127.0.0.5]", Username: "u", Password: "p"}}
	_, pool := selfSigned(t)
	tr := newTransport(t, deliver.Options{Config: c, RootCAs: pool})
	res := deliverOne(t, tr, delivery("a@sender.test", "x.test", testMessage, "bob@x.test"))
	wantStatus(t, res[0], queue.Sent)
	res = deliverOne(t, tr, delivery("a@plain.test", "x.test", testMessage, "bob@x.test"))
	wantStatus(t, res[0], queue.Deferred)
	if !strings.Contains(res[0].Message, "does not offer STARTTLS") || plain.auths.Load() != 0 {
		t.Errorf("result %+v, %d AUTH", res[0], plain.auths.Load())
	}
}

func TestSmarthostImplicitTLS(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.net.start(t, "127.0.0.4", sinkOpts{tls: serverTLS(t), implicit: true, user: "u", pass: "p"})
	c := e.config()
	c.Smarthost = &config.Smarthost{Address: "[127.0.0.4]:" + strconv.Itoa(e.net.port), Username: "u", Password: "p", TLS: "implicit"}
	_, pool := selfSigned(t)
	tr := newTransport(t, deliver.Options{Config: c, RootCAs: pool})
	res := deliverOne(t, tr, delivery("a@sender.test", "x.test", testMessage, "bob@x.test"))
	wantStatus(t, res[0], queue.Sent)
	if m := s.messages(); len(m) != 1 || !m[0].tls || m[0].user != "u" || !strings.HasPrefix(res[0].TLS, "TLSv1.3") {
		t.Errorf("sink messages %+v, result %+v", m, res[0])
	}
}

func TestSenderRelay(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.net.start(t, "127.0.0.2", sinkOpts{})
	b := e.net.start(t, "127.0.0.3", sinkOpts{})
	special := e.net.start(t, "127.0.0.4", sinkOpts{})
	c := e.config()
	c.SenderRelay = map[string]config.Smarthost{
		"@a.test":      {Address: "[127.0.0.2]", TLS: "none"},
		"@b.test":      {Address: "[127.0.0.3]", TLS: "none", NoSign: true},
		"boss@a.test":  {Address: "[127.0.0.4]", TLS: "none"},
		"@only-x.test": {Address: "[127.0.0.4]", TLS: "none", Domains: []string{"x.test"}},
	}
	tr := newTransport(t, deliver.Options{Config: c})
	for _, tc := range []struct {
		from string
		s    *sink
	}{{"alice@a.test", a}, {"bob@B.Test", b}, {"Boss@a.test", special}} {
		res := deliverOne(t, tr, delivery(tc.from, "dest.test", testMessage, "x@dest.test"))
		wantStatus(t, res[0], queue.Sent)
		if m := tc.s.messages(); len(m) == 0 || m[len(m)-1].from != tc.from {
			t.Errorf("%s: sink %s messages %+v", tc.from, tc.s.addr, m)
		}
	}
	if len(a.messages()) != 1 || len(b.messages()) != 1 || len(special.messages()) != 1 {
		t.Errorf("messages: a %d, b %d, special %d", len(a.messages()), len(b.messages()), len(special.messages()))
	}
	if !tr.NoSign("carol@b.test", "dest.test") || tr.NoSign("alice@a.test", "dest.test") {
		t.Error("NoSign does not follow the sender relay")
	}
	if r := tr.Route("z@only-x.test", "y.test"); r.Via != deliver.ViaMX {
		t.Errorf("relay limited to x.test used for y.test: %v", r)
	}
	if r := tr.Route("z@only-x.test", "x.test"); r.Via != deliver.ViaSenderRelay || r.Match != "@only-x.test" {
		t.Errorf("route %v", r)
	}
}

func TestTransportMapSkipsMX(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.zone.add(t, "mapped.test. 300 IN MX 10 mx1.mapped.test.", "mx1.mapped.test. 300 IN A 127.0.0.2")
	mx := e.net.start(t, "127.0.0.2", sinkOpts{})
	direct := e.net.start(t, "127.0.0.5", sinkOpts{})
	c := e.config()
	c.Transport = map[string]string{"mapped.test": "[127.0.0.5]:" + strconv.Itoa(e.net.port)}
	tr := newTransport(t, deliver.Options{Config: c})
	res := deliverOne(t, tr, delivery("a@sender.test", "mapped.test", testMessage, "bob@mapped.test"))
	wantStatus(t, res[0], queue.Sent)
	if want := remote("127.0.0.5", "127.0.0.5", e.net.port); res[0].Remote != want {
		t.Errorf("remote %q, want %q", res[0].Remote, want)
	}
	if len(direct.messages()) != 1 || mx.conns.Load() != 0 || e.zone.queries.Load() != 0 {
		t.Errorf("direct %d messages, mx %d conns, %d DNS queries", len(direct.messages()), mx.conns.Load(), e.zone.queries.Load())
	}
}

func TestTransportMapMXLookupOnHost(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.zone.add(t, "gateway.test. 300 IN MX 10 mx.gateway.test.", "mx.gateway.test. 300 IN A 127.0.0.3")
	s := e.net.start(t, "127.0.0.3", sinkOpts{})
	c := e.config()
	c.Transport = map[string]string{".internal.test": "gateway.test"}
	tr := newTransport(t, deliver.Options{Config: c})
	res := deliverOne(t, tr, delivery("a@sender.test", "dept.internal.test", testMessage, "bob@dept.internal.test"))
	wantStatus(t, res[0], queue.Sent)
	if len(s.messages()) != 1 {
		t.Errorf("gateway got %d messages", len(s.messages()))
	}
}

func TestContextCancelled(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.zone.add(t, "slow.test. 300 IN A 127.0.0.2")
	hook, release := make(chan struct{}), make(chan struct{})
	e.net.start(t, "127.0.0.2", sinkOpts{dataHook: hook, release: release})
	defer close(release)
	tr := newTransport(t, deliver.Options{Config: e.config()})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-hook:
		case <-ctx.Done():
		}
		cancel()
	})
	res := tr.Deliver(ctx, delivery("a@sender.test", "slow.test", testMessage, "bob@slow.test"))
	cancel()
	wg.Wait()
	wantStatus(t, res[0], queue.Deferred)
}
