package inbound

import (
	"bytes"
	"io"
	"net"
	"testing"
)

func TestMarkBare(t *testing.T) {
	for in, want := range map[string]string{
		"MAIL FROM:<root>\r\n":              "MAIL FROM:<root@" + bareMark + ">\r\n",
		"MAIL FROM: <root> SIZE=10\r\n":     "MAIL FROM: <root@" + bareMark + "> SIZE=10\r\n",
		"mail from:root\r\n":                "mail from:root@" + bareMark + "\r\n",
		"RCPT TO:<postmaster>\r\n":          "RCPT TO:<postmaster@" + bareMark + ">\r\n",
		"MAIL FROM:<root@web01>\r\n":        "MAIL FROM:<root@web01>\r\n",
		"MAIL FROM:<>\r\n":                  "MAIL FROM:<>\r\n",
		"MAIL FROM:<\"a b\">\r\n":           "MAIL FROM:<\"a b\">\r\n",
		"RCPT TO:<@route.example:bob>\r\n":  "RCPT TO:<@route.example:bob>\r\n",
		"MAIL FROM:<root> BODY=8BITMIME\n":  "MAIL FROM:<root@" + bareMark + "> BODY=8BITMIME\n",
		"RCPT TO:<x@y> NOTIFY=NEVER\r\n":    "RCPT TO:<x@y> NOTIFY=NEVER\r\n",
		"NOOP MAIL FROM:<root>\r\n":         "NOOP MAIL FROM:<root>\r\n",
		"MAIL FROM:<root>\r\nQUIT\r\n"[:18]: "MAIL FROM:<root@" + bareMark + ">\r\n",
	} {
		b := &barePathConn{}
		b.feed([]byte(in))
		if got := string(b.out); got != want {
			t.Errorf("%q became %q, want %q", in, got, want)
		}
	}
}

// pipeConn serves a fixed stream to Read.
type pipeConn struct {
	net.Conn
	r io.Reader
}

func (p pipeConn) Read(b []byte) (int, error) { return p.r.Read(b) }

// TestBarePathConnChunks: however the client's bytes are cut, go-smtp gets
// the same stream; the message after DATA is never changed (only the
// commands around it are).
func TestBarePathConnChunks(t *testing.T) {
	in := "EHLO x\r\nMAIL FROM:<root>\r\nRCPT TO:<ops@example.net>\r\nDATA\r\n" +
		"MAIL FROM:<root>\r\n.\n\r\nRCPT TO:<x>\r\r\n.\r\nMAIL FROM:<root>\r\n..\r\n.\r\n" +
		"MAIL FROM:<root>\r\nBDAT 5 LAST\r\nMAIL FROM:<root>\r\n"
	want := "EHLO x\r\nMAIL FROM:<root@bare.invalid>\r\nRCPT TO:<ops@example.net>\r\nDATA\r\n" +
		"MAIL FROM:<root>\r\n.\n\r\nRCPT TO:<x>\r\r\n.\r\nMAIL FROM:<root>\r\n..\r\n.\r\n" +
		"MAIL FROM:<root@bare.invalid>\r\nBDAT 5 LAST\r\nMAIL FROM:<root>\r\n"
	for size := 1; size <= len(in); size++ {
		b := &barePathConn{Conn: pipeConn{r: &chunks{s: in, n: size}}}
		got, err := io.ReadAll(b)
		if err != nil || string(got) != want {
			t.Fatalf("chunks of %d: %v\n%q\nwant\n%q", size, err, got, want)
		}
	}
	if !bytes.Contains([]byte(want), []byte("bare.invalid")) || bareMark != "bare.invalid" {
		t.Fatal("bareMark changed: update the test")
	}
}

type chunks struct {
	s string
	n int
}

func (c *chunks) Read(p []byte) (int, error) {
	if c.s == "" {
		return 0, io.EOF
	}
	n := copy(p, c.s[:min(c.n, len(c.s))])
	c.s = c.s[n:]
	return n, nil
}
