package queue

import (
	"bytes"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/inkan-relay/inkan/queue/safefile"
)

// Options configure a Queue. Zero values get the defaults noted.
type Options struct {
	Dir       string       // spool folder, created with mode 0700
	Transport Transport    // required by Run; nil is fine for admin use
	Logger    *slog.Logger // default slog.Default()
	Hostname  string       // Reporting-MTA of DSNs; default os.Hostname()

	MaxLifetime  time.Duration // default 5 days; then pending recipients bounce
	RetryMin     time.Duration // first retry delay; default 5m
	RetryMax     time.Duration // backoff cap; default 1h
	DelayWarning time.Duration // send one "delayed" DSN after this; 0 = never

	MaxConcurrent int // deliveries at once; default 20
	MaxPerDomain  int // deliveries at once per destination domain; default 20 (Postfix's destination concurrency)

	BounceFrom string // header From of DSNs; default "MAILER-DAEMON@"+Hostname

	// SignBounce, if set, returns header lines (such as DKIM-Signature) to
	// send before a DSN the queue generated; msg is the whole DSN. An error
	// queues the DSN unsigned.
	SignBounce func(msg []byte) (prefix []byte, err error)
}

// Errors returned by the admin API and Open.
var (
	ErrLocked   = errors.New("queue: spool is locked by another process")
	ErrNotFound = errors.New("queue: no such message")
	ErrBusy     = errors.New("queue: message is being delivered, try again")
	ErrClosed   = errors.New("queue: closed")
)

// Queue is an open spool. All methods are safe for concurrent use.
type Queue struct {
	opts                   Options
	log                    *slog.Logger
	msgDir, tmpDir, badDir string   // paths, for messages and tests
	root, msg, tmp, bad    *os.Root // the spool and its folders; see openDirs
	lockFile               *os.File
	msgDirFile, tmpDirFile *os.File        // msg/ and tmp/ held open: see safefile.OpenIn
	owner                  *safefile.Owner // see openDirs
	syncDir                func() error    // fsyncs msgDir; tests replace it
	journal                *journal        // see journal.go
	retiring               sync.WaitGroup  // journal segments being retired
	commitc                chan *commitReq
	quit, committerDone    chan struct{}
	kick                   chan struct{}
	mu                     sync.Mutex // guards the fields below
	items                  map[string]*item
	due                    dueHeap
	domains                map[string]int      // deliveries in flight per domain
	waiters                map[string][]string // domain -> IDs parked until a slot frees
	closed                 bool
	run                    *runState // set while Run is going
	freshRecs              int       // items holding a rec
	memBytes               int64     // bytes of memory-only messages
}

// item is the in-memory index entry of one message: a few dozen bytes.
type item struct {
	id   string
	next int64 // Unix nanoseconds of the next attempt
	idx  int   // position in Queue.due; -1 when not there
	held bool
	busy bool // a worker owns it
	// woken: a domain slot this message waits for freed while a worker
	// owned it; the worker reschedules it at once (q.mu).
	woken bool
	gone  bool // deleted or finished
	// fresh: committed by this process and never attempted. Its first
	// attempt skips the pre-delivery state write (one fsync less per
	// message); a crash during that attempt only means a retry, and a
	// message found at Open is never fresh, so no crash loop can form.
	fresh bool
	// noState: no ID.state file was ever written for it (set at commit,
	// cleared before any state write), so reads and unlinks of the state
	// file can be skipped: two syscalls less per delivered message.
	noState bool
	// rec is the record of a fresh message as committed, so its first
	// attempt does not open the file to read back what it just wrote
	// (eight system calls); nil once used, and for at most
	// maxFreshRecords messages at a time (a backlog is read from disk).
	rec *record
	// data is a memory-only message's whole file (see Draft): it has no
	// file in msg/ until materialize; nil otherwise (q.mu).
	data []byte
	mu   sync.Mutex // serializes changes to this message's files
}

// maxFreshRecords bounds the memory fresh records take: about 1 KB each.
const maxFreshRecords = 4096

// Open opens (creating if needed) the spool in opts.Dir, locks it, and indexes
// the messages in it. Open fails with ErrLocked when another process holds it.
func Open(opts Options) (*Queue, error) {
	if opts.Dir == "" {
		return nil, errors.New("queue: no spool folder given")
	}
	setDefaults(&opts)
	q := &Queue{
		opts:          opts,
		log:           opts.Logger,
		msgDir:        filepath.Join(opts.Dir, "msg"),
		tmpDir:        filepath.Join(opts.Dir, "tmp"),
		badDir:        filepath.Join(opts.Dir, "corrupt"),
		commitc:       make(chan *commitReq, 256),
		quit:          make(chan struct{}),
		committerDone: make(chan struct{}),
		kick:          make(chan struct{}, 1),
		items:         make(map[string]*item),
		domains:       make(map[string]int),
		waiters:       make(map[string][]string),
		journal:       &journal{sync: fdatasync, segMax: journalSegmentMax, rotateKick: make(chan struct{}, 1)},
	}
	if err := q.openDirs(); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			q.closeFiles()
		}
	}()
	q.syncDir = q.msgDirFile.Sync
	if err := q.cleanTmp(); err != nil {
		return nil, err
	}
	if err := q.recoverJournal(); err != nil {
		return nil, err
	}
	if err := q.scan(); err != nil {
		return nil, err
	}
	ok = true
	go q.committer()
	metricsQueue.Store(q)
	q.log.Info("queue opened", "dir", opts.Dir, "messages", len(q.items))
	return q, nil
}

func setDefaults(o *Options) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Hostname == "" {
		o.Hostname, _ = os.Hostname()
		if o.Hostname == "" {
			o.Hostname = "localhost"
		}
	}
	if o.MaxLifetime <= 0 {
		o.MaxLifetime = 5 * 24 * time.Hour
	}
	if o.RetryMin <= 0 {
		o.RetryMin = 5 * time.Minute
	}
	if o.RetryMax < o.RetryMin {
		o.RetryMax = max(time.Hour, o.RetryMin)
	}
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = 20
	}
	if o.MaxPerDomain <= 0 {
		o.MaxPerDomain = 20
	}
	if o.BounceFrom == "" {
		o.BounceFrom = "MAILER-DAEMON@" + o.Hostname
	}
}

// openDirs creates the folders, takes the lock and opens msg/ for fsyncs.
//
// Root may run `inkan queue` on a spool that belongs to the service user,
// who could plant links in it. So nothing in the spool is reached through a
// symbolic link: the spool and its folders must be real folders (a link is
// refused with an error), and every file is opened through an os.Root of its
// folder, which refuses names that lead out of it. What root creates is given
// to the spool's owner. A spool that others may write to is refused.
func (q *Queue) openDirs() (err error) {
	dir := q.opts.Dir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("queue: create spool: %w", err)
	}
	var owners []int
	if os.Geteuid() == 0 {
		if fi, err := os.Lstat(dir); err == nil {
			if o, ok := safefile.OwnerOf(fi); ok && o.UID != 0 {
				q.owner, owners = &o, []int{o.UID}
			}
		}
	}
	if q.root, _, err = safefile.OpenDir("spool", dir, owners...); err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	for _, d := range []struct {
		name string
		r    **os.Root
	}{{"msg", &q.msg}, {"tmp", &q.tmp}, {"corrupt", &q.bad}, {"journal", &q.journal.dir}} {
		if *d.r, err = safefile.OpenSubdir("spool folder", q.root, d.name, q.owner, owners...); err != nil {
			return fmt.Errorf("queue: %w", err)
		}
	}
	if fi, err := q.root.Lstat("lock"); err == nil {
		if err := safefile.RefuseLink("spool lock", filepath.Join(dir, "lock"), fi); err != nil {
			return fmt.Errorf("queue: %w", err)
		}
	}
	f, err := q.root.OpenFile("lock", os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("queue: open lock: %w", err)
	}
	q.lockFile = f
	if err := q.chown(f); err != nil {
		return err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return ErrLocked
		}
		return fmt.Errorf("queue: lock spool: %w", err)
	}
	if q.msgDirFile, err = q.msg.Open("."); err != nil {
		return fmt.Errorf("queue: open spool: %w", err)
	}
	if q.tmpDirFile, err = q.tmp.Open("."); err != nil {
		return fmt.Errorf("queue: open spool: %w", err)
	}
	if q.journal.dirFile, err = q.journal.dir.Open("."); err != nil {
		return fmt.Errorf("queue: open spool: %w", err)
	}
	return nil
}

// closeFiles closes what openDirs opened (any of it may be nil).
func (q *Queue) closeFiles() error {
	var errs []error
	for _, f := range []*os.File{q.msgDirFile, q.tmpDirFile, q.journal.dirFile, q.lockFile} {
		if f != nil {
			errs = append(errs, f.Close())
		}
	}
	for _, r := range []*os.Root{q.msg, q.tmp, q.bad, q.journal.dir, q.root} {
		if r != nil {
			errs = append(errs, r.Close())
		}
	}
	return errors.Join(errs...)
}

// chown gives a file root created to the spool's owner.
func (q *Queue) chown(f *os.File) error {
	if q.owner == nil {
		return nil
	}
	if err := f.Chown(q.owner.UID, q.owner.GID); err != nil {
		return fmt.Errorf("queue: give %s to the spool owner: %w", f.Name(), err)
	}
	return nil
}

// cleanTmp removes drafts and state files that were never renamed into
// place: none was acknowledged, so nothing is lost.
func (q *Queue) cleanTmp() error {
	names, err := readNames(q.tmp)
	if err != nil {
		return fmt.Errorf("queue: clean tmp: %w", err)
	}
	for _, name := range names {
		if err := q.tmp.Remove(name); err != nil {
			return fmt.Errorf("queue: clean tmp: %w", err)
		}
	}
	return nil
}

// readNames lists a folder.
func readNames(dir *os.Root) ([]string, error) {
	d, err := dir.Open(".")
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Readdirnames(-1)
}

// scan streams msg/ and builds the index. It reads state files, never bodies.
func (q *Queue) scan() error {
	d, err := q.msg.Open(".")
	if err != nil {
		return fmt.Errorf("queue: scan: %w", err)
	}
	defer d.Close()
	var states []string
	t := now()
	for {
		ents, err := d.ReadDir(512)
		for _, e := range ents {
			name := e.Name()
			if at, ok := idTime(name); ok {
				q.items[name] = &item{id: name, next: min(at.UnixNano(), t.UnixNano()), idx: -1}
			} else if id, ok := strings.CutSuffix(name, ".state"); ok && validID(id) {
				states = append(states, id)
			} else {
				q.moveCorrupt(name, "", errors.New("unknown file in spool"))
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("queue: scan: %w", err)
		}
	}
	for _, id := range states {
		q.indexState(id)
	}
	for _, it := range q.items {
		q.schedule(it)
	}
	return nil
}

// indexState applies msg/ID.state to the index entry of ID.
func (q *Queue) indexState(id string) {
	it := q.items[id]
	if it == nil {
		// The message was finished or deleted before its state.
		if err := q.msg.Remove(id + ".state"); err != nil {
			q.log.Warn("cannot remove orphan state", "queue_id", id, "err", err)
		}
		return
	}
	st, err := q.readState(id)
	switch {
	case errors.Is(err, errCorrupt):
		// The message is retried from scratch: a duplicate, not a loss.
		q.moveCorrupt(id+".state", id, err)
	case err != nil:
		q.log.Warn("cannot read state; will retry", "queue_id", id, "err", err)
	default:
		it.held = st.Held
		if t, ok := st.nextAttempt(); ok && t.UnixNano() > it.next {
			it.next = t.UnixNano()
		}
	}
}

// moveCorrupt moves msg/name to corrupt/ and logs why; it never deletes.
func (q *Queue) moveCorrupt(name, id string, why error) {
	dst := name
	if _, err := q.bad.Lstat(dst); err == nil {
		dst += "." + now().UTC().Format("20060102T150405.000000000")
	}
	log := q.log.With("file", name)
	if id != "" {
		log = log.With("queue_id", id)
	}
	if err := q.root.Rename("msg/"+name, "corrupt/"+dst); err != nil {
		log.Error("cannot move corrupt file aside", "reason", why, "err", err)
		return
	}
	log.Error("moved corrupt file aside", "to", filepath.Join(q.badDir, dst), "reason", why)
}

// openMsg opens msg/name for reading (see openOwned).
func (q *Queue) openMsg(name string) (*os.File, error) {
	return q.openOwned(q.msgDirFile, name)
}

// openOwned opens dir/name for reading: a regular file, not reached
// through a symbolic link, never a FIFO that would block the open. When
// root works in another user's spool, a file that is not that user's (a
// hard link to someone else's file, planted by the owner) is refused.
func (q *Queue) openOwned(dir *os.File, name string) (*os.File, error) {
	f, err := safefile.OpenIn(dir, name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	switch {
	case err != nil:
	case !fi.Mode().IsRegular():
		err = fmt.Errorf("%s is not a regular file", name)
	case q.owner != nil:
		if o, ok := safefile.OwnerOf(fi); ok && o.UID != q.owner.UID {
			err = fmt.Errorf("%s belongs to uid %d, not to the spool owner", name, o.UID)
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// readState returns a message's state, or nil when it has none yet.
func (q *Queue) readState(id string) (*state, error) {
	f, err := q.openMsg(id + ".state")
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	return decodeState(b)
}

// writeState replaces msg/ID.state durably: tmp → fsync → rename → dir fsync.
func (q *Queue) writeState(id string, st *state) error {
	q.mu.Lock()
	if it := q.items[id]; it != nil {
		it.noState = false // before the file can exist
	}
	q.mu.Unlock()
	b, err := encodeState(st)
	if err != nil {
		return err
	}
	tmp, err := q.writeTemp(id+".state", b, true)
	if err == nil {
		err = q.commitRename(tmp, id+".state")
		if err != nil {
			q.tmp.Remove(tmp)
		}
	}
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// writeTemp writes data to a new file in tmp/ (fsynced if sync) and
// returns its name there; on error nothing is left.
func (q *Queue) writeTemp(prefix string, data []byte, sync bool) (string, error) {
	f, tmp, err := q.createTemp(prefix)
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		q.tmp.Remove(tmp)
		return "", err
	}
	return tmp, nil
}

// installTemp writes data as msg/name through tmp/ (see writeTemp); the
// caller fsyncs msg/ when it must.
func (q *Queue) installTemp(name string, data []byte, sync bool) error {
	tmp, err := q.writeTemp(name, data, sync)
	if err != nil {
		return err
	}
	if err := safefile.RenameIn(q.tmpDirFile, tmp, q.msgDirFile, name); err != nil {
		q.tmp.Remove(tmp)
		return err
	}
	return nil
}

// createTemp makes a new file in tmp/ (see safefile.CreateTemp) and
// returns it with its name there.
func (q *Queue) createTemp(prefix string) (*os.File, string, error) {
	f, name, err := safefile.CreateTempIn(q.tmpDirFile, prefix, 0o600)
	if err != nil {
		return nil, "", err
	}
	if err := q.chown(f); err != nil {
		f.Close()
		q.tmp.Remove(name)
		return nil, "", err
	}
	return f, name, nil
}

// loadRecord reads a message's trailer. Errors wrap ErrNotFound when the file
// is gone and errCorrupt when it cannot be decoded.
func (q *Queue) loadRecord(id string) (*record, error) {
	if data := q.memData(id); data != nil {
		return decodeRecord(bytes.NewReader(data), int64(len(data)))
	}
	f, err := q.openMsg(id)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("open message: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("open message: %w", err)
	}
	return decodeRecord(f, fi.Size())
}

// removeMessage deletes a finished message: file first, then state.
func (q *Queue) removeMessage(id string) error {
	q.journalDone(id)
	q.mu.Lock()
	it := q.items[id]
	noState := it != nil && it.noState
	memOnly := it != nil && it.data != nil
	if it != nil {
		q.dropData(it)
	}
	q.mu.Unlock()
	if !memOnly {
		if err := q.msg.Remove(id); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove message: %w", err)
		}
	}
	if noState {
		return nil
	}
	if err := q.msg.Remove(id + ".state"); err != nil && !errors.Is(err, os.ErrNotExist) {
		// Harmless: an orphan state is removed at the next Open.
		q.log.Warn("cannot remove state", "queue_id", id, "err", err)
	}
	return nil
}

// schedule puts it in or out of the due heap according to its flags. q.mu held.
func (q *Queue) schedule(it *item) {
	in := !it.held && !it.busy && !it.gone
	switch {
	case in && it.idx >= 0:
		heap.Fix(&q.due, it.idx)
	case in:
		heap.Push(&q.due, it)
	case it.idx >= 0:
		heap.Remove(&q.due, it.idx)
	}
}

// forget drops it from the index. q.mu held.
func (q *Queue) forget(it *item) {
	it.gone = true
	q.dropData(it)
	if it.rec != nil {
		it.rec = nil
		q.freshRecs--
	}
	q.schedule(it)
	delete(q.items, it.id)
}

// Kick wakes the scheduler without blocking.
func (q *Queue) Kick() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// Close stops Run (cancelling deliveries in flight), the committer, and
// releases the lock. Drafts not committed are lost (they were not
// acknowledged).
func (q *Queue) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	q.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	q.Shutdown(ctx)
	close(q.quit)
	<-q.committerDone
	q.closeJournal()
	metricsQueue.CompareAndSwap(q, nil)
	return q.closeFiles()
}

// dueHeap orders items by next attempt, then ID (arrival).
type dueHeap []*item

func (h dueHeap) Len() int { return len(h) }
func (h dueHeap) Less(i, j int) bool {
	if h[i].next != h[j].next {
		return h[i].next < h[j].next
	}
	return h[i].id < h[j].id
}
func (h dueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *dueHeap) Push(x any) {
	it := x.(*item)
	it.idx = len(*h)
	*h = append(*h, it)
}
func (h *dueHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	it.idx = -1
	return it
}
