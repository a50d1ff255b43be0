package main

import (
	"log/slog"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// setBatchScheduling gives every thread of the process SCHED_BATCH, when
// they have the normal policy. inkan's work is a chain of short steps
// woken by packets from its clients and next hops; under the normal policy
// each wakeup may preempt whatever runs (the client that just wrote, the
// next hop reading), and on a busy 2-core host those preemptions cost more
// CPU than inkan's own work for a message but the RSA signature
// (BENCHMARKS.md). A batch thread still gets its fair share and runs at
// once on an idle CPU; it only does not preempt on wakeup. Threads started
// later inherit the policy from the thread that starts them, so the list
// is read again until no new thread appears. It returns how many threads
// it changed.
func setBatchScheduling(log *slog.Logger) int {
	changed := 0
	seen := map[int]bool{}
	for round := 0; round < 5; round++ {
		entries, err := os.ReadDir("/proc/self/task")
		if err != nil {
			log.Debug("cpu scheduling left unchanged", "err", err)
			return changed
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
			if err != nil {
				continue // the thread ended
			}
			if attr.Policy != unix.SCHED_NORMAL {
				// Chosen by whoever started inkan (chrt, systemd).
				continue
			}
			attr.Policy = unix.SCHED_BATCH
			if err := unix.SchedSetAttr(tid, attr, 0); err != nil {
				// A seccomp profile may forbid it: inkan runs as before.
				log.Debug("cpu scheduling left unchanged", "err", err)
				return changed
			}
			changed++
		}
		if fresh == 0 {
			break
		}
	}
	return changed
}
