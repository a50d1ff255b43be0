package queue

import (
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
	MaxPerDomain  int // deliveries at once per destination domain; default 5

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
	msgDir, tmpDir, badDir string
	lockFile, msgDirFile   *os.File
	owner                  *fileOwner
	syncDir                func() error // fsyncs msgDir; tests replace it
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
}

// item is the in-memory index entry of one message: a few dozen bytes.
type item struct {
	id   string
	next int64 // Unix nanoseconds of the next attempt
	idx  int   // position in Queue.due; -1 when not there
	held bool
	busy bool // a worker owns it
	gone bool // deleted or finished
	// fresh: committed by this process and never attempted. Its first
	// attempt skips the pre-delivery state write (one fsync less per
	// message); a crash during that attempt only means a retry, and a
	// message found at Open is never fresh, so no crash loop can form.
	fresh bool
	// noState: no ID.state file was ever written for it (set at commit,
	// cleared before any state write), so reads and unlinks of the state
	// file can be skipped: two syscalls less per delivered message.
	noState bool
	mu      sync.Mutex // serializes changes to this message's files
}

// fileOwner is who should own files that root creates in someone else's spool
// (`inkan queue` run as root on a stopped server).
type fileOwner struct{ uid, gid int }

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
	}
	if err := q.openDirs(); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			q.msgDirFile.Close()
			q.lockFile.Close()
		}
	}()
	q.syncDir = q.msgDirFile.Sync
	if err := q.cleanTmp(); err != nil {
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
		o.MaxPerDomain = 5
	}
	if o.BounceFrom == "" {
		o.BounceFrom = "MAILER-DAEMON@" + o.Hostname
	}
}

// openDirs creates the folders, takes the lock and opens msg/ for fsyncs.
func (q *Queue) openDirs() error {
	dir := q.opts.Dir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("queue: create spool: %w", err)
	}
	if fi, err := os.Stat(dir); err == nil && os.Geteuid() == 0 {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
			q.owner = &fileOwner{int(st.Uid), int(st.Gid)}
		}
	}
	for _, d := range []string{q.msgDir, q.tmpDir, q.badDir} {
		if err := os.Mkdir(d, 0o700); err == nil {
			q.chown(d)
		} else if !os.IsExist(err) {
			return fmt.Errorf("queue: create spool: %w", err)
		}
	}
	lockPath := filepath.Join(dir, "lock")
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("queue: open lock: %w", err)
	}
	q.chown(lockPath)
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return ErrLocked
		}
		return fmt.Errorf("queue: lock spool: %w", err)
	}
	q.lockFile = f
	if q.msgDirFile, err = os.Open(q.msgDir); err != nil {
		f.Close()
		return fmt.Errorf("queue: open spool: %w", err)
	}
	return nil
}

// chown gives a file root created to the spool's owner; see fileOwner.
func (q *Queue) chown(path string) {
	if q.owner != nil {
		if err := os.Lchown(path, q.owner.uid, q.owner.gid); err != nil {
			q.log.Warn("cannot give file to spool owner", "path", path, "err", err)
		}
	}
}

// cleanTmp removes drafts and state files that were never renamed into
// place: none was acknowledged, so nothing is lost.
func (q *Queue) cleanTmp() error {
	ents, err := os.ReadDir(q.tmpDir)
	if err != nil {
		return fmt.Errorf("queue: clean tmp: %w", err)
	}
	for _, e := range ents {
		if err := os.Remove(filepath.Join(q.tmpDir, e.Name())); err != nil {
			return fmt.Errorf("queue: clean tmp: %w", err)
		}
	}
	return nil
}

// scan streams msg/ and builds the index. It reads state files, never bodies.
func (q *Queue) scan() error {
	d, err := os.Open(q.msgDir)
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
		if err := os.Remove(q.statePath(id)); err != nil {
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

func (q *Queue) msgPath(id string) string   { return filepath.Join(q.msgDir, id) }
func (q *Queue) statePath(id string) string { return filepath.Join(q.msgDir, id+".state") }

// moveCorrupt moves msg/name to corrupt/ and logs why; it never deletes.
func (q *Queue) moveCorrupt(name, id string, why error) {
	dst := filepath.Join(q.badDir, name)
	if _, err := os.Lstat(dst); err == nil {
		dst += "." + now().UTC().Format("20060102T150405.000000000")
	}
	log := q.log.With("file", name)
	if id != "" {
		log = log.With("queue_id", id)
	}
	if err := os.Rename(filepath.Join(q.msgDir, name), dst); err != nil {
		log.Error("cannot move corrupt file aside", "reason", why, "err", err)
		return
	}
	log.Error("moved corrupt file aside", "to", dst, "reason", why)
}

// readState returns a message's state, or nil when it has none yet.
func (q *Queue) readState(id string) (*state, error) {
	b, err := os.ReadFile(q.statePath(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
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
	f, err := q.createTemp(id + ".state")
	if err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = q.commitRename(f.Name(), q.statePath(id))
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// createTemp makes a new file in tmp/.
func (q *Queue) createTemp(prefix string) (*os.File, error) {
	for range 10 {
		name := filepath.Join(q.tmpDir, prefix+"."+newID())
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err == nil {
			q.chown(name)
		}
		return f, err
	}
	return nil, errors.New("cannot create a temporary file")
}

// loadRecord reads a message's trailer. Errors wrap ErrNotFound when the file
// is gone and errCorrupt when it cannot be decoded.
func (q *Queue) loadRecord(id string) (*record, error) {
	f, err := os.Open(q.msgPath(id))
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
	if err := os.Remove(q.msgPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove message: %w", err)
	}
	q.mu.Lock()
	it := q.items[id]
	noState := it != nil && it.noState
	q.mu.Unlock()
	if noState {
		return nil
	}
	if err := os.Remove(q.statePath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
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
	metricsQueue.CompareAndSwap(q, nil)
	err := q.msgDirFile.Close()
	if cerr := q.lockFile.Close(); err == nil {
		err = cerr
	}
	return err
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
