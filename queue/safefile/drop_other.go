//go:build !linux

package safefile

import (
	"os"
	"syscall"
)

const noFollow = syscall.O_NOFOLLOW

// syncFS fsyncs f again where syncfs(2) is missing; the rename is then as
// durable as the file system makes renames of fsynced files.
func syncFS(f *os.File) error { return f.Sync() }
