package main

import (
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// policies returns each thread's scheduling policy.
func policies(t *testing.T) map[int]uint32 {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]uint32{}
	for _, e := range entries {
		tid, _ := strconv.Atoi(e.Name())
		if a, err := unix.SchedGetAttr(tid, 0); err == nil {
			out[tid] = a.Policy
		}
	}
	return out
}

func setAll(t *testing.T, policy uint32) {
	t.Helper()
	for tid := range policies(t) {
		if a, err := unix.SchedGetAttr(tid, 0); err == nil {
			a.Policy = policy
			unix.SchedSetAttr(tid, a, 0)
		}
	}
}

// TestBatchSchedulingCoversEveryThread: every thread, also those the
// runtime starts afterwards, runs as SCHED_BATCH;
// a policy set from outside (here SCHED_IDLE on one thread) stays.
func TestBatchSchedulingCoversEveryThread(t *testing.T) {
	defer setAll(t, unix.SCHED_NORMAL)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self := unix.Gettid()
	idle, err := unix.SchedGetAttr(self, 0)
	if err != nil {
		t.Fatal(err)
	}
	idle.Policy = unix.SCHED_IDLE
	if err := unix.SchedSetAttr(self, idle, 0); err != nil {
		t.Skipf("cannot set SCHED_IDLE here: %v", err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if n := setBatchScheduling(log); n == 0 {
		t.Fatal("no thread changed")
	}
	// Threads started now (each goroutine locked to its own) inherit it.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			<-stop
		}()
	}
	for tid, p := range policies(t) {
		switch {
		case tid == self && p != unix.SCHED_IDLE:
			t.Errorf("thread %d: policy %d, want SCHED_IDLE left alone", tid, p)
		case tid != self && p != unix.SCHED_BATCH:
			t.Errorf("thread %d: policy %d, want SCHED_BATCH", tid, p)
		}
	}
	close(stop)
	wg.Wait()
}
