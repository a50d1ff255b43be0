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

// eofChunks is chunks whose last Read returns the final bytes with io.EOF,
// as a connection closed right after its last write may.
type eofChunks struct{ chunks }

func (c *eofChunks) Read(p []byte) (int, error) {
	n, err := c.chunks.Read(p)
	if err == nil && c.s == "" {
		err = io.EOF
	}
	return n, err
}

// FuzzBarePathConnStream: the stream go-smtp reads does not depend on how
// the client's bytes are cut, nor on how large go-smtp's reads are, nor on
// whether the last bytes come with the end of the stream; it is what one
// pass over the whole input gives.
func FuzzBarePathConnStream(f *testing.F) {
	f.Add("EHLO x\r\nMAIL FROM:<root>\r\nDATA\r\nMAIL FROM:<root>\r\n.\r\nMAIL FROM:<root>\r\nQUIT", uint8(3), uint8(5), false)
	f.Add("DATA\r\nx\r\n..\r\n.\r\nBDAT 3\r\nabc", uint8(1), uint8(1), true)
	f.Fuzz(func(t *testing.T, in string, chunk, readSize uint8, eof bool) {
		ref := &barePathConn{}
		ref.feed([]byte(in))
		want := string(ref.out) + string(ref.line)

		var src io.Reader = &chunks{s: in, n: int(chunk%64) + 1}
		if eof {
			src = &eofChunks{chunks{s: in, n: int(chunk%64) + 1}}
		}
		b := &barePathConn{Conn: pipeConn{r: src}}
		var got []byte
		buf := make([]byte, int(readSize%32)+1)
		for {
			n, err := b.Read(buf)
			got = append(got, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 && len(got) > 4*len(in)+16 {
				t.Fatal("no progress")
			}
		}
		if string(got) != want {
			t.Fatalf("got %q\nwant %q", got, want)
		}
	})
}
