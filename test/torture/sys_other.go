//go:build !linux

package main

import (
	"errors"
	"syscall"
)

var errLinuxOnly = errors.New("needs Linux")

func childAttr() *syscall.SysProcAttr { return nil }

func mountTmpfs(dir, size string) error { return errLinuxOnly }

func unmount(dir string) error { return errLinuxOnly }

const (
	evCreate    = 1
	evMovedFrom = 2
)

func watchDir(dir string, fn func(name string, ev uint32) bool) (stop func(), err error) {
	return nil, errLinuxOnly
}
