package deliver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/queue"
)

var now = time.Now

const (
	defaultIdleTimeout = 5 * time.Second
	defaultMaxIdle     = 4
	maxAddrs           = 10 // addresses tried per delivery, over all MX hosts (Postfix: 5)
)

// Options configures a Transport.
type Options struct {
	Config   config.Delivery
	Hostname string         // EHLO name; required
	Logger   *slog.Logger   // nil = slog.Default()
	RootCAs  *x509.CertPool // for tls verify; nil = the system roots

	// IdleTimeout is how long a connection waits in the pool for the next
	// message to the same host. 0 = 5s; negative disables reuse.
	IdleTimeout time.Duration
	// MaxIdle is the number of idle connections kept per (host address, TLS
	// mode, login). 0 = 4.
	MaxIdle int
}

// Transport delivers messages over SMTP. It is safe for concurrent use.
type Transport struct {
	opts           Options
	routes         *routes
	res            *resolver
	log            *slog.Logger
	dialer         net.Dialer
	tlsCache       tls.ClientSessionCache
	connectTimeout time.Duration
	commandTimeout time.Duration
	dataTimeout    time.Duration

	pool      *pool
	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

var _ queue.Transport = (*Transport)(nil)

// New checks the delivery settings, reads smarthost passwords and starts the
// goroutine that closes idle connections (stopped by Close). Errors name the
// setting they are about, e.g. "delivery.smarthost.password_file: ...".
func New(opts Options) (*Transport, error) {
	rt, err := parseRoutes(opts.Config)
	if opts.Hostname == "" || strings.ContainsAny(opts.Hostname, " \t\r\n") {
		err = errors.Join(err, fmt.Errorf("hostname: %q is not a valid EHLO name", opts.Hostname))
	}
	if err != nil {
		return nil, fmt.Errorf("deliver: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = defaultIdleTimeout
	}
	if opts.MaxIdle <= 0 {
		// As many idle connections as deliveries may run to one domain, so
		// a busy destination never has to dial again.
		opts.MaxIdle = max(defaultMaxIdle, opts.Config.MaxPerDomain)
	}
	c := opts.Config
	t := &Transport{
		opts:           opts,
		routes:         rt,
		res:            newResolver(c.Resolver),
		log:            opts.Logger,
		tlsCache:       tls.NewLRUClientSessionCache(256),
		connectTimeout: orDefault(c.ConnectTimeout.D(), 30*time.Second),
		commandTimeout: orDefault(c.CommandTimeout.D(), 5*time.Minute),
		dataTimeout:    orDefault(c.DataTimeout.D(), 10*time.Minute),
		pool:           newPool(opts.MaxIdle, opts.IdleTimeout),
		stop:           make(chan struct{}),
	}
	t.dialer = net.Dialer{Timeout: t.connectTimeout}
	if opts.IdleTimeout > 0 {
		t.wg.Add(1)
		go t.janitor()
	}
	return t, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Close stops the janitor and closes the idle connections (with QUIT).
// Deliveries still running finish; their connections are closed, not pooled.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		close(t.stop)
		t.wg.Wait()
		quitAll(t.pool.drain())
	})
	return nil
}

// Route returns the route mail from sender from to recipient domain takes.
func (t *Transport) Route(from, domain string) Route {
	r, _ := t.routes.choose(from, domain)
	return r
}

// NoSign reports whether the route for (from, domain) asks not to DKIM-sign.
func (t *Transport) NoSign(from, domain string) bool {
	return t.Route(from, domain).NoSign
}

// Deliver sends d to its recipients and returns one Result per recipient, in
// the order of d.Rcpts.
func (t *Transport) Deliver(ctx context.Context, d *queue.Delivery) []queue.Result {
	if len(d.Rcpts) == 0 {
		return nil
	}
	st := newOutcome(d.Rcpts)
	route, rel := t.routes.choose(d.From, d.Domain)
	t.deliver(ctx, d, route, rel, st)
	return st.results()
}

func (t *Transport) deliver(ctx context.Context, d *queue.Delivery, route Route, rel *relay, st *outcome) {
	hosts := []mxHost{{name: route.Host}}
	if route.MX {
		var v *verdict
		if hosts, v = t.res.mx(ctx, route.Host); v != nil {
			st.note(v)
			t.logLookup(d, route, route.Host, v)
			return
		}
	}
	tried := 0
	for _, h := range hosts {
		addrs, v := t.res.addrs(ctx, h.name)
		if v != nil {
			st.note(v)
			t.logLookup(d, route, h.name, v)
			if ctx.Err() != nil {
				return
			}
			continue
		}
		for _, a := range addrs {
			if tried == maxAddrs {
				return
			}
			tried++
			t.attempt(ctx, d, route, rel, h.name, netip.AddrPortFrom(a, uint16(route.Port)), st)
			if st.left == 0 || ctx.Err() != nil {
				return
			}
		}
	}
}

// attempt runs one SMTP session with one address: a pooled connection if
// there is one (and, should it turn out dead, a fresh one), else a new one.
func (t *Transport) attempt(ctx context.Context, d *queue.Delivery, route Route, rel *relay, host string, addr netip.AddrPort, st *outcome) {
	start := now()
	st.tally = tally{tried: st.left}
	key := poolKey{addr: addr, host: host, tls: route.TLS, user: route.User}
	s := t.pool.get(key, now())
	for {
		if s == nil {
			var v *verdict
			if s, v = t.connect(ctx, d.ID, route, rel, host, addr, key); v != nil {
				st.note(v)
				t.logAttempt(d, route, v.remote, v.tls, st, false, v, start)
				return
			}
		} else {
			connectionsTotal.WithLabelValues("reused").Inc()
		}
		s.attach(ctx)
		v, keep := t.transact(s, d, st)
		alive := s.detach()
		if v != nil && s.reused && ctx.Err() == nil {
			// The server gave up on the idle connection: not the message's fault.
			t.log.Debug("reused connection failed; dialing a new one", "queue_id", d.ID, "relay", s.remote, "err", v.msg)
			s.close()
			s = nil
			continue
		}
		if v != nil && ctx.Err() != nil {
			v = temporary("4.4.2", "delivery to %s interrupted: %v", s.remote, context.Cause(ctx)).at(s.remote, s.tls)
		}
		if v != nil {
			st.note(v)
		}
		t.logAttempt(d, route, s.remote, s.tls, st, s.reused, v, start)
		if keep && alive && v == nil {
			s.reused = true
			if t.opts.IdleTimeout > 0 && t.pool.put(s, now()) {
				return
			}
			s.quit()
			return
		}
		s.close()
		return
	}
}

// janitor closes connections idle for longer than IdleTimeout.
func (t *Transport) janitor() {
	defer t.wg.Done()
	tick := time.NewTicker(min(max(t.opts.IdleTimeout/2, 10*time.Millisecond), time.Second))
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
			quitAll(t.pool.expired(now()))
		}
	}
}

func (t *Transport) logLookup(d *queue.Delivery, route Route, name string, v *verdict) {
	t.log.Info("delivery attempt", "queue_id", d.ID, "route", string(route.Via), "lookup", name,
		"rcpts", len(d.Rcpts), "result", v.status.String(), "reply", v.String())
}

func (t *Transport) logAttempt(d *queue.Delivery, route Route, remote, tlsDesc string, st *outcome, reused bool, v *verdict, start time.Time) {
	result, reply := st.tally.summary(), st.tally.last
	if v != nil {
		result, reply = "error", v.String()
	}
	level := slog.LevelInfo
	if result != "sent" {
		level = slog.LevelWarn
	}
	t.log.Log(context.Background(), level, "delivery attempt", "queue_id", d.ID, "route", string(route.Via),
		"relay", remote, "tls", tlsDesc, "reused", reused, "rcpts", st.tally.tried, "result", result,
		"reply", reply, "duration", now().Sub(start).Round(time.Millisecond).String())
}
