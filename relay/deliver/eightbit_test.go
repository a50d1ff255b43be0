package deliver_test

import (
	"bufio"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/inkan-relay/inkan/queue"
	"github.com/inkan-relay/inkan/relay/deliver"
)

// rawMX is a minimal SMTP server that says only what it is told to in its
// EHLO reply, so a next hop without 8BITMIME (which go-smtp's server
// always offers), or without PIPELINING, can be tried. It records each
// command, each MAIL command and whether a message was sent; it refuses
// the first refuseData DATA commands with 554. pipeline_test.go sets the
// other replies and reads the rest of the record.
type rawMX struct {
	mu         sync.Mutex
	mails      []string
	cmds       []string
	datas      int
	conns      int
	refuseData int

	mailReplies []string          // replies to the next MAIL commands, in turn; then 250
	rcptReply   map[string]string // reply to RCPT by address; default 250
	loneDot354  bool              // answer DATA with 354 even without recipients (RFC 2920 3.1)
	lines       []string          // each command line, in full
	reads       []string          // what each read of a connection returned
	bodies      []string          // each message as sent, dot-stuffed, without the final ".\r\n"
}

func startRawMX(t *testing.T, addr string, ehlo ...string) *rawMX {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	m := &rawMX{}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { m.serve(c, ehlo) })
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return m
}

// readLog records each read of a connection: what the client sent in one
// write arrives, on loopback, in one read.
type readLog struct {
	net.Conn
	m *rawMX
}

func (r readLog) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	if n > 0 {
		r.m.mu.Lock()
		r.m.reads = append(r.m.reads, string(p[:n]))
		r.m.mu.Unlock()
	}
	return n, err
}

func (m *rawMX) serve(c net.Conn, ehlo []string) {
	defer c.Close()
	m.mu.Lock()
	m.conns++
	m.mu.Unlock()
	tp := textproto.NewConn(readLog{Conn: c, m: m})
	tp.PrintfLine("220 raw.test ESMTP")
	mail, rcpts := false, 0 // the transaction in progress
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.SplitN(line, " ", 2)[0])
		m.mu.Lock()
		m.cmds = append(m.cmds, cmd)
		m.lines = append(m.lines, line)
		refuse := cmd == "DATA" && m.refuseData > 0
		if refuse {
			m.refuseData--
		}
		reply := ""
		switch {
		case cmd == "MAIL" && len(m.mailReplies) > 0:
			reply, m.mailReplies = m.mailReplies[0], m.mailReplies[1:]
		case cmd == "RCPT":
			_, addr, _ := strings.Cut(line, "<")
			addr, _, _ = strings.Cut(addr, ">")
			reply = m.rcptReply[addr]
		}
		loneDot := m.loneDot354
		m.mu.Unlock()
		if refuse {
			tp.PrintfLine("554 5.5.1 no valid recipients")
			continue
		}
		if reply != "" {
			// A reply may have several lines, and 421 hangs up.
			tp.PrintfLine("%s", reply)
			if strings.HasPrefix(reply, "421") {
				return
			}
			continue
		}
		switch cmd {
		case "EHLO":
			tp.PrintfLine("250-raw.test")
			for _, e := range ehlo {
				tp.PrintfLine("250-%s", e)
			}
			tp.PrintfLine("250 SIZE 10000000")
		case "MAIL":
			m.mu.Lock()
			m.mails = append(m.mails, line)
			m.mu.Unlock()
			mail, rcpts = true, 0
			tp.PrintfLine("250 2.1.0 Ok")
		case "RCPT":
			if !mail {
				tp.PrintfLine("503 5.5.1 MAIL first")
				continue
			}
			rcpts++
			tp.PrintfLine("250 2.1.5 Ok")
		case "RSET", "NOOP":
			mail, rcpts = false, 0
			tp.PrintfLine("250 2.0.0 Ok")
		case "DATA":
			if rcpts == 0 && !loneDot {
				tp.PrintfLine("554 5.5.1 no valid recipients")
				continue
			}
			tp.PrintfLine("354 go on")
			body, err := readRawData(tp.R)
			if err != nil {
				return
			}
			if rcpts == 0 {
				tp.PrintfLine("554 5.5.1 no valid recipients")
				continue
			}
			mail, rcpts = false, 0
			m.mu.Lock()
			m.datas++
			m.bodies = append(m.bodies, body)
			m.mu.Unlock()
			tp.PrintfLine("250 2.0.0 Ok: queued")
		case "QUIT":
			tp.PrintfLine("221 2.0.0 Bye")
			return
		default:
			tp.PrintfLine("502 5.5.2 %s not implemented", cmd)
		}
	}
}

// readRawData reads message data up to the line ".\r\n" and returns it as
// it came, dot-stuffing and all.
func readRawData(r *bufio.Reader) (string, error) {
	var b strings.Builder
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		if line == ".\r\n" {
			return b.String(), nil
		}
		b.WriteString(line)
	}
}

func (m *rawMX) seen() ([]string, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.mails...), m.datas
}

// TestEightBitNeedsEightBitMIME: a message with 8-bit bytes goes to a next
// hop that advertises 8BITMIME, declared BODY=8BITMIME; a 7-bit-only next
// hop never gets its bytes (RFC 6152), and the recipients fail with 5.6.3
// saying why, since converting a signed message would break its signature.
// 7-bit mail still goes to the 7-bit server.
func TestEightBitNeedsEightBitMIME(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.zone.add(t, "eight.test. 300 IN A 127.0.0.4", "seven.test. 300 IN A 127.0.0.5")
	port := strconv.Itoa(e.net.port)
	eight := startRawMX(t, "127.0.0.4:"+port, "8BITMIME")
	seven := startRawMX(t, "127.0.0.5:"+port)
	tr := newTransport(t, deliver.Options{Config: e.config()})
	msg8 := "From: a@sender.test\r\nTo: b@x.test\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n" +
		"Content-Transfer-Encoding: 8bit\r\n\r\nCaf\xc3\xa9\r\n"

	d := delivery("a@sender.test", "eight.test", msg8, "b@eight.test")
	d.Body8Bit = true
	wantStatus(t, deliverOne(t, tr, d)[0], queue.Sent)
	if mails, n := eight.seen(); n != 1 || len(mails) != 1 || !strings.Contains(mails[0], "BODY=8BITMIME") {
		t.Errorf("8BITMIME server: MAIL %q, %d messages", mails, n)
	}

	for _, mark := range []func(*queue.Delivery){
		func(d *queue.Delivery) { d.Body8Bit = true },
		func(d *queue.Delivery) { d.Header8Bit = true },
	} {
		d = delivery("a@sender.test", "seven.test", msg8, "b@seven.test")
		mark(d)
		r := deliverOne(t, tr, d)[0]
		wantStatus(t, r, queue.Failed)
		if r.Enhanced != "5.6.3" || !strings.Contains(r.Message, "8BITMIME") || !strings.Contains(r.Message, "DKIM signature") {
			t.Errorf("7-bit server: %+v", r)
		}
	}
	if _, n := seven.seen(); n != 0 {
		t.Fatalf("the 7-bit server got %d 8-bit messages", n)
	}

	d = delivery("a@sender.test", "seven.test", testMessage, "b@seven.test")
	wantStatus(t, deliverOne(t, tr, d)[0], queue.Sent)
	if mails, n := seven.seen(); n != 1 || strings.Contains(mails[len(mails)-1], "BODY=") {
		t.Errorf("7-bit message to the 7-bit server: MAIL %q, %d messages", mails, n)
	}

	// UTF-8 header fields under SMTPUTF8 need SMTPUTF8 of the next hop.
	d = delivery("a@sender.test", "eight.test", msg8, "b@eight.test")
	d.SMTPUTF8, d.Header8Bit = true, true
	r := deliverOne(t, tr, d)[0]
	wantStatus(t, r, queue.Failed)
	if r.Enhanced != "5.6.7" {
		t.Errorf("SMTPUTF8 header to a server without SMTPUTF8: %+v", r)
	}
}
