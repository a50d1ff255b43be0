package inbound_test

import (
	"crypto/tls"
	"encoding/base64"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/inkan-relay/inkan/auth"
	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/relay/inbound"
)

// The attacks of issue 11 ("Authentication and abuse"), each against the
// real server over loopback sockets.

// An attacker with an account of its own guesses alice's password and logs
// in as itself between guesses, hoping its successes wipe the failures.
func TestAttackLockoutBypassWithOwnAccount(t *testing.T) {
	e := start(t, nil) // auth.max_failures: 3
	lim := e.srv.Limiter()
	lim.BaseDelay, lim.MaxDelay = 0, 0
	var wrong, locked int
	for i := range 12 {
		c := e.dial(inbound.KindSMTPS, "127.0.0.1")
		switch err := c.Auth(sasl.NewPlainClient("", "alice", "guess"+string(rune('a'+i)))); {
		case code(err) == 535:
			wrong++
		case code(err) == 454 && enhanced(err) == "4.7.0":
			locked++
		default:
			t.Fatalf("guess %d: %v", i, err)
		}
		c.Close()
		own := e.dial(inbound.KindSMTPS, "127.0.0.1")
		if err := own.Auth(sasl.NewPlainClient("", "bob@example.net", testPassword)); err != nil {
			t.Fatalf("the attacker's own login %d: %v", i, err)
		}
		own.Close()
	}
	if wrong > 3 {
		t.Errorf("%d of 12 guesses for alice were checked (535), want at most max_failures=3; %d locked out", wrong, locked)
	}
	// alice is locked out from this address, even with her password...
	c := e.dial(inbound.KindSMTPS, "127.0.0.1")
	if err := c.Auth(sasl.NewPlainClient("", "alice", testPassword)); code(err) != 454 {
		t.Errorf("alice after the guesses: %v, want 454 4.7.0", err)
	}
	// ...but not from elsewhere.
	c = e.dial(inbound.KindSMTPS, "127.0.0.3")
	if err := c.Auth(sasl.NewPlainClient("", "alice", testPassword)); err != nil {
		t.Errorf("alice from another address: %v", err)
	}
}

// Many connections guess at the same moment: the lockout must hold although
// no failure has been recorded when they all start.
func TestAttackParallelGuesses(t *testing.T) {
	e := start(t, func(c *config.Config) { c.Limits.MaxConnectionsPerIP = 50 })
	lim := e.srv.Limiter()
	lim.BaseDelay, lim.MaxDelay = 0, 0
	const n = 20
	codes := parallelAuth(t, e, n, "alice", "wrong")
	var checked int
	for i, c := range codes {
		switch c {
		case 535:
			checked++
		case 454:
		default:
			t.Errorf("connection %d: reply %d, want 535 or 454", i, c)
		}
	}
	if checked > 3 {
		t.Errorf("%d of %d parallel guesses were checked (535), want at most max_failures=3", checked, n)
	}
}

// parallelAuth opens n implicit-TLS sessions from 127.0.0.1, sends AUTH
// PLAIN as user in all of them at the same moment and returns the reply
// codes (0: no reply).
func parallelAuth(t *testing.T, e *env, n int, user, pass string) []int {
	t.Helper()
	var conns []*textproto.Conn
	for range n {
		conns = append(conns, smtpsRaw(t, e, "127.0.0.1"))
	}
	codes := make([]int, n)
	var wg sync.WaitGroup
	startGun := make(chan struct{})
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-startGun
			id, _ := c.Cmd("AUTH PLAIN %s", base64.StdEncoding.EncodeToString([]byte("\x00"+user+"\x00"+pass)))
			c.StartResponse(id)
			codes[i], _, _ = c.ReadResponse(0)
			c.EndResponse(id)
		}()
	}
	close(startGun)
	wg.Wait()
	return codes
}

// A client that opens many sessions at once with the right password (a
// Postfix smarthost at its default concurrency, the benchmark's login burst)
// is let in every time: attempts in flight wait for a slot in the lockout's
// budget instead of being refused as if they had failed.
func TestParallelCorrectLoginsAllAccepted(t *testing.T) {
	// Checks slow enough (~50 ms) that the attempts overlap, as the
	// default argon2id's do.
	testHashCost = 10
	defer func() { testHashCost = 4 }()
	e := start(t, func(c *config.Config) { c.Limits.MaxConnectionsPerIP = 50 })
	const n = 12 // well above max_failures (3)
	codes := parallelAuth(t, e, n, "alice", testPassword)
	for i, c := range codes {
		if c != 235 {
			t.Errorf("connection %d: reply %d to a correct AUTH, want 235", i, c)
		}
	}
}

// The slow-down after a failed AUTH must end when the server shuts down,
// not hold the connection's goroutine for its whole length.
func TestAttackAuthDelayIgnoresShutdown(t *testing.T) {
	e := start(t, nil)
	lim := e.srv.Limiter()
	lim.BaseDelay, lim.MaxDelay = time.Hour, time.Hour
	c := smtpsRaw(t, e, "127.0.0.1")
	id, err := c.Cmd("AUTH PLAIN %s", base64.StdEncoding.EncodeToString([]byte("\x00alice\x00wrong")))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the session is in its delay now
	go func() {
		ctx, cancel := contextWithTimeout(10 * time.Second)
		defer cancel()
		e.srv.Shutdown(ctx)
	}()
	c.StartResponse(id)
	defer c.EndResponse(id)
	got, line, err := c.ReadResponse(0)
	if got != 535 {
		t.Fatalf("AUTH reply after shutdown began: %d %q %v, want 535 within seconds", got, line, err)
	}
}

// smtpsRaw opens an implicit-TLS connection from the loopback address from,
// reads the greeting and says EHLO.
func smtpsRaw(t *testing.T, e *env, from string) *textproto.Conn {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", e.addr(inbound.KindSMTPS), clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	// Only catches hangs: parallel AUTHs wait for each other's hashing,
	// slowly under -race on two cores.
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	c := textproto.NewConn(conn)
	t.Cleanup(func() { c.Close() })
	if _, _, err := c.ReadResponse(220); err != nil {
		t.Fatal(err)
	}
	id, err := c.Cmd("EHLO client.test")
	if err != nil {
		t.Fatal(err)
	}
	c.StartResponse(id)
	_, msg, err := c.ReadResponse(250)
	c.EndResponse(id)
	if err != nil || !strings.Contains(msg, "AUTH") {
		t.Fatalf("EHLO: %q %v", msg, err)
	}
	return c
}

// A stolen password or a runaway device: per-user and per-network quotas
// stop it with a temporary 451 4.7.1 that names the quota.
func TestQuotas(t *testing.T) {
	e := start(t, func(c *config.Config) {
		c.Quotas.User = config.Quota{MessagesPerHour: 2, RecipientsPerHour: 3}
		c.Quotas.Network = config.Quota{MessagesPerDay: 1}
		c.Quotas.Overrides = []config.QuotaOverride{{User: "bob@example.net", MessagesPerHour: 100}}
	})
	c := e.dial(inbound.KindSMTPS, "127.0.0.1")
	if err := c.Auth(sasl.NewPlainClient("", "alice", testPassword)); err != nil {
		t.Fatal(err)
	}
	if _, err := send(c, "alice@example.com", []string{"a@example.net", "b@example.net"}, msg("alice@example.com", "a@example.net", "1")); err != nil {
		t.Fatal(err)
	}
	// Recipients: 2 of 3 used; the second RCPT of this message is refused,
	// the first goes through.
	if err := c.Mail("alice@example.com", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("c@example.net", nil); err != nil {
		t.Fatal(err)
	}
	err := c.Rcpt("d@example.net", nil)
	if code(err) != 451 || enhanced(err) != "4.7.1" || !strings.Contains(err.Error(), "3 recipients per hour") {
		t.Fatalf("RCPT over the recipient quota: %v, want 451 4.7.1 naming it", err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(msg("alice@example.com", "c@example.net", "2")))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// Messages: 2 of 2 used.
	err = c.Mail("alice@example.com", nil)
	if code(err) != 451 || enhanced(err) != "4.7.1" || !strings.Contains(err.Error(), "user alice may send 2 messages per hour and has sent 2") {
		t.Fatalf("MAIL over the message quota: %v, want 451 4.7.1 naming it", err)
	}
	// bob's override lifts the message quota and, replacing the whole
	// quota, the recipient one.
	cb := e.dial(inbound.KindSMTPS, "127.0.0.1")
	if err := cb.Auth(sasl.NewPlainClient("", "bob@example.net", testPassword)); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := send(cb, "bob@example.net", []string{"a@example.net", "b@example.net"}, msg("bob@example.net", "a@example.net", "b")); err != nil {
			t.Fatalf("bob's message %d: %v", i, err)
		}
	}
	// A trusted network's clients share the network's quota.
	r := e.dial(inbound.KindRelay, "127.0.0.2")
	if _, err := send(r, "printer@example.com", []string{"x@example.net"}, "Subject: scan\r\n\r\nscan\r\n"); err != nil {
		t.Fatal(err)
	}
	r = e.dial(inbound.KindRelay, "127.0.0.2")
	err = r.Mail("printer@example.com", nil)
	if code(err) != 451 || !strings.Contains(err.Error(), "network trusted_networks may send 1 messages per day") {
		t.Fatalf("second message from the network: %v, want 451 4.7.1", err)
	}
	got := map[string]auth.SenderUsage{}
	for _, u := range e.srv.Quotas().Usage() {
		got[u.Sender.String()] = u
	}
	if u := got["user alice"]; u.MessagesHour != 2 || u.RecipientsDay != 3 {
		t.Errorf("alice's usage %+v, want 2 messages to 3 recipients", u)
	}
	if u := got["user bob@example.net"]; u.MessagesDay != 3 || u.RecipientsHour != 6 {
		t.Errorf("bob's usage %+v", u)
	}
	if u := got["network trusted_networks"]; u.MessagesDay != 1 {
		t.Errorf("network usage %+v", u)
	}
}

// A stolen password with the default settings: the 1001st message in an
// hour is refused (quotas.user.messages_per_hour: 1000). The first 999 are
// counted directly; sending them costs 15 seconds of fsyncs.
func TestAttackStolenPasswordDefaultQuota(t *testing.T) {
	e := start(t, nil)
	e.srv.Quotas().Add(auth.Sender{Name: "alice"}, 999, 999)
	c := e.dial(inbound.KindSMTPS, "127.0.0.1")
	if err := c.Auth(sasl.NewPlainClient("", "alice", testPassword)); err != nil {
		t.Fatal(err)
	}
	body := msg("alice@example.com", "x@example.net", "spam")
	if _, err := send(c, "alice@example.com", []string{"x@example.net"}, body); err != nil {
		t.Fatalf("message 1000: %v", err)
	}
	_, err := send(c, "alice@example.com", []string{"x@example.net"}, body)
	if code(err) != 451 || enhanced(err) != "4.7.1" || !strings.Contains(err.Error(), "1000 messages per hour") {
		t.Fatalf("message 1001 in an hour: %v, want 451 4.7.1", err)
	}
}
