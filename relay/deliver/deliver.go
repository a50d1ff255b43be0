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
	"slices"
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

	// Listen are the addresses inkan's SMTP listeners are on ("host:port";
	// an empty, 0.0.0.0 or :: host means every local address). A next hop
	// there is this server: its mail bounces "loops back to myself".
	Listen []string

	// DataDir holds the MTA-STS policy cache (DataDir/mta-sts); "" keeps
	// policies in memory only.
	DataDir string
	// Reports counts TLS sessions for TLS-RPT (tlsrpt.go); nil = none.
	Reports *TLSReports
}

// Transport delivers messages over SMTP. It is safe for concurrent use.
type Transport struct {
	opts           Options
	routes         *routes
	res            *resolver
	self           *self
	log            *slog.Logger
	dialer         net.Dialer
	tlsCache       tls.ClientSessionCache
	connectTimeout time.Duration
	commandTimeout time.Duration
	dataTimeout    time.Duration

	pool      *pool
	pol       *policies // MTA-STS, DANE, TLS-RPT (tlspolicy.go)
	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once

	backoff *backoff         // failover lists (failover.go)
	clock   func() time.Time // pacing, back-off, token expiry; tests replace it
}

var _ queue.Transport = (*Transport)(nil)

// New checks the delivery settings, reads smarthost passwords and starts the
// goroutine that closes idle connections (stopped by Close). Errors name the
// setting they are about, e.g. "delivery.smarthost.password_file: ...".
func New(opts Options) (*Transport, error) {
	rt, err := parseRoutes(opts.Config, opts.Logger)
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
		self:           newSelf(opts.Listen),
		log:            opts.Logger,
		tlsCache:       tls.NewLRUClientSessionCache(256),
		connectTimeout: orDefault(c.ConnectTimeout.D(), 30*time.Second),
		commandTimeout: orDefault(c.CommandTimeout.D(), 5*time.Minute),
		dataTimeout:    orDefault(c.DataTimeout.D(), 10*time.Minute),
		pool:           newPool(opts.MaxIdle, opts.IdleTimeout),
		stop:           make(chan struct{}),
	}
	t.dialer = net.Dialer{Timeout: t.connectTimeout}
	t.backoff, t.clock = newBackoff(c.FailoverBackoff.D()), now
	t.pol = newPolicies(opts, t.res)
	t.startPolicyRefresh()
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
	pt, wait := t.pace(d, route, rel, st)
	if wait != nil {
		return wait
	}
	pol := t.tlsPolicy(ctx, d, route)
	if pol.refused != nil {
		st.note(pol.refused)
		t.logLookup(d, route, d.Domain, pol.refused)
	} else {
		t.deliverRoute(context.WithValue(ctx, policyCtxKey{}, pol), d, route, rel, st)
	}
	return t.settle(pt, st, pol.finish(st.results()))
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
	for first := true; len(hosts) > 0; first = false {
		n := 1 // hosts[:n] share a preference
		for n < len(hosts) && hosts[n].pref == hosts[0].pref {
			n++
		}
		group := t.resolveGroup(ctx, hosts[:n])
		hosts = hosts[n:]
		if v := t.loop(d, route, group); v != nil {
			// As Postfix: hosts from this preference on would send the
			// mail back; when none better was tried, it bounces.
			if first {
				st.note(v)
				t.logLookup(d, route, v.remote, v)
			}
			return
		}
		t.refusePrivate(route, group)
		for _, h := range group {
			if h.v != nil {
				st.note(h.v)
				t.logLookup(d, route, h.name, h.v)
				if ctx.Err() != nil {
					return
				}
				continue
			}
			ht, v := domainFrom(ctx).host(ctx, h.name)
			if v != nil {
				st.note(v)
				t.logLookup(d, route, h.name, v)
				continue
			}
			for _, a := range h.addrs {
				if tried == maxAddrs {
					return
				}
				tried++
				ap := netip.AddrPortFrom(a, uint16(route.Port))
				t.attempt(ht.session(ctx, ap), d, ht.apply(route), rel, h.name, ap, st)
				if st.left == 0 || ctx.Err() != nil {
					return
				}
			}
		}
	}
}

// resolved is a host to try with its addresses, or why it cannot be.
type resolved struct {
	name  string
	addrs []netip.Addr
	v     *verdict
}

// resolveGroup looks up the addresses of hosts of equal preference.
func (t *Transport) resolveGroup(ctx context.Context, hosts []mxHost) []resolved {
	out := make([]resolved, len(hosts))
	for i, h := range hosts {
		out[i].name = h.name
		out[i].addrs, out[i].v = t.res.addrs(ctx, h.name)
	}
	return out
}

// loop returns the verdict for a group of hosts of which one is this server
// ("mail for D loops back to myself", 5.4.6), or nil.
func (t *Transport) loop(d *queue.Delivery, route Route, group []resolved) *verdict {
	what := "MX host"
	if !route.MX {
		what = "next hop"
	}
	for _, h := range group {
		for _, a := range h.addrs {
			ap := netip.AddrPortFrom(a, uint16(route.Port))
			if !t.self.is(ap) {
				continue
			}
			where := "an address of this server where inkan listens"
			if a.Unmap().IsUnspecified() {
				where = "the unspecified address, which is this machine"
			}
			remote := fmt.Sprintf("%s[%s]:%d", h.name, a, route.Port)
			return permanent("5.4.6", "mail for %s loops back to myself: %s %s is %s", d.Domain, what, remote, where).at(remote, "")
		}
	}
	return nil
}

// refusePrivate applies delivery.refuse_private_mx to MX routes: it drops
// loopback, private and link-local addresses, and a host left with none
// fails permanently.
func (t *Transport) refusePrivate(route Route, group []resolved) {
	if !t.opts.Config.RefusePrivateMX || route.Via != ViaMX {
		return
	}
	for i := range group {
		h := &group[i]
		if h.v != nil {
			continue
		}
		public := slices.DeleteFunc(slices.Clone(h.addrs), private)
		if len(public) == 0 {
			h.v = permanent("5.4.4", "MX host %s has only private or loopback addresses (%s), which delivery.refuse_private_mx refuses",
				h.name, joinAddrs(h.addrs))
		}
		h.addrs = public
	}
}

func joinAddrs(list []netip.Addr) string {
	s := make([]string, len(list))
	for i, a := range list {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// attempt runs one SMTP session with one address: a pooled connection if
// there is one (and, should it turn out dead, a fresh one), else a new one.
func (t *Transport) attempt(ctx context.Context, d *queue.Delivery, route Route, rel *relay, host string, addr netip.AddrPort, st *outcome) {
	start := now()
	st.tally = tally{tried: st.left}
	key := poolKey{addr: addr, host: host, tls: route.TLS, user: route.User}
	if rel != nil {
		key.via = rel.key
	}
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
	// A successful attempt is debug: the queue logs each recipient's
	// outcome with the relay, TLS and reply already.
	level := slog.LevelDebug
	if result != "sent" {
		level = slog.LevelWarn
	}
	t.log.Log(context.Background(), level, "delivery attempt", "queue_id", d.ID, "route", string(route.Via),
		"relay", remote, "tls", tlsDesc, "reused", reused, "rcpts", st.tally.tried, "result", result,
		"reply", reply, "duration", now().Sub(start).Round(time.Millisecond).String())
}
