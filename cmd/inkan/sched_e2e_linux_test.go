package main_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// threadPolicies reads the scheduling policy of each thread of pid
// (/proc/PID/task/TID/stat, field 41).
func threadPolicies(t *testing.T, pid int) map[string]int {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "stat"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no threads for %d: %v", pid, err)
	}
	out := map[string]int{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread ended
		}
		fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		// fields[0] is field 3 (state): policy, field 41, is fields[38].
		if len(fields) > 38 {
			p, err := strconv.Atoi(fields[38])
			if err != nil {
				t.Fatalf("%s: policy field %q", f, fields[38])
			}
			out[f] = p
		}
	}
	return out
}

// TestServeSchedulesItsThreadsAsBatch: `inkan serve` on the defaults runs
// every thread as SCHED_BATCH; cpu_scheduling: normal leaves the policy it
// was started with. Started with another policy than the normal one (the
// test run under chrt), it keeps that one either way.
func TestServeSchedulesItsThreadsAsBatch(t *testing.T) {
	own, err := unix.SchedGetAttr(0, 0)
	if err != nil {
		t.Skipf("sched_getattr: %v", err)
	}
	started := int(own.Policy)
	batch := unix.SCHED_BATCH
	if started != unix.SCHED_NORMAL {
		batch = started
	}
	s := startSink(t)
	for _, c := range []struct {
		extra string
		want  int
	}{{"", batch}, {"cpu_scheduling: normal\n", started}} {
		in := startInkan(t, s.addr, c.extra)
		for f, p := range threadPolicies(t, in.cmd.Process.Pid) {
			if p != c.want {
				t.Errorf("%q: %s has policy %d, want %d", c.extra, f, p, c.want)
			}
		}
		in.stop()
	}
}
