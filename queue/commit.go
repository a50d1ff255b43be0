package queue

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/inkan-relay/inkan/queue/safefile"
)

// Draft is a message being received. It is not in the queue, and not
// acknowledged, until Commit returns nil.
//
// A draft is held in memory while it fits in memMessageMax; a larger one is
// spilled to a file in tmp/. A small message committed while the queue's
// memory budget allows stays memory-only: durable in the journal, delivered
// from memory, given a file in msg/ only if it is still queued after its
// first attempt or when its journal segment is retired (journal.go).
type Draft struct {
	q    *Queue
	id   string
	env  *Envelope
	mem  *[]byte // the body while in memory; nil once spilled
	f    *os.File
	tmp  string // f's name in tmp/
	w    *bufio.Writer
	n    int64 // body bytes written
	err  error // first write error; sticky
	done bool
	// quiet: the submitter logs the accepted message (with its queue ID)
	// itself, so Commit's own line is debug, not a second info line.
	quiet bool
}

// memMessageMax is the largest draft held in memory (the size of the file
// buffer a spilled draft gets). memBudget bounds memory-only messages: the
// fast path needs only those in flight (a few dozen); a backlog gets files,
// and the GC (GOGC 400, see cmd/inkan) never multiplies much live data.
const (
	memMessageMax = 64 << 10
	memBudget     = 2 << 20
)

var (
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, memMessageMax) }}
	memPool    = sync.Pool{New: func() any { b := make([]byte, 0, memMessageMax); return &b }}
)

// NewDraft starts a message for env. The caller must Commit or Abort it.
func (q *Queue) NewDraft(env *Envelope) (*Draft, error) {
	if env == nil || len(env.To) == 0 {
		return nil, errors.New("queue: draft without recipients")
	}
	q.mu.Lock()
	closed := q.closed
	q.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	mem := memPool.Get().(*[]byte)
	*mem = (*mem)[:0]
	return &Draft{q: q, id: newID(), env: env, mem: mem}, nil
}

// Quiet tells Commit that the caller logs the accepted message itself, with
// its queue ID and more than the queue knows (the SMTP server does).
func (d *Draft) Quiet() { d.quiet = true }

// ID is the queue ID the message will have: short, unique, sorted by time.
func (d *Draft) ID() string { return d.id }

// Write appends body bytes (CRLF line endings, as they will be sent). Errors
// wrap the system error, so errors.Is(err, syscall.ENOSPC) tells a full disk.
func (d *Draft) Write(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	if d.done {
		return 0, errors.New("queue: write to a finished draft")
	}
	if d.mem != nil {
		if len(*d.mem)+len(p) <= memMessageMax {
			*d.mem = append(*d.mem, p...)
			d.n += int64(len(p))
			return len(p), nil
		}
		if err := d.spill(); err != nil {
			d.err = err
			return 0, err
		}
	}
	n, err := d.w.Write(p)
	d.n += int64(n)
	if err != nil {
		d.err = fmt.Errorf("queue: write draft: %w", err)
	}
	return n, d.err
}

// spill moves the draft from memory to a file in tmp/.
func (d *Draft) spill() error {
	f, tmp, err := d.q.createTemp(d.id)
	if err != nil {
		return fmt.Errorf("queue: create draft: %w", err)
	}
	d.f, d.tmp = f, tmp
	d.w = writerPool.Get().(*bufio.Writer)
	d.w.Reset(f)
	_, err = d.w.Write(*d.mem)
	d.putMem()
	if err != nil {
		return fmt.Errorf("queue: write draft: %w", err)
	}
	return nil
}

func (d *Draft) putMem() {
	if d.mem != nil {
		memPool.Put(d.mem)
		d.mem = nil
	}
}

// Commit stores the message: body, then prefix (header lines sent before the
// body), then the envelope. It returns nil only once the message is on
// stable storage (the journal, or its file and directory entry); then the
// message will be delivered. On error the draft is gone and the client must
// be told to retry (4xx).
func (d *Draft) Commit(prefix []byte) error {
	if d.done {
		return errors.New("queue: draft already finished")
	}
	q := d.q
	// The committer puts it in the index before it answers, so a segment
	// retired or a Close right after never misses it (settle in journal.go).
	it := &item{id: d.id, idx: -1, fresh: true, noState: true}
	q.mu.Lock()
	if q.freshRecs < maxFreshRecords {
		it.rec = committedRecord(d.n, prefix, d.env)
		q.freshRecs++
	}
	q.mu.Unlock()
	if err := d.finish(prefix, it); err != nil {
		q.mu.Lock()
		if it.rec != nil {
			it.rec = nil
			q.freshRecs--
		}
		q.mu.Unlock()
		d.Abort()
		return err
	}
	d.release()
	q.Kick()
	level := slog.LevelInfo
	if d.quiet {
		level = slog.LevelDebug
	}
	q.log.Log(context.Background(), level, "queued", "queue_id", d.id, "from", d.env.From, "rcpts", len(d.env.To),
		"size", d.n+int64(len(prefix)), "user", d.env.User, "client", d.env.Client)
	return nil
}

// finish makes the draft durable: memory-only through the journal, or as
// a file renamed into msg/ (through the journal up to journalMaxMessage,
// fsynced with its folder above).
func (d *Draft) finish(prefix []byte, it *item) error {
	if d.err != nil {
		return d.err
	}
	trailer, err := encodeTrailer(d.n, prefix, d.env)
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	size := d.n + int64(len(trailer))
	if d.mem != nil && size <= journalMaxMessage {
		data := make([]byte, 0, size)
		data = append(append(data, *d.mem...), trailer...)
		req := &commitReq{dst: d.id, data: data, item: it}
		if d.q.reserveMem(len(data)) {
			it.data = data
		} else if req.src, err = d.q.writeTemp(d.id, data, false); err != nil {
			// Over the memory budget: a file, journaled like a spilled draft.
			return fmt.Errorf("queue: write draft: %w", err)
		}
		if err := d.q.commit(req); err != nil {
			if it.data != nil {
				it.data = nil
				d.q.releaseMem(len(data))
			} else {
				d.q.tmp.Remove(req.src)
			}
			return fmt.Errorf("queue: commit: %w", err)
		}
		return nil
	}
	if d.mem != nil {
		if err := d.spill(); err != nil {
			return err
		}
	}
	if _, err := d.w.Write(trailer); err != nil {
		return fmt.Errorf("queue: write draft: %w", err)
	}
	if err := d.w.Flush(); err != nil {
		return fmt.Errorf("queue: write draft: %w", err)
	}
	if size <= journalMaxMessage {
		// The journal makes it durable. The file is read back from the
		// page cache, as it will be delivered.
		data := make([]byte, size)
		if _, err := d.f.ReadAt(data, 0); err != nil {
			return fmt.Errorf("queue: read draft back: %w", err)
		}
		if err := d.f.Close(); err != nil {
			return fmt.Errorf("queue: close draft: %w", err)
		}
		if err := d.q.commit(&commitReq{src: d.tmp, dst: d.id, data: data, item: it}); err != nil {
			return fmt.Errorf("queue: commit: %w", err)
		}
		return nil
	}
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("queue: sync draft: %w", err)
	}
	if err := d.f.Close(); err != nil {
		return fmt.Errorf("queue: close draft: %w", err)
	}
	if err := d.q.commit(&commitReq{src: d.tmp, dst: d.id, item: it}); err != nil {
		return fmt.Errorf("queue: commit: %w", err)
	}
	return nil
}

// Abort discards the draft. It is safe to call after Commit (a no-op).
func (d *Draft) Abort() {
	if d.done {
		return
	}
	d.release()
	if d.f != nil {
		d.f.Close()
		d.q.tmp.Remove(d.tmp)
	}
}

func (d *Draft) release() {
	d.done = true
	d.putMem()
	if d.w != nil {
		d.w.Reset(nil)
		writerPool.Put(d.w)
		d.w = nil
	}
}

// reserveMem takes n bytes of the memory-only budget, if there are.
func (q *Queue) reserveMem(n int) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.memBytes+int64(n) > memBudget {
		return false
	}
	q.memBytes += int64(n)
	return true
}

func (q *Queue) releaseMem(n int) {
	q.mu.Lock()
	q.memBytes -= int64(n)
	q.mu.Unlock()
}

// dropData forgets a memory-only message's bytes (it was removed, or its
// file written). q.mu held.
func (q *Queue) dropData(it *item) {
	if it.data != nil {
		q.memBytes -= int64(len(it.data))
		it.data = nil
	}
}

// materialize writes the file of a memory-only message into msg/, not
// fsynced: its journal record stands for it until its segment is retired,
// which fsyncs it. it.mu held (removal holds it too, so a removed message
// never gets a file back).
func (q *Queue) materialize(it *item) error {
	q.mu.Lock()
	data := it.data
	q.mu.Unlock()
	if data == nil {
		return nil
	}
	if err := q.installTemp(it.id, data, false); err != nil {
		return fmt.Errorf("write message file: %w", err)
	}
	q.mu.Lock()
	q.dropData(it)
	q.mu.Unlock()
	return nil
}

// memData returns a memory-only message's bytes, or nil.
func (q *Queue) memData(id string) []byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	if it := q.items[id]; it != nil {
		return it.data
	}
	return nil
}

// committedRecord is what loadRecord would read back from the file just
// committed: the envelope copied (the caller keeps its own), the time
// without its monotonic reading, as after a round trip through the file.
func committedRecord(bodyLen int64, prefix []byte, env *Envelope) *record {
	rec := &record{BodyLen: bodyLen, Prefix: slices.Clone(prefix), Env: *env}
	rec.Env.To = slices.Clone(env.To)
	rec.Env.RcptDSN = slices.Clone(env.RcptDSN)
	rec.Env.Received = env.Received.Round(0)
	return rec
}

// commitReq asks the committer to make msg/dst durable: tmp/src renamed
// there, or, with no src, a memory-only message (data) in the journal.
type commitReq struct {
	src, dst string
	data     []byte // the file's content when the journal makes it durable
	item     *item  // a message's index entry, put in q.items once durable
	done     chan error
}

// commitRename renames tmp/src (fsynced) to msg/dst and returns once msg/
// is fsynced: the last two steps of safefile.WriteFile, batched.
// Concurrent calls share one directory fsync (group commit).
func (q *Queue) commitRename(src, dst string) error {
	return q.commit(&commitReq{src: src, dst: dst})
}

// commit hands req to the committer and waits for its answer.
func (q *Queue) commit(req *commitReq) error {
	req.done = make(chan error, 1)
	select {
	case q.commitc <- req:
	case <-q.quit:
		return ErrClosed
	}
	select {
	case err := <-req.done:
		return err
	case <-q.committerDone:
		// The committer answers before it exits; no answer means it never
		// saw the request, so nothing was renamed.
		select {
		case err := <-req.done:
			return err
		default:
			return ErrClosed
		}
	}
}

// committer owns the renames into msg/ and the directory fsyncs. While one
// fsync runs, new requests queue up and are served by the next one: each
// fsync covers every rename done before it started.
func (q *Queue) committer() {
	defer close(q.committerDone)
	batch := make([]*commitReq, 0, 256)
	idle := time.NewTicker(journalIdle)
	defer idle.Stop()
	for {
		select {
		case req := <-q.commitc:
			batch = append(batch[:0], req)
		case <-idle.C:
			q.journalFlush()
			continue
		case <-q.journal.rotateKick:
			q.journalFlush() // replaces the broken segment
			continue
		case <-q.quit:
			return
		}
	drain:
		for len(batch) < cap(batch) {
			select {
			case req := <-q.commitc:
				batch = append(batch, req)
			default:
				break drain
			}
		}
		q.commitBatch(batch)
		clear(batch)
	}
}

// commitBatch appends the journaled requests to the journal and syncs it
// once, renames every request, fsyncs the directory once if a request was
// not journaled, and answers.
func (q *Queue) commitBatch(batch []*commitReq) {
	errs := make([]error, len(batch))
	var jerr error
	if slices.ContainsFunc(batch, func(r *commitReq) bool { return r.data != nil }) {
		jerr = q.journalAppend(batch)
	}
	renamed := false
	for i, req := range batch {
		if req.src == "" { // memory-only: nothing to rename
			errs[i] = jerr
			continue
		}
		if req.data != nil {
			if errs[i] = jerr; jerr == nil {
				if errs[i] = safefile.RenameIn(q.tmpDirFile, req.src, q.msgDirFile, req.dst); errs[i] != nil {
					q.journalDone(req.dst) // the client is told to send it again
				}
			}
			continue
		}
		if errs[i] = safefile.RenameIn(q.tmpDirFile, req.src, q.msgDirFile, req.dst); errs[i] == nil {
			renamed = true
		}
	}
	if renamed {
		if err := q.syncDir(); err != nil {
			err = fmt.Errorf("sync spool folder: %w", err)
			for i, req := range batch {
				if errs[i] == nil && req.data == nil {
					errs[i] = err
					// Not durable, so not acknowledged: do not deliver a
					// message the client was told to send again.
					if validID(req.dst) {
						q.msg.Remove(req.dst)
					}
				}
			}
		}
	}
	q.mu.Lock()
	for i, req := range batch {
		if errs[i] == nil && req.item != nil {
			req.item.next = now().UnixNano()
			q.items[req.dst] = req.item
			q.schedule(req.item)
		}
	}
	q.mu.Unlock()
	for i, req := range batch {
		req.done <- errs[i]
	}
}
