package queuecmd_test

import (
	"context"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/inkan-relay/inkan/queue"
)

// hostileMX answers like a remote server that wants to drive the admin's
// terminal: ESC and C1 control sequences (set the window title, clear the
// screen, a fake prompt after a carriage return).
type hostileMX struct{ calls atomic.Int32 }

const hostile = "no\x1b]0;owned\x07 \x1b[2J\rroot# \u009b31m\x9b32m\u202eevil\x00"

func (h *hostileMX) Deliver(ctx context.Context, dl *queue.Delivery) []queue.Result {
	h.calls.Add(1)
	var res []queue.Result
	for _, r := range dl.Rcpts {
		res = append(res, queue.Result{Rcpt: r, Status: queue.Deferred, Code: 451, Enhanced: "4.7.1",
			Message: "try later " + hostile, Remote: "mx" + hostile})
	}
	return res
}

// checkPrintable fails when out holds anything a terminal acts on, other
// than the line ends the command writes itself.
func checkPrintable(t *testing.T, what, out string) {
	t.Helper()
	if !utf8.ValidString(out) {
		t.Errorf("%s writes bytes that are not UTF-8 (a raw 0x9b is CSI to some terminals):\n%q", what, out)
	}
	for i, r := range out {
		if r != '\n' && r != '\t' && (unicode.IsControl(r) || r == '\u202e') {
			t.Errorf("%s writes %U at byte %d:\n%q", what, r, i, out)
			return
		}
	}
}

func TestQueueCommandsStripTerminalControls(t *testing.T) {
	dir := t.TempDir()
	tr := &hostileMX{}
	q := startServer(t, dir, tr)
	d, err := q.NewDraft(&queue.Envelope{From: "a@example.com", To: []string{"b@example.org"}, Received: time.Now(),
		User: "u" + hostile, Helo: "h" + hostile})
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(d, "From: <a@example.com>\r\nSubject: hi "+hostile+"\r\nX-Folded: one\r\n\ttwo\r\n\r\nbody\r\n")
	if err := d.Commit(nil); err != nil {
		t.Fatal(err)
	}
	id := d.ID()
	waitFor(t, "a delivery attempt", func() bool { i, _ := q.Get(id); return i.Attempts == 1 && tr.calls.Load() == 1 })

	out, _, code := run(t, dir, "list")
	if code != 0 || !strings.Contains(out, "451 4.7.1 try later no") {
		t.Fatalf("list: %d\n%s", code, out)
	}
	checkPrintable(t, "queue list", out)
	out, _, code = run(t, dir, "show", id)
	if code != 0 || !strings.Contains(out, "Subject: hi no") || !strings.Contains(out, "last reply: 451 4.7.1 try later") {
		t.Fatalf("show: %d\n%s", code, out)
	}
	checkPrintable(t, "queue show", out)
}
