package main

import (
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// policies returns each thread's scheduling attributes.
func policies(t *testing.T) map[int]*unix.SchedAttr {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]*unix.SchedAttr{}
	for _, e := range entries {
		tid, _ := strconv.Atoi(e.Name())
		if a, err := unix.SchedGetAttr(tid, 0); err == nil {
			out[tid] = a
		}
	}
	return out
}

// TestBatchSchedulingCoversEveryThread: every thread, also those the
// runtime starts afterwards, runs as SCHED_BATCH with its nice value; a
// policy set from outside (SCHED_IDLE on one thread) stays. The threads go
// back to the normal policy at the end, and the SCHED_IDLE one ends (an
// unprivileged thread may not leave SCHED_IDLE).
func TestBatchSchedulingCoversEveryThread(t *testing.T) {
	for tid, a := range policies(t) {
		if a.Policy != unix.SCHED_NORMAL {
			t.Skipf("thread %d already has policy %d (run under chrt?)", tid, a.Policy)
		}
	}
	defer func() {
		for tid, a := range policies(t) {
			if a.Policy == unix.SCHED_BATCH {
				a.Policy = unix.SCHED_NORMAL
				if err := unix.SchedSetAttr(tid, a, 0); err != nil {
					t.Errorf("thread %d back to the normal policy: %v", tid, err)
				}
			}
		}
	}()

	idleTid := make(chan int)
	release := make(chan struct{})
	idleDone := make(chan struct{})
	go func() {
		defer close(idleDone)
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		tid := unix.Gettid()
		a, err := unix.SchedGetAttr(tid, 0)
		if err == nil {
			a.Policy = unix.SCHED_IDLE
			err = unix.SchedSetAttr(tid, a, 0)
		}
		if err != nil {
			tid = -1
		}
		idleTid <- tid
		<-release
	}()
	idle := <-idleTid
	defer func() { close(release); <-idleDone }()
	if idle < 0 {
		t.Skip("cannot set SCHED_IDLE here")
	}
	niceBefore := policies(t)

	if n, err := setBatchScheduling(); err != nil || n == 0 {
		t.Fatalf("setBatchScheduling: %d threads, %v", n, err)
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
	for tid, a := range policies(t) {
		switch {
		case tid == idle && a.Policy != unix.SCHED_IDLE:
			t.Errorf("thread %d: policy %d, want SCHED_IDLE left alone", tid, a.Policy)
		case tid != idle && a.Policy != unix.SCHED_BATCH:
			t.Errorf("thread %d: policy %d, want SCHED_BATCH", tid, a.Policy)
		}
		if b, ok := niceBefore[tid]; ok && b.Nice != a.Nice {
			t.Errorf("thread %d: nice %d, was %d", tid, a.Nice, b.Nice)
		}
	}
	close(stop)
	wg.Wait()
}
