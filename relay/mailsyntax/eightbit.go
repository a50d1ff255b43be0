package mailsyntax

import "unicode/utf8"

// EightBit watches bytes stream past and tells, at the end, whether any was
// 8-bit (RFC 6152: a byte above 127) and whether those bytes were all UTF-8.
// It is an io.Writer that never fails, so it can sit in an io.MultiWriter
// beside the spool without holding the message.
type EightBit struct {
	eight   bool
	invalid bool
	pending [utf8.UTFMax]byte // an incomplete UTF-8 sequence cut by a write boundary
	np      int
}

func (e *EightBit) Write(p []byte) (int, error) {
	n := len(p)
	if !e.eight && IsASCII(p) {
		return n, nil
	}
	e.eight = true
	if e.invalid {
		return n, nil
	}
	if e.np > 0 {
		for len(p) > 0 && !utf8.FullRune(e.pending[:e.np]) {
			e.pending[e.np] = p[0]
			e.np++
			p = p[1:]
		}
		if !utf8.FullRune(e.pending[:e.np]) {
			return n, nil // still incomplete: p was short
		}
		if r, size := utf8.DecodeRune(e.pending[:e.np]); r == utf8.RuneError && size <= 1 || size != e.np {
			e.invalid = true
			return n, nil
		}
		e.np = 0
	}
	// Keep a sequence cut at the end of p for the next write.
	for i := len(p) - 1; i >= 0 && i >= len(p)-utf8.UTFMax+1; i-- {
		if c := p[i]; c >= 0xC0 {
			if !utf8.FullRune(p[i:]) {
				e.np = copy(e.pending[:], p[i:])
				p = p[:i]
			}
			break
		} else if c < 0x80 {
			break
		}
	}
	if !utf8.Valid(p) {
		e.invalid = true
	}
	return n, nil
}

// Any reports whether an 8-bit byte went past.
func (e *EightBit) Any() bool { return e.eight }

// UTF8 reports whether everything written so far is valid UTF-8 (a
// sequence left incomplete at the end is not).
func (e *EightBit) UTF8() bool { return !e.invalid && e.np == 0 }
