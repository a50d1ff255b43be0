package queue

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

func FuzzDecode(f *testing.F) {
	env := &Envelope{From: "a@example.com", To: []string{"b@example.org"}, Received: time.Unix(1700000000, 0)}
	body := []byte("Subject: x\r\n\r\nhello\r\n")
	tr, _ := encodeTrailer(int64(len(body)), []byte("Received: x\r\n"), env)
	good := append(append([]byte(nil), body...), tr...)
	f.Add(good)
	f.Add(good[len(body):])
	f.Add([]byte("INKQ"))
	f.Add(bytes.Repeat([]byte{0xff}, footerLen))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, err := decodeRecord(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("error %v does not wrap errCorrupt", err)
			}
			return
		}
		if rec.BodyLen < 0 || rec.Size() > int64(len(data)) || len(rec.Env.To) == 0 {
			t.Fatalf("bad record %+v from %d bytes", rec, len(data))
		}
		// What decodes must encode to the same trailer.
		again, err := encodeTrailer(rec.BodyLen, rec.Prefix, &rec.Env)
		if err != nil {
			t.Fatal(err)
		}
		if rec2, err := decodeRecord(bytes.NewReader(again), int64(len(again))+rec.BodyLen); err == nil && rec2 == nil {
			t.Fatal("nil record")
		}
	})
}

func FuzzDecodeState(f *testing.F) {
	f.Add([]byte(`{"v":1,"attempts":2,"rcpts":[{"addr":"a@b","status":"pending","next":"2025-11-25T09:00:00Z"}]}`))
	f.Add([]byte(`{"v":1,"rcpts":[{"addr":"a@b","status":"deferred"}]}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := decodeState(data)
		if err != nil {
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("error %v does not wrap errCorrupt", err)
			}
			return
		}
		if _, err := encodeState(st); err != nil {
			t.Fatalf("decoded state does not encode: %v", err)
		}
		st.nextAttempt()
	})
}

func FuzzBuildDSN(f *testing.F) {
	f.Add("relay.test", "alice@example.com", "bob@example.org", "5.1.1", "550 5.1.1 no such user", "mx.example.org", true,
		[]byte("Subject: hi\r\nFrom: alice@example.com\r\n\r\nbody"))
	f.Add("h", "a@b", "jürgen@bücher.example", "", "451 later\r\nInjected: 1", "", false, []byte("\r\n--=_x\n\rX: y"))
	f.Add("", " ", "", "9.9.9", "\x00\x7f\xff", "[192.0.2.1]", true, []byte{0xff, '\n', '\r'})
	f.Fuzz(func(t *testing.T, host, to, rcpt, status, diag, remote string, failed bool, header []byte) {
		// ReportingMTA is the configured hostname, which config.Validate
		// holds to a host name (at most 253 bytes): a long name without a
		// dot or space to fold at cannot reach BuildDSN, so it is not a
		// case to fail on (issue 18: such inputs made 1 run in 8 fail).
		if !mailsyntax.ValidDomain(host, mailsyntax.HostName) {
			host = "relay.test"
		}
		action := ActionDelayed
		if failed {
			action = ActionFailed
		}
		d := &DSN{
			ReportingMTA: host, To: to, QueueID: "0CO1MBLB8S7J5D2E", Arrival: time.Unix(1700000000, 0),
			Rcpts: []DSNRcpt{
				{Addr: rcpt, Action: action, Status: status, Diagnostic: diag, RemoteMTA: remote},
				{Addr: "second@example.org", Action: ActionFailed},
			},
			Header: header,
		}
		raw, err := BuildDSN(d)
		if err != nil {
			if clean(to) != "" {
				t.Fatalf("BuildDSN: %v", err)
			}
			return
		}
		p, err := parseDSNErr(raw)
		if err != nil {
			t.Fatalf("DSN does not parse: %v\n%q", err, raw)
		}
		if len(p.Rcpts) != 2 {
			t.Fatalf("%d recipient blocks, want 2\n%q", len(p.Rcpts), raw)
		}
		r := p.Rcpts[0]
		if r.Get("Action") != action || !statusRE.MatchString(r.Get("Status")) {
			t.Fatalf("fields = %v", r.Map())
		}
		if c := clean(rcpt); !strings.HasSuffix(r.Get("Final-Recipient"), "; "+c) && c != "" {
			t.Fatalf("Final-Recipient = %q, want %q", r.Get("Final-Recipient"), c)
		}
		for _, line := range strings.Split(string(raw), "\r\n") {
			if len(line) > 998 {
				t.Fatalf("line of %d bytes", len(line))
			}
		}
	})
}
