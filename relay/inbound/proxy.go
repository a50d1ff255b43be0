package inbound

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// The PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2) lets
// a proxy or load balancer tell inkan the address of the client it
// connected for: a header before the first byte of SMTP or TLS. inkan reads
// it only from the addresses in listeners.NAME.proxy_protocol_from; every
// decision after that (trusted networks, connection limits, lockout, logs,
// Received) uses the client's address.

// proxyHeaderTimeout bounds the wait for the header of a listed proxy:
// proxies send it at once.
const proxyHeaderTimeout = 10 * time.Second

// proxyV2Sig opens every version 2 header.
var proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

// errNoProxyHeader is a listed proxy's connection that does not start with
// a PROXY header.
var errNoProxyHeader = errors.New("no PROXY protocol header")

// proxiedConn is a connection through a proxy: RemoteAddr is the client's,
// Read continues after the header.
type proxiedConn struct {
	net.Conn
	r      *bufio.Reader
	remote net.Addr // the client; nil = the proxy's own connection (LOCAL, UNKNOWN)
}

func (c *proxiedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *proxiedConn) RemoteAddr() net.Addr {
	if c.remote != nil {
		return c.remote
	}
	return c.Conn.RemoteAddr()
}

// proxyAddr is the proxy's address for a conn that came through one.
func proxyAddr(c net.Conn) netip.Addr {
	for c != nil {
		switch x := c.(type) {
		case *proxiedConn:
			if x.remote == nil {
				return netip.Addr{}
			}
			return remoteIP(x.Conn)
		case *trackedConn:
			c = x.Conn
		case interface{ NetConn() net.Conn }:
			c = x.NetConn()
		default:
			return netip.Addr{}
		}
	}
	return netip.Addr{}
}

// readProxyHeader reads a PROXY header (v1 or v2) from c, which comes from
// a listed proxy, and returns the connection as the client's.
func readProxyHeader(c net.Conn, timeout time.Duration) (*proxiedConn, error) {
	c.SetReadDeadline(time.Now().Add(timeout))
	defer c.SetReadDeadline(time.Time{})
	br := bufio.NewReaderSize(c, 512)
	start, err := br.Peek(5)
	if err != nil {
		return nil, fmt.Errorf("read PROXY header: %w", err)
	}
	var remote net.Addr
	switch {
	case string(start) == "PROXY":
		remote, err = readProxyV1(br)
	case bytes.Equal(start, proxyV2Sig[:5]):
		remote, err = readProxyV2(br)
	default:
		return nil, fmt.Errorf("%w (the connection starts with %q)", errNoProxyHeader, start)
	}
	if err != nil {
		return nil, err
	}
	return &proxiedConn{Conn: c, r: br, remote: remote}, nil
}

// readProxyV1 reads "PROXY TCP4|TCP6|UNKNOWN src dst sport dport\r\n" (at
// most 107 bytes).
func readProxyV1(br *bufio.Reader) (net.Addr, error) {
	var line []byte
	for len(line) < 108 {
		b, err := br.ReadByte()
		if err != nil {
			return nil, fmt.Errorf("read PROXY v1 header: %w", err)
		}
		line = append(line, b)
		if b == '\n' {
			break
		}
	}
	s, ok := strings.CutSuffix(string(line), "\r\n")
	if !ok {
		return nil, errors.New("PROXY v1 header longer than 107 bytes or not ended by CRLF")
	}
	f := strings.Split(s, " ")
	if len(f) >= 2 && f[1] == "UNKNOWN" {
		return nil, nil // the proxy's own connection (health check)
	}
	if len(f) != 6 || (f[1] != "TCP4" && f[1] != "TCP6") {
		return nil, fmt.Errorf("malformed PROXY v1 header %q", s)
	}
	src, err := netip.ParseAddr(f[2])
	if err != nil || src.Zone() != "" || src.Is4() != (f[1] == "TCP4") {
		return nil, fmt.Errorf("PROXY v1 header: bad source address %q for %s", f[2], f[1])
	}
	if _, err := netip.ParseAddr(f[3]); err != nil {
		return nil, fmt.Errorf("PROXY v1 header: bad destination address %q", f[3])
	}
	port, err := strconv.ParseUint(f[4], 10, 16)
	if err != nil || (len(f[4]) > 1 && f[4][0] == '0') {
		return nil, fmt.Errorf("PROXY v1 header: bad source port %q", f[4])
	}
	if _, err := strconv.ParseUint(f[5], 10, 16); err != nil {
		return nil, fmt.Errorf("PROXY v1 header: bad destination port %q", f[5])
	}
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, uint16(port))), nil
}

// readProxyV2 reads the binary header: signature, version/command,
// family/protocol, length, addresses, TLVs (ignored).
func readProxyV2(br *bufio.Reader) (net.Addr, error) {
	var h [16]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return nil, fmt.Errorf("read PROXY v2 header: %w", err)
	}
	if !bytes.Equal(h[:12], proxyV2Sig) {
		return nil, errors.New("bad PROXY v2 signature")
	}
	if h[12]>>4 != 2 {
		return nil, fmt.Errorf("PROXY v2 header: unknown version %d", h[12]>>4)
	}
	n := int(binary.BigEndian.Uint16(h[14:16]))
	body := make([]byte, n)
	if _, err := io.ReadFull(br, body); err != nil {
		return nil, fmt.Errorf("read PROXY v2 addresses: %w", err)
	}
	switch h[12] & 0x0f {
	case 0: // LOCAL: the proxy's own connection (health check)
		return nil, nil
	case 1: // PROXY
	default:
		return nil, fmt.Errorf("PROXY v2 header: unknown command %d", h[12]&0x0f)
	}
	switch h[13] {
	case 0x11: // TCP over IPv4
		if n < 12 {
			return nil, errors.New("PROXY v2 header: IPv4 addresses truncated")
		}
		src := netip.AddrFrom4([4]byte(body[0:4]))
		return net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, binary.BigEndian.Uint16(body[8:10]))), nil
	case 0x21: // TCP over IPv6
		if n < 36 {
			return nil, errors.New("PROXY v2 header: IPv6 addresses truncated")
		}
		src := netip.AddrFrom16([16]byte(body[0:16])).Unmap()
		return net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, binary.BigEndian.Uint16(body[32:34]))), nil
	default: // UNSPEC, UDP, unix sockets: not a TCP client; treat as the proxy's own
		return nil, nil
	}
}

// looksLikeProxyHeader reports whether b, the first bytes of a connection,
// start a PROXY header; more is true when b is too short to tell.
func looksLikeProxyHeader(b []byte) (yes, more bool) {
	for _, sig := range [][]byte{[]byte("PROXY "), proxyV2Sig[:5]} {
		n := min(len(b), len(sig))
		if bytes.Equal(b[:n], sig[:n]) {
			if n < len(sig) {
				return false, true
			}
			return true, false
		}
	}
	return false, false
}
