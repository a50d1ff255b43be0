package queue

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/inkan-relay/inkan/queue/safefile"
)

// Draft is a message being received. It is not in the queue, and not
// acknowledged, until Commit returns nil.
type Draft struct {
	q    *Queue
	id   string
	env  *Envelope
	f    *os.File
	tmp  string // f's name in tmp/
	w    *bufio.Writer
	n    int64 // body bytes written
	err  error // first write error; sticky
	done bool
}

var writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}

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
	id := newID()
	f, tmp, err := q.createTemp(id)
	if err != nil {
		return nil, fmt.Errorf("queue: create draft: %w", err)
	}
	w := writerPool.Get().(*bufio.Writer)
	w.Reset(f)
	return &Draft{q: q, id: id, env: env, f: f, tmp: tmp, w: w}, nil
}

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
	n, err := d.w.Write(p)
	d.n += int64(n)
	if err != nil {
		d.err = fmt.Errorf("queue: write draft: %w", err)
	}
	return n, d.err
}

// Commit stores the message: body, then prefix (header lines sent before the
// body), then the envelope. It returns nil only once the file and its
// directory entry are on stable storage; then the message will be delivered.
// On error the draft is gone and the client must be told to retry (4xx).
func (d *Draft) Commit(prefix []byte) error {
	if d.done {
		return errors.New("queue: draft already finished")
	}
	err := d.finish(prefix)
	if err != nil {
		d.Abort()
		return err
	}
	d.release()
	q := d.q
	q.mu.Lock()
	it := &item{id: d.id, next: now().UnixNano(), idx: -1, fresh: true, noState: true}
	if q.freshRecs < maxFreshRecords {
		it.rec = committedRecord(d.n, prefix, d.env)
		q.freshRecs++
	}
	q.items[d.id] = it
	q.schedule(it)
	q.mu.Unlock()
	q.Kick()
	q.log.Info("queued", "queue_id", d.id, "from", d.env.From, "rcpts", len(d.env.To),
		"size", d.n+int64(len(prefix)), "user", d.env.User, "client", d.env.Client)
	return nil
}

// finish writes the trailer, fsyncs, and renames the draft into msg/.
func (d *Draft) finish(prefix []byte) error {
	if d.err != nil {
		return d.err
	}
	trailer, err := encodeTrailer(d.n, prefix, d.env)
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	if _, err := d.w.Write(trailer); err != nil {
		return fmt.Errorf("queue: write draft: %w", err)
	}
	if err := d.w.Flush(); err != nil {
		return fmt.Errorf("queue: write draft: %w", err)
	}
	if size := d.n + int64(len(trailer)); size <= journalMaxMessage {
		// Small: the journal makes it durable (journal.go). The file is
		// read back from the page cache, as it will be delivered.
		data := make([]byte, size)
		if _, err := d.f.ReadAt(data, 0); err != nil {
			return fmt.Errorf("queue: read draft back: %w", err)
		}
		if err := d.f.Close(); err != nil {
			return fmt.Errorf("queue: close draft: %w", err)
		}
		if err := d.q.commit(&commitReq{src: d.tmp, dst: d.id, data: data}); err != nil {
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
	if err := d.q.commitRename(d.tmp, d.id); err != nil {
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
	d.f.Close()
	d.q.tmp.Remove(d.tmp)
}

func (d *Draft) release() {
	d.done = true
	d.w.Reset(nil)
	writerPool.Put(d.w)
	d.w = nil
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

// commitReq asks the committer to rename tmp/src to msg/dst durably.
type commitReq struct {
	src, dst string
	data     []byte // the file's content when the journal makes it durable
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
	for i, req := range batch {
		req.done <- errs[i]
	}
}
