package queue

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"sync"
	"time"
)

// now is the queue's clock; tests replace it.
var now = time.Now

// idEncoding keeps byte order, so IDs sort by creation time.
var idEncoding = base32.HexEncoding.WithPadding(base32.NoPadding)

// idLen is the length of a queue ID: 10 bytes (48-bit Unix milliseconds and
// 32 random bits) in base32hex.
const idLen = 16

var idGen struct {
	sync.Mutex
	ms  uint64 // last issued, so IDs stay unique and increasing
	rnd uint32
}

// newID returns a unique, sortable queue ID such as "0CO1MBLB8S7J5D2E".
func newID() string {
	var r [4]byte
	rand.Read(r[:])
	ms, rnd := uint64(now().UnixMilli()), binary.BigEndian.Uint32(r[:])
	idGen.Lock()
	if ms < idGen.ms || ms == idGen.ms && rnd <= idGen.rnd {
		// Same millisecond (or the clock went back): count up from the last
		// ID so two drafts never share a file name.
		ms, rnd = idGen.ms, idGen.rnd+1
		if rnd == 0 {
			ms++
		}
	}
	idGen.ms, idGen.rnd = ms, rnd
	idGen.Unlock()
	var b [10]byte
	binary.BigEndian.PutUint16(b[:2], uint16(ms>>32))
	binary.BigEndian.PutUint32(b[2:6], uint32(ms))
	binary.BigEndian.PutUint32(b[6:], rnd)
	return idEncoding.EncodeToString(b[:])
}

// idTime is when the ID was made; ok is false when id is not a queue ID.
func idTime(id string) (t time.Time, ok bool) {
	if !validID(id) {
		return time.Time{}, false
	}
	b, err := idEncoding.DecodeString(id)
	if err != nil || len(b) != 10 {
		return time.Time{}, false
	}
	ms := uint64(binary.BigEndian.Uint16(b[:2]))<<32 | uint64(binary.BigEndian.Uint32(b[2:6]))
	return time.UnixMilli(int64(ms)), true
}

// validID reports whether id has the shape of a queue ID; it is checked before
// an ID becomes part of a path.
func validID(id string) bool {
	if len(id) != idLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'V') {
			return false
		}
	}
	return true
}
