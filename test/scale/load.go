package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	signDomain = "scale.test" // the From domain inkan signs for
	sender     = "load@scale.test"
	rcptDomain = "sink.test" // routed to the sink by delivery.transport
)

// messageBody is the body of message seq: lines that name it, about size
// bytes; no line starts with a dot.
func messageBody(seq, size int) []byte {
	var b []byte
	for line := 0; len(b) < size || line == 0; line++ {
		l := fmt.Sprintf("seq %09d line %05d ", seq, line)
		b = append(b, l...)
		for i := len(l); i < 76; i++ {
			b = append(b, byte('a'+(seq+line+i)%26))
		}
		b = append(b, '\r', '\n')
	}
	return b
}

func message(run string, seq, size int) []byte {
	h := fmt.Sprintf("From: <%s>\r\nTo: <rcpt%d@%s>\r\nSubject: scale %s #%d\r\nMessage-ID: <%d.%s@load.scale.test>\r\nX-Scale-Run: %s\r\nX-Scale-Seq: %d\r\n\r\n",
		sender, seq%100, rcptDomain, run, seq, seq, run, run, seq)
	return append([]byte(h), messageBody(seq, size)...)
}

// loadConfig is one load run: sessions parallel SMTP sessions against
// addr, perSession messages in each before QUIT and a new session, until n
// messages were started or duration has passed.
type loadConfig struct {
	addr       string
	sessions   int
	perSession int
	n          int
	size       int
	duration   time.Duration
	led        *ledger
}

// loadResult is what the clients saw.
type loadResult struct {
	start, end   time.Time
	started      int // messages tried
	sessions     int // sessions that got a greeting
	sessionFails int // connections refused, closed or refused before MAIL
	firstFail    string
	lat          []time.Duration // final dot -> 250, sorted
}

func (r loadResult) pct(p float64) time.Duration { return percentile(r.lat, p) }

func runLoad(ctx context.Context, c loadConfig) loadResult {
	var next atomic.Int64
	res := loadResult{start: time.Now()}
	deadline := res.start.Add(c.duration)
	take := func() int {
		if ctx.Err() != nil || time.Now().After(deadline) {
			return 0
		}
		s := int(next.Add(1))
		if s > c.n {
			return 0
		}
		return s
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < c.sessions; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seq := 0
			for {
				if seq == 0 {
					if seq = take(); seq == 0 {
						return
					}
				} else if ctx.Err() != nil || time.Now().After(deadline) {
					return // seq, never tried, stays unbooked
				}
				sent, lat, err := session(c, seq, take)
				if err == nil {
					seq = 0
				}
				mu.Lock()
				res.started += sent
				res.lat = append(res.lat, lat...)
				if err != nil {
					res.sessionFails++
					if res.firstFail == "" {
						res.firstFail = err.Error()
					}
				} else {
					res.sessions++
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	res.end = time.Now()
	sort.Slice(res.lat, func(i, j int) bool { return res.lat[i] < res.lat[j] })
	return res
}

// session opens one SMTP session and sends message seq, then more taken
// from take, up to perSession. It books every message it started. err is a
// session that failed before its first MAIL: seq was not tried.
func session(c loadConfig, seq int, take func() int) (sent int, lat []time.Duration, err error) {
	cl, err := dialSMTP(c.addr)
	if err != nil {
		return 0, nil, err // seq not tried: the caller tries it again
	}
	defer cl.conn.Close()
	for i := 0; i < c.perSession; i++ {
		if i > 0 {
			if seq = take(); seq == 0 {
				break
			}
		}
		sent++
		out, stage, reply, d := cl.send(message(c.led.run, seq, c.size), seq)
		c.led.submitted(seq, out, stage, reply, time.Now())
		if out != outAcked {
			return sent, lat, nil
		}
		lat = append(lat, d)
	}
	cl.cmd("QUIT")
	return sent, lat, nil
}

// smtpClient is a raw SMTP client that knows whether the final dot was
// written before a failure: after it, an unanswered message may have been
// queued; before it, it must not have been.
type smtpClient struct {
	conn net.Conn
	r    *bufio.Reader
}

const cmdTimeout = 30 * time.Second

func dialSMTP(addr string) (*smtpClient, error) {
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	c := &smtpClient{conn: conn, r: bufio.NewReaderSize(conn, 4096)}
	conn.SetDeadline(time.Now().Add(cmdTimeout))
	code, text, err := c.read()
	if err != nil || code != 220 {
		conn.Close()
		return nil, fmt.Errorf("greeting: %d %s %v", code, text, err)
	}
	if code, text, err := c.cmd("EHLO load.scale.test"); err != nil || code != 250 {
		conn.Close()
		return nil, fmt.Errorf("EHLO: %d %s %v", code, text, err)
	}
	return c, nil
}

// read reads one reply, maybe of several lines.
func (c *smtpClient) read() (int, string, error) {
	var text []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return 0, strings.Join(text, " "), err
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 3 {
			return 0, line, fmt.Errorf("malformed reply %q", line)
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil {
			return 0, line, fmt.Errorf("malformed reply %q", line)
		}
		text = append(text, strings.TrimSpace(line[3:]))
		if len(line) == 3 || line[3] != '-' {
			return code, strings.Join(text, " "), nil
		}
	}
}

func (c *smtpClient) cmd(line string) (int, string, error) {
	c.conn.SetDeadline(time.Now().Add(cmdTimeout))
	if _, err := io.WriteString(c.conn, line+"\r\n"); err != nil {
		return 0, "", err
	}
	return c.read()
}

// send runs one transaction. The dot is written with the last of the body,
// in one write: if that write fails, the dot was not sent.
func (c *smtpClient) send(msg []byte, seq int) (out outcome, stage, reply string, lat time.Duration) {
	steps := []struct {
		stage, line string
		want        int
	}{
		{"MAIL", "MAIL FROM:<" + sender + ">", 250},
		{"RCPT", fmt.Sprintf("RCPT TO:<rcpt%d@%s>", seq%100, rcptDomain), 250},
		{"DATA", "DATA", 354},
	}
	for _, s := range steps {
		code, text, err := c.cmd(s.line)
		if err != nil {
			return outCut, s.stage, err.Error(), 0
		}
		if code != s.want {
			return outRefused, s.stage, fmt.Sprintf("%d %s", code, text), 0
		}
	}
	c.conn.SetDeadline(time.Now().Add(cmdTimeout))
	if _, err := c.conn.Write(append(msg, ".\r\n"...)); err != nil {
		return outCut, "body", err.Error(), 0
	}
	t0 := time.Now()
	code, text, err := c.read()
	switch {
	case err != nil:
		if errors.Is(err, io.EOF) {
			return outUnsure, "dot", "connection closed after the final dot", 0
		}
		return outUnsure, "dot", err.Error(), 0
	case code == 250:
		return outAcked, "dot", "", time.Since(t0)
	default:
		return outRefused, "dot", fmt.Sprintf("%d %s", code, text), 0
	}
}
