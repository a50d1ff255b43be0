package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// childAttr makes the kernel SIGKILL a child if this program dies first, so
// that no inkan outlives the harness even on a crash of the harness itself.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// mountTmpfs mounts a tmpfs of the given size (e.g. "2m") on dir.
func mountTmpfs(dir, size string) error {
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size="+size+",mode=0700"); err != nil {
		return fmt.Errorf("mount -t tmpfs -o size=%s %s: %w", size, dir, err)
	}
	return nil
}

// unmount unmounts dir, lazily if it stays busy.
func unmount(dir string) error {
	var err error
	for range 20 {
		if err = syscall.Unmount(dir, 0); err == nil || errors.Is(err, syscall.EINVAL) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if derr := syscall.Unmount(dir, syscall.MNT_DETACH); derr == nil {
		return nil
	}
	return err
}

// File events watchDir reports.
const (
	evCreate    = syscall.IN_CREATE
	evMovedFrom = syscall.IN_MOVED_FROM
)

// watchDir calls fn for every file created in or renamed out of dir, from
// one goroutine that stop ends (and waits for). fn returning true ends the
// watch early.
func watchDir(dir string, fn func(name string, ev uint32) bool) (stop func(), err error) {
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	if _, err := syscall.InotifyAddWatch(fd, dir, evCreate|evMovedFrom); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("inotify watch %s: %w", dir, err)
	}
	// A non-blocking descriptor goes through Go's poller, so Close wakes Read.
	f := os.NewFile(uintptr(fd), "inotify")
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64<<10)
		for {
			n, err := f.Read(buf)
			if err != nil {
				return
			}
			for off := 0; off+syscall.SizeofInotifyEvent <= n; {
				mask := binary.NativeEndian.Uint32(buf[off+4:])
				nameLen := int(binary.NativeEndian.Uint32(buf[off+12:]))
				start := off + syscall.SizeofInotifyEvent
				name := buf[start:min(start+nameLen, n)]
				for len(name) > 0 && name[len(name)-1] == 0 {
					name = name[:len(name)-1]
				}
				off = start + nameLen
				if fn(string(name), mask) {
					return
				}
			}
		}
	}()
	return func() { f.Close(); <-done }, nil
}
