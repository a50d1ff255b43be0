//go:build !linux

package inbound

import (
	"errors"
	"net"
)

// peerUID needs SO_PEERCRED, which this system lacks: local connections are
// refused (sendmail then uses the maildrop or a TCP listener).
func peerUID(net.Conn) (int, error) {
	return 0, errors.New("peer credentials are not supported on this system")
}
