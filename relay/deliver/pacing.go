package deliver

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/inkan-relay/inkan/config"
)

// A pacer keeps one route under its limits: at most Messages deliveries in
// any Period, at most RecipientsPerDay recipients in any 24 hours. Limits
// are sliding windows, not token buckets: a bucket of 30 that refills at 30
// a minute lets 60 through in the first minute, which is what providers
// count and refuse.
//
// A delivery that would break a limit is not tried: it gets a slot, the
// earliest time at which it fits after every slot given before (first
// come, first served), and the queue brings it back then. A slot counts as
// used from the moment it is given, so a later delivery cannot take it.
// The queue brings a delivery back a little after its slot: slots are
// placed as if each period were longer by grace, so that a delivery sent up
// to grace after its slot still keeps the real limit. One that comes back
// later than that goes at once if it still fits, else gets a new slot.
// Slots of messages that never come back (held or deleted meanwhile) are
// forgotten once they leave the window.
type pacer struct {
	name  string // the setting: "delivery.smarthost.pacing"
	msgs  *window
	rcpts *window
	grace time.Duration

	mu    sync.Mutex
	slots map[string]*slotted // by delivery (queue ID and domain)
}

type slotted struct {
	at   time.Time
	m, r *mark
}

// window is one limit: at most limit units in any span of period. Marks
// are placed with period+grace (span) between them.
type window struct {
	limit  int
	period time.Duration // as configured
	grace  time.Duration
	marks  []*mark // sorted by time; past sends and future slots
}

type mark struct {
	at time.Time
	n  int
}

const (
	day      = 24 * time.Hour
	maxGrace = 2 * time.Second // how late a delivery may come back to its slot
)

// newPacer returns nil when p sets no limit.
func newPacer(name string, p config.Pacing) *pacer {
	pc := &pacer{name: name, slots: map[string]*slotted{}, grace: maxGrace}
	if p.Messages > 0 {
		period := p.Period.D()
		if period <= 0 {
			period = time.Minute
		}
		pc.grace = min(maxGrace, period/10)
		pc.msgs = &window{limit: p.Messages, period: period, grace: pc.grace}
	}
	if p.RecipientsPerDay > 0 {
		pc.rcpts = &window{limit: p.RecipientsPerDay, period: day, grace: pc.grace}
	}
	if pc.msgs == nil && pc.rcpts == nil {
		return nil
	}
	return pc
}

// ticket is a delivery let through, so that it can be given back when
// nothing reached the server.
type ticket struct {
	m, r *mark
}

// take lets a delivery of n recipients (key: queue ID and domain) go now,
// or returns the time of its slot. A delivery with more recipients than
// the daily limit counts as the whole limit.
func (p *pacer) take(key string, n int, now time.Time) (*ticket, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.prune(now)
	if s := p.slots[key]; s != nil {
		if now.Before(s.at) {
			return nil, s.at // back early (inkan queue retry): keep the place
		}
		delete(p.slots, key)
		if now.Sub(s.at) <= p.grace {
			return &ticket{s.m, s.r}, time.Time{}
		}
		p.msgs.remove(s.m)
		p.rcpts.remove(s.r)
	}
	m, r := p.msgs.unit(now, 1), p.rcpts.unit(now, n)
	if p.msgs.fitsAt(m) && p.rcpts.fitsAt(r) {
		p.msgs.insert(m)
		p.rcpts.insert(r)
		return &ticket{m, r}, time.Time{}
	}
	at := later(p.msgs.earliestAppend(now, 1), p.rcpts.earliestAppend(now, n))
	s := &slotted{at: at, m: p.msgs.unit(at, 1), r: p.rcpts.unit(at, n)}
	p.msgs.insert(s.m)
	p.rcpts.insert(s.r)
	p.slots[key] = s
	return nil, at
}

// giveBack returns a ticket whose delivery reached no server: a relay that
// is down does not use up the allowance.
func (p *pacer) giveBack(t *ticket) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs.remove(t.m)
	p.rcpts.remove(t.r)
}

// prune forgets what left the windows, and slots nobody came back for.
func (p *pacer) prune(now time.Time) {
	p.msgs.prune(now)
	p.rcpts.prune(now)
	for k, s := range p.slots {
		if now.Sub(s.at) > max(p.msgs.span(), p.rcpts.span()) {
			delete(p.slots, k)
		}
	}
}

// describe says what the limits are: "30 messages per 1m, 10000
// recipients a day".
func (p *pacer) describe() string {
	var parts []string
	if p.msgs != nil {
		parts = append(parts, fmt.Sprintf("%s per %s", count(p.msgs.limit, "message"), config.Duration(p.msgs.period)))
	}
	if p.rcpts != nil {
		parts = append(parts, count(p.rcpts.limit, "recipient")+" a day")
	}
	return strings.Join(parts, " and ")
}

func count(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// The window methods accept a nil window (no such limit).

// span is the distance marks are kept apart: the period and the grace.
func (w *window) span() time.Duration {
	if w == nil {
		return 0
	}
	return w.period + w.grace
}

func (w *window) unit(at time.Time, n int) *mark {
	if w == nil {
		return nil
	}
	return &mark{at: at, n: min(n, w.limit)}
}

func (w *window) prune(now time.Time) {
	if w == nil {
		return
	}
	i := 0
	for i < len(w.marks) && !w.marks[i].at.After(now.Add(-w.span())) {
		i++
	}
	w.marks = slices.Delete(w.marks, 0, i)
}

func (w *window) insert(m *mark) {
	if w == nil {
		return
	}
	i, _ := slices.BinarySearchFunc(w.marks, m.at, func(e *mark, t time.Time) int {
		if e.at.After(t) {
			return 1
		}
		return -1 // equal times: after the existing ones
	})
	w.marks = slices.Insert(w.marks, i, m)
}

func (w *window) remove(m *mark) {
	if w == nil || m == nil {
		return
	}
	if i := slices.Index(w.marks, m); i >= 0 {
		w.marks = slices.Delete(w.marks, i, i+1)
	}
}

// fitsAt reports whether adding m keeps every span of period within the
// limit, the slots given for later included.
func (w *window) fitsAt(m *mark) bool {
	if w == nil {
		return true
	}
	all := make([]*mark, 0, len(w.marks)+1)
	all = append(all, w.marks...)
	w2 := &window{limit: w.limit, period: w.period, grace: w.grace, marks: all}
	w2.insert(m)
	// The fullest span starts at a mark: check each, two pointers.
	sum, j := 0, 0
	for i := range w2.marks {
		for j < len(w2.marks) && w2.marks[j].at.Sub(w2.marks[i].at) < w2.span() {
			sum += w2.marks[j].n
			j++
		}
		if sum > w2.limit {
			return false
		}
		sum -= w2.marks[i].n
	}
	return true
}

// earliestAppend is the earliest time, not before now nor before any mark,
// at which n units fit.
func (w *window) earliestAppend(now time.Time, n int) time.Time {
	if w == nil {
		return now
	}
	n = min(n, w.limit)
	at := now
	if k := len(w.marks); k > 0 && w.marks[k-1].at.After(at) {
		at = w.marks[k-1].at
	}
	// The marks within period before at, newest first, may hold limit-n.
	sum := 0
	for i := len(w.marks) - 1; i >= 0; i-- {
		sum += w.marks[i].n
		if sum > w.limit-n {
			return later(at, w.marks[i].at.Add(w.span()))
		}
	}
	return at
}

// pacers are shared by every Transport of the process: a reload builds a
// new Transport, but the provider goes on counting what was sent.
var pacers = struct {
	mu sync.Mutex
	m  map[string]*pacer
}{m: map[string]*pacer{}}

// sharedPacer returns the pacer for a setting (name), the route it paces
// (identity: the relay's addresses and user) and its limits, made once per
// process; nil when p sets no limit.
func sharedPacer(name, identity string, p config.Pacing) *pacer {
	np := newPacer(name, p)
	if np == nil {
		return nil
	}
	key := fmt.Sprintf("%s|%s|%d|%d|%d", name, identity, p.Messages, p.Period, p.RecipientsPerDay)
	pacers.mu.Lock()
	defer pacers.mu.Unlock()
	if old := pacers.m[key]; old != nil {
		return old
	}
	pacers.m[key] = np
	return np
}
