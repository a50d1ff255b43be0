package queue

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
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
	ents, err := os.ReadDir(filepath.Join(dir, "journal"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
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
	dir := t.TempDir()
	opts, _ := testOptions(t, dir, nil)
	q, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
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
	dir := t.TempDir()
	opts, _ := testOptions(t, dir, nil)
	q, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
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
	dir := t.TempDir()
	opts, _ := testOptions(t, dir, nil)
	q, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
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
	ents, err := os.ReadDir(q.msgDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
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
	dir := t.TempDir()
	opts, _ := testOptions(t, dir, nil)
	q, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
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
