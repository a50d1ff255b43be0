package queue

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"time"
)

// Footer layout; see the package doc.
const (
	footerLen     = 32
	recordVersion = 1
	maxMetaLen    = 64 << 20 // prefix or envelope; far above any sane value
)

var (
	footerMagic = [4]byte{'I', 'N', 'K', 'Q'}
	castagnoli  = crc32.MakeTable(crc32.Castagnoli)
)

// errCorrupt marks a file that cannot be decoded; such files go to corrupt/.
var errCorrupt = errors.New("corrupt queue file")

// record is a message file's trailer, decoded.
type record struct {
	BodyLen int64
	Prefix  []byte
	Env     Envelope
}

// Size is the message as delivered: prefix + body.
func (r *record) Size() int64 { return int64(len(r.Prefix)) + r.BodyLen }

// encodeTrailer returns what follows a body of bodyLen bytes.
func encodeTrailer(bodyLen int64, prefix []byte, env *Envelope) ([]byte, error) {
	ej, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("encode envelope: %w", err)
	}
	if len(prefix) > maxMetaLen || len(ej) > maxMetaLen {
		return nil, fmt.Errorf("encode envelope: prefix or envelope too large")
	}
	out := make([]byte, 0, len(prefix)+len(ej)+footerLen)
	out = append(out, prefix...)
	out = append(out, ej...)
	crc := crc32.Checksum(out, castagnoli)
	var f [footerLen]byte
	copy(f[0:4], footerMagic[:])
	f[4] = recordVersion
	binary.BigEndian.PutUint64(f[8:16], uint64(bodyLen))
	binary.BigEndian.PutUint32(f[16:20], uint32(len(prefix)))
	binary.BigEndian.PutUint32(f[20:24], uint32(len(ej)))
	binary.BigEndian.PutUint32(f[24:28], crc)
	binary.BigEndian.PutUint32(f[28:32], crc32.Checksum(f[:28], castagnoli))
	return append(out, f[:]...), nil
}

// decodeRecord reads the trailer of a message file of the given size. It
// never reads the body. Every error wraps errCorrupt except I/O errors.
func decodeRecord(r io.ReaderAt, size int64) (*record, error) {
	if size < footerLen {
		return nil, fmt.Errorf("%w: %d bytes is too short", errCorrupt, size)
	}
	var f [footerLen]byte
	if _, err := r.ReadAt(f[:], size-footerLen); err != nil {
		return nil, fmt.Errorf("read footer: %w", err)
	}
	if !bytes.Equal(f[0:4], footerMagic[:]) {
		return nil, fmt.Errorf("%w: bad magic", errCorrupt)
	}
	if crc32.Checksum(f[:28], castagnoli) != binary.BigEndian.Uint32(f[28:32]) {
		return nil, fmt.Errorf("%w: footer checksum mismatch", errCorrupt)
	}
	if f[4] != recordVersion {
		return nil, fmt.Errorf("%w: unknown version %d", errCorrupt, f[4])
	}
	bodyLen := binary.BigEndian.Uint64(f[8:16])
	prefixLen := binary.BigEndian.Uint32(f[16:20])
	envLen := binary.BigEndian.Uint32(f[20:24])
	if prefixLen > maxMetaLen || envLen > maxMetaLen || bodyLen > uint64(size) ||
		bodyLen+uint64(prefixLen)+uint64(envLen)+footerLen != uint64(size) {
		return nil, fmt.Errorf("%w: lengths do not add up to the file size", errCorrupt)
	}
	meta := make([]byte, int(prefixLen)+int(envLen))
	if _, err := r.ReadAt(meta, int64(bodyLen)); err != nil {
		return nil, fmt.Errorf("read trailer: %w", err)
	}
	if crc32.Checksum(meta, castagnoli) != binary.BigEndian.Uint32(f[24:28]) {
		return nil, fmt.Errorf("%w: trailer checksum mismatch", errCorrupt)
	}
	rec := &record{BodyLen: int64(bodyLen), Prefix: meta[:prefixLen:prefixLen]}
	if err := json.Unmarshal(meta[prefixLen:], &rec.Env); err != nil {
		return nil, fmt.Errorf("%w: envelope: %v", errCorrupt, err)
	}
	if len(rec.Env.To) == 0 {
		return nil, fmt.Errorf("%w: envelope has no recipients", errCorrupt)
	}
	return rec, nil
}

// state is a message's per-recipient progress, kept in msg/ID.state.
type state struct {
	V        int         `json:"v"`
	Held     bool        `json:"held,omitempty"`
	Warned   bool        `json:"warned,omitempty"` // delay DSN sent
	Attempts int         `json:"attempts"`         // rounds in which any recipient was tried
	Rcpts    []rcptState `json:"rcpts"`
}

// rcptState is one recipient's progress, in envelope order.
type rcptState struct {
	Addr     string    `json:"addr"`
	Status   Status    `json:"status"` // Pending, Sent or Failed
	Attempts int       `json:"attempts,omitempty"`
	Next     time.Time `json:"next,omitzero"` // zero = as soon as possible
	Last     time.Time `json:"last,omitzero"` // last attempt
	Code     int       `json:"code,omitempty"`
	Enhanced string    `json:"enhanced,omitempty"`
	Reply    string    `json:"reply,omitempty"`
	Remote   string    `json:"remote,omitempty"`
	Policy   string    `json:"policy,omitempty"` // TLS policy of the last attempt
}

// freshState is the state of a message never tried.
func freshState(env *Envelope) *state {
	st := &state{V: 1, Rcpts: make([]rcptState, len(env.To))}
	for i, to := range env.To {
		st.Rcpts[i].Addr = to
	}
	return st
}

func encodeState(st *state) ([]byte, error) {
	b, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("encode state: %w", err)
	}
	return b, nil
}

// decodeState parses a state file. Errors wrap errCorrupt.
func decodeState(b []byte) (*state, error) {
	st := new(state)
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("%w: state: %v", errCorrupt, err)
	}
	if st.V != 1 {
		return nil, fmt.Errorf("%w: state version %d", errCorrupt, st.V)
	}
	if len(st.Rcpts) == 0 {
		return nil, fmt.Errorf("%w: state has no recipients", errCorrupt)
	}
	for _, r := range st.Rcpts {
		if r.Status != Pending && r.Status != Sent && r.Status != Failed {
			return nil, fmt.Errorf("%w: state: bad status %d", errCorrupt, r.Status)
		}
	}
	return st, nil
}

// matches reports whether st belongs to env (same recipients, same order).
func (st *state) matches(env *Envelope) bool {
	if len(st.Rcpts) != len(env.To) {
		return false
	}
	for i, r := range st.Rcpts {
		if r.Addr != env.To[i] {
			return false
		}
	}
	return true
}

// pending reports whether some recipient is still to be delivered.
func (st *state) pending() bool {
	for _, r := range st.Rcpts {
		if r.Status == Pending {
			return true
		}
	}
	return false
}

// nextAttempt is the earliest next attempt of a pending recipient; ok is
// false when none is pending.
func (st *state) nextAttempt() (t time.Time, ok bool) {
	for _, r := range st.Rcpts {
		if r.Status != Pending {
			continue
		}
		if !ok || r.Next.Before(t) {
			t, ok = r.Next, true
		}
	}
	return t, ok
}
