package queue

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// crash stops q as a power cut or SIGKILL would: no retirement, no
// clean-up of the journal; only the lock and files are released so the
// test can open the spool again.
func crash(t *testing.T, q *Queue) {
	t.Helper()
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	close(q.quit)
	<-q.committerDone
	q.retiring.Wait()
	if q.journal.f != nil {
		q.journal.f.Close()
	}
	q.closeFiles()
}

func segments(t *testing.T, dir string) []string {
	t.Helper()
	return listDir(t, filepath.Join(dir, "journal"))
}

// toFile gives a memory-only message its file in msg/, as its first
// failed attempt or its segment's retirement would.
func toFile(t *testing.T, q *Queue, id string) {
	t.Helper()
	q.mu.Lock()
	it := q.items[id]
	q.mu.Unlock()
	it.mu.Lock()
	defer it.mu.Unlock()
	if err := q.materialize(it); err != nil {
		t.Fatal(err)
	}
}

// readMsg returns a message's file as stored: in memory or in msg/.
func readMsg(t *testing.T, q *Queue, id string) []byte {
	t.Helper()
	if data := q.memData(id); data != nil {
		return bytes.Clone(data)
	}
	b, err := os.ReadFile(filepath.Join(q.msgDir, id))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The attack on the journal is a power cut: acknowledged messages whose
// files the kernel had not written yet (gone, cut short, or with a body the
// disk never got) must come back byte for byte from the journal, and a
// message that was delivered must not.
func TestJournalRestoresWhatAPowerCutLost(t *testing.T) {
	dir := t.TempDir()
	opts, logs := testOptions(t, dir, nil)
	q, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range 5 {
		ids = append(ids, commit(t, q, "a@example.com", "b@example.org"))
	}
	want := map[string][]byte{}
	for _, id := range ids {
		want[id] = readMsg(t, q, id)
	}
	if err := q.removeMessage(ids[4]); err != nil { // delivered
		t.Fatal(err)
	}
	crash(t, q)
	if got := segments(t, dir); len(got) != 1 {
		t.Fatalf("journal after the crash: %v, want one segment", got)
	}
	// What the disk may hold after the cut: ids[0] intact, ids[1] gone,
	// ids[2] empty, ids[3] with zeros where its body was; ids[4] delivered
	// and its unlink durable.
	os.Remove(filepath.Join(q.msgDir, ids[1]))
	os.WriteFile(filepath.Join(q.msgDir, ids[2]), nil, 0o600)
	zeroed := bytes.Clone(want[ids[3]])
	clear(zeroed[:40])
	os.WriteFile(filepath.Join(q.msgDir, ids[3]), zeroed, 0o600)

	q2 := openQueue(t, opts)
	for _, id := range ids[:4] {
		if got := readMsg(t, q2, id); !bytes.Equal(got, want[id]) {
			t.Errorf("%s after recovery: %d bytes, want the %d acknowledged", id, len(got), len(want[id]))
		}
		if _, err := q2.loadRecord(id); err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}
	if _, err := os.Stat(filepath.Join(q2.msgDir, ids[4])); !os.IsNotExist(err) {
		t.Errorf("delivered message %s came back: %v", ids[4], err)
	}
	if c, _ := q2.Stats(); c != 4 {
		t.Errorf("%d messages queued, want 4", c)
	}
	if got := segments(t, dir); len(got) != 0 {
		t.Errorf("journal after recovery: %v, want empty", got)
	}
	if ents, _ := os.ReadDir(q2.badDir); len(ents) != 0 {
		t.Errorf("corrupt/ after recovery: %v", ents)
	}
	for _, s := range []string{"restored", ids[1], ids[2], ids[3]} {
		if !bytes.Contains([]byte(logs.String()), []byte(s)) {
			t.Errorf("log does not mention %q:\n%s", s, logs.String())
		}
	}
}

// A record cut short by the power cut was never acknowledged: it is
// ignored, and so is everything after it; the records before it count.
func TestJournalTornTail(t *testing.T) {
	q, opts, dir := openUnclosed(t)
	a, b := commit(t, q, "a@example.com", "b@example.org"), commit(t, q, "a@example.com", "b@example.org")
	wantA := readMsg(t, q, a)
	crash(t, q)
	seg := filepath.Join(dir, "journal", segments(t, dir)[0])
	raw, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	// Cut the second record in its middle; the first stays whole.
	first := readRecords(raw, func(byte, string, []byte) {})
	if first != len(raw) {
		t.Fatalf("segment not whole before the cut: %d of %d bytes", first, len(raw))
	}
	var ends []int
	readRecords(raw, func(kind byte, id string, data []byte) { ends = append(ends, journalHeaderLen+len(id)+len(data)) })
	cut := ends[0] + ends[1]/2
	if err := os.WriteFile(seg, raw[:cut], 0o600); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "msg", a))
	os.Remove(filepath.Join(dir, "msg", b))

	q2 := openQueue(t, opts)
	if got := readMsg(t, q2, a); !bytes.Equal(got, wantA) {
		t.Errorf("%s not restored", a)
	}
	if _, err := os.Stat(filepath.Join(q2.msgDir, b)); !os.IsNotExist(err) {
		t.Errorf("%s restored from a torn record: %v", b, err)
	}
}

// A full segment is retired in the background: the files of its messages
// still queued are fsynced and the segment removed. A clean Close leaves no
// journal at all.
func TestJournalRetiresSegments(t *testing.T) {
	q, opts, dir := openUnclosed(t)
	q.journal.segMax = 1 // every commit starts a segment
	var ids []string
	for range 6 {
		ids = append(ids, commit(t, q, "a@example.com", "b@example.org"))
	}
	q.retiring.Wait()
	if got := segments(t, dir); len(got) != 1 {
		t.Errorf("journal after 6 rotations: %v, want only the current segment", got)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if got := segments(t, dir); len(got) != 0 {
		t.Errorf("journal after Close: %v, want empty", got)
	}
	q2 := openQueue(t, opts)
	if c, _ := q2.Stats(); c != len(ids) {
		t.Errorf("%d messages after reopening, want %d", c, len(ids))
	}
}

// A message too large for the journal is fsynced in its own file, as
// before the journal; a crash then restores nothing and loses nothing.
func TestJournalLargeMessageOwnFsync(t *testing.T) {
	q, opts, _ := openUnclosed(t)
	syncs := 0
	q.syncDir = func() error { syncs++; return q.msgDirFile.Sync() }
	d, err := q.NewDraft(&Envelope{From: "a@example.com", To: []string{"b@example.org"}})
	if err != nil {
		t.Fatal(err)
	}
	d.Write(bytes.Repeat([]byte("x\r\n"), journalMaxMessage/3+1))
	if err := d.Commit(nil); err != nil {
		t.Fatal(err)
	}
	if syncs != 1 {
		t.Errorf("%d directory fsyncs, want 1", syncs)
	}
	if q.journal.f != nil {
		t.Errorf("a large message went through the journal")
	}
	crash(t, q)
	q2 := openQueue(t, opts)
	if c, _ := q2.Stats(); c != 1 {
		t.Errorf("%d messages after the crash, want 1", c)
	}
}

func TestJournalRecordsRoundTrip(t *testing.T) {
	type rec struct {
		kind byte
		id   string
		data string
	}
	in := []rec{{recMessage, "0ABC", "hello\r\n"}, {recDone, "0ABC", ""}, {recMessage, "0ABD", ""}}
	var b []byte
	for _, r := range in {
		b = appendRecord(b, r.kind, r.id, []byte(r.data))
	}
	var out []rec
	if n := readRecords(b, func(k byte, id string, data []byte) { out = append(out, rec{k, id, string(data)}) }); n != len(b) {
		t.Errorf("read %d of %d bytes", n, len(b))
	}
	if !slices.Equal(in, out) {
		t.Errorf("read %v, want %v", out, in)
	}
	for i := range b { // any flipped byte stops the reader at or before its record
		bad := bytes.Clone(b)
		bad[i] ^= 0x40
		var got []rec
		readRecords(bad, func(k byte, id string, data []byte) { got = append(got, rec{k, id, string(data)}) })
		if len(got) > 0 && !slices.Equal(got, in[:len(got)]) {
			t.Fatalf("flipped byte %d: read %v", i, got)
		}
	}
}

func FuzzJournalRecords(f *testing.F) {
	f.Add(appendRecord(appendRecord(nil, recMessage, "0ABC", []byte("hi")), recDone, "0ABC", nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		n := readRecords(b, func(k byte, id string, data []byte) {
			if k != recMessage && k != recDone {
				t.Fatalf("kind %d", k)
			}
		})
		if n < 0 || n > len(b) {
			t.Fatalf("consumed %d of %d", n, len(b))
		}
		// Re-encoding what was read gives the same bytes.
		var again []byte
		readRecords(b[:n], func(k byte, id string, data []byte) { again = appendRecord(again, k, id, data) })
		if !bytes.Equal(again, b[:n]) {
			t.Fatalf("re-encoded records differ")
		}
	})
}

func msgFiles(t *testing.T, q *Queue) []string {
	t.Helper()
	return listDir(t, q.msgDir)
}

// A small message lives in memory and in the journal only: it is listed,
// delivered byte for byte and removed without ever getting a file; one
// still queued after its first attempt gets its file then, the same bytes.
func TestMemoryOnlyMessageLifecycle(t *testing.T) {
	tr := &fakeTransport{}
	opts, _ := testOptions(t, t.TempDir(), tr)
	q := openQueue(t, opts)
	tr.setDecide(func(d *Delivery, rcpt string) Result {
		if rcpt == "later@example.org" {
			return answer(rcpt, Deferred, 451, "4.3.0", "try later")
		}
		return answer(rcpt, Sent, 250, "2.0.0", "ok")
	})
	sent := commit(t, q, "a@example.com", "b@example.org")
	kept := commit(t, q, "a@example.com", "later@example.org")
	want := readMsg(t, q, kept)
	if files := msgFiles(t, q); len(files) != 0 {
		t.Errorf("msg/ holds %v before delivery, want nothing (memory-only)", files)
	}
	if info, err := q.Get(sent); err != nil || info.Size == 0 {
		t.Errorf("Get of a memory-only message: %+v, %v", info, err)
	}
	runQueue(t, q)
	waitFor(t, "both attempted", func() bool { return len(tr.Calls()) == 2 })
	waitFor(t, "the deferred one's file", func() bool { return slices.Contains(msgFiles(t, q), kept) })
	if got := tr.callsTo("b@example.org")[0].Msg; !bytes.Contains(got, []byte(testBody)) || !bytes.HasPrefix(got, []byte("Received: from test\r\n")) {
		t.Errorf("delivered %q", got)
	}
	if got, _ := os.ReadFile(filepath.Join(q.msgDir, kept)); !bytes.Equal(got, want) {
		t.Errorf("file of the deferred message differs from what was committed")
	}
	waitFor(t, "memory released", func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.memBytes == 0
	})
	if slices.Contains(msgFiles(t, q), sent) {
		t.Errorf("the delivered message has a file")
	}
}

// Over the memory budget a small message gets its file at once.
func TestMemoryBudget(t *testing.T) {
	opts, _ := testOptions(t, t.TempDir(), nil)
	q := openQueue(t, opts)
	q.mu.Lock()
	q.memBytes = memBudget - 10
	q.mu.Unlock()
	id := commit(t, q, "a@example.com", "b@example.org")
	if !slices.Contains(msgFiles(t, q), id) || q.memData(id) != nil {
		t.Errorf("over budget: file %v, in memory %v", msgFiles(t, q), q.memData(id) != nil)
	}
}

// Retiring a segment gives its memory-only messages their files (fsynced);
// so does Close.
func TestRetireWritesMemoryOnlyMessages(t *testing.T) {
	q, opts, _ := openUnclosed(t)
	q.journal.segMax = 1
	a := commit(t, q, "a@example.com", "b@example.org")
	b := commit(t, q, "a@example.com", "b@example.org") // retires a's segment
	q.retiring.Wait()
	if files := msgFiles(t, q); !slices.Equal(files, []string{a}) {
		t.Errorf("after retiring a's segment msg/ holds %v, want [%s]", files, a)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q2 := openQueue(t, opts)
	if files := msgFiles(t, q2); !slices.Equal(files, []string{a, b}) {
		t.Errorf("after Close msg/ holds %v, want [%s %s]", files, a, b)
	}
}

// Found by review (reproducers first, then the fixes).

// A segment kept after a failed retire outlives the later segment that
// holds its messages' done records: after a clean Close, a delivered
// message comes back at Open.
func TestJournalKeptSegmentKeepsLaterOnes(t *testing.T) {
	q, opts, dir := openUnclosed(t)
	q.journal.segMax = 1
	a := commit(t, q, "a@example.com", "b@example.org") // segment 1
	failDirSyncOnce(q)
	commit(t, q, "a@example.com", "b@example.org") // retire(segment 1) fails: kept
	q.retiring.Wait()
	// a is delivered: its done record goes to segment 2.
	q.mu.Lock()
	it := q.items[a]
	q.mu.Unlock()
	it.mu.Lock()
	if err := q.removeMessage(a); err != nil {
		t.Fatal(err)
	}
	q.mu.Lock()
	q.forget(it)
	q.mu.Unlock()
	it.mu.Unlock()
	commit(t, q, "a@example.com", "b@example.org") // segment 2 retired, removed
	q.retiring.Wait()
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("journal after a clean Close: %v", segments(t, dir))
	q2 := openQueue(t, opts)
	if inQueue(q2, a) {
		t.Errorf("delivered message %s came back after a clean Close + Open", a)
	}
}

// A message whose record would exceed journalMaxMessage (a small body,
// a huge envelope) is not memory-only: readRecords would refuse its record
// and every record after it.
func TestJournalMemoryOnlyWithinRecordLimit(t *testing.T) {
	q, opts, _ := openUnclosed(t)
	var to []string
	for i := range 1600 {
		to = append(to, fmt.Sprintf("%s%04d@example.org", strings.Repeat("r", 150), i))
	}
	d, err := q.NewDraft(&Envelope{From: "a@example.com", To: to, Received: now()})
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(d, testBody)
	if err := d.Commit(nil); err != nil {
		t.Fatal(err)
	}
	big := d.ID()
	t.Logf("memory-only: %v, %d bytes (journalMaxMessage %d)", q.memData(big) != nil, len(q.memData(big)), journalMaxMessage)
	small := commit(t, q, "a@example.com", "b@example.org")
	crash(t, q)
	q2 := openQueue(t, opts)
	for _, id := range []string{big, small} {
		if !inQueue(q2, id) {
			t.Errorf("acknowledged %s lost after a crash", id)
		}
	}
}

// Close between the committer's answer and Commit's insertion into
// q.items (the exact interleaving, replayed step by step).
func TestJournalCloseBetweenSyncAndAnswer(t *testing.T) {
	q, opts, dir := openUnclosed(t)
	d, _ := q.NewDraft(&Envelope{From: "a@example.com", To: []string{"b@example.org"}, Received: now()})
	io.WriteString(d, testBody)
	if err := d.finish(nil, &item{id: d.id, idx: -1}); err != nil { // the committer answered nil
		t.Fatal(err)
	}
	q.Close() // before the rest of Commit runs
	d.release()
	q2 := openQueue(t, opts)
	if !inQueue(q2, d.ID()) {
		t.Errorf("acknowledged %s lost: segments %v, msg/ %v", d.ID(), segments(t, dir), msgFiles(t, q2))
	}
}

// The same with the real Commit racing the real Close.
func TestJournalCloseRacingCommit(t *testing.T) {
	acked, lost := 0, 0
	for range 300 {
		dir := t.TempDir()
		opts, _ := testOptions(t, dir, nil)
		q, err := Open(opts)
		if err != nil {
			t.Fatal(err)
		}
		d, _ := q.NewDraft(&Envelope{From: "a@example.com", To: []string{"b@example.org"}, Received: now()})
		io.WriteString(d, testBody)
		errc := make(chan error, 1)
		go func() { errc <- d.Commit(nil) }()
		for {
			q.journal.mu.Lock()
			started := q.journal.f != nil
			q.journal.mu.Unlock()
			if started {
				break
			}
			runtime.Gosched()
		}
		q.Close()
		if err := <-errc; err != nil {
			continue
		}
		acked++
		q2, err := Open(opts)
		if err != nil {
			t.Fatal(err)
		}
		if !inQueue(q2, d.ID()) {
			lost++
			if lost == 1 {
				t.Logf("lost %s: still memory-only in the closed queue: %v", d.ID(), q.memData(d.ID()) != nil)
			}
		}
		q2.Close()
	}
	t.Logf("acknowledged %d, lost %d", acked, lost)
	if lost > 0 {
		t.Errorf("%d acknowledged messages lost by a Close racing Commit", lost)
	}
}

// A journalDone whose write is cut short in between (ENOSPC at a block
// boundary, emulated here exactly as journalDone fails: some bytes written,
// broken set) leaves torn bytes: the next batch must go to a new segment,
// not after them, where recovery would never read it.
func TestJournalTornDoneRecordBeforeBatch(t *testing.T) {
	acked, lost := 0, 0
	for range 200 {
		dir := t.TempDir()
		opts, _ := testOptions(t, dir, nil)
		q, err := Open(opts)
		if err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			j := q.journal
			for {
				select {
				case <-stop:
					return
				default:
				}
				j.mu.Lock()
				if j.f != nil && !j.broken {
					rec := appendRecord(nil, recDone, "0AAAAAAAAAAAA", nil)
					j.f.Write(rec[:10])
					j.broken = true
					j.mu.Unlock()
					return
				}
				j.mu.Unlock()
				runtime.Gosched()
			}
		}()
		id := commit(t, q, "a@example.com", "b@example.org")
		close(stop)
		<-done
		acked++
		crash(t, q)
		q2, err := Open(opts)
		if err != nil {
			t.Fatal(err)
		}
		if !inQueue(q2, id) {
			lost++
		}
		q2.Close()
	}
	t.Logf("acknowledged %d, lost %d", acked, lost)
	if lost > 0 {
		t.Errorf("%d acknowledged messages unreadable in the journal after a crash", lost)
	}
}

// Control: Close after Commit returned loses nothing.
func TestJournalCloseAfterCommit(t *testing.T) {
	lost := 0
	for range 100 {
		dir := t.TempDir()
		opts, _ := testOptions(t, dir, nil)
		q, _ := Open(opts)
		id := commit(t, q, "a@example.com", "b@example.org")
		q.Close()
		q2, _ := Open(opts)
		if !inQueue(q2, id) {
			lost++
		}
		q2.Close()
	}
	if lost > 0 {
		t.Errorf("control lost %d", lost)
	}
}

func deliverNow(t *testing.T, q *Queue, id string) {
	t.Helper()
	q.mu.Lock()
	it := q.items[id]
	q.mu.Unlock()
	it.mu.Lock()
	if err := q.removeMessage(id); err != nil {
		t.Fatal(err)
	}
	q.mu.Lock()
	q.forget(it)
	q.mu.Unlock()
	it.mu.Unlock()
}

// One failed idle fdatasync marks the segment broken: the done records that
// follow must still reach the journal (the next segment), or a process
// crash brings back a delivered message.
func TestJournalBrokenSegmentKeepsDoneRecords(t *testing.T) {
	q, opts, _, a, b := deliveredAroundBrokenSegment(t)
	waitFor(t, "the next segment", func() bool {
		q.journal.mu.Lock()
		defer q.journal.mu.Unlock()
		return !q.journal.broken && len(q.journal.pendingDone) == 0
	})
	crash(t, q) // SIGKILL-like, disk intact
	q2 := openQueue(t, opts)
	for _, id := range []string{a, b} {
		if inQueue(q2, id) {
			t.Errorf("delivered %s came back after a process crash", id)
		}
	}
}

// The same after a clean Close once a retirement failed (kept).
func TestJournalBrokenSegmentThenKeptRetireThenClose(t *testing.T) {
	q, opts, dir, a, _ := deliveredAroundBrokenSegment(t)
	failDirSyncOnce(q)
	c := commit(t, q, "a@example.com", "b@example.org") // rotates; retire of seg 1 fails: kept
	q.retiring.Wait()
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("segments after clean Close: %v", segments(t, dir))
	q2 := openQueue(t, opts)
	if inQueue(q2, a) {
		t.Errorf("delivered %s came back after a clean Close", a)
	}
	if !inQueue(q2, c) {
		t.Errorf("%s lost", c)
	}
}

// One failed retirement is retried at the next rotation: the journal does
// not grow until the next start.
func TestJournalKeptSegmentRetriedLater(t *testing.T) {
	q, _, dir := openUnclosed(t)
	q.journal.segMax = 1
	commit(t, q, "a@example.com", "b@example.org")
	failDirSyncOnce(q)
	for range 50 {
		id := commit(t, q, "a@example.com", "b@example.org")
		deliverNow(t, q, id) // delivered at once
	}
	q.retiring.Wait()
	t.Logf("segments while running, fault long gone, all but one message delivered: %d", len(segments(t, dir)))
	q.Close()
	t.Logf("segments after clean Close: %d", len(segments(t, dir)))
	if n := len(segments(t, dir)); n > 1 {
		t.Errorf("%d segments never retired after one transient error", n)
	}
}

// failDirSyncOnce makes the next fsync of msg/ fail, once.
func failDirSyncOnce(q *Queue) {
	var mu sync.Mutex
	failed := false
	q.syncDir = func() error {
		mu.Lock()
		defer mu.Unlock()
		if !failed {
			failed = true
			return errors.New("injected fsync error")
		}
		return q.msgDirFile.Sync()
	}
}

// deliveredAroundBrokenSegment commits a and b, delivers b, makes one idle
// fdatasync of the journal fail (the segment is broken), then delivers a.
func deliveredAroundBrokenSegment(t *testing.T) (q *Queue, opts Options, dir string, a, b string) {
	t.Helper()
	dir = t.TempDir()
	opts, logs := testOptions(t, dir, nil)
	q, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	var fail atomic.Bool
	q.journal.sync = func(f *os.File) error {
		if fail.Load() {
			return errors.New("injected fdatasync EIO")
		}
		return fdatasync(f)
	}
	a = commit(t, q, "a@example.com", "b@example.org")
	b = commit(t, q, "a@example.com", "b@example.org")
	deliverNow(t, q, b) // its done record goes to the segment, unsynced
	fail.Store(true)
	waitFor(t, "idle flush failure", func() bool { return strings.Contains(logs.String(), "cannot sync the journal") })
	fail.Store(false)
	deliverNow(t, q, a) // the segment is broken: its done record must still count
	return q, opts, dir, a, b
}

// openUnclosed opens a fresh spool that the test itself closes or crashes.
func openUnclosed(t *testing.T) (*Queue, Options, string) {
	t.Helper()
	dir := t.TempDir()
	opts, _ := testOptions(t, dir, nil)
	q, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	return q, opts, dir
}
