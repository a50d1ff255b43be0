package queue

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestIDs(t *testing.T) {
	seen := map[string]bool{}
	prev := ""
	for range 10000 {
		id := newID()
		if !validID(id) {
			t.Fatalf("invalid ID %q", id)
		}
		if seen[id] || id <= prev {
			t.Fatalf("ID %q not unique and increasing after %q", id, prev)
		}
		seen[id], prev = true, id
	}
	at, ok := idTime(prev)
	if !ok || time.Since(at) > time.Minute || time.Since(at) < -time.Minute {
		t.Errorf("idTime(%q) = %v, %v", prev, at, ok)
	}
	for _, bad := range []string{"", "../../etc/passw", "0123456789abcdef", "ALL", "0123456789ABCDEW"} {
		if validID(bad) {
			t.Errorf("validID(%q) = true", bad)
		}
	}
}

func TestCommitReopen(t *testing.T) {
	dir := t.TempDir()
	opts, _ := testOptions(t, dir, nil)
	q := openQueue(t, opts)
	id := commit(t, q, "alice@example.com", "bob@example.org", "carol@example.net")
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}

	q2 := openQueue(t, opts)
	info, err := q2.Get(id)
	if err != nil {
		t.Fatalf("Get after reopen: %v", err)
	}
	if info.From != "alice@example.com" || len(info.Rcpts) != 2 || info.Rcpts[1].Addr != "carol@example.net" ||
		info.Rcpts[0].Status != Pending || info.User != "alice" {
		t.Errorf("info = %+v", info)
	}
	want := "Received: from test\r\n" + testBody
	if info.Size != int64(len(want)) {
		t.Errorf("size = %d, want %d", info.Size, len(want))
	}
	rc, err := q2.Body(id)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != want {
		t.Errorf("body = %q, want %q", got, want)
	}
	if n, oldest := q2.Stats(); n != 1 || oldest.IsZero() {
		t.Errorf("Stats = %d, %v", n, oldest)
	}
	if _, err := q2.Get("0000000000000000"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(unknown) = %v", err)
	}
}

func TestLocked(t *testing.T) {
	opts, _ := testOptions(t, t.TempDir(), nil)
	openQueue(t, opts)
	if _, err := Open(opts); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
}

func TestAbortAndTmpCleanup(t *testing.T) {
	dir := t.TempDir()
	opts, _ := testOptions(t, dir, nil)
	q := openQueue(t, opts)
	d, err := q.NewDraft(&Envelope{From: "a@example.com", To: []string{"b@example.org"}})
	if err != nil {
		t.Fatal(err)
	}
	d.Write([]byte("x\r\n"))
	d.Abort()
	d.Abort()
	d2, _ := q.NewDraft(&Envelope{From: "a@example.com", To: []string{"b@example.org"}})
	d2.Write([]byte("left behind by a crash\r\n"))
	q.Close()
	q2 := openQueue(t, opts)
	if ents, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(ents) != 0 {
		t.Errorf("tmp not cleaned: %v", ents)
	}
	if n, _ := q2.Stats(); n != 0 {
		t.Errorf("%d messages after aborted drafts", n)
	}
}

// failingWriter fails like a full disk.
type failingWriter struct{}

func (failingWriter) Write(p []byte) (int, error) {
	return 0, &os.PathError{Op: "write", Path: "draft", Err: syscall.ENOSPC}
}

func TestDraftDiskFull(t *testing.T) {
	opts, _ := testOptions(t, t.TempDir(), nil)
	q := openQueue(t, opts)

	// Error while streaming the body.
	d, err := q.NewDraft(&Envelope{From: "a@example.com", To: []string{"b@example.org"}})
	if err != nil {
		t.Fatal(err)
	}
	d.Write(make([]byte, memMessageMax+1)) // spilled to tmp/
	d.w.Reset(failingWriter{})
	_, err = d.Write(make([]byte, 200<<10))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Write error = %v, want ENOSPC", err)
	}
	if err := d.Commit(nil); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Commit error = %v, want ENOSPC", err)
	}

	// Error while flushing at Commit.
	d, _ = q.NewDraft(&Envelope{From: "a@example.com", To: []string{"b@example.org"}})
	d.Write(make([]byte, memMessageMax+1))
	d.w.Reset(failingWriter{})
	if err := d.Commit(nil); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Commit error = %v, want ENOSPC", err)
	}
	d.Abort()

	// Error while appending a small message to the journal.
	q.journal.sync = func(*os.File) error { return &os.PathError{Op: "fdatasync", Path: "journal", Err: syscall.ENOSPC} }
	d, _ = q.NewDraft(&Envelope{From: "a@example.com", To: []string{"b@example.org"}})
	d.Write([]byte("small\r\n"))
	if err := d.Commit(nil); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Commit error = %v, want ENOSPC", err)
	}
	q.journal.sync = fdatasync
	if ents, _ := os.ReadDir(q.tmpDir); len(ents) != 0 {
		t.Errorf("failed drafts left files: %v", ents)
	}
	if n, _ := q.Stats(); n != 0 {
		t.Errorf("failed drafts were queued")
	}
}

func TestConcurrentCommits(t *testing.T) {
	dir := t.TempDir()
	opts, _ := testOptions(t, dir, nil)
	q := openQueue(t, opts)
	const n = 64
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := q.NewDraft(&Envelope{From: "a@example.com", To: []string{"b@example.org"}})
			if err != nil {
				t.Error(err)
				return
			}
			d.Write([]byte(strings.Repeat("x", i*100) + "\r\n"))
			if err := d.Commit(nil); err != nil {
				t.Error(err)
				return
			}
			ids[i] = d.ID()
		}()
	}
	wg.Wait()
	q.Close()
	q2 := openQueue(t, opts)
	for i, id := range ids {
		info, err := q2.Get(id)
		if err != nil || info.Size != int64(i*100+2) {
			t.Errorf("message %d (%s): %+v, %v", i, id, info, err)
		}
	}
}

// groupCommitCases: a small message is made durable by the journal's
// fdatasync, a large one by its own fsync and the directory's; either way
// concurrent commits share one sync.
var groupCommitCases = []struct {
	name string
	body []byte
	hook func(q *Queue, sync func() error) // replaces the shared sync
}{
	{"journal", []byte("hello\r\n"), func(q *Queue, sync func() error) {
		q.journal.sync = func(*os.File) error { return sync() }
	}},
	{"large", bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n"), journalMaxMessage/64+1),
		func(q *Queue, sync func() error) { q.syncDir = sync }},
}

func TestGroupCommit(t *testing.T) {
	for _, tc := range groupCommitCases {
		t.Run(tc.name, func(t *testing.T) {
			opts, _ := testOptions(t, t.TempDir(), nil)
			q := openQueue(t, opts)
			const n = 20
			var mu sync.Mutex
			syncs := 0
			release := make(chan struct{})
			t.Cleanup(func() {
				select {
				case <-release:
				default:
					close(release)
				}
			})
			tc.hook(q, func() error {
				mu.Lock()
				syncs++
				first := syncs == 1
				mu.Unlock()
				if first {
					<-release // hold the first sync while the others queue up
				}
				return nil
			})
			errs := make(chan error, n)
			commitOne := func() {
				d, err := q.NewDraft(&Envelope{From: "a@example.com", To: []string{"b@example.org"}})
				if err == nil {
					d.Write(tc.body)
					err = d.Commit(nil)
				}
				errs <- err
			}
			go commitOne()
			waitFor(t, "first sync", func() bool { mu.Lock(); defer mu.Unlock(); return syncs == 1 })
			for range n - 1 {
				go commitOne()
			}
			waitFor(t, "queued commits", func() bool { return len(q.commitc) == n-1 })
			close(release)
			for range n {
				if err := <-errs; err != nil {
					t.Errorf("Commit: %v", err)
				}
			}
			mu.Lock()
			if syncs != 2 {
				t.Errorf("%d syncs for %d commits, want 2", syncs, n)
			}
			mu.Unlock()
			if c, _ := q.Stats(); c != n {
				t.Errorf("%d messages queued, want %d", c, n)
			}
		})
	}
}

func TestGroupCommitError(t *testing.T) {
	for _, tc := range groupCommitCases {
		t.Run(tc.name, func(t *testing.T) {
			opts, _ := testOptions(t, t.TempDir(), nil)
			q := openQueue(t, opts)
			errSync := errors.New("injected fsync failure")
			tc.hook(q, func() error { return &os.PathError{Op: "fsync", Path: "msg", Err: errSync} })
			const n = 8
			errs := make(chan error, n)
			for range n {
				go func() {
					d, err := q.NewDraft(&Envelope{From: "a@example.com", To: []string{"b@example.org"}})
					if err == nil {
						d.Write(tc.body)
						err = d.Commit(nil)
					}
					errs <- err
				}()
			}
			for range n {
				if err := <-errs; !errors.Is(err, errSync) {
					t.Errorf("Commit = %v, want the fsync error", err)
				}
			}
			if c, _ := q.Stats(); c != 0 {
				t.Errorf("%d messages queued although none was durable", c)
			}
			if ents, _ := os.ReadDir(q.msgDir); len(ents) != 0 {
				t.Errorf("files left in msg/: %v", ents)
			}
			if ents, _ := os.ReadDir(q.tmpDir); len(ents) != 0 {
				t.Errorf("files left in tmp/: %v", ents)
			}
		})
	}
}

func TestCommitAfterClose(t *testing.T) {
	opts, _ := testOptions(t, t.TempDir(), nil)
	q := openQueue(t, opts)
	d, err := q.NewDraft(&Envelope{From: "a@example.com", To: []string{"b@example.org"}})
	if err != nil {
		t.Fatal(err)
	}
	d.Write([]byte("x\r\n"))
	q.Close()
	if err := d.Commit(nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Commit after Close = %v, want ErrClosed", err)
	}
	if _, err := q.NewDraft(&Envelope{To: []string{"b@example.org"}}); !errors.Is(err, ErrClosed) {
		t.Errorf("NewDraft after Close = %v", err)
	}
}

func TestCorruptFilesMovedAside(t *testing.T) {
	clock := useFakeClock(t)
	_ = clock
	dir := t.TempDir()
	tr := &fakeTransport{}
	opts, lb := testOptions(t, dir, tr)
	q := openQueue(t, opts)
	good := commit(t, q, "alice@example.com", "bob@example.org")
	q.Close()

	bad := newID()
	os.WriteFile(filepath.Join(dir, "msg", bad), []byte("not a queue file"), 0o600)
	os.WriteFile(filepath.Join(dir, "msg", good+".state"), []byte("{broken"), 0o600)
	os.WriteFile(filepath.Join(dir, "msg", "stray.txt"), []byte("?"), 0o600)
	orphan := newID()
	os.WriteFile(filepath.Join(dir, "msg", orphan+".state"), []byte(`{"v":1}`), 0o600)

	q = openQueue(t, opts)
	runQueue(t, q)
	waitFor(t, "good message delivered", func() bool { return !inQueue(q, good) && len(tr.callsTo("bob@example.org")) == 1 })
	waitFor(t, "bad message moved", func() bool {
		_, err := os.Stat(filepath.Join(dir, "corrupt", bad))
		return err == nil
	})
	for _, name := range []string{good + ".state", "stray.txt"} {
		if _, err := os.Stat(filepath.Join(dir, "corrupt", name)); err != nil {
			t.Errorf("%s not in corrupt/: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "msg", orphan+".state")); !os.IsNotExist(err) {
		t.Errorf("orphan state not removed: %v", err)
	}
	if !strings.Contains(lb.String(), "moved corrupt file aside") || !strings.Contains(lb.String(), bad) {
		t.Errorf("no log line for the corrupt file:\n%s", lb)
	}
}

// TestFreshRecordMatchesFile: the record a fresh message's first attempt
// uses from memory is the one the file holds, DSN requests included.
func TestFreshRecordMatchesFile(t *testing.T) {
	opts, _ := testOptions(t, t.TempDir(), nil)
	q := openQueue(t, opts)
	env := &Envelope{From: "alice@example.com", To: []string{"bob@example.org", "carol@example.net"},
		User: "alice", Client: "192.0.2.1", Helo: "client.test", Received: time.Now(), SMTPUTF8: true,
		Body8Bit: true, Ret: "HDRS", EnvID: "env-1",
		RcptDSN: []RcptDSN{{Notify: []string{NotifySuccess, NotifyFailure}, ORcptType: "rfc822", ORcpt: "bob@example.org"}, {}}}
	d, err := q.NewDraft(env)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(d, testBody)
	if err := d.Commit([]byte("DKIM-Signature: x\r\n")); err != nil {
		t.Fatal(err)
	}
	q.mu.Lock()
	it := q.items[d.ID()]
	mem, held := it.rec, q.freshRecs
	q.mu.Unlock()
	if mem == nil || held != 1 {
		t.Fatalf("fresh record %v, %d held", mem, held)
	}
	env.To[0] = "changed@example.org" // the session's copy is its own
	disk, err := q.loadRecord(d.ID())
	if err != nil {
		t.Fatal(err)
	}
	// The same instant; the zone may be Local in memory and UTC on disk.
	if !mem.Env.Received.Equal(disk.Env.Received) {
		t.Errorf("received %v in memory, %v on disk", mem.Env.Received, disk.Env.Received)
	}
	mem.Env.Received, disk.Env.Received = time.Time{}, time.Time{}
	if !reflect.DeepEqual(mem, disk) {
		t.Errorf("in memory %+v\non disk    %+v", mem, disk)
	}
}
