package inbound_test

import (
	"bytes"
	"io"
	"net"
	"net/textproto"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"
	gosasl "github.com/emersion/go-sasl"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/queue"
	"github.com/inkan-relay/inkan/relay/inbound"
)

// headerOf returns the header section of a spooled message.
func headerOf(b []byte) string {
	if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
		return string(b[:i+2])
	}
	return string(b)
}

// signedFor checks that b carries a signature that verifies, with d=domain.
func (e *env) signedFor(b []byte, domain string) *dkim.Verification {
	e.t.Helper()
	for _, v := range e.verifyDKIM(b) {
		if v.Err == nil && v.Domain == domain {
			return v
		}
	}
	e.t.Fatalf("no valid signature for d=%s:\n%s", domain, headerOf(b))
	return nil
}

// queued is what the queue stored for id.
func (e *env) queued(id string) queue.Info {
	e.t.Helper()
	info, err := e.q.Get(id)
	if err != nil {
		e.t.Fatal(err)
	}
	return info
}

// TestOriginCompletesLocalAndTrusted: a trusted client's unqualified
// addresses (root, root@web01) are completed with the origin domain (here
// the only signing domain) in the envelope and in From and To, before the
// policy and the signer: the message is signed d=example.com, the
// envelope is root@example.com, and Received keeps what the client gave.
func TestOriginCompletesLocalAndTrusted(t *testing.T) {
	e := start(t, nil)
	c := e.dial(inbound.KindRelay, "127.0.0.2")
	body := "From: root (Cron Daemon)\r\nTo: root, ops@example.net\r\nCc: \"Web\" <www-data@localhost>\r\n" +
		"Subject: cron <root@web01> run-parts\r\n\r\nDone.\r\n"
	reply, err := send(c, "root@web01", []string{"ops@example.net", "backup@web01"}, body)
	if err != nil {
		t.Fatal(err)
	}
	id := queuedID(t, reply)
	b := e.body(id)
	hdr := headerOf(b)
	for _, want := range []string{
		"From: root@example.com (Cron Daemon)\r\n",
		"To: root@example.com, ops@example.net\r\n",
		"Cc: \"Web\" <www-data@example.com>\r\n",
		"Subject: cron <root@web01> run-parts\r\n", // not an address field
		"(original sender <root@web01>, From <root>)",
	} {
		if !strings.Contains(hdr, want) {
			t.Errorf("header lacks %q:\n%s", want, hdr)
		}
	}
	e.signedFor(b, "example.com")
	info, err := e.q.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if info.From != "root@example.com" || len(info.Rcpts) != 2 || info.Rcpts[1].Addr != "backup@example.com" {
		t.Errorf("envelope from %q rcpts %+v", info.From, info.Rcpts)
	}
}

// TestOriginSetAndKept: rewrite.origin_domain wins over the derivation; a
// domain delivery.transport routes is never completed.
func TestOriginSetAndKept(t *testing.T) {
	e := start(t, func(c *config.Config) {
		c.Rewrite.OriginDomain = "example.org"
		c.Delivery.Transport = map[string]string{"intranet": "[127.0.0.9]:25"}
	})
	c := e.dial(inbound.KindRelay, "127.0.0.2")
	reply, err := send(c, "scanner@localhost", []string{"bob@intranet", "root"}, "Subject: scan\r\n\r\nx\r\n")
	if err != nil {
		t.Fatal(err)
	}
	info, _ := e.q.Get(queuedID(t, reply))
	if info.From != "scanner@example.org" || info.Rcpts[0].Addr != "bob@intranet" || info.Rcpts[1].Addr != "root@example.org" {
		t.Errorf("envelope from %q rcpts %+v", info.From, info.Rcpts)
	}
}

// TestUnqualifiedFromAuthenticatedRefused: an authenticated user is never
// rewritten; an address without a fully-qualified domain is refused with
// 553 5.1.7 (sender) or 5.1.3 (recipient) and a sentence, and a From with
// a local part alone is not read as anyone.
func TestUnqualifiedFromAuthenticatedRefused(t *testing.T) {
	e := start(t, nil)
	c := e.dialStartTLS("127.0.0.1")
	if err := c.Auth(gosasl.NewPlainClient("", "alice", testPassword)); err != nil {
		t.Fatal(err)
	}
	err := c.Mail("alice@web01", nil)
	if code(err) != 553 || enhanced(err) != "5.1.7" || !strings.Contains(err.Error(), "not fully qualified") {
		t.Errorf("MAIL FROM:<alice@web01>: %v", err)
	}
	if err := c.Mail("alice@example.com", nil); err != nil {
		t.Fatal(err)
	}
	err = c.Rcpt("bob@web01", nil)
	if code(err) != 553 || enhanced(err) != "5.1.3" {
		t.Errorf("RCPT TO:<bob@web01>: %v", err)
	}
	c.Reset()
	_, err = send(c, "alice@example.com", []string{"bob@example.net"}, "From: alice\r\nSubject: x\r\n\r\nx\r\n")
	if code(err) != 550 || enhanced(err) != "5.6.0" {
		t.Errorf("From: alice from an authenticated user: %v", err)
	}
}

// TestSenderMapBeforePolicy: a network's canonical map rewrites the
// envelope and header sender before its sender policy, which allows only
// @example.com: scan@nas.lan passes as scan@example.com, signed for it.
func TestSenderMapBeforePolicy(t *testing.T) {
	e := start(t, func(c *config.Config) {
		c.Auth.Networks = []config.Network{{Name: "scanners", CIDRs: []string{"127.0.0.3/32"}, Senders: []string{"@example.com"},
			RewriteSenders: []config.SenderRewrite{{Match: "@nas.lan", Replace: "@example.com"}}}}
		c.Rewrite.Senders = []config.SenderRewrite{{Match: "scan@example.com", Replace: "scanner@example.com", Scope: config.ScopeHeader}}
	})
	c := e.dial(inbound.KindRelay, "127.0.0.3")
	reply, err := send(c, "scan@nas.lan", []string{"ops@example.net"}, "From: Scanner <scan@nas.lan>\r\nTo: ops@example.net\r\nSubject: s\r\n\r\nx\r\n")
	if err != nil {
		t.Fatal(err)
	}
	id := queuedID(t, reply)
	b := e.body(id)
	// The network's map first (@nas.lan), then the global one: scan@example.com
	// is a header-only line, so only From becomes scanner@.
	if !strings.Contains(headerOf(b), "From: Scanner <scan@example.com>\r\n") {
		t.Errorf("header:\n%s", headerOf(b))
	}
	if info, _ := e.q.Get(id); info.From != "scan@example.com" {
		t.Errorf("envelope from %q", info.From)
	}
	e.signedFor(b, "example.com")
	// What the map does not cover still meets the policy.
	err = c.Mail("scan@other.test", nil)
	if code(err) != 553 || enhanced(err) != "5.7.1" {
		t.Errorf("MAIL FROM:<scan@other.test>: %v", err)
	}
}

// TestHygiene: missing To gets undisclosed-recipients, an unlabelled 8-bit
// body gets MIME labels (utf-8, or unknown-8bit when it is not UTF-8), a
// Content-Type without MIME-Version gets one, all before signing (the
// signature covers them and verifies), whether the body fits the read
// buffer or is spooled first; 7-bit and labelled mail is left alone. The
// envelope records 8-bit content for the next hop.
func TestHygiene(t *testing.T) {
	e := start(t, nil)
	big := strings.Repeat("Caf\xe9 cr\xe8me br\xfbl\xe9e\r\n", 4000) // Latin-1, 80 KB: spooled, then signed
	for _, tc := range []struct {
		name, body string
		want, not  []string
		eight      bool
	}{
		{"utf-8", "From: a@example.com\r\nSubject: s\r\n\r\nCaf\xc3\xa9\r\n",
			[]string{"To: undisclosed-recipients:;\r\n", "MIME-Version: 1.0\r\n", "Content-Type: text/plain; charset=utf-8\r\n", "Content-Transfer-Encoding: 8bit\r\n"}, nil, true},
		{"latin-1", "From: a@example.com\r\nTo: x@example.net\r\nSubject: s\r\n\r\nCaf\xe9\r\n",
			[]string{"Content-Type: text/plain; charset=unknown-8bit\r\n"}, []string{"undisclosed"}, true},
		{"latin-1 large", "From: a@example.com\r\nTo: x@example.net\r\nSubject: s\r\n\r\n" + big,
			[]string{"Content-Type: text/plain; charset=unknown-8bit\r\n", "MIME-Version: 1.0\r\n"}, nil, true},
		{"bare LF and no header end", "From: a@example.com\nSubject: s\nCaf\xc3\xa9\n",
			[]string{"Content-Type: text/plain; charset=utf-8\r\n"}, nil, true},
		{"7-bit", "From: a@example.com\r\nCc: x@example.net\r\nSubject: s\r\n\r\nplain\r\n",
			nil, []string{"MIME-Version", "Content-Type", "undisclosed"}, false},
		{"labelled", "From: a@example.com\r\nTo: x@example.net\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\nCaf\xe9\r\n",
			nil, []string{"utf-8", "unknown-8bit", "Content-Transfer-Encoding"}, true},
		{"content-type only", "From: a@example.com\r\nTo: x@example.net\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>hi</p>\r\n",
			[]string{"MIME-Version: 1.0\r\n"}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.dial(inbound.KindRelay, "127.0.0.2")
			reply, err := send(c, "a@example.com", []string{"x@example.net"}, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			id := queuedID(t, reply)
			b := e.body(id)
			hdr := headerOf(b)
			for _, w := range tc.want {
				if !strings.Contains(hdr, w) {
					t.Errorf("header lacks %q:\n%s", w, hdr)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(hdr[strings.Index(hdr, "Received:"):], n) && !strings.Contains(tc.body, n) {
					t.Errorf("header has %q:\n%s", n, hdr)
				}
			}
			v := e.signedFor(b, "example.com")
			for _, w := range tc.want {
				name := strings.ToLower(strings.SplitN(w, ":", 2)[0])
				if !strings.Contains(strings.ToLower(strings.Join(v.HeaderKeys, ":")), name) {
					t.Errorf("%s is not signed (h=%v)", name, v.HeaderKeys)
				}
			}
			if got := e.queued(id).Body8Bit; got != tc.eight {
				t.Errorf("envelope body_8bit = %v, want %v", got, tc.eight)
			}
		})
	}
}

// TestHygieneForAuthenticatedToo: the rules are the same on every listener.
func TestHygieneForAuthenticatedToo(t *testing.T) {
	e := start(t, nil)
	c := e.dialStartTLS("127.0.0.1")
	if err := c.Auth(gosasl.NewPlainClient("", "alice", testPassword)); err != nil {
		t.Fatal(err)
	}
	reply, err := send(c, "alice@example.com", []string{"x@example.net"}, "From: alice@example.com\r\nSubject: s\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n")
	if err != nil {
		t.Fatal(err)
	}
	hdr := headerOf(e.body(queuedID(t, reply)))
	if !strings.Contains(hdr, "To: undisclosed-recipients:;") || !strings.Contains(hdr, "charset=utf-8") {
		t.Errorf("header:\n%s", hdr)
	}
}

// TestBareMailFrom: a trusted client's MAIL FROM:<root> and RCPT
// TO:<postmaster>, which go-smtp's parser alone refuses, are completed with
// the origin domain; inside the message nothing is touched, even after the
// sequences go-smtp does not take for its end ("\r\r\n.\r\n", ".\n"),
// and no reply shows the placeholder domain.
func TestBareMailFrom(t *testing.T) {
	e := start(t, nil)
	conn, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).Dial("tcp", e.addr(inbound.KindRelay))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tp := textproto.NewConn(conn)
	expect := func(cmd string, want int) string {
		t.Helper()
		if cmd != "" {
			tp.PrintfLine("%s", cmd)
		}
		_, msg, err := tp.ReadResponse(want)
		if err != nil {
			t.Fatalf("%q: %v", cmd, err)
		}
		return msg
	}
	expect("", 220)
	expect("EHLO web01", 250)
	expect("MAIL FROM:<root>", 250)
	// The replies quote the path as the client wrote it, not the
	// placeholder the server parsed.
	if msg := expect("RCPT TO:<postmaster>", 250); msg != "2.0.0 I'll make sure <postmaster> gets this" {
		t.Errorf("RCPT TO:<postmaster> reply %q", msg)
	}
	expect("RCPT TO:<ops@example.net>", 250)
	expect("DATA", 354)
	body := "From: root\r\nSubject: t\r\n\r\nMAIL FROM:<root>\r\n.\n\r\nRCPT TO:<x>\r\r\n.\r\nMAIL FROM:<root>\r\n"
	io.WriteString(conn, body+".\r\n")
	id := queuedID(t, expect("", 250))
	expect("MAIL FROM:<root>", 250) // after the message: a command again
	expect("RSET", 250)
	b := string(e.body(id))
	if strings.Count(b, "MAIL FROM:<root>\r\n") != 2 || strings.Contains(b, "bare.invalid") || !strings.Contains(b, "From: root@example.com\r\n") {
		t.Errorf("spooled:\n%s", b)
	}
	info, _ := e.q.Get(id)
	if info.From != "root@example.com" || info.Rcpts[0].Addr != "postmaster@example.com" {
		t.Errorf("envelope from %q rcpts %+v", info.From, info.Rcpts)
	}
	// Not trusted, not logged in: refused as before, with the relay reply.
	c := e.dial(inbound.KindRelay, "127.0.0.1")
	if err := c.Mail("root", nil); code(err) != 554 || enhanced(err) != "5.7.1" {
		t.Errorf("untrusted MAIL FROM:<root>: %v", err)
	}
}
