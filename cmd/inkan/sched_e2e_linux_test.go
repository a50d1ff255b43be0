package main_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// threadPolicies reads the scheduling policy of each thread of pid
// (/proc/PID/task/TID/stat, field 41).
func threadPolicies(t *testing.T, pid int) map[string]int {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "stat"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no threads for %d: %v", pid, err)
	}
	out := map[string]int{}
	for _, f := range dirs {
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
// every thread as SCHED_BATCH (policy 3); cpu_scheduling: normal leaves the
// policy it was started with (here the normal one, 0).
func TestServeSchedulesItsThreadsAsBatch(t *testing.T) {
	s := startSink(t)
	for _, c := range []struct {
		extra string
		want  int
	}{{"", 3}, {"cpu_scheduling: normal\n", 0}} {
		in := startInkan(t, s.addr, c.extra)
		for f, p := range threadPolicies(t, in.cmd.Process.Pid) {
			if p != c.want {
				t.Errorf("%q: %s has policy %d, want %d", c.extra, f, p, c.want)
			}
		}
		in.stop()
	}
}
