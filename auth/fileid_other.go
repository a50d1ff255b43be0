//go:build !linux

package auth

import (
	"io/fs"
)

// fileID identifies one version of a file as well as portable stat allows.
type fileID struct {
	size  int64
	mtime int64
	mode  fs.FileMode
}

func fileIDOf(fi fs.FileInfo) fileID {
	return fileID{size: fi.Size(), mtime: fi.ModTime().UnixNano(), mode: fi.Mode()}
}
