package deliver

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/inkan-relay/inkan/queue"
)

// pace asks the route's pacing whether d may go now. When it must wait,
// it returns the results to give (not tried, NotBefore set); otherwise the
// ticket to settle once the delivery is done (nil without pacing).
func (t *Transport) pace(d *queue.Delivery, route Route, rel *relay, st *outcome) (*paceTicket, []queue.Result) {
	p := t.routes.pacerFor(rel, d.Domain)
	if p == nil {
		return nil, nil
	}
	tk, at := p.take(d.ID+"\x00"+d.Domain, len(d.Rcpts), t.clock())
	if tk == nil {
		return nil, t.paced(d, route, p, at, st)
	}
	return &paceTicket{p, tk}, nil
}

type paceTicket struct {
	p  *pacer
	tk *ticket
}

// deliverRoute delivers along the route: to its next hop, or for a relay
// with a failover list to each address in turn. A relay that logs in with
// OAuth2 gets its token first: without one no server is dialled.
func (t *Transport) deliverRoute(ctx context.Context, d *queue.Delivery, route Route, rel *relay, st *outcome) {
	if rel != nil && rel.oauth != nil {
		if _, err := rel.oauth.Token(ctx); err != nil {
			v := tokenVerdict(rel, route, err)
			st.note(v)
			t.logLookup(d, route, route.Addr(), v)
			return
		}
	}
	if rel != nil && len(route.Fallback) > 0 {
		st.moved = t.failover(ctx, d, route, rel, st)
		return
	}
	t.deliver(ctx, d, route, rel, st)
}

// settle finishes the results: a paced delivery that reached no server
// gives its allowance back, and deferred recipients of a failover list say
// which addresses failed before and why.
func (t *Transport) settle(pt *paceTicket, st *outcome, res []queue.Result) []queue.Result {
	if pt != nil && noReply(res) {
		pt.p.giveBack(pt.tk)
	}
	if len(st.moved) > 0 {
		for i := range res {
			if res[i].Status == queue.Deferred {
				res[i].Message += " (earlier: " + strings.Join(st.moved, "; ") + ")"
			}
		}
	}
	return res
}

// paced answers for a delivery that waits for its slot: not tried, nothing
// counted against the message; the queue brings it back at.
func (t *Transport) paced(d *queue.Delivery, route Route, p *pacer, at time.Time, st *outcome) []queue.Result {
	v := temporary("4.4.5", "waits for pacing: %s allows %s; its turn comes at %s", p.name, p.describe(),
		at.UTC().Format(time.RFC3339))
	v.notBefore = at
	st.resolve(st.pending(), v)
	t.log.Info("delivery paced", "queue_id", d.ID, "route", string(route.Via), "pacing", p.name,
		"rcpts", len(d.Rcpts), "until", at.UTC().Format(time.RFC3339))
	return st.res
}

// noReply reports whether no result came from a server's reply: the
// delivery never reached one.
func noReply(res []queue.Result) bool {
	for _, r := range res {
		if r.Code != 0 || r.Status == queue.Sent {
			return false
		}
	}
	return true
}

// failover tries the addresses of a relay's list in turn, those in
// back-off last. An address that failed before the message was sent (no
// connection, a TLS or AUTH failure, a 4xx reply) goes into back-off, and
// the recipients it answered with 4xx move on to the next address at once;
// a 5xx for a recipient is final. It returns, per address that failed,
// what happened there, for the results of recipients that stay deferred.
func (t *Transport) failover(ctx context.Context, d *queue.Delivery, route Route, rel *relay, st *outcome) []string {
	hops := t.backoff.order(rel.key, route.Hops(), t.clock())
	var moved []string
	for i, h := range hops {
		r := route.at(h)
		if until, ok := t.backoff.until(rel.key, h, t.clock()); ok {
			t.log.Info("relay address in back-off; trying it after the others", "queue_id", d.ID, "relay", rel.key,
				"address", r.Addr(), "until", until.UTC().Format(time.RFC3339))
		}
		st.startHop()
		t.deliver(ctx, d, r, rel, st)
		if st.stop || ctx.Err() != nil {
			return moved
		}
		failure := st.hopTemp
		if failure == nil {
			t.backoff.clear(rel.key, h)
			if st.left == 0 {
				return moved
			}
			continue
		}
		t.backoff.fail(rel.key, h, t.clock())
		moved = append(moved, r.Addr()+": "+failure.String())
		if i+1 == len(hops) {
			return moved
		}
		st.reopen()
		if st.left == 0 {
			return moved
		}
		t.log.Warn("relay address failed; trying the next one", "queue_id", d.ID, "relay", rel.key,
			"address", r.Addr(), "reason", failure.String(), "next", route.at(hops[i+1]).Addr(), "rcpts", st.left,
			"backoff", t.backoff.d.String())
	}
	return moved
}

// Hop is one next hop of a relay: a host ("[host]:port") or a domain whose
// MX records are used ("host:port").
type Hop struct {
	Host string
	Port int
	MX   bool
}

// Hops lists the route's next hops in the order configured.
func (r Route) Hops() []Hop {
	return append([]Hop{{Host: r.Host, Port: r.Port, MX: r.MX}}, r.Fallback...)
}

// at is the route with h as its next hop.
func (r Route) at(h Hop) Route {
	r.Host, r.Port, r.MX, r.Fallback = h.Host, h.Port, h.MX, nil
	return r
}

// backoff remembers relay addresses that failed recently.
type backoff struct {
	d    time.Duration
	mu   sync.Mutex
	ends map[string]time.Time // by relay key and address
}

func newBackoff(d time.Duration) *backoff {
	if d <= 0 {
		d = time.Minute
	}
	return &backoff{d: d, ends: map[string]time.Time{}}
}

func backoffKey(rel string, h Hop) string {
	return fmt.Sprintf("%s %s:%d %v", rel, h.Host, h.Port, h.MX)
}

// order puts the addresses in back-off after the others, soonest out
// first; the others keep the configured order.
func (b *backoff) order(rel string, hops []Hop, now time.Time) []Hop {
	var ready, waiting []Hop
	for _, h := range hops {
		if _, ok := b.until(rel, h, now); ok {
			waiting = append(waiting, h)
		} else {
			ready = append(ready, h)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := 1; i < len(waiting); i++ { // a few entries: insertion sort
		for j := i; j > 0 && b.ends[backoffKey(rel, waiting[j])].Before(b.ends[backoffKey(rel, waiting[j-1])]); j-- {
			waiting[j], waiting[j-1] = waiting[j-1], waiting[j]
		}
	}
	return append(ready, waiting...)
}

func (b *backoff) until(rel string, h Hop, now time.Time) (time.Time, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	u, ok := b.ends[backoffKey(rel, h)]
	if ok && !now.Before(u) {
		delete(b.ends, backoffKey(rel, h))
		return time.Time{}, false
	}
	return u, ok
}

func (b *backoff) fail(rel string, h Hop, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ends[backoffKey(rel, h)] = now.Add(b.d)
}

func (b *backoff) clear(rel string, h Hop) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.ends, backoffKey(rel, h))
}
