//go:build !linux

package main

import "log/slog"

// setBatchScheduling is Linux only (sched_linux.go).
func setBatchScheduling(*slog.Logger) int { return 0 }
