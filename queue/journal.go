package queue

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/inkan-relay/inkan/queue/safefile"
)

// The journal makes a committed message durable with one fdatasync shared
// by every message committed at the same moment, instead of an fsync of its
// own file plus one of msg/ (on a small VM those two cost more CPU than
// everything else inkan does for a message but the RSA signature). A small
// message's whole file is appended to the current segment, journal/jSEQ,
// and the segment is fdatasynced; only then is the file (written, not
// fsynced) renamed into msg/ and the client answered 250. A message small
// enough to stay in memory gets no file at all (memory-only, see Draft):
// delivered within milliseconds, it never touches msg/; one still queued
// after its first attempt, or whose segment is retired, gets its file then.
//
// A message that leaves (delivered, bounced, deleted) gets a "done" record
// before its file is unlinked. Open reads the segments: a message record
// without a later done record is a message that must be in msg/ byte for
// byte; where its file is missing or differs (a power cut before the kernel
// wrote it), the journal's copy is put back. Then every such file is
// fsynced and the segments are removed. While running, a segment that has
// grown past journalSegmentMax is retired the same way in the background:
// the files of its messages still queued are fsynced, then msg/, then the
// segment is removed.
//
// Records: a 16-byte header — magic "IKJ1" | kind (1 message, 2 done) |
// ID length | 2 zero bytes | data length uint32 | CRC-32C of the header's
// bytes 4..12, the ID and the data — then the ID, then the data (the whole
// message file). A segment is read up to its first record that is not
// whole: what follows was never acknowledged.

const (
	journalMaxMessage = 256 << 10 // larger messages fsync their own file
	journalSegmentMax = 16 << 20
	journalHeaderLen  = 16
	recMessage        = 1
	recDone           = 2
)

var journalMagic = [4]byte{'I', 'K', 'J', '1'}

// journal is the open journal. The committer alone appends message records
// and rotates; done records come from delivery workers.
type journal struct {
	dir     *os.Root
	dirFile *os.File
	mu      sync.Mutex // guards the fields below; held for writes, never for syncs
	f       *os.File   // current segment; nil until the first append
	name    string
	seq     uint64
	size    int64
	broken  bool                 // a write or sync failed: start a new segment
	dirty   bool                 // done records written since the last sync
	ids     []string             // messages appended to f (committer only)
	buf     []byte               // the committer's record buffer
	sync    func(*os.File) error // fdatasync; tests replace it
	segMax  int64                // journalSegmentMax; tests lower it
	// pendingDone: done records a broken segment could not take; the next
	// segment starts with them (j.mu). rotateKick asks the committer for it.
	pendingDone []string
	rotateKick  chan struct{}
	// lastRetire is closed when the latest retirement ends (committer
	// only): segments are retired one after the other, in order.
	lastRetire chan struct{}
	retireMu   sync.Mutex // guards toRetire
	toRetire   []segJob   // oldest first
}

func appendRecord(b []byte, kind byte, id string, data []byte) []byte {
	var h [journalHeaderLen]byte
	copy(h[:4], journalMagic[:])
	h[4], h[5] = kind, byte(len(id))
	binary.BigEndian.PutUint32(h[8:12], uint32(len(data)))
	crc := crc32.Update(crc32.Checksum(h[4:12], castagnoli), castagnoli, []byte(id))
	binary.BigEndian.PutUint32(h[12:16], crc32.Update(crc, castagnoli, data))
	b = append(b, h[:]...)
	b = append(b, id...)
	return append(b, data...)
}

// readRecords calls fn for each whole record of a segment and returns how
// many bytes they took. It stops at the first record that is not whole or
// not of a known kind: nothing after it was acknowledged (journalAppend
// starts a new segment after any failed write).
func readRecords(seg []byte, fn func(kind byte, id string, data []byte)) int {
	off := 0
	for len(seg)-off >= journalHeaderLen {
		h := seg[off : off+journalHeaderLen]
		if !bytes.Equal(h[:4], journalMagic[:]) || h[6] != 0 || h[7] != 0 {
			break
		}
		idLen, dataLen := int(h[5]), int(binary.BigEndian.Uint32(h[8:12]))
		end := off + journalHeaderLen + idLen + dataLen
		if dataLen > journalMaxMessage || end > len(seg) {
			break
		}
		id, data := seg[off+journalHeaderLen:off+journalHeaderLen+idLen], seg[off+journalHeaderLen+idLen:end]
		crc := crc32.Update(crc32.Checksum(h[4:12], castagnoli), castagnoli, id)
		if crc32.Update(crc, castagnoli, data) != binary.BigEndian.Uint32(h[12:16]) {
			break
		}
		if k := h[4]; k != recMessage && k != recDone {
			break
		}
		fn(h[4], string(id), data)
		off = end
	}
	return off
}

// segmentSeq parses a segment name, "j" and 16 hex digits.
func segmentSeq(name string) (uint64, bool) {
	hex, ok := strings.CutPrefix(name, "j")
	if !ok || len(hex) != 16 {
		return 0, false
	}
	n, err := strconv.ParseUint(hex, 16, 64)
	return n, err == nil
}

// journalAppend appends a message record for every request carrying data
// and syncs the segment: after it returns nil, those messages survive a
// power cut. Committer only.
func (q *Queue) journalAppend(batch []*commitReq) error {
	j := q.journal
	j.buf = j.buf[:0]
	for _, req := range batch {
		if req.data != nil {
			j.buf = appendRecord(j.buf, recMessage, req.dst, req.data)
		}
	}
	var f *os.File
	var err error
	for f == nil {
		j.mu.Lock()
		// Checked under the lock that the write holds: a done record cut
		// short since (journalDone) must not stand before these records,
		// or recovery would stop there and never read them.
		if j.f == nil || j.broken || j.size >= j.segMax {
			j.mu.Unlock()
			if err := q.rotateJournal(); err != nil {
				return err
			}
			continue
		}
		f = j.f
		if _, err = f.Write(j.buf); err == nil {
			j.size += int64(len(j.buf))
		} else {
			j.broken = true
		}
		j.mu.Unlock()
	}
	if len(j.buf) > 1<<20 {
		j.buf = nil // do not keep a burst's buffer
	}
	if err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	if err := j.sync(f); err != nil {
		j.mu.Lock()
		j.broken = true
		j.mu.Unlock()
		return fmt.Errorf("sync journal: %w", err)
	}
	for _, req := range batch {
		if req.data != nil {
			j.ids = append(j.ids, req.dst)
		}
	}
	return nil
}

// journalDone records that message id left the queue. It is written (not
// synced) before the file is unlinked, so a restart after a crash of the
// process never brings back a message that was delivered; after a power
// cut, at most the last second's are (a duplicate, never a loss). While
// the segment is broken the record waits in memory for the next segment,
// which the committer starts at once (rotateKick): only a crash in that
// moment can repeat a delivery.
func (q *Queue) journalDone(id string) {
	j := q.journal
	var rec [journalHeaderLen + 32]byte
	b := appendRecord(rec[:0], recDone, id, nil)
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil && j.seq == 0 {
		return // no segment since Open: nothing to cancel
	}
	if j.f != nil && !j.broken {
		if _, err := j.f.Write(b); err == nil {
			j.size += int64(len(b))
			j.dirty = true
			return
		}
		j.broken = true
	}
	j.pendingDone = append(j.pendingDone, id)
	select {
	case j.rotateKick <- struct{}{}:
	default:
	}
}

// journalFlush syncs done records left unsynced (the committer calls it
// when idle), so a power cut does not bring back what was delivered, and
// replaces a broken segment.
func (q *Queue) journalFlush() {
	j := q.journal
	j.mu.Lock()
	f, dirty, broken := j.f, j.dirty && !j.broken, j.broken
	j.dirty = false
	j.mu.Unlock()
	if dirty {
		if err := j.sync(f); err != nil {
			broken = true
			j.mu.Lock()
			j.broken = true
			j.mu.Unlock()
			q.log.Warn("cannot sync the journal", "err", err)
		}
	}
	if broken {
		if err := q.rotateJournal(); err != nil {
			q.log.Warn("cannot start a journal segment", "err", err)
		}
	}
}

// segJob is a segment waiting to be retired.
type segJob struct {
	f    *os.File
	name string
	ids  []string
}

// rotateJournal starts a new segment, first writing into it the done
// records a broken segment could not take, and retires the current one in
// the background. Committer only.
func (q *Queue) rotateJournal() error {
	j := q.journal
	seq := j.seq + 1
	name := fmt.Sprintf("j%016x", seq)
	f, err := safefile.OpenIn(j.dirFile, name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err == nil {
		if err = q.chown(f); err == nil {
			// The segment's name must be durable before its records count.
			err = j.dirFile.Sync()
		}
		if err != nil {
			f.Close()
			j.dir.Remove(name)
		}
	}
	if err != nil {
		return fmt.Errorf("new journal segment: %w", err)
	}
	j.seq = seq
	j.mu.Lock()
	var size int64
	if len(j.pendingDone) > 0 {
		var b []byte
		for _, id := range j.pendingDone {
			b = appendRecord(b, recDone, id, nil)
		}
		if _, err := f.Write(b); err != nil {
			j.mu.Unlock()
			f.Close()
			j.dir.Remove(name)
			return fmt.Errorf("new journal segment: %w", err)
		}
		j.pendingDone, size = nil, int64(len(b))
	}
	old, oldName, oldIDs := j.f, j.name, j.ids
	j.f, j.name, j.size, j.broken, j.dirty, j.ids = f, name, size, false, size > 0, nil
	j.mu.Unlock()
	if old != nil {
		q.queueRetire(segJob{old, oldName, oldIDs})
		prev, done := j.lastRetire, make(chan struct{})
		j.lastRetire = done
		q.retiring.Add(1)
		go q.retire(prev, done)
	}
	return nil
}

func (q *Queue) queueRetire(s segJob) {
	j := q.journal
	j.retireMu.Lock()
	j.toRetire = append(j.toRetire, s)
	j.retireMu.Unlock()
}

// retire retires the waiting segments in order, oldest first, after the
// retirement before it (prev) ended. A segment that fails stays first in
// line, and so do the later ones (they hold done records for its
// messages): the next rotation tries again, and Open replays what is left.
func (q *Queue) retire(prev, done chan struct{}) {
	defer q.retiring.Done()
	defer close(done)
	if prev != nil {
		<-prev
	}
	j := q.journal
	for {
		j.retireMu.Lock()
		if len(j.toRetire) == 0 {
			j.retireMu.Unlock()
			return
		}
		s := j.toRetire[0]
		j.retireMu.Unlock()
		if err := q.retireOne(s); err != nil {
			q.log.Warn("journal segment kept; retried at the next rotation, else replayed at the next start", "segment", s.name, "err", err)
			return
		}
		s.f.Close()
		j.retireMu.Lock()
		j.toRetire = j.toRetire[1:]
		j.retireMu.Unlock()
	}
}

// retireOne makes a segment's messages durable in msg/ and removes it.
func (q *Queue) retireOne(s segJob) error {
	j := q.journal
	// Its done records too: should the removal fail, Open reads them.
	if err := j.sync(s.f); err != nil {
		return err
	}
	if err := q.settle(s.ids); err != nil {
		return err
	}
	if err := j.dir.Remove(s.name); err != nil {
		return err
	}
	// Removed for good before a later segment can be: a removal lost to a
	// power cut would bring back a segment whose done records are gone.
	return j.dirFile.Sync()
}

// settle fsyncs msg/ID for every id still queued, then msg/.
func (q *Queue) settle(ids []string) error {
	for _, id := range ids {
		q.mu.Lock()
		it := q.items[id]
		q.mu.Unlock()
		if it != nil {
			it.mu.Lock()
			err := q.materialize(it)
			it.mu.Unlock()
			if err != nil {
				return err
			}
		}
		f, err := safefile.OpenIn(q.msgDirFile, id, os.O_RDONLY, 0)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return err
		}
	}
	return q.syncDir()
}

// closeJournal ends the current segment at Close: its messages still
// queued are fsynced and the segment removed, so a clean stop leaves no
// journal (unless a retirement fails: then Open replays what is left).
// Runs after the committer stopped.
func (q *Queue) closeJournal() {
	j := q.journal
	q.retiring.Wait()
	j.mu.Lock()
	f, name, ids := j.f, j.name, j.ids
	j.f = nil
	j.mu.Unlock()
	if f != nil {
		q.queueRetire(segJob{f, name, ids})
	}
	q.retiring.Add(1)
	q.retire(nil, make(chan struct{}))
	for _, s := range j.toRetire {
		s.f.Close()
	}
	j.toRetire = nil
}

// recoverJournal runs at Open, before the spool is scanned: it puts back
// every acknowledged message whose file a power cut lost or cut short,
// makes every journaled message's file durable, and removes the segments.
func (q *Queue) recoverJournal() error {
	j := q.journal
	names, err := readNames(j.dir)
	if err != nil {
		return fmt.Errorf("queue: read journal: %w", err)
	}
	type seg struct {
		seq  uint64
		name string
	}
	var segs []seg
	for _, name := range names {
		if n, ok := segmentSeq(name); ok {
			segs = append(segs, seg{n, name})
		} else {
			q.log.Warn("unknown file in the journal folder left alone", "file", name)
		}
	}
	if len(segs) == 0 {
		return nil
	}
	slices.SortFunc(segs, func(a, b seg) int { return cmp.Compare(a.seq, b.seq) })
	live := map[string][]byte{}
	for _, s := range segs {
		b, err := q.readSegment(s.name)
		if err != nil {
			return fmt.Errorf("queue: read journal: %w", err)
		}
		n := readRecords(b, func(kind byte, id string, data []byte) {
			if kind == recDone {
				delete(live, id)
			} else if validID(id) {
				live[id] = data
			}
		})
		if n < len(b) {
			q.log.Info("journal segment ends in an incomplete record (never acknowledged)", "segment", s.name, "ignored_bytes", len(b)-n)
		}
		j.seq = max(j.seq, s.seq)
	}
	restored := 0
	for id, data := range live {
		ok, exists, err := q.fileMatches(id, data)
		if err != nil {
			return fmt.Errorf("queue: recover %s from the journal: %w", id, err)
		}
		if ok {
			continue
		}
		if err := q.installTemp(id, data, true); err != nil { // msg/ synced below
			return fmt.Errorf("queue: recover %s from the journal: %w", id, err)
		}
		restored++
		if exists {
			q.log.Warn("message restored from the journal (its file was cut short)", "queue_id", id)
		} else {
			// The usual case after a stop without Close: the message was
			// held in memory (memory-only), or a power cut lost its file.
			q.log.Info("message restored from the journal (it had no file)", "queue_id", id)
		}
	}
	if err := q.syncDir(); err != nil {
		return fmt.Errorf("queue: recover from the journal: %w", err)
	}
	for _, s := range segs { // oldest first, each for good (see retireOne)
		if err := j.dir.Remove(s.name); err != nil {
			return fmt.Errorf("queue: remove journal segment: %w", err)
		}
		if err := j.dirFile.Sync(); err != nil {
			return fmt.Errorf("queue: sync journal folder: %w", err)
		}
	}
	q.log.Info("journal recovered", "segments", len(segs), "messages", len(live), "restored", restored)
	return nil
}

// readSegment reads a journal segment (a file of the spool's owner, as
// openOwned checks).
func (q *Queue) readSegment(name string) ([]byte, error) {
	f, err := q.openOwned(q.journal.dirFile, name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// fileMatches reports whether msg/id exists and holds exactly data,
// fsyncing it if so.
func (q *Queue) fileMatches(id string, data []byte) (ok, exists bool, err error) {
	f, err := q.openMsg(id)
	if errors.Is(err, os.ErrNotExist) {
		return false, false, nil
	}
	if err != nil {
		return false, false, err
	}
	defer f.Close()
	cur, err := io.ReadAll(io.LimitReader(f, journalMaxMessage+1))
	if err != nil || !bytes.Equal(cur, data) {
		return false, true, err
	}
	return true, true, f.Sync()
}

// journalIdle is how long the committer waits with done records unsynced.
const journalIdle = time.Second
