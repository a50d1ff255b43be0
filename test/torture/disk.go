package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// runDisk puts the spool on a 2 MB tmpfs, keeps the next hop down and
// submits until the disk is full. inkan must answer 452 4.3.1 (never 5xx,
// never crash), keep everything it acknowledged, survive a restart on the
// full disk, and deliver it all once the next hop is back and space frees up.
func runDisk(h *harness) {
	r := h.row("disk")
	defer r.end()
	mnt := filepath.Join(h.dir("disk"), "spool")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		r.failf("%v", err)
		return
	}
	if err := mountTmpfs(mnt, "2m"); err != nil {
		h.skip(r, "cannot mount a tmpfs, so a full disk cannot be made safely: %v", err)
		return
	}
	h.addMount(mnt)
	defer func() {
		if err := unmount(mnt); err != nil {
			r.failf("unmount %s: %v", mnt, err)
		} else {
			h.removeMount(mnt)
		}
	}()

	led := newLedger(fmt.Sprintf("disk-%d", time.Now().UnixNano()%1e6))
	sk, err := h.newSink("disk", nil, nil)
	if err != nil {
		r.failf("%v", err)
		return
	}
	sk.subscribe(func(m sunk) { led.delivered(m.to, m.data) })
	sk.down()
	in, err := h.newInkan("disk", func(cfg map[string]any) {
		cfg["data_dir"] = mnt
		routeAllTo(cfg, sk.addr)
	})
	if err != nil {
		r.failf("%v", err)
		return
	}
	in.dataDir = mnt
	// Ballast stands for other files on the disk that an operator can delete.
	ballast := filepath.Join(mnt, "ballast")
	if err := os.WriteFile(ballast, make([]byte, ballastSize), 0o600); err != nil {
		r.failf("write ballast: %v", err)
		return
	}
	if err := in.start(); err != nil {
		r.crashed("start on the tmpfs: %v", err)
		return
	}
	defer in.stop(r)

	full := fillDisk(h, r, in, led)
	if !full {
		r.failf("the tmpfs never filled up: no 452 after %d messages", r.Attempts)
	}
	if !in.alive() {
		r.crashed("inkan died while the disk was full")
		in.collect(r)
		return
	}
	r.notef("free space after filling: %s", freeSpace(mnt))
	if _, err := in.queueIDs(); err != nil {
		r.failf("inkan queue list while the disk is full: %v", err)
	}
	checkReadyz(r, in, 0, "") // 503 unless a 2-byte probe still fits: noted only

	// A restart on a full disk must work and keep the queue.
	in.stop(r)
	if err := in.startWait("/healthz"); err != nil {
		r.crashed("restart on the full disk failed: %v", err)
		return
	}
	time.Sleep(2 * time.Second) // let the scheduler try (and fail) on the full disk
	if !in.alive() {
		r.crashed("inkan died after a restart on the full disk")
	}

	// The next hop comes back: the queue should drain, which frees space.
	if err := sk.up(); err != nil {
		r.failf("%v", err)
	}
	wedge := 20 * time.Second
	if h.quick {
		wedge = 12 * time.Second
	}
	if left, err := in.waitQueueEmpty(wedge); err != nil {
		r.failf("delivery is wedged on the full spool: with the sink back, %d of %d messages still queued after %s "+
			"(log: %d x %q); nothing is lost, but only freeing space by hand unblocks it",
			len(left), countAcked(led), wedge, countLog(in, "cannot save state before delivery"), "cannot save state before delivery; will retry")
		// The operator frees space: the ballast goes.
		if err := os.Remove(ballast); err != nil {
			r.failf("remove ballast: %v", err)
		}
		r.notef("freed %d kB by hand (ballast file) to let the queue drain", ballastSize/1024)
		if left, err := in.waitQueueEmpty(60 * time.Second); err != nil {
			r.failf("queue did not drain even with space freed: %v (%d left)", err, len(left))
		}
	}
	waitLedger(led, 10*time.Second)
	checkReadyz(r, in, 200, "ready")

	// And new mail is accepted again.
	for i := 0; i < 5; i++ {
		s := submitOne(in, led, "after@disk.test", []string{"back@disk.test"}, 20000)
		if s.out != outAcked {
			r.failf("after space came back, message %d got %s (want 250)", i+1, s.reply)
		}
	}
	waitLedger(led, 15*time.Second)
	t := led.tally()
	r.tally(t)
	if t.duplicated > 0 {
		r.failf("%d duplicate deliveries without any crash", t.duplicated)
	}
}

const ballastSize = 256 << 10

// countLog counts the lines of the server log that contain s.
func countLog(in *inkan, s string) int {
	b, _ := os.ReadFile(in.logPath)
	return strings.Count(string(b), s)
}

// fillDisk submits messages of 60 kB, then smaller and smaller ones, each
// size until it gets 452, so that the disk ends up full to the last pages.
// Every refusal must be 452 4.3.1.
func fillDisk(h *harness, r *result, in *inkan, led *ledger) bool {
	full := false
	for _, size := range []int{60000, 8000, 1000, 100} {
		for i := 0; i < 150; i++ {
			s := submitOne(in, led, "filler@disk.test", []string{"rcpt@disk.test"}, size)
			if s.out == outAcked {
				continue
			}
			if s.reply.code == 452 && s.reply.enhanced() == "4.3.1" {
				h.debugf("disk full for %d-byte messages after %d acknowledged: %s", size, countAcked(led), s.reply)
				if !full {
					r.notef("first 452 4.3.1 after %d acknowledged messages (%d bytes each)", countAcked(led), size)
				}
				full = true
				break
			}
			if s.out == outRefused {
				r.failf("a %d-byte message on the filling disk got %s (want 250 or 452 4.3.1)", size, s.reply)
				break
			}
			r.failf("a %d-byte message on the filling disk: no reply (%v)", size, s.err)
			if !in.alive() {
				return full
			}
		}
	}
	return full
}

// submitOne sends one message in its own session on the relay port.
func submitOne(in *inkan, led *ledger, from string, to []string, size int) submission {
	m, body := led.compose(from, to, size, "")
	c, g, err := dial(in.relay, dialOpts{})
	if err != nil {
		s := submission{out: outCut, stage: "connect", err: err, reply: g}
		led.record(m, s)
		return s
	}
	defer c.close()
	if _, r, err := c.ehlo("torture.test"); err != nil {
		s := submission{out: outRefused, stage: "EHLO", err: err, reply: r}
		if r.code == 0 {
			s.out = outCut
		}
		led.record(m, s)
		return s
	}
	s := c.submit(from, to, body, nil)
	led.record(m, s)
	c.cmd("QUIT")
	return s
}

func countAcked(led *ledger) int {
	led.mu.Lock()
	defer led.mu.Unlock()
	n := 0
	for _, m := range led.msgs {
		if m.sub.out == outAcked {
			n++
		}
	}
	return n
}

func freeSpace(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return err.Error()
	}
	bs := uint64(st.Bsize)
	return fmt.Sprintf("%d kB of %d kB", uint64(st.Bavail)*bs/1024, uint64(st.Blocks)*bs/1024)
}

// checkReadyz notes /readyz and, unless want is 0, checks it.
func checkReadyz(r *result, in *inkan, want int, wantText string) {
	resp, err := http.Get("http://" + in.http + "/readyz")
	if err != nil {
		r.failf("/readyz: %v", err)
		return
	}
	defer resp.Body.Close()
	buf := make([]byte, 512)
	n, _ := resp.Body.Read(buf)
	text := strings.TrimSpace(string(buf[:n]))
	r.notef("/readyz: %d %q", resp.StatusCode, text)
	if want != 0 && (resp.StatusCode != want || !strings.Contains(text, wantText)) {
		r.failf("/readyz answered %d %q, want %d mentioning %q", resp.StatusCode, text, want, wantText)
	}
}
