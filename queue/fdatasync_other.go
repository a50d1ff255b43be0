//go:build !linux

package queue

import "os"

// fdatasync is fsync where the system has no fdatasync (see the Linux file).
func fdatasync(f *os.File) error { return f.Sync() }
