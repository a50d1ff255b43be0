//go:build !linux

package main

import "errors"

// setBatchScheduling is Linux only (sched_linux.go).
func setBatchScheduling() (int, error) {
	return 0, errors.New("SCHED_BATCH is a Linux scheduling policy")
}
