package main

import (
	"errors"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// setBatchScheduling gives every thread of the process that has the normal
// policy SCHED_BATCH. Under the normal policy a thread woken by a packet
// may preempt the task running on its CPU; inkan's work is a chain of such
// short wake-ups, and where the sender runs on the same host (a local
// client, a sidecar's application, a co-located MTA or load generator)
// each one preempts the very process that wrote, at the price of two
// context switches. A batch thread keeps its weight and runs at once on an
// idle CPU; it only waits for the running task's slice to end (a few ms at
// most) instead of preempting it (BENCHMARKS.md has the trade-off).
//
// Threads started later inherit the policy from the thread that starts
// them, so the list is read again until no new thread appears. It returns
// how many threads it changed, and the first error that stopped it (a
// seccomp filter, no /proc), after which inkan runs as it was started.
func setBatchScheduling() (int, error) {
	changed := 0
	seen := map[int]bool{}
	for round := 0; round < 5; round++ {
		entries, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return changed, err
		}
		fresh := 0
		for _, e := range entries {
			tid, err := strconv.Atoi(e.Name())
			if err != nil || seen[tid] {
				continue
			}
			seen[tid] = true
			fresh++
			attr, err := unix.SchedGetAttr(tid, 0)
			if errors.Is(err, unix.ESRCH) {
				continue // the thread ended
			}
			if err != nil {
				return changed, err
			}
			if attr.Policy != unix.SCHED_NORMAL {
				// Chosen by whoever started inkan (chrt, systemd).
				continue
			}
			// Only the policy changes: the nice value and reset-on-fork
			// stay; Runtime, which Linux 6.12+ reports as the current
			// slice, is cleared so as not to pin it as a custom one.
			attr.Policy = unix.SCHED_BATCH
			attr.Flags &= unix.SCHED_FLAG_RESET_ON_FORK
			attr.Runtime, attr.Deadline, attr.Period = 0, 0, 0
			if err := unix.SchedSetAttr(tid, attr, 0); err != nil && !errors.Is(err, unix.ESRCH) {
				return changed, err
			}
			changed++
		}
		if fresh == 0 {
			break
		}
	}
	return changed, nil
}
