package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"time"
)

// sink is the one Postfix smtp-sink every system delivers to. It runs for the
// whole benchmark (`-M N` would exit before answering message N, so Postfix
// would resend it): the harness reads its running message counter instead,
// and each message is dumped to a file for the checks.
//
// Files land in dumpRoot/cur/; after each phase the harness renames cur to a
// phase directory, and smtp-sink creates a fresh cur on the next message.
type sink struct {
	port     int
	out      string // smtp-sink -c output (counters separated by \r)
	dumpRoot string
	proc     *child
}

func startSink(ctx context.Context, reg *registry, dir string, port int) (*sink, error) {
	s := &sink{port: port, out: filepath.Join(dir, "sink.out"), dumpRoot: filepath.Join(dir, "dump")}
	if listening(port) {
		return nil, fmt.Errorf("something already listens on 127.0.0.1:%d (another smtp-sink or bench?)", port)
	}
	if err := os.RemoveAll(s.dumpRoot); err != nil {
		return nil, fmt.Errorf("clear sink dump dir: %w", err)
	}
	if err := os.MkdirAll(s.dumpRoot, 0o755); err != nil {
		return nil, fmt.Errorf("create sink dump dir: %w", err)
	}
	// smtp-sink drops privileges to -u and creates cur/ itself.
	if err := chownTo(s.dumpRoot, "postfix"); err != nil {
		return nil, err
	}
	out, err := os.Create(s.out)
	if err != nil {
		return nil, fmt.Errorf("create sink output: %w", err)
	}
	defer out.Close()
	cmd := exec.Command("/usr/sbin/smtp-sink", "-u", "postfix", "-c",
		"-d", s.dumpRoot+"/cur/%H%M%S.", fmt.Sprintf("127.0.0.1:%d", port), "1000")
	cmd.Stdout, cmd.Stderr = out, out
	if s.proc, err = startChild(reg, "smtp-sink", cmd, ""); err != nil {
		return nil, err
	}
	if err := waitListen(ctx, port, 10*time.Second, func() bool { return !s.proc.exited() }); err != nil {
		s.proc.stop()
		return nil, fmt.Errorf("smtp-sink: %w", err)
	}
	return s, nil
}

var mesgRE = regexp.MustCompile(`mesg=(\d+)`)

// lastMesg returns the last "mesg=N" counter in b, or -1.
func lastMesg(b []byte) int {
	m := mesgRE.FindAllSubmatch(b, -1)
	if len(m) == 0 {
		return -1
	}
	n, err := strconv.Atoi(string(m[len(m)-1][1]))
	if err != nil {
		return -1
	}
	return n
}

// count returns the number of messages the sink has accepted so far.
func (s *sink) count() (int, error) {
	f, err := os.Open(s.out)
	if err != nil {
		return 0, fmt.Errorf("read sink counter: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("read sink counter: %w", err)
	}
	off := max(fi.Size()-256, 0)
	b := make([]byte, fi.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("read sink counter: %w", err)
	}
	return max(lastMesg(b), 0), nil
}

// waitCount polls the counter every 20 ms until it reaches target and
// returns the time it was first seen there.
func (s *sink) waitCount(ctx context.Context, target int, timeout time.Duration) (time.Time, int, error) {
	deadline := time.Now().Add(timeout)
	for {
		n, err := s.count()
		if err != nil {
			return time.Time{}, n, err
		}
		now := time.Now()
		if n >= target {
			return now, n, nil
		}
		if s.proc.exited() {
			return now, n, fmt.Errorf("smtp-sink exited (%v) at %d of %d messages", s.proc.err, n, target)
		}
		if now.After(deadline) {
			return now, n, fmt.Errorf("sink has %d of %d messages after %s", n, target, timeout)
		}
		select {
		case <-ctx.Done():
			return now, n, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// takeDump moves the files received since the last call to dst.
func (s *sink) takeDump(dst string) error {
	cur := filepath.Join(s.dumpRoot, "cur")
	if err := os.RemoveAll(dst); err != nil {
		return fmt.Errorf("clear %s: %w", dst, err)
	}
	if _, err := os.Stat(cur); errors.Is(err, os.ErrNotExist) {
		return os.MkdirAll(dst, 0o755) // no message arrived
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("create dump dir: %w", err)
	}
	if err := os.Rename(cur, dst); err != nil {
		return fmt.Errorf("move sink dump: %w", err)
	}
	return nil
}

// cpuTicks is smtp-sink's CPU time so far, in clock ticks.
func (s *sink) cpuTicks() int64 {
	st, err := readStat(s.proc.pid())
	if err != nil {
		return 0
	}
	return st.utime + st.stime
}
