package main

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/inkan-relay/inkan/queue"
)

func TestParseQueueList(t *testing.T) {
	entries, err := parseQueueList("Mail queue is empty\n")
	if err != nil || len(entries) != 0 {
		t.Fatalf("empty: %v %v", entries, err)
	}
	out := `-Queue ID-        --Size-- ----Arrival Time---- -Sender/Recipient-------
06H14D2O5OLCD9T6     60412 Wed Nov 25 10:17:03  filler@disk.test
                                              (4.4.1 connect to [127.0.0.1]:1: connection refused)
                                              rcpt@disk.test

06H14D2O6UQI9JPC!      100 Wed Nov 25 10:17:03  MAILER-DAEMON
                                              x@y.test

-- 60 Kbytes in 2 Requests.
`
	entries, err = parseQueueList(out)
	if err != nil || len(entries) != 2 {
		t.Fatalf("got %v %v", entries, err)
	}
	if e := entries[0]; e.id != "06H14D2O5OLCD9T6" || e.from != "filler@disk.test" || strings.Join(e.rcpts, ",") != "rcpt@disk.test" {
		t.Errorf("first entry %+v", e)
	}
	if e := entries[1]; e.id != "06H14D2O6UQI9JPC" || e.from != "MAILER-DAEMON" || strings.Join(e.rcpts, ",") != "x@y.test" {
		t.Errorf("second entry %+v", e)
	}
	if _, err := parseQueueList("inkan queue: something broke\n"); err == nil {
		t.Fatal("garbage parsed without error")
	}
}

func TestParseMetric(t *testing.T) {
	in := "# HELP go_goroutines Number of goroutines.\n# TYPE go_goroutines gauge\ngo_goroutines 42\n" +
		"go_goroutines_other 7\ninkan_x{kind=\"a b\"} 3.5\n"
	for name, want := range map[string]float64{"go_goroutines": 42, "inkan_x": 3.5} {
		got, err := parseMetric(strings.NewReader(in), name)
		if err != nil || got != want {
			t.Errorf("%s = %v, %v; want %v", name, got, err, want)
		}
	}
	if _, err := parseMetric(strings.NewReader(in), "go_gor"); err == nil {
		t.Error("prefix of a name matched")
	}
}

func TestParseProcStatus(t *testing.T) {
	st := "Name:\tinkan\nVmPeak:\t  900 kB\nVmRSS:\t   15236 kB\nThreads:\t9\n"
	rss, th, err := parseProcStatus([]byte(st))
	if err != nil || rss != 15236 || th != 9 {
		t.Fatalf("got %d %d %v", rss, th, err)
	}
	if _, _, err := parseProcStatus([]byte("Name:\tx\n")); err == nil {
		t.Fatal("missing fields accepted")
	}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		if _, _, err := parseProcStatus(b); err != nil {
			t.Fatalf("own status: %v", err)
		}
	}
}

func TestComposeAndParseTorture(t *testing.T) {
	led := newLedger("unit")
	m, msg := led.compose("a@x.test", []string{"b@y.test"}, 3000, "X-Extra: 1\r\n")
	run, seq, ok := parseTorture([]byte(msg))
	if !ok || run != "unit" || seq != m.seq {
		t.Fatalf("parse = %q %d %v", run, seq, ok)
	}
	for _, line := range strings.Split(string(bodyOf([]byte(msg))), "\r\n") {
		if strings.HasPrefix(line, ".") {
			t.Fatalf("payload line starts with a dot: %q", line)
		}
	}
	// The relay adds header fields in front; the body stays comparable.
	led.record(m, submission{out: outAcked, id: "X"})
	led.delivered([]string{"b@y.test"}, append([]byte("Received: by relay\r\n"), msg...))
	if tl := led.tally(); tl.accepted != 1 || tl.delivered != 1 || tl.lost != 0 || len(tl.failures) != 0 {
		t.Fatalf("tally %+v", tl)
	}
}

func TestLedgerTally(t *testing.T) {
	led := newLedger("t")
	msgs := map[outcome]*msgRec{}
	bodies := map[outcome]string{}
	for _, o := range []outcome{outAcked, outRefused, outCut, outUnsure} {
		m, body := led.compose("a@x.test", []string{"r@y.test"}, 100, "")
		led.record(m, submission{out: o})
		msgs[o], bodies[o] = m, body
	}
	lost, _ := led.compose("a@x.test", []string{"r@y.test"}, 100, "")
	led.record(lost, submission{out: outAcked, id: "LOSTID"})
	led.delivered([]string{"r@y.test"}, []byte(bodies[outAcked]))
	led.delivered([]string{"r@y.test"}, []byte(bodies[outAcked])) // a duplicate
	led.delivered([]string{"r@y.test"}, []byte(bodies[outUnsure]))
	led.delivered([]string{"r@y.test"}, []byte(bodies[outRefused])) // must be flagged
	damaged := strings.Replace(bodies[outCut], "000000", "XXXXXX", 1)
	led.delivered([]string{"r@y.test"}, []byte(damaged))
	tl := led.tally()
	if tl.attempts != 5 || tl.accepted != 2 || tl.lost != 1 || tl.duplicated != 1 || tl.unackDelivered != 1 {
		t.Fatalf("tally %+v", tl)
	}
	all := strings.Join(tl.failures, "\n")
	for _, want := range []string{"LOSTID", "refused", "different body"} {
		if !strings.Contains(all, want) {
			t.Errorf("failures do not mention %q:\n%s", want, all)
		}
	}
}

func TestParseDSNFromInkan(t *testing.T) {
	led := newLedger("dsn")
	m, msg := led.compose("s@x.test", []string{"bad@y.test", "ok@y.test"}, 200, "")
	led.record(m, submission{out: outAcked})
	raw, err := queue.BuildDSN(&queue.DSN{
		ReportingMTA: "relay.test", To: "s@x.test", QueueID: "06H14D2O5OLCD9T6", Arrival: time.Now(),
		Rcpts: []queue.DSNRcpt{{Addr: "bad@y.test", Action: queue.ActionFailed, Status: "5.1.1",
			RemoteMTA: "mx.y.test", Diagnostic: "550 5.1.1 no such user"}},
		Header: headerOf([]byte(msg)),
	})
	if err != nil {
		t.Fatal(err)
	}
	d, err := parseDSN(raw)
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, raw)
	}
	if d.reportingMTA != "dns; relay.test" || d.run != "dsn" || d.seq != m.seq || len(d.rcpts) != 1 {
		t.Fatalf("report %+v", d)
	}
	r := d.rcpts[0]
	if r.addr != "bad@y.test" || r.action != "failed" || r.status != "5.1.1" || !strings.Contains(r.diag, "550 5.1.1") {
		t.Fatalf("recipient %+v", r)
	}
	led.bounced(d)
	led.delivered([]string{"ok@y.test"}, []byte(msg))
	if tl := led.tally(); tl.lost != 0 || tl.bounced != 1 || tl.delivered != 1 {
		t.Fatalf("tally %+v", tl)
	}
	if _, err := parseDSN([]byte("Subject: hi\r\n\r\nnot a report\r\n")); err == nil {
		t.Fatal("a plain message parsed as a DSN")
	}
}

func TestClientReadAndSubmit(t *testing.T) {
	srv, cli := net.Pipe()
	defer srv.Close()
	c := &client{conn: cli, r: bufio.NewReader(cli)}
	go func() {
		br := bufio.NewReader(srv)
		srv.Write([]byte("250-first\r\n250-SIZE 10\r\n250 last\r\n"))
		for _, want := range []string{"MAIL", "RCPT", "DATA"} {
			line, _ := br.ReadString('\n')
			if !strings.HasPrefix(line, want) {
				srv.Write([]byte("500 unexpected\r\n"))
				return
			}
			if want == "DATA" {
				srv.Write([]byte("354 go\r\n"))
			} else {
				srv.Write([]byte("250 2.0.0 ok\r\n"))
			}
		}
		// Read the message and the dot, then vanish without a reply.
		for {
			line, err := br.ReadString('\n')
			if err != nil || line == ".\r\n" {
				break
			}
		}
		srv.Close()
	}()
	r, err := c.read()
	if err != nil || r.code != 250 || r.text != "first\nSIZE 10\nlast" {
		t.Fatalf("read = %+v %v", r, err)
	}
	s := c.submit("a@x.test", []string{"b@y.test"}, "Subject: x\r\n\r\nbody\r\n", nil)
	if s.out != outUnsure || s.stage != "dot" {
		t.Fatalf("submit = %+v, want unsure at the dot", s)
	}
	if got := (reply{code: 452, text: "4.3.1 full"}).enhanced(); got != "4.3.1" {
		t.Fatalf("enhanced = %q", got)
	}
}

func TestWriteTable(t *testing.T) {
	rows := []*result{
		{Name: "ok", Attempts: 3, Accepted: 3, Delivered: 3},
		{Name: "lossy", Attempts: 3, Accepted: 3, Delivered: 2, Lost: 1},
		{Name: "skipped", Skipped: "no tmpfs"},
	}
	var b bytes.Buffer
	writeTable(&b, rows, time.Second)
	out := b.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if last := lines[len(lines)-1]; last != "1 passed, 1 failed, 1 skipped" {
		t.Fatalf("last line %q\n%s", last, out)
	}
	if !strings.Contains(out, "SKIP skipped: no tmpfs") || !strings.Contains(out, "lossy") {
		t.Fatalf("table:\n%s", out)
	}
}

func TestWants(t *testing.T) {
	h := &harness{filters: []string{"fault/null-mx", "load"}}
	for name, want := range map[string]bool{"fault": true, "fault/null-mx": true, "fault/mx-421": false,
		"load": true, "crash": false, "abuse/smuggling": false} {
		if got := h.wants(name); got != want {
			t.Errorf("wants(%q) = %v", name, got)
		}
	}
}

func TestKnownScenario(t *testing.T) {
	for f, want := range map[string]bool{"crash": true, "fault": true, "fault/null-mx": true, "fault/nope": false,
		"abuse/smuggling": true, "secrets/logs": true, "crash/x": false, "bogus": false} {
		if got := knownScenario(f); got != want {
			t.Errorf("knownScenario(%q) = %v", f, got)
		}
	}
}
