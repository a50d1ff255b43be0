package inbound

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

func TestCRLFWriter(t *testing.T) {
	cases := []struct{ in, want string }{
		{"a\r\nb\r\n", "a\r\nb\r\n"},
		{"a\nb\n", "a\r\nb\r\n"},
		{"a\rb\r", "a\r\nb\r\n"},
		{"x\n.\ny\r\n", "x\r\n.\r\ny\r\n"},
		{"\r\r\n\n", "\r\n\r\n\r\n"},
		{"", ""},
	}
	for _, c := range cases {
		// Feed byte by byte and whole, the result must be the same.
		for _, split := range []bool{false, true} {
			var out bytes.Buffer
			w := &crlfWriter{w: &out}
			if split {
				for i := 0; i < len(c.in); i++ {
					w.Write([]byte{c.in[i]})
				}
			} else {
				w.Write([]byte(c.in))
			}
			w.finish(true)
			if out.String() != c.want {
				t.Errorf("crlf(%q, split=%v) = %q, want %q", c.in, split, out.String(), c.want)
			}
		}
	}
}

func TestReadHeader(t *testing.T) {
	cases := []struct {
		name, in, hdr, body string
	}{
		{"normal", "From: a@b\r\nSubject: x\r\n\r\nbody\r\n", "From: a@b\r\nSubject: x\r\n\r\n", "body\r\n"},
		{"bare LF", "From: a@b\nSubject: x\n\nbody\n", "From: a@b\r\nSubject: x\r\n\r\n", "body\n"},
		{"folded", "Subject: a\r\n b\r\n\r\n", "Subject: a\r\n b\r\n\r\n", ""},
		{"no header", "hello world\r\n", "", "\r\nhello world\r\n"},
		{"no blank line", "From: a@b\r\nnot a header\r\n", "From: a@b\r\n\r\n", "not a header\r\n"},
		{"header only", "From: a@b", "From: a@b\r\n\r\n", ""},
		{"header only, line ended", "From: a@b\r\n", "From: a@b\r\n\r\n", ""},
		{"empty", "", "\r\n", ""},
	}
	for _, c := range cases {
		br := bufio.NewReader(strings.NewReader(c.in))
		hdr, start, err := readHeader(br, 1<<20)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var rest bytes.Buffer
		rest.Write(start)
		rest.ReadFrom(br)
		if string(hdr) != c.hdr || rest.String() != c.body {
			t.Errorf("%s: got hdr %q body %q, want %q %q", c.name, hdr, rest.String(), c.hdr, c.body)
		}
	}
	for in, want := range map[string]error{
		"Subject: a\rb\r\n\r\n":                      errBareCRInHeader,
		"Subject: a\r\r\n\r\n":                       errBareCRInHeader,
		"Subject: a\x00b\r\n\r\n":                    errNUL,
		"X: " + strings.Repeat("a", 40000) + "\rb\n": errBareCRInHeader,
		"Subject: ok\r\n\r\nbody\rwith\x00\r\n":      nil, // the body is checked by Data
	} {
		if _, _, err := readHeader(bufio.NewReader(strings.NewReader(in)), 1<<20); err != want {
			t.Errorf("readHeader(%.30q) err = %v, want %v", in, err, want)
		}
	}
	br := bufio.NewReader(strings.NewReader("X: " + strings.Repeat("a", 5000) + "\r\n\r\n"))
	if _, _, err := readHeader(br, 1000); err != errHeaderTooLarge {
		t.Errorf("huge header: err = %v, want errHeaderTooLarge", err)
	}
}

func FuzzReadHeader(f *testing.F) {
	f.Add([]byte("From: a@b\r\nSubject: x\r\n\r\nbody\r\n"))
	f.Add([]byte("From: a@b\n\n.\n"))
	f.Add([]byte("\r\r\n\n\r"))
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(in), 16)
		hdr, start, err := readHeader(br, 4096)
		if err != nil {
			return
		}
		var out bytes.Buffer
		w := &crlfWriter{w: &out}
		w.Write(start)
		rest := new(bytes.Buffer)
		rest.ReadFrom(br)
		w.Write(rest.Bytes())
		w.finish(true)
		all := append(append([]byte(nil), hdr...), out.Bytes()...)
		// No bare CR or LF may survive.
		for i := 0; i < len(all); i++ {
			if all[i] == '\n' && (i == 0 || all[i-1] != '\r') {
				t.Fatalf("bare LF at %d in %q", i, all)
			}
			if all[i] == '\r' && (i+1 >= len(all) || all[i+1] != '\n') {
				t.Fatalf("bare CR at %d in %q", i, all)
			}
		}
		// Every field the parser reports sits in the header section.
		for _, f := range mailsyntax.ParseHeader(hdr) {
			if !bytes.Contains(hdr, []byte(f.Name)) {
				t.Fatalf("field %q not in %q", f.Name, hdr)
			}
		}
	})
}

// crlfReference is the rule crlfWriter implements, one byte at a time: a
// lone CR or LF becomes CRLF.
func crlfReference(in string) string {
	var b strings.Builder
	for i := 0; i < len(in); i++ {
		switch c := in[i]; {
		case c == '\r' && i+1 < len(in) && in[i+1] == '\n':
			b.WriteString("\r\n")
			i++
		case c == '\r' || c == '\n':
			b.WriteString("\r\n")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// crlfByteLoop is crlfWriter's rule one byte at a time, with its state
// carried between writes: the reference the fast path must match.
type crlfByteLoop struct{ lastCR bool }

func (c *crlfByteLoop) write(p []byte) []byte {
	var out []byte
	for _, b := range p {
		switch {
		case b == '\n' && !c.lastCR:
			out = append(out, '\r', '\n')
		case b != '\n' && c.lastCR:
			out = append(out, '\n', b)
		default:
			out = append(out, b)
		}
		c.lastCR = b == '\r'
	}
	return out
}

// FuzzCRLFWriter: cut into writes wherever the input says, every write of
// crlfWriter gives what the byte-at-a-time rule gives for it, and the whole
// what crlfReference gives.
func FuzzCRLFWriter(f *testing.F) {
	f.Add("a\r\nb\nc\rd\r\r\n\n", []byte{3, 0, 5})
	f.Add(strings.Repeat("x", 300)+"\r", []byte{7})
	f.Add(strings.Repeat("\n", 70000), []byte{255, 1, 0})
	f.Fuzz(func(t *testing.T, in string, cuts []byte) {
		var out bytes.Buffer
		w := &crlfWriter{w: &out}
		ref := &crlfByteLoop{}
		for i, k := 0, 0; i < len(in); k++ {
			n := len(in) - i
			if len(cuts) > 0 {
				n = min(n, int(cuts[k%len(cuts)])*37%4099) // 0: an empty write
			}
			if k > 4*len(in)+8 {
				n = len(in) - i
			}
			before := out.Len()
			w.Write([]byte(in[i : i+n]))
			want := ref.write([]byte(in[i : i+n]))
			if got := out.Bytes()[before:]; !bytes.Equal(got, want) || w.lastCR != ref.lastCR {
				t.Fatalf("write %q: got %q (lastCR %v), want %q (%v)", in[i:i+n], got, w.lastCR, want, ref.lastCR)
			}
			i += n
		}
		w.finish(true)
		if want := crlfReference(in); out.String() != want {
			t.Fatalf("crlf(%q) = %q, want %q", in, out.String(), want)
		}
	})
}

// BenchmarkCRLFWriter: CRLF text, bare-LF text and a block of bare LFs, in
// 32 KiB writes (what the session's copy hands it); each must stay linear.
func BenchmarkCRLFWriter(b *testing.B) {
	line := strings.Repeat("x", 72)
	for name, chunk := range map[string]string{
		"crlf":    strings.Repeat(line+"\r\n", 32<<10/74),
		"bare-lf": strings.Repeat(line+"\n", 32<<10/73),
		"only-lf": strings.Repeat("\n", 32<<10),
	} {
		b.Run(name, func(b *testing.B) {
			w := &crlfWriter{w: io.Discard}
			p := []byte(chunk)
			b.SetBytes(int64(len(p)))
			for b.Loop() {
				w.Write(p)
			}
		})
	}
}
