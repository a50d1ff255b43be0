package queue

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"
)

// parkDelay is how long a message waits when every destination domain it
// needs is at MaxPerDomain; a freed slot wakes it sooner.
const parkDelay = time.Minute

// runState belongs to one call of Run.
type runState struct {
	stop     chan struct{} // closed by Shutdown: start nothing new
	stopOnce sync.Once
	done     chan struct{} // closed when Run returns
	cancel   context.CancelFunc
	sem      chan struct{} // MaxConcurrent delivery slots
	wg       sync.WaitGroup
	inflight int // messages owned by workers; q.mu

	work    chan func()   // to an idle worker (spawn)
	quit    chan struct{} // closed when Run ends: idle workers leave
	workers sync.WaitGroup
}

// workerIdle is how long a worker waits for another message.
const workerIdle = 5 * time.Second

// spawn runs f on an idle worker, or on a new one. Workers wait a while
// for more: a delivery grows its goroutine's stack to the depth of an SMTP
// transaction, which a new goroutine per message would copy again each time.
func (rs *runState) spawn(f func()) {
	select {
	case rs.work <- f:
		return
	default:
	}
	rs.workers.Add(1)
	go rs.worker(f)
}

func (rs *runState) worker(f func()) {
	defer rs.workers.Done()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		f()
		idle.Reset(workerIdle)
		select {
		case f = <-rs.work:
		case <-idle.C:
			return
		case <-rs.quit:
			return
		}
	}
}

// Run delivers queued messages until ctx is done or Shutdown is called; it
// returns nil then. Cancelling ctx cancels deliveries in flight (they are
// retried later); Shutdown lets them finish first. Run waits for every
// goroutine it started before returning.
func (q *Queue) Run(ctx context.Context) error {
	if q.opts.Transport == nil {
		return errors.New("queue: Run needs a Transport")
	}
	dctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	rs := &runState{
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		cancel: cancel,
		sem:    make(chan struct{}, q.opts.MaxConcurrent),
		work:   make(chan func()),
		quit:   make(chan struct{}),
	}
	q.mu.Lock()
	switch {
	case q.closed:
		q.mu.Unlock()
		cancel()
		return ErrClosed
	case q.run != nil:
		q.mu.Unlock()
		cancel()
		return errors.New("queue: Run called twice")
	}
	q.run = rs
	q.mu.Unlock()
	defer func() {
		rs.wg.Wait()
		close(rs.quit)
		rs.workers.Wait()
		cancel()
		q.mu.Lock()
		q.run = nil
		q.mu.Unlock()
		close(rs.done)
	}()

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		timer.Reset(q.dispatch(dctx, rs))
		select {
		case <-ctx.Done():
			cancel()
			return nil
		case <-rs.stop:
			return nil
		case <-q.kick:
		case <-timer.C:
		}
	}
}

// Shutdown stops Run from starting deliveries and waits for those in flight
// until ctx is done; then it cancels them (they are retried later) and waits
// for Run to return. It returns ctx.Err() if deliveries had to be cancelled.
func (q *Queue) Shutdown(ctx context.Context) error {
	q.mu.Lock()
	rs := q.run
	q.mu.Unlock()
	if rs == nil {
		return nil
	}
	rs.stopOnce.Do(func() { close(rs.stop) })
	select {
	case <-rs.done:
		return nil
	case <-ctx.Done():
		rs.cancel()
		<-rs.done
		return ctx.Err()
	}
}

// dispatch hands due messages to workers and returns how long to sleep.
func (q *Queue) dispatch(ctx context.Context, rs *runState) time.Duration {
	q.mu.Lock()
	defer q.mu.Unlock()
	t := now().UnixNano()
	for rs.inflight < q.opts.MaxConcurrent && q.due.Len() > 0 && q.due[0].next <= t {
		it := heap.Pop(&q.due).(*item)
		it.busy = true
		rs.inflight++
		rs.wg.Add(1)
		rs.spawn(func() {
			defer rs.wg.Done()
			q.process(ctx, rs, it)
		})
	}
	wait := time.Minute // also bounds the effect of wall-clock jumps
	if rs.inflight < q.opts.MaxConcurrent && q.due.Len() > 0 {
		wait = min(wait, max(0, time.Duration(q.due[0].next-t)))
	}
	return wait
}

// testHookAttempted runs between a round's end and its rescheduling
// (tests use it to free a slot in that window).
var testHookAttempted func(id string)

// process runs one round for a message and puts it back in the index.
func (q *Queue) process(ctx context.Context, rs *runState, it *item) {
	next, keep := q.attempt(ctx, rs, it)
	if testHookAttempted != nil {
		testHookAttempted(it.id)
	}
	q.mu.Lock()
	it.busy = false
	rs.inflight--
	woken := it.woken
	it.woken = false
	if !it.gone {
		if keep {
			if next.IsZero() {
				next = now() // held: due as soon as it is released
			}
			if woken && next.After(now()) {
				// A slot it was parked for freed while this round ran:
				// try again now rather than after parkDelay.
				next = now()
			}
			it.next = next.UnixNano()
			q.schedule(it)
		} else {
			q.forget(it)
		}
	}
	q.mu.Unlock()
	q.Kick()
}

// group is the recipients of one message in one destination domain.
type group struct {
	domain string
	rcpts  []string         // unique addresses
	idx    map[string][]int // address -> positions in the envelope
}

// dsn is the DSN requests of g's recipients, for the transport (nil when
// the client made none).
func (g *group) dsn(env *Envelope) []RcptDSN {
	if len(env.RcptDSN) == 0 {
		return nil
	}
	out := make([]RcptDSN, len(g.rcpts))
	for i, addr := range g.rcpts {
		out[i] = env.DSNOf(g.idx[addr][0])
	}
	return out
}

// round is one worker's view of a message.
type round struct {
	id      string
	rec     *record
	st      *state
	arrival time.Time
	log     *slog.Logger
	relayed []int // recipients sent this round whose sender asked for a success notice we must give
}

// attempt loads a message, tries its due recipients, and records the outcome.
// It returns the next attempt time and whether the message stays queued.
func (q *Queue) attempt(ctx context.Context, rs *runState, it *item) (time.Time, bool) {
	it.mu.Lock()
	defer it.mu.Unlock()
	q.mu.Lock()
	noState, rec := it.noState, it.rec
	if rec != nil {
		it.rec = nil
		q.freshRecs--
	}
	q.mu.Unlock()
	r, err := q.loadRoundOf(it.id, rec, noState)
	if errors.Is(err, ErrNotFound) || errors.Is(err, errCorrupt) {
		return time.Time{}, false
	}
	if err != nil {
		q.log.Error("cannot read message; will retry", "queue_id", it.id, "err", err)
		return now().Add(q.opts.RetryMin), true
	}
	if q.isHeld(it) {
		return time.Time{}, true
	}
	t := now()
	if !r.st.pending() {
		if err := q.finish(r); err != nil {
			return t.Add(q.opts.RetryMin), true
		}
		return time.Time{}, false
	}
	run := q.reserve(it.id, groupDue(r, t))
	if len(run) == 0 {
		if n, _ := r.st.nextAttempt(); n.After(t) {
			return n, true
		}
		return t.Add(parkDelay), true
	}

	// Save the next attempt before calling out, so a crash or a hang during
	// delivery does not turn into a tight retry loop (not needed for a
	// fresh message: see item.fresh).
	first := it.fresh && r.st.Attempts == 0
	it.fresh = false
	r.st.Attempts++
	for _, g := range run {
		for _, is := range g.idx {
			for _, i := range is {
				rc := &r.st.Rcpts[i]
				rc.Attempts++
				rc.Last = t
				rc.Next = q.nextRetry(t, r.arrival, rc.Attempts)
			}
		}
	}
	if !first {
		if err := q.writeState(it.id, r.st); err != nil {
			// Deliver anyway: on a full disk, delivering is what frees space,
			// and the write only guards against a tight retry loop after a
			// crash. The results are saved (or the message removed) below.
			r.log.Warn("cannot save state before delivery; delivering anyway", "err", err)
		}
	}

	it.mu.Unlock()
	results := q.deliverGroups(ctx, rs, r, run)
	it.mu.Lock()
	if q.isGone(it) {
		return time.Time{}, false // deleted by the administrator meanwhile
	}
	failed := q.applyResults(ctx, r, run, results)
	return q.conclude(it, r, failed)
}

// loadRound reads a message's trailer and state. Errors wrap ErrNotFound
// when the message is gone and errCorrupt when it was moved to corrupt/.
func (q *Queue) loadRound(id string, noState bool) (*round, error) {
	return q.loadRoundOf(id, nil, noState)
}

// loadRoundOf is loadRound with the record already in hand (rec non-nil:
// a fresh message's, see item.rec).
func (q *Queue) loadRoundOf(id string, rec *record, noState bool) (*round, error) {
	log := q.log.With("queue_id", id)
	var err error
	if rec == nil {
		rec, err = q.loadRecord(id)
	}
	if errors.Is(err, errCorrupt) {
		q.moveCorrupt(id, id, err)
		q.moveStateAside(id, err)
	}
	if err != nil {
		return nil, err
	}
	var st *state
	if !noState {
		st, err = q.readState(id)
	}
	if errors.Is(err, errCorrupt) {
		// Retrying every recipient risks duplicates, never a loss.
		q.moveCorrupt(id+".state", id, err)
		st = nil
	} else if err != nil {
		return nil, err
	}
	if st != nil && !st.matches(&rec.Env) {
		q.moveCorrupt(id+".state", id, errors.New("state does not match the envelope"))
		st = nil
	}
	if st == nil {
		st = freshState(&rec.Env)
	}
	return &round{id: id, rec: rec, st: st, arrival: arrivalOf(id, &rec.Env), log: log}, nil
}

// moveStateAside moves a state file, if any, to corrupt/ with its message.
func (q *Queue) moveStateAside(id string, why error) {
	if _, err := q.msg.Lstat(id + ".state"); err == nil {
		q.moveCorrupt(id+".state", id, why)
	}
}

func arrivalOf(id string, env *Envelope) time.Time {
	if !env.Received.IsZero() {
		return env.Received
	}
	t, _ := idTime(id)
	return t
}

func (q *Queue) isHeld(it *item) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return it.held
}

func (q *Queue) isGone(it *item) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return it.gone
}

// groupDue groups the pending recipients due at t by destination domain.
func groupDue(r *round, t time.Time) []*group {
	var gs []*group
	byDomain := map[string]*group{}
	for i, rc := range r.st.Rcpts {
		if rc.Status != Pending || rc.Next.After(t) {
			continue
		}
		d := domainOf(rc.Addr)
		g := byDomain[d]
		if g == nil {
			g = &group{domain: d, idx: map[string][]int{}}
			byDomain[d] = g
			gs = append(gs, g)
		}
		if _, dup := g.idx[rc.Addr]; !dup {
			g.rcpts = append(g.rcpts, rc.Addr)
		}
		g.idx[rc.Addr] = append(g.idx[rc.Addr], i)
	}
	return gs
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(addr[i+1:])
	}
	return ""
}

// reserve takes a delivery slot in each group's domain; groups whose domain
// is full are left out and the message waits for a slot there.
func (q *Queue) reserve(id string, gs []*group) []*group {
	q.mu.Lock()
	defer q.mu.Unlock()
	var run []*group
	for _, g := range gs {
		if q.domains[g.domain] < q.opts.MaxPerDomain {
			q.domains[g.domain]++
			run = append(run, g)
			continue
		}
		w := q.waiters[g.domain]
		if !containsString(w, id) {
			q.waiters[g.domain] = append(w, id)
		}
	}
	return run
}

// releaseDomain frees a slot and wakes one message waiting for it.
func (q *Queue) releaseDomain(domain string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.domains[domain]--; q.domains[domain] <= 0 {
		delete(q.domains, domain)
	}
	w := q.waiters[domain]
	for len(w) > 0 {
		id := w[0]
		w = w[1:]
		it := q.items[id]
		if it == nil || it.gone {
			continue
		}
		if it.busy {
			// Still in the round that parked it: process reschedules it
			// now instead of after parkDelay. Keep looking for an idle
			// waiter too; a second one that loses the slot just parks.
			it.woken = true
			continue
		}
		it.next = now().UnixNano()
		q.schedule(it)
		break
	}
	if len(w) == 0 {
		delete(q.waiters, domain)
	} else {
		q.waiters[domain] = w
	}
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

func containsString(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// nextRetry is the backoff after the n-th attempt: RetryMin doubling up to
// RetryMax, plus up to 10% jitter, and never past the expiry time, so the
// last attempt happens right at expiry.
func (q *Queue) nextRetry(t, arrival time.Time, n int) time.Time {
	d := q.opts.RetryMin
	for i := 1; i < n && d < q.opts.RetryMax; i++ {
		d *= 2
	}
	d = min(d, q.opts.RetryMax)
	d += time.Duration(rand.Int64N(int64(d)/10 + 1))
	next := t.Add(d)
	if expiry := arrival.Add(q.opts.MaxLifetime); next.After(expiry) && t.Before(expiry) {
		next = expiry
	}
	return next
}

// deliverGroups calls the transport for every group at once, within the
// MaxConcurrent limit, and releases the domain slots.
func (q *Queue) deliverGroups(ctx context.Context, rs *runState, r *round, run []*group) [][]Result {
	results := make([][]Result, len(run))
	deliver := func(i int, g *group) {
		defer q.releaseDomain(g.domain)
		select {
		case rs.sem <- struct{}{}:
		case <-ctx.Done():
			return // no results: the recipients stay pending
		}
		defer func() { <-rs.sem }()
		start := time.Now()
		results[i] = q.opts.Transport.Deliver(ctx, &Delivery{
			ID:       r.id,
			From:     r.rec.Env.From,
			Rcpts:    g.rcpts,
			Domain:   g.domain,
			Size:     r.rec.Size(),
			Open:     q.opener(r.id, r.rec),
			SMTPUTF8: r.rec.Env.SMTPUTF8,
			Ret:      r.rec.Env.Ret,
			EnvID:    r.rec.Env.EnvID,
			DSN:      g.dsn(&r.rec.Env),
			Body8Bit: r.rec.Env.Body8Bit, Header8Bit: r.rec.Env.Header8Bit,
		})
		deliveryDuration.Observe(time.Since(start).Seconds())
	}
	if len(run) == 1 { // the usual case: on this goroutine
		deliver(0, run[0])
		return results
	}
	var wg sync.WaitGroup
	for i, g := range run {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deliver(i, g)
		}()
	}
	wg.Wait()
	return results
}

// replyText is a result as a one-line SMTP reply.
func replyText(res *Result) string {
	var b strings.Builder
	if res.Code > 0 {
		fmt.Fprintf(&b, "%d ", res.Code)
	}
	if res.Enhanced != "" {
		b.WriteString(res.Enhanced + " ")
	}
	b.WriteString(res.Message)
	return strings.TrimSpace(b.String())
}
