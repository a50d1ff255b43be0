package main

import (
	"bufio"
	"bytes"
	"net"
	"strings"
	"testing"
	"time"
)

// The parsers read what inkan and the kernel write; none may panic on any
// input, and what they accept must be consistent.

func FuzzParseTorture(f *testing.F) {
	f.Add([]byte("X-Torture-Run: r\r\nX-Torture-Seq: 12\r\n\r\nbody\r\n"))
	f.Add([]byte("X-Torture-Seq:\r\n 7\r\nX-Torture-Run: a\r\n"))
	f.Add([]byte(" leading space\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		run, seq, ok := parseTorture(data)
		if ok && (run == "" || seq <= 0) {
			t.Fatalf("accepted run %q seq %d", run, seq)
		}
		_ = bodyOf(data)
	})
}

func FuzzParseDSN(f *testing.F) {
	f.Add([]byte("Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\n" +
		"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n\r\nFinal-Recipient: rfc822; a@b\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n--b--\r\n"))
	f.Add([]byte("Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\n\r\n--b--\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := parseDSN(data)
		if err == nil && (d.reportingMTA == "" || len(d.rcpts) == 0) {
			t.Fatalf("accepted an incomplete report: %+v", d)
		}
	})
}

func FuzzParseQueueList(f *testing.F) {
	f.Add("Mail queue is empty\n")
	f.Add("06H14D2O5OLCD9T6     60412 Wed Nov 25 10:17:03  a@b\n")
	f.Fuzz(func(t *testing.T, s string) {
		entries, err := parseQueueList(s)
		for _, e := range entries {
			if len(e.id) != 16 || e.from == "" {
				t.Fatalf("bad entry %+v", e)
			}
		}
		if err == nil && len(entries) == 0 && !strings.Contains(s, "Mail queue is empty") {
			t.Fatal("nothing parsed, yet no error")
		}
	})
}

func FuzzParseMetric(f *testing.F) {
	f.Add("go_goroutines 12\n", "go_goroutines")
	f.Add("x{a=\"}\"} 1e3\n", "x")
	f.Fuzz(func(t *testing.T, s, name string) {
		parseMetric(strings.NewReader(s), name)
	})
}

func FuzzParseProcStatus(f *testing.F) {
	f.Add([]byte("VmRSS:\t 100 kB\nThreads:\t4\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rss, th, err := parseProcStatus(b)
		if err != nil && (rss != 0 || th != 0) {
			t.Fatal("values returned with an error")
		}
	})
}

func FuzzReadReply(f *testing.F) {
	f.Add([]byte("250-a\r\n250 b\r\n"))
	f.Add([]byte("220\r\n"))
	f.Add([]byte("99 x\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, z := net.Pipe()
		defer a.Close()
		go func() { z.Write(b); z.Close() }()
		c := &client{conn: a, r: bufio.NewReader(a)}
		a.SetDeadline(time.Now().Add(time.Second))
		r, err := c.read()
		if err == nil && (r.code < 100 || r.code > 599) {
			t.Fatalf("code %d accepted", r.code)
		}
		if err == nil && !bytes.Contains(b, []byte{'\n'}) && len(b) > 0 && r.code == 0 {
			t.Fatal("empty reply without error")
		}
	})
}
