package queuecmd_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// `inkan queue list -json` prints what `postqueue -j` prints: one object per
// message and line, with Postfix's field names; the text form prints each
// delay reason at column 0, as mailq does.
func TestListJSONLikePostqueue(t *testing.T) {
	dir := t.TempDir()
	tr := &deferAll{}
	q := startServer(t, dir, tr)
	a := commit(t, q, "alice@example.com", "bob@example.org")
	b := commit(t, q, "", "dave@example.net")
	waitFor(t, "first attempts", func() bool {
		ia, _ := q.Get(a)
		ib, _ := q.Get(b)
		return ia.Attempts == 1 && ib.Attempts == 1
	})
	if _, _, code := run(t, dir, "hold", b); code != 0 {
		t.Fatal("hold failed")
	}
	out, errOut, code := run(t, dir, "list", "-json")
	if code != 0 {
		t.Fatalf("list -json: exit %d %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("want one line per message, got:\n%s", out)
	}
	type rcpt struct {
		Address     string `json:"address"`
		DelayReason string `json:"delay_reason"`
	}
	type message struct {
		QueueName    string `json:"queue_name"`
		QueueID      string `json:"queue_id"`
		ArrivalTime  int64  `json:"arrival_time"`
		MessageSize  int64  `json:"message_size"`
		ForcedExpire *bool  `json:"forced_expire"`
		Sender       string `json:"sender"`
		Recipients   []rcpt `json:"recipients"`
	}
	byID := map[string]message{}
	for _, l := range lines {
		var m message
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		byID[m.QueueID] = m
	}
	ma, mb := byID[a], byID[b]
	if ma.QueueName != "deferred" || ma.Sender != "alice@example.com" || ma.MessageSize < 3000 || ma.ForcedExpire == nil ||
		time.Since(time.Unix(ma.ArrivalTime, 0)) > time.Minute || len(ma.Recipients) != 1 ||
		ma.Recipients[0].Address != "bob@example.org" || !strings.Contains(ma.Recipients[0].DelayReason, "451 4.7.1 greylisted") {
		t.Errorf("deferred message: %+v", ma)
	}
	if mb.QueueName != "hold" || mb.Sender != "" {
		t.Errorf("held message: %+v", mb)
	}

	out, _, _ = run(t, dir, "list")
	if !strings.Contains(out, "\n(451 4.7.1 greylisted, come back later)\n") {
		t.Errorf("the text form does not print the reason at column 0:\n%s", out)
	}
	out, _, code = run(t, t.TempDir()+"/none", "list", "-json")
	if code != 0 || out != "" {
		t.Errorf("no queue, -json: exit %d, output %q; want nothing", code, out)
	}
}
