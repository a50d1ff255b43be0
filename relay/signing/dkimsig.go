package signing

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// The signature is computed here, on the caller's goroutine, rather than by
// go-msgauth's dkim.Signer: that one hashes on a goroutine of its own behind
// an io.Pipe and parses the header again with its own reader. Here the
// header is split by mailsyntax.SplitFields, the same rules the sender
// policy read it with, and one body hash serves every key (rsa-sha256 and
// ed25519-sha256 both hash the body with SHA-256). The field is byte for
// byte the one go-msgauth's dkim.Sign makes for the same input
// (FuzzSignatureCoreMatchesGoMsgauth), and go-msgauth, dkimpy and OpenDKIM
// verify it (sigcore_test.go, the corpus and opendkim tests, CI's interop
// and receiver checks).

// bodyHasher feeds a body, canonicalized (RFC 6376 section 3.4.3/3.4.4), to
// SHA-256 as it streams. Input lines end in CRLF (the SMTP session repairs
// bare CR and LF before the signer sees them); a bare LF is read as CRLF.
type bodyHasher struct {
	h       hash.Hash
	relaxed bool
	blank   int  // empty lines held back: trailing ones are dropped
	wsp     bool // relaxed: white space held back inside the line
	inLine  bool // the current line has produced output
	cr      bool // the last byte was a CR not yet known to end a line
	any     bool // the body has produced output
	out     []byte
}

// hashers holds body hashers a finished stream gave back: one per message
// otherwise, with its 4 KB buffer.
var hashers sync.Pool

func newBodyHasher(relaxed bool) *bodyHasher {
	if b, ok := hashers.Get().(*bodyHasher); ok {
		b.h.Reset()
		*b = bodyHasher{h: b.h, relaxed: relaxed, out: b.out[:0]}
		return b
	}
	return &bodyHasher{h: sha256.New(), relaxed: relaxed, out: make([]byte, 0, 4096+128)}
}

// release gives b back for another message; b must not be used after.
func (b *bodyHasher) release() { hashers.Put(b) }

var crlfs = []byte("\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n")

// emit adds line content: first the empty lines held back (they were not
// trailing after all), then a space for held-back white space (relaxed).
func (b *bodyHasher) emit(p []byte) {
	for b.blank > 0 { // a long run of empty lines is hashed as it goes, never held
		n := min(b.blank, len(crlfs)/2)
		b.put(crlfs[:2*n])
		b.blank -= n
	}
	if b.wsp {
		b.out = append(b.out, ' ')
		b.wsp = false
	}
	b.put(p)
	b.inLine, b.any = true, true
}

// put adds canonical bytes, hashing them in 4 KB steps.
func (b *bodyHasher) put(p []byte) {
	b.out = append(b.out, p...)
	if len(b.out) >= 4096 {
		b.h.Write(b.out)
		b.out = b.out[:0]
	}
}

var cr = []byte{'\r'}

// Write takes the body a line at a time: content up to each LF, the CR
// before it held back until it is known not to be lone.
func (b *bodyHasher) Write(p []byte) {
	for len(p) > 0 {
		seg, rest, eol := bytes.Cut(p, []byte{'\n'})
		b.segment(seg)
		if !eol {
			return
		}
		b.cr, b.wsp = false, false // relaxed: white space ending a line goes
		if b.inLine {
			b.out = append(b.out, '\r', '\n')
			b.inLine = false
		} else {
			b.blank++
		}
		p = rest
	}
}

// segment takes bytes of one line without its LF.
func (b *bodyHasher) segment(seg []byte) {
	if len(seg) == 0 {
		return
	}
	if b.cr { // the CR that ended the last write was lone: content
		b.cr = false
		b.emit(cr)
	}
	if seg[len(seg)-1] == '\r' {
		b.cr = true
		seg = seg[:len(seg)-1]
	}
	if !b.relaxed {
		if len(seg) > 0 {
			b.emit(seg)
		}
		return
	}
	start := 0
	for i, c := range seg {
		if c == ' ' || c == '\t' {
			if i > start {
				b.emit(seg[start:i])
			}
			b.wsp = true
			start = i + 1
		}
	}
	if start < len(seg) {
		b.emit(seg[start:])
	}
}

// Sum ends the body: an unterminated last line gets its CRLF; an empty body
// is CRLF in simple and nothing in relaxed canonicalization.
func (b *bodyHasher) Sum() []byte {
	if b.cr {
		b.cr = false
		b.emit(cr)
	}
	if b.inLine {
		b.out = append(b.out, '\r', '\n')
		b.inLine = false
	}
	if !b.any && !b.relaxed {
		b.out = append(b.out, '\r', '\n')
	}
	b.h.Write(b.out)
	b.out = b.out[:0]
	return b.h.Sum(nil)
}

// canonHeader appends one field, canonicalized, to dst. raw is the field as
// it stands in the header section, with its line ending.
func canonHeader(dst []byte, relaxed bool, name, rawValue, raw string) []byte {
	if !relaxed {
		return append(dst, raw...)
	}
	dst = append(dst, strings.ToLower(strings.TrimSpace(name))...)
	dst = append(dst, ':')
	sp := false
	start := len(dst)
	for i := 0; i < len(rawValue); i++ {
		switch c := rawValue[i]; c {
		case ' ', '\t', '\r', '\n':
			sp = true
		default:
			if sp && len(dst) > start {
				dst = append(dst, ' ')
			}
			sp = false
			dst = append(dst, c)
		}
	}
	return append(dst, '\r', '\n')
}

// sigParams are the tags of one DKIM-Signature field.
type sigParams struct {
	algo, canon, domain, selector, identity string
	headers                                 []string
	bodyHash                                string
	t, x                                    time.Time
}

// head writes the field up to its last tag, "b=", with no value: the form
// the signature covers (RFC 6376 3.5, 3.7); sealed adds the value. The
// layout is go-msgauth's: tags in alphabetical order, a new line before a
// tag that would pass 75 columns, then b= folded at 75. An h= list longer than foldH (many
// instances of signed fields) is folded at its colons too, where RFC 6376
// allows white space, so that no line passes RFC 5322's 998 octets.
func (p *sigParams) head() string {
	h := strings.Join(p.headers, ":")
	if len(h) > foldH {
		var hb strings.Builder
		line := 0
		for i, name := range p.headers {
			if i > 0 {
				hb.WriteByte(':')
				line++
			}
			if line > 0 && line+len(name) > 70 {
				hb.WriteString("\r\n ")
				line = 0
			}
			hb.WriteString(name)
			line += len(name)
		}
		h = hb.String()
	}
	tags := [][2]string{{"a", p.algo}, {"bh", p.bodyHash}, {"c", p.canon}, {"d", p.domain}, {"h", h}}
	if p.identity != "" {
		tags = append(tags, [2]string{"i", p.identity})
	}
	tags = append(tags, [2]string{"s", p.selector}, [2]string{"t", strconv.FormatInt(p.t.Unix(), 10)},
		[2]string{"v", "1"})
	if !p.x.IsZero() {
		tags = append(tags, [2]string{"x", strconv.FormatInt(p.x.Unix(), 10)})
	}
	var sb strings.Builder
	sb.WriteString("DKIM-Signature:")
	line := 0
	for _, kv := range tags {
		n := 3 + len(kv[0]) + len(kv[1])
		if line > 0 && line+n > 75 {
			sb.WriteString("\r\n")
			line = 0
		}
		sb.WriteString(" " + kv[0] + "=" + kv[1] + ";")
		line += n
	}
	sb.WriteString("\r\n b=")
	return sb.String()
}

// sealed is the whole field: head with the signature b, folded at 75
// columns, and the final CRLF.
func sealed(head, b string) string {
	var sb strings.Builder
	sb.Grow(len(head) + len(b) + 3*(len(b)/75+1) + 2)
	sb.WriteString(head)
	for rest, width := b, 72; rest != ""; width = 75 {
		n := min(width, len(rest))
		if width == 75 {
			sb.WriteString("\r\n ")
		}
		sb.WriteString(rest[:n])
		rest = rest[n:]
	}
	sb.WriteString("\r\n")
	return sb.String()
}

// foldH is the longest h= value written on one line (see head).
const foldH = 900

// canonHeaders canonicalizes the fields the h= list names, in its order:
// the n-th mention of a name takes the n-th instance from the bottom (RFC
// 6376 5.4.2); a name with no instance left adds nothing (oversigning). The
// fields are indexed by name once, so a long header costs linear time.
func canonHeaders(head string, fields []mailsyntax.RawField, relaxed bool, names []string) []byte {
	byName := make(map[string][]int, len(fields))
	for i, f := range fields {
		l := strings.ToLower(f.Name)
		byName[l] = append(byName[l], i)
	}
	used := make(map[string]int, len(names))
	buf := make([]byte, 0, len(head)+512)
	for _, name := range names {
		l := strings.ToLower(name)
		idx := byName[l]
		n := used[l]
		if n >= len(idx) {
			continue
		}
		used[l] = n + 1
		f := fields[idx[len(idx)-1-n]]
		buf = canonHeader(buf, relaxed, f.Name, head[f.Value:f.End], head[f.Start:f.End])
	}
	return buf
}

// signOne computes one DKIM-Signature field: signed is the canonical form
// of the fields h= names (canonHeaders), the same for every key.
func signOne(signed []byte, headerCan, bodyCan dkim.Canonicalization, k *key, p sigParams) (string, error) {
	relaxed := headerCan == dkim.CanonicalizationRelaxed
	p.canon = string(headerCan) + "/" + string(bodyCan)
	field := p.head()
	h := sha256.New()
	h.Write(signed)
	if relaxed {
		name, value, _ := strings.Cut(field, ":")
		c := canonHeader(nil, true, name, value, "")
		h.Write(c[:len(c)-2]) // the field itself without its CRLF
	} else {
		h.Write([]byte(field))
	}
	digest := h.Sum(nil)
	opts := crypto.Hash(crypto.SHA256)
	if _, ok := k.signer.Public().(ed25519.PublicKey); ok {
		opts = crypto.Hash(0) // RFC 8463: Ed25519 signs the SHA-256 digest as its message
	}
	sig, err := k.signer.Sign(rand.Reader, digest, opts)
	if err != nil {
		return "", err
	}
	return sealed(field, base64.StdEncoding.EncodeToString(sig)), nil
}
