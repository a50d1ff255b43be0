package queuecmd_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inkan-relay/inkan/cmd/inkan/queuecmd"
	"github.com/inkan-relay/inkan/queue"
)

// deferAll defers every recipient, so messages stay queued.
type deferAll struct {
	mu    sync.Mutex
	calls int
}

func (d *deferAll) Deliver(ctx context.Context, dl *queue.Delivery) []queue.Result {
	d.mu.Lock()
	d.calls++
	d.mu.Unlock()
	var res []queue.Result
	for _, r := range dl.Rcpts {
		res = append(res, queue.Result{Rcpt: r, Status: queue.Deferred, Code: 451, Enhanced: "4.7.1",
			Message: "greylisted, come back later", Remote: "mx.example.org[192.0.2.5]:25"})
	}
	return res
}

func (d *deferAll) Calls() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls
}

func options(dir string, tr queue.Transport) queue.Options {
	return queue.Options{Dir: dir, Transport: tr, Hostname: "relay.test",
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		RetryMin: time.Hour, RetryMax: 2 * time.Hour}
}

func commit(t *testing.T, q *queue.Queue, from string, to ...string) string {
	t.Helper()
	d, err := q.NewDraft(&queue.Envelope{From: from, To: to, Received: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(d, "From: <"+from+">\r\nSubject: queued mail\r\n\r\n"+strings.Repeat("x", 3000)+"\r\n")
	if err := d.Commit([]byte("Received: from cli-test\r\n")); err != nil {
		t.Fatal(err)
	}
	return d.ID()
}

func run(t *testing.T, dir string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := queuecmd.Main(dir, args, &out, &errb)
	return out.String(), errb.String(), code
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// startServer opens and runs a queue with its control socket, like inkan does.
func startServer(t *testing.T, dir string, tr queue.Transport) *queue.Queue {
	t.Helper()
	q, err := queue.Open(options(dir, tr))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); q.Run(ctx) }()
	go func() {
		defer wg.Done()
		if err := q.ServeControl(ctx, ""); err != nil {
			t.Errorf("ServeControl: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait(); q.Close() })
	waitFor(t, "control socket", func() bool {
		_, err := os.Stat(filepath.Join(dir, queue.ControlSocket))
		return err == nil
	})
	return q
}

func TestCLIRunningServer(t *testing.T) {
	dir := t.TempDir()
	tr := &deferAll{}
	q := startServer(t, dir, tr)
	a := commit(t, q, "alice@example.com", "bob@example.org", "carol@example.org")
	b := commit(t, q, "", "dave@example.net")
	waitFor(t, "first attempts", func() bool {
		ia, _ := q.Get(a)
		ib, _ := q.Get(b)
		return ia.Attempts == 1 && ib.Attempts == 1 && tr.Calls() == 2
	})

	out, errOut, code := run(t, dir, "hold", a)
	if code != 0 || !strings.Contains(out, a+": held") {
		t.Fatalf("hold: %d %q %q", code, out, errOut)
	}
	out, _, code = run(t, dir, "list")
	if code != 0 {
		t.Fatalf("list exit %d", code)
	}
	for _, want := range []string{a + "!", b + " ", "alice@example.com", "MAILER-DAEMON",
		"(451 4.7.1 greylisted, come back later)", "bob@example.org", "carol@example.org",
		"dave@example.net", "-- 6 Kbytes in 2 Requests."} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q:\n%s", want, out)
		}
	}
	out, _, code = run(t, dir, "show", a)
	for _, want := range []string{"Queue ID:     " + a + " (held)", "Sender:       <alice@example.com>",
		"<bob@example.org> pending attempts=1", "last reply: 451 4.7.1 greylisted",
		"Received: from cli-test", "Subject: queued mail"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "xxxx") {
		t.Errorf("show printed the body")
	}
	if code != 0 {
		t.Errorf("show exit %d", code)
	}

	out, _, code = run(t, dir, "release", a)
	if code != 0 || !strings.Contains(out, "released") {
		t.Fatalf("release: %d %q", code, out)
	}
	out, _, code = run(t, dir, "retry")
	if code != 0 || !strings.Contains(out, "all messages: scheduled for delivery") {
		t.Fatalf("retry: %d %q", code, out)
	}
	waitFor(t, "retried", func() bool { return tr.Calls() >= 4 })

	_, errOut, code = run(t, dir, "show", "0000000000000000")
	if code != 1 || !strings.Contains(errOut, "0000000000000000 is not in the queue: it was delivered, bounced or deleted") {
		t.Errorf("show unknown: %d %q", code, errOut)
	}
	waitFor(t, "idle", func() bool {
		_, _, code := run(t, dir, "delete", b)
		return code == 0
	})
	if _, err := q.Get(b); err == nil {
		t.Errorf("%s still queued after delete", b)
	}
	out, _, _ = run(t, dir, "list")
	if !strings.Contains(out, "in 1 Request.") {
		t.Errorf("list after delete:\n%s", out)
	}
}

func TestCLIStoppedServer(t *testing.T) {
	dir := t.TempDir()
	if out, _, code := run(t, filepath.Join(dir, "none"), "list"); code != 0 || out != "Mail queue is empty\n" {
		t.Errorf("list of a missing queue: %d %q", code, out)
	}
	q, err := queue.Open(options(dir, nil))
	if err != nil {
		t.Fatal(err)
	}
	a := commit(t, q, "alice@example.com", "bob@example.org")
	b := commit(t, q, "alice@example.com", "carol@example.org")
	q.Close()

	out, errOut, code := run(t, dir, "list")
	if code != 0 || !strings.Contains(out, a) || !strings.Contains(out, "in 2 Requests.") {
		t.Fatalf("list: %d %q %q", code, out, errOut)
	}
	out, _, code = run(t, dir, "show", strings.ToLower(a))
	if code != 0 || !strings.Contains(out, "<bob@example.org> pending attempts=0") {
		t.Errorf("show: %d %q", code, out)
	}
	if out, _, code = run(t, dir, "hold", "all"); code != 0 || !strings.Contains(out, "all messages: held") {
		t.Errorf("hold all: %d %q", code, out)
	}
	if out, _, _ = run(t, dir, "list"); !strings.Contains(out, a+"!") || !strings.Contains(out, b+"!") {
		t.Errorf("held marks missing:\n%s", out)
	}
	if _, _, code = run(t, dir, "retry", a); code != 0 {
		t.Errorf("retry exit %d", code)
	}
	if _, _, code = run(t, dir, "delete", a); code != 0 {
		t.Errorf("delete exit %d", code)
	}
	if out, _, code = run(t, dir, "bounce", b); code != 0 || !strings.Contains(out, b+": bounced") {
		t.Errorf("bounce: %d %q", code, out)
	}
	// The bounce is queued for the sender, from <>.
	out, _, _ = run(t, dir, "list")
	if !strings.Contains(out, "MAILER-DAEMON") || !strings.Contains(out, "alice@example.com") ||
		strings.Contains(out, a) || strings.Contains(out, b) {
		t.Errorf("list after delete and bounce:\n%s", out)
	}
	if _, errOut, code := run(t, dir, "frobnicate"); code != 2 || !strings.Contains(errOut, "usage") {
		t.Errorf("unknown command: %d %q", code, errOut)
	}
	if out, _, _ := run(t, dir, "delete", "ALL"); !strings.Contains(out, "deleted") {
		t.Errorf("delete ALL: %q", out)
	}
	if out, _, _ := run(t, dir, "list"); out != "Mail queue is empty\n" {
		t.Errorf("list of empty queue: %q", out)
	}
}
