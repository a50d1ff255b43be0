package deliver

import (
	"net/netip"
	"sync"
	"time"
)

// maxConnAge bounds how long one connection is reused, so that a long
// stream of mail still spreads over MX hosts and picks up DNS changes.
const maxConnAge = 5 * time.Minute

// poolKey says which connections are interchangeable.
type poolKey struct {
	addr netip.AddrPort
	host string // the name the certificate was (or would be) checked for
	tls  string // route TLS mode
	user string // AUTH identity; "" = none
	via  string // the relay's config key, whose ca_file or pin checked it; "" = none
}

// pool keeps idle connections, newest last.
type pool struct {
	mu      sync.Mutex
	idle    map[poolKey][]*conn
	max     int
	timeout time.Duration
	closed  bool
}

func newPool(max int, timeout time.Duration) *pool {
	return &pool{idle: map[poolKey][]*conn{}, max: max, timeout: timeout}
}

// get takes the most recently used live connection for k, or nil.
func (p *pool) get(k poolKey, t time.Time) *conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.idle[k]
	for len(list) > 0 {
		s := list[len(list)-1]
		list = list[:len(list)-1]
		if t.Sub(s.idle) < p.timeout && t.Sub(s.born) < maxConnAge {
			p.set(k, list)
			return s
		}
		// Expired but not yet collected by the janitor: no time for QUIT.
		s.close()
	}
	p.set(k, list)
	return nil
}

// put offers an idle connection; false means the caller must close it.
func (p *pool) put(s *conn, t time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || t.Sub(s.born) >= maxConnAge || len(p.idle[s.key]) >= p.max {
		return false
	}
	s.idle = t
	p.idle[s.key] = append(p.idle[s.key], s)
	return true
}

func (p *pool) set(k poolKey, list []*conn) {
	if len(list) == 0 {
		delete(p.idle, k)
	} else {
		p.idle[k] = list
	}
}

// expired removes and returns the connections idle for too long.
func (p *pool) expired(t time.Time) []*conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*conn
	for k, list := range p.idle {
		keep := list[:0]
		for _, s := range list {
			if t.Sub(s.idle) >= p.timeout || t.Sub(s.born) >= maxConnAge {
				out = append(out, s)
			} else {
				keep = append(keep, s)
			}
		}
		clear(list[len(keep):])
		p.set(k, keep)
	}
	return out
}

// drain empties the pool for good.
func (p *pool) drain() []*conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	var out []*conn
	for _, list := range p.idle {
		out = append(out, list...)
	}
	clear(p.idle)
	return out
}

// size counts idle connections (for tests).
func (p *pool) size() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, list := range p.idle {
		n += len(list)
	}
	return n
}
