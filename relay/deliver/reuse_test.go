package deliver_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/queue"
	"github.com/inkan-relay/inkan/relay/deliver"
)

func TestConnectionReuse(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.zone.add(t, "reuse.test. 300 IN MX 10 mx1.reuse.test.", "mx1.reuse.test. 300 IN A 127.0.0.2")
	s := e.net.start(t, "127.0.0.2", sinkOpts{tls: serverTLS(t)})
	tr := newTransport(t, deliver.Options{Config: e.config(), IdleTimeout: time.Minute})
	var queries int64
	for i, rcpt := range []string{"a@reuse.test", "b@reuse.test", "c@reuse.test"} {
		res := deliverOne(t, tr, delivery("x@sender.test", "reuse.test", testMessage, rcpt))
		if i == 0 {
			queries = e.zone.queries.Load()
		} else if n := e.zone.queries.Load(); n != queries {
			t.Errorf("delivery %d: %d more DNS queries; answers should be cached", i, n-queries)
		}
		wantStatus(t, res[0], queue.Sent)
		if res[0].TLS == "" {
			t.Errorf("delivery %d: no TLS on the reused connection", i)
		}
	}
	if n := s.conns.Load(); n != 1 {
		t.Errorf("sink saw %d connections, want 1", n)
	}
	if m := s.messages(); len(m) != 3 || m[2].to[0] != "c@reuse.test" || !m[2].tls {
		t.Errorf("sink messages %+v", m)
	}
	if n := tr.IdleConns(); n != 1 {
		t.Errorf("%d idle connections, want 1", n)
	}
	tr.Close()
	if n := tr.IdleConns(); n != 0 {
		t.Errorf("%d idle connections after Close", n)
	}
	// A closed transport still delivers, without pooling.
	res := deliverOne(t, tr, delivery("x@sender.test", "reuse.test", testMessage, "d@reuse.test"))
	wantStatus(t, res[0], queue.Sent)
	if n := tr.IdleConns(); n != 0 {
		t.Errorf("%d idle connections after Close and Deliver", n)
	}
}

func TestReuseWithAuth(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.net.start(t, "127.0.0.4", sinkOpts{tls: serverTLS(t), user: "u", pass: "p"})
	c := e.config()
	c.Smarthost = &config.Smarthost{Address: "[127.0.0.4]", Username: "u", Password: "p"}
	_, pool := selfSigned(t)
	tr := newTransport(t, deliver.Options{Config: c, IdleTimeout: time.Minute, RootCAs: pool})
	for _, dom := range []string{"one.test", "two.test"} {
		res := deliverOne(t, tr, delivery("x@sender.test", dom, testMessage, "bob@"+dom))
		wantStatus(t, res[0], queue.Sent)
	}
	if n := s.conns.Load(); n != 1 {
		t.Errorf("sink saw %d connections, want 1", n)
	}
	if m := s.messages(); len(m) != 2 || m[1].user != "u" {
		t.Errorf("sink messages %+v", m)
	}
}

func TestDeadPooledConnectionIsReplaced(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.zone.add(t, "dead.test. 300 IN A 127.0.0.2")
	s := e.net.start(t, "127.0.0.2", sinkOpts{})
	tr := newTransport(t, deliver.Options{Config: e.config(), IdleTimeout: time.Minute})
	res := deliverOne(t, tr, delivery("x@sender.test", "dead.test", testMessage, "a@dead.test"))
	wantStatus(t, res[0], queue.Sent)
	s.hangUp() // the server times the idle connection out
	res = deliverOne(t, tr, delivery("x@sender.test", "dead.test", testMessage, "b@dead.test"))
	wantStatus(t, res[0], queue.Sent)
	if n := s.conns.Load(); n != 2 {
		t.Errorf("sink saw %d connections, want 2", n)
	}
	if len(s.messages()) != 2 {
		t.Errorf("sink got %d messages", len(s.messages()))
	}
}

func TestIdleConnectionsExpire(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.zone.add(t, "idle.test. 300 IN A 127.0.0.2")
	e.net.start(t, "127.0.0.2", sinkOpts{})
	tr := newTransport(t, deliver.Options{Config: e.config(), IdleTimeout: 20 * time.Millisecond})
	res := deliverOne(t, tr, delivery("x@sender.test", "idle.test", testMessage, "a@idle.test"))
	wantStatus(t, res[0], queue.Sent)
	deadline := time.Now().Add(10 * time.Second)
	for tr.IdleConns() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the idle connection was never closed")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNoReuse(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.zone.add(t, "noreuse.test. 300 IN A 127.0.0.2")
	s := e.net.start(t, "127.0.0.2", sinkOpts{})
	tr := newTransport(t, deliver.Options{Config: e.config(), IdleTimeout: -1})
	for _, r := range []string{"a@noreuse.test", "b@noreuse.test"} {
		wantStatus(t, deliverOne(t, tr, delivery("x@sender.test", "noreuse.test", testMessage, r))[0], queue.Sent)
	}
	if n := s.conns.Load(); n != 2 || tr.IdleConns() != 0 {
		t.Errorf("sink saw %d connections (want 2), %d idle", n, tr.IdleConns())
	}
}

// TestReuseWithoutRSET: a pooled connection whose transaction ended
// cleanly is used again without RSET (a round trip per message); one
// whose DATA command was refused, which may leave MAIL and RCPT in force
// on the server, is reset first. No EHLO is sent again.
func TestReuseWithoutRSET(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.zone.add(t, "rset.test. 300 IN A 127.0.0.6")
	mx := startRawMX(t, "127.0.0.6:"+strconv.Itoa(e.net.port))
	mx.refuseData = 1
	tr := newTransport(t, deliver.Options{Config: e.config(), IdleTimeout: time.Minute})
	res := deliverOne(t, tr, delivery("x@sender.test", "rset.test", testMessage, "a@rset.test"))
	wantStatus(t, res[0], queue.Failed)
	for _, rcpt := range []string{"b@rset.test", "c@rset.test"} {
		res := deliverOne(t, tr, delivery("x@sender.test", "rset.test", testMessage, rcpt))
		wantStatus(t, res[0], queue.Sent)
	}
	mx.mu.Lock()
	defer mx.mu.Unlock()
	want := "EHLO MAIL RCPT DATA RSET MAIL RCPT DATA MAIL RCPT DATA"
	if got := strings.Join(mx.cmds, " "); got != want || mx.conns != 1 {
		t.Errorf("commands %q on %d connections, want %q on 1", got, mx.conns, want)
	}
}
