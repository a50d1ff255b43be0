package auth

import (
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/inkan-relay/inkan/config"
)

// Sender is what a sending quota counts: an authenticated user, or a
// trusted network for its unauthenticated clients together.
type Sender struct {
	Network bool   // false: a user
	Name    string // user name, or network name
}

func (s Sender) String() string {
	if s.Network {
		return "network " + clean(s.Name)
	}
	return "user " + clean(s.Name)
}

// Scope is "user" or "network" (for logs and metrics).
func (s Sender) Scope() string {
	if s.Network {
		return "network"
	}
	return "user"
}

// Quotas counts the messages and recipients each sender had accepted in
// the last hour and the last day, so that a stolen password or a runaway
// device cannot send without limit. The windows slide in steps of a minute
// (hour) and an hour (day). Counts live in memory: a restart forgets them.
// Senders are users of the users file and configured networks, so the map
// is bounded by the configuration; idle senders are dropped after a day.
//
// A message is checked at MAIL and at each RCPT, and counted when it is
// accepted, so parallel transactions of one sender may overshoot a quota by
// what they carry between their checks and their acceptance.
type Quotas struct {
	mu        sync.Mutex
	senders   map[Sender]*usage
	lastSweep time.Time
}

type usage struct {
	hour, day window
	last      time.Time
}

// NewQuotas returns empty counters.
func NewQuotas() *Quotas { return &Quotas{senders: map[Sender]*usage{}} }

// QuotaExceeded says which quota a transaction would exceed.
type QuotaExceeded struct {
	Sender Sender
	Quota  string // config key under quotas.user / quotas.network: "messages_per_hour"...
	Limit  int
	Used   int // what the sender had accepted in the window
}

// Error is the sentence of the reply.
func (e *QuotaExceeded) Error() string {
	what, window := "messages", "hour"
	switch e.Quota {
	case "messages_per_day":
		window = "day"
	case "recipients_per_hour":
		what = "recipients"
	case "recipients_per_day":
		what, window = "recipients", "day"
	}
	return fmt.Sprintf("Sending quota exceeded: %s may send %d %s per %s and has sent %d in the last %s, try again later",
		e.Sender, e.Limit, what, window, e.Used, window)
}

// Reply is the SMTP answer: 451 4.7.1, a temporary failure, so a client
// retries once the window has moved on.
func (e *QuotaExceeded) Reply() *smtp.SMTPError {
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: e.Error()}
}

// Key is the setting an operator changes to lift the quota.
func (e *QuotaExceeded) Key() string { return "quotas." + e.Sender.Scope() + "." + e.Quota }

// Check reports whether s may have msgs more messages with rcpts more
// recipients accepted under lim; nil when it may. A refusal is counted in
// inkan_quota_exceeded_total.
func (q *Quotas) Check(s Sender, lim config.Quota, msgs, rcpts int) *QuotaExceeded {
	t := now()
	q.mu.Lock()
	var mh, md, rh, rd int
	if u := q.senders[s]; u != nil {
		mh, rh = u.hour.sum(t, hourWindow)
		md, rd = u.day.sum(t, dayWindow)
	}
	q.mu.Unlock()
	for _, c := range []struct {
		key         string
		limit, used int
		more        int
	}{
		{"messages_per_day", lim.MessagesPerDay, md, msgs},
		{"messages_per_hour", lim.MessagesPerHour, mh, msgs},
		{"recipients_per_day", lim.RecipientsPerDay, rd, rcpts},
		{"recipients_per_hour", lim.RecipientsPerHour, rh, rcpts},
	} {
		if c.limit > 0 && c.more > 0 && c.used+c.more > c.limit {
			e := &QuotaExceeded{Sender: s, Quota: c.key, Limit: c.limit, Used: c.used}
			quotaExceeded.WithLabelValues(s.Scope(), c.key).Inc()
			return e
		}
	}
	return nil
}

// Add counts one accepted transaction of s: msgs messages to rcpts
// recipients.
func (q *Quotas) Add(s Sender, msgs, rcpts int) {
	t := now()
	q.mu.Lock()
	defer q.mu.Unlock()
	q.sweep(t)
	u := q.senders[s]
	if u == nil {
		u = &usage{}
		q.senders[s] = u
	}
	u.hour.add(t, hourWindow, msgs, rcpts)
	u.day.add(t, dayWindow, msgs, rcpts)
	u.last = t
}

// SenderUsage is what one sender had accepted in the last hour and day.
type SenderUsage struct {
	Sender
	MessagesHour   int
	MessagesDay    int
	RecipientsHour int
	RecipientsDay  int
}

// Usage lists every sender with mail in the last day, users first, then by
// name.
func (q *Quotas) Usage() []SenderUsage {
	t := now()
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []SenderUsage
	for s, u := range q.senders {
		su := SenderUsage{Sender: s}
		su.MessagesHour, su.RecipientsHour = u.hour.sum(t, hourWindow)
		su.MessagesDay, su.RecipientsDay = u.day.sum(t, dayWindow)
		if su.MessagesDay > 0 || su.RecipientsDay > 0 {
			out = append(out, su)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Network != out[j].Network {
			return !out[i].Network
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// sweep drops senders idle for a day, at most once an hour.
func (q *Quotas) sweep(t time.Time) {
	if t.Sub(q.lastSweep) < time.Hour {
		return
	}
	q.lastSweep = t
	for s, u := range q.senders {
		if t.Sub(u.last) > 24*time.Hour {
			delete(q.senders, s)
		}
	}
}

// A window counts over its last n slots of width each.
type windowShape struct {
	n     int
	width time.Duration
}

var (
	hourWindow = windowShape{60, time.Minute}
	dayWindow  = windowShape{24, time.Hour}
)

type window struct {
	slots []slotCount
}

type slotCount struct {
	slot        int64 // index of the time slot counted here
	msgs, rcpts int
}

func (w *window) add(t time.Time, shape windowShape, msgs, rcpts int) {
	if w.slots == nil {
		w.slots = make([]slotCount, shape.n)
	}
	cur := t.UnixNano() / int64(shape.width)
	c := &w.slots[int(cur%int64(shape.n))]
	if c.slot != cur {
		*c = slotCount{slot: cur}
	}
	c.msgs += msgs
	c.rcpts += rcpts
}

func (w *window) sum(t time.Time, shape windowShape) (msgs, rcpts int) {
	cur := t.UnixNano() / int64(shape.width)
	for _, c := range w.slots {
		if c.slot > cur-int64(shape.n) && c.slot <= cur {
			msgs += c.msgs
			rcpts += c.rcpts
		}
	}
	return msgs, rcpts
}
