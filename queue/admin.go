package queue

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// AllMessages, given as an ID to the admin methods that change messages,
// applies them to every message in the queue.
const AllMessages = "ALL"

// Info describes a queued message for administrators.
type Info struct {
	ID          string     `json:"id"`
	From        string     `json:"from"` // "" = null sender
	Size        int64      `json:"size"` // prefix + body
	Arrival     time.Time  `json:"arrival"`
	NextAttempt time.Time  `json:"next_attempt,omitzero"`
	Attempts    int        `json:"attempts"`
	Held        bool       `json:"held,omitempty"`
	User        string     `json:"user,omitempty"`
	Client      string     `json:"client,omitempty"`
	Helo        string     `json:"helo,omitempty"`
	Rcpts       []RcptInfo `json:"rcpts"`
	DSNRet      string     `json:"dsn_ret,omitempty"`   // the sender's RET (RFC 3461)
	DSNEnvID    string     `json:"dsn_envid,omitempty"` // the sender's ENVID
	Body8Bit    bool       `json:"body_8bit,omitempty"` // the body has 8-bit bytes
}

// RcptInfo is one recipient of a queued message.
type RcptInfo struct {
	Addr        string    `json:"addr"`
	Status      Status    `json:"status"` // Pending, Sent or Failed
	LastReply   string    `json:"last_reply,omitempty"`
	Remote      string    `json:"remote,omitempty"`
	TLSPolicy   string    `json:"tls_policy,omitempty"` // of the last attempt
	Attempts    int       `json:"attempts,omitempty"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	DSN         *RcptDSN  `json:"dsn,omitempty"` // the sender's NOTIFY and ORCPT, if any
}

// Stats returns the number of messages and the arrival of the oldest
// (zero when the queue is empty).
func (q *Queue) Stats() (count int, oldest time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	min := ""
	for id := range q.items {
		if min == "" || id < min {
			min = id
		}
	}
	if min != "" {
		oldest, _ = idTime(min)
	}
	return len(q.items), oldest
}

// ids is a snapshot of the queue's IDs, oldest first.
func (q *Queue) ids() []string {
	q.mu.Lock()
	ids := make([]string, 0, len(q.items))
	for id := range q.items {
		ids = append(ids, id)
	}
	q.mu.Unlock()
	slices.Sort(ids)
	return ids
}

// List calls fn for each message, oldest first, reading one at a time.
// Messages removed meanwhile are skipped; an error from fn stops the walk.
func (q *Queue) List(fn func(Info) error) error {
	for _, id := range q.ids() {
		info, err := q.Get(id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			q.log.Warn("cannot read message for listing", "queue_id", id, "err", err)
			continue
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// Get describes one message.
func (q *Queue) Get(id string) (Info, error) {
	it := q.lookup(id)
	if it == nil {
		return Info{}, ErrNotFound
	}
	rec, err := q.loadRecord(id)
	if err != nil {
		return Info{}, err
	}
	st, err := q.readState(id)
	if err != nil || st == nil || !st.matches(&rec.Env) {
		st = freshState(&rec.Env)
	}
	env := &rec.Env
	info := Info{
		ID: id, From: env.From, Size: rec.Size(), Arrival: arrivalOf(id, env),
		Attempts: st.Attempts, User: env.User, Client: env.Client, Helo: env.Helo,
		DSNRet: env.Ret, DSNEnvID: env.EnvID, Body8Bit: env.Body8Bit,
	}
	q.mu.Lock()
	info.Held = it.held
	if !it.held {
		info.NextAttempt = time.Unix(0, it.next)
	}
	q.mu.Unlock()
	for i, rc := range st.Rcpts {
		ri := RcptInfo{Addr: rc.Addr, Status: rc.Status, LastReply: rc.Reply,
			Remote: rc.Remote, Attempts: rc.Attempts, TLSPolicy: rc.Policy}
		if rc.Status == Pending {
			ri.NextAttempt = rc.Next
		}
		if d := env.DSNOf(i); len(d.Notify) > 0 || d.ORcpt != "" {
			ri.DSN = &d
		}
		info.Rcpts = append(info.Rcpts, ri)
	}
	return info, nil
}

// Body returns the message as it will be sent: prefix headers, then body.
func (q *Queue) Body(id string) (io.ReadCloser, error) {
	if q.lookup(id) == nil {
		return nil, ErrNotFound
	}
	rec, err := q.loadRecord(id)
	if err != nil {
		return nil, err
	}
	return q.opener(id, rec)()
}

func (q *Queue) lookup(id string) *item {
	if !validID(id) {
		return nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.items[id]
}

// each applies fn to one message, or to all for AllMessages.
func (q *Queue) each(id string, fn func(*item) error) error {
	if id != AllMessages {
		it := q.lookup(id)
		if it == nil {
			return ErrNotFound
		}
		return fn(it)
	}
	var errs []error
	for _, id := range q.ids() {
		if it := q.lookup(id); it != nil {
			if err := fn(it); err != nil && !errors.Is(err, ErrNotFound) {
				errs = append(errs, fmt.Errorf("%s: %w", id, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Retry makes a message (or all, for AllMessages) due now and wakes the
// scheduler. Held messages stay held; a message being delivered is skipped.
func (q *Queue) Retry(id string) error {
	err := q.each(id, func(it *item) error {
		it.mu.Lock()
		defer it.mu.Unlock()
		q.mu.Lock()
		busy, gone := it.busy, it.gone
		q.mu.Unlock()
		if busy || gone {
			return nil
		}
		st, err := q.readState(it.id)
		if err == nil && st != nil {
			for i := range st.Rcpts {
				st.Rcpts[i].Next = time.Time{}
			}
			if err := q.writeState(it.id, st); err != nil {
				return err
			}
		}
		q.mu.Lock()
		it.next = now().UnixNano()
		q.schedule(it)
		q.mu.Unlock()
		q.log.Info("retry requested by administrator", "queue_id", it.id)
		return nil
	})
	q.Kick()
	return err
}

// Hold stops delivery of a message (or all) until Release.
func (q *Queue) Hold(id string) error {
	return q.each(id, func(it *item) error { return q.setHeld(it, true) })
}

// Release undoes Hold; the message is delivered at its next attempt time.
func (q *Queue) Release(id string) error {
	err := q.each(id, func(it *item) error { return q.setHeld(it, false) })
	q.Kick()
	return err
}

func (q *Queue) setHeld(it *item, held bool) error {
	it.mu.Lock()
	defer it.mu.Unlock()
	q.mu.Lock()
	if it.gone {
		q.mu.Unlock()
		return ErrNotFound
	}
	it.held = held
	q.schedule(it)
	q.mu.Unlock()
	verb := map[bool]string{true: "held", false: "released"}[held]
	q.log.Info(verb+" by administrator", "queue_id", it.id)
	// Saved even while a delivery is in flight: the worker's final write,
	// also under it.mu, copies it.held too.
	st, err := q.readState(it.id)
	if err != nil && !errors.Is(err, errCorrupt) {
		return err
	}
	if st == nil || err != nil {
		rec, err := q.loadRecord(it.id)
		if err != nil {
			return err
		}
		st = freshState(&rec.Env)
	}
	st.Held = held
	return q.writeState(it.id, st)
}

// Delete removes a message (or all) without notifying anyone.
func (q *Queue) Delete(id string) error {
	return q.each(id, func(it *item) error {
		it.mu.Lock()
		defer it.mu.Unlock()
		q.mu.Lock()
		if it.gone {
			q.mu.Unlock()
			return ErrNotFound
		}
		q.forget(it)
		q.mu.Unlock()
		if err := q.removeMessage(it.id); err != nil {
			return err
		}
		q.log.Info("removed", "queue_id", it.id, "reason", "deleted by administrator")
		return nil
	})
}

// Bounce returns a message (or all) to its sender now: its pending
// recipients get a DSN saying it was deleted by the administrator, then the
// message is removed. A message being delivered gives ErrBusy.
func (q *Queue) Bounce(id string) error {
	return q.each(id, func(it *item) error {
		q.mu.Lock()
		if it.busy || it.gone {
			q.mu.Unlock()
			if it.gone {
				return ErrNotFound
			}
			return ErrBusy
		}
		it.busy = true // claim it, like a worker, so Run leaves it alone
		q.schedule(it)
		q.mu.Unlock()
		it.mu.Lock()
		keep, err := q.bounceNow(it.id)
		it.mu.Unlock()
		q.mu.Lock()
		it.busy = false
		if keep {
			q.schedule(it)
		} else if !it.gone {
			q.forget(it)
		}
		q.mu.Unlock()
		return err
	})
}

// bounceNow does Bounce's work; keep reports whether the message remains.
func (q *Queue) bounceNow(id string) (keep bool, err error) {
	r, err := q.loadRound(id, false)
	if err != nil {
		return !errors.Is(err, ErrNotFound) && !errors.Is(err, errCorrupt), err
	}
	t := now()
	const why = "deleted by administrator"
	var rcpts []DSNRcpt
	for _, rc := range r.st.Rcpts {
		if rc.Status == Pending {
			rcpts = append(rcpts, DSNRcpt{Addr: rc.Addr, Action: ActionFailed, Status: "5.0.0",
				RemoteMTA: remoteHost(rc.Remote), DiagnosticType: "X-Inkan", Diagnostic: why,
				LastAttempt: rc.Last})
		}
	}
	if len(rcpts) > 0 {
		if err := q.sendDSN(r, rcpts, "admin"); err != nil {
			return true, fmt.Errorf("queue bounce: %w", err)
		}
	}
	for _, rc := range rcpts {
		deliveriesTotal.WithLabelValues("bounced").Inc()
		r.log.Info("delivery", "to", rc.Addr, "relay", "", "tls", "",
			"delay", t.Sub(r.arrival).Round(time.Millisecond).String(),
			"attempt", 0, "status", "bounced", "reply", why)
	}
	if err := q.finish(r); err != nil {
		// Record the bounce so the scheduler finishes the message later
		// instead of delivering it.
		for i := range r.st.Rcpts {
			if r.st.Rcpts[i].Status == Pending {
				r.st.Rcpts[i].Status = Failed
			}
		}
		return true, errors.Join(err, q.writeState(id, r.st))
	}
	return false, nil
}
