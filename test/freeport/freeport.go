// Package freeport hands test harnesses loopback TCP ports for servers they
// start as separate processes, which must be told a port before they bind.
package freeport

import (
	"net"
	"sync"
)

// handedOut holds every port returned in this process: the kernel may give a
// just-closed ephemeral port again, and two servers told the same port fail
// to start (inkan refuses a config whose listeners share one).
var (
	mu        sync.Mutex
	handedOut = map[int]bool{}
)

// Get returns a port on 127.0.0.1 that was free a moment ago and that no
// earlier call in this process returned.
func Get() (int, error) {
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		mu.Lock()
		seen := handedOut[port]
		handedOut[port] = true
		mu.Unlock()
		if !seen {
			return port, nil
		}
	}
}

// Keep records a port a harness bound itself (on port 0) and will bind again
// after closing it, so that Get never hands it to another server meanwhile.
func Keep(port int) {
	mu.Lock()
	handedOut[port] = true
	mu.Unlock()
}
