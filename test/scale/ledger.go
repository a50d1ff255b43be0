package main

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// outcome is what a client was told about one message.
type outcome int

const (
	outNone    outcome = iota // never tried
	outAcked                  // 250 after the final dot: must arrive
	outRefused                // a 4xx/5xx reply: must not arrive
	outCut                    // the connection ended before the final dot was sent: must not arrive
	outUnsure                 // the final dot was sent, no reply: may arrive or not
)

func (o outcome) String() string {
	return [...]string{"none", "acked", "refused", "cut", "unsure"}[o]
}

// arrival is one copy the sink accepted.
type arrival struct {
	at       time.Time
	by       string // the inkan that accepted it (its Received field's "by")
	clientIP string // the client address that inkan recorded ("from ... [IP]")
	queueID  string // inkan's queue ID (its Received field's "id")
	signed   bool   // carries the expected DKIM-Signature
	bodyOK   bool   // the body is the one sent
}

// msgRec is one message: what its client was told and what arrived.
type msgRec struct {
	seq     int
	out     outcome
	stage   string // where a refused/cut/unsure message ended
	reply   string
	ackedAt time.Time
	copies  []arrival
}

// killEvent is the SIGKILL of one instance and its restart.
type killEvent struct {
	instance  string // its hostname
	at        time.Time
	restarted time.Time // process started again (zero: not yet)
	spool     []string  // queue IDs in its spool while it was down
}

// ledger books every message of one phase, keyed by its X-Scale-Seq.
type ledger struct {
	run        string // X-Scale-Run: this phase's mail
	expectIP   string // the client address inkan must record (PROXY protocol)
	mu         sync.Mutex
	msgs       map[int]*msgRec
	strays     []string // deliveries that match no message sent
	lastArrive time.Time
	arrivals   int
	nAcked     atomic.Int64
}

func newLedger(run, expectIP string) *ledger {
	return &ledger{run: run, expectIP: expectIP, msgs: map[int]*msgRec{}}
}

// submitted books what the client was told about seq.
func (l *ledger) submitted(seq int, out outcome, stage, reply string, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.msg(seq)
	m.out, m.stage, m.reply = out, stage, reply
	if out == outAcked {
		m.ackedAt = at
		l.nAcked.Add(1)
	}
}

func (l *ledger) msg(seq int) *msgRec {
	m := l.msgs[seq]
	if m == nil {
		m = &msgRec{seq: seq}
		l.msgs[seq] = m
	}
	return m
}

// arrived books a copy the sink accepted. A copy may arrive before its
// client read the 250 (inkan delivers right after the fsync), so unknown
// sequence numbers are kept; tally calls those never submitted strays.
func (l *ledger) arrived(seq int, a arrival) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if seq <= 0 {
		l.strays = append(l.strays, fmt.Sprintf("a copy without a valid X-Scale-Seq (by %s)", a.by))
		return
	}
	m := l.msg(seq)
	m.copies = append(m.copies, a)
	l.arrivals++
	if a.at.After(l.lastArrive) {
		l.lastArrive = a.at
	}
}

// ackedMissing counts acknowledged messages with no copy yet.
func (l *ledger) ackedMissing() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if m.out == outAcked && len(m.copies) == 0 {
			n++
		}
	}
	return n
}

func (l *ledger) acked() int { return int(l.nAcked.Load()) }

// tally is what a ledger adds up to.
type tally struct {
	attempted, acked, refused, cut, unsure int
	delivered                              int // messages with at least one copy
	copies                                 int
	lost                                   []int // acked, never arrived
	dupMsgs                                int   // messages with more than one copy
	dupCopies                              int   // copies beyond the first
	dupAtKill                              int   // of dupMsgs: first copy by the killed instance before the kill, the rest after its restart
	dupOther                               []int // duplicates not explained by the kill
	unsureArrived                          int
	mustNotArrive                          []string // refused or cut, arrived anyway
	badIP, unsigned, corrupt               int
	byInstance                             map[string]int // copies per accepting instance
	strays                                 []string
}

// failures lists what makes the run fail.
func (t tally) failures() []string {
	var f []string
	if len(t.lost) > 0 {
		f = append(f, fmt.Sprintf("%d acknowledged messages lost: seqs %s", len(t.lost), seqList(t.lost)))
	}
	if len(t.dupOther) > 0 {
		f = append(f, fmt.Sprintf("%d messages duplicated outside the kill's at-least-once window: seqs %s", len(t.dupOther), seqList(t.dupOther)))
	}
	if len(t.mustNotArrive) > 0 {
		f = append(f, fmt.Sprintf("%d refused or cut-off messages arrived: %s", len(t.mustNotArrive), strings.Join(t.mustNotArrive[:min(10, len(t.mustNotArrive))], "; ")))
	}
	if t.badIP > 0 {
		f = append(f, fmt.Sprintf("%d copies record a client address other than the load's (PROXY protocol not applied)", t.badIP))
	}
	if t.unsigned > 0 {
		f = append(f, fmt.Sprintf("%d copies without the DKIM signature", t.unsigned))
	}
	if t.corrupt > 0 {
		f = append(f, fmt.Sprintf("%d copies with a damaged body", t.corrupt))
	}
	if len(t.strays) > 0 {
		f = append(f, fmt.Sprintf("%d unexpected deliveries: %s", len(t.strays), strings.Join(t.strays[:min(10, len(t.strays))], "; ")))
	}
	return f
}

func seqList(s []int) string {
	var b []string
	for _, n := range s[:min(len(s), 20)] {
		b = append(b, fmt.Sprint(n))
	}
	if len(s) > 20 {
		b = append(b, "...")
	}
	return strings.Join(b, " ")
}

// tally checks every message against what its client was told. k is the
// kill of the phase, or nil. A duplicate is allowed only when the kill
// explains it: its first copy was delivered by the killed instance before
// the kill (the sink had answered 250, inkan had not yet booked it), and
// every later copy came from that same instance after its restart.
func (l *ledger) tally(k *killEvent) tally {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := tally{byInstance: map[string]int{}}
	seqs := make([]int, 0, len(l.msgs))
	for s := range l.msgs {
		seqs = append(seqs, s)
	}
	sort.Ints(seqs)
	t.strays = append(t.strays, l.strays...)
	for _, s := range seqs {
		m := l.msgs[s]
		switch m.out {
		case outNone:
			if len(m.copies) > 0 {
				t.strays = append(t.strays, fmt.Sprintf("seq %d (never submitted)", s))
			}
			continue
		case outAcked:
			t.acked++
		case outRefused:
			t.refused++
		case outCut:
			t.cut++
		case outUnsure:
			t.unsure++
		}
		t.attempted++
		for _, c := range m.copies {
			t.copies++
			t.byInstance[c.by]++
			if l.expectIP != "" && c.clientIP != l.expectIP {
				t.badIP++
			}
			if !c.signed {
				t.unsigned++
			}
			if !c.bodyOK {
				t.corrupt++
			}
		}
		if len(m.copies) > 0 {
			t.delivered++
		}
		switch {
		case m.out == outAcked && len(m.copies) == 0:
			t.lost = append(t.lost, s)
		case m.out == outUnsure && len(m.copies) > 0:
			t.unsureArrived++
		case (m.out == outRefused || m.out == outCut) && len(m.copies) > 0:
			t.mustNotArrive = append(t.mustNotArrive, fmt.Sprintf("seq %d (%s at %s: %s)", s, m.out, m.stage, m.reply))
		}
		if len(m.copies) > 1 {
			t.dupMsgs++
			t.dupCopies += len(m.copies) - 1
			if explainedByKill(m.copies, k) {
				t.dupAtKill++
			} else {
				t.dupOther = append(t.dupOther, s)
			}
		}
	}
	return t
}

func earliest(c []arrival) arrival {
	e := c[0]
	for _, a := range c[1:] {
		if a.at.Before(e.at) {
			e = a
		}
	}
	return e
}

// explainedByKill: the first copy came from the killed instance before the
// kill, the others from it after its restart.
func explainedByKill(copies []arrival, k *killEvent) bool {
	if k == nil || k.restarted.IsZero() {
		return false
	}
	first := earliest(copies)
	if first.by != k.instance || first.at.After(k.at) {
		return false
	}
	n := 0
	for _, c := range copies {
		if c == first && n == 0 {
			n++
			continue
		}
		if c.by != k.instance || c.at.Before(k.restarted) {
			return false
		}
	}
	return true
}

// firstCopyBy is the earliest copy accepted by instance that arrived after
// t.
func (l *ledger) firstCopyBy(instance string, t time.Time) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var first time.Time
	for _, m := range l.msgs {
		for _, c := range m.copies {
			if c.by == instance && c.at.After(t) && (first.IsZero() || c.at.Before(first)) {
				first = c.at
			}
		}
	}
	return first, !first.IsZero()
}

// spoolFate follows the messages that were in a spool (queue IDs of
// instance) to the sink: how many arrived, by what their clients had been
// told, and which never did.
type spoolFate struct {
	arrived int
	byOut   map[outcome]int
	missing []string
	before  int // of arrived: with a copy already before t (a duplicate: the sink had it when inkan died)
}

func (l *ledger) spoolFate(instance string, ids []string, t time.Time) spoolFate {
	l.mu.Lock()
	defer l.mu.Unlock()
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	f := spoolFate{byOut: map[outcome]int{}}
	found := map[string]bool{}
	for _, m := range l.msgs {
		hit, early := false, false
		for _, c := range m.copies {
			if c.by == instance && want[c.queueID] {
				hit = true
				found[c.queueID] = true
				early = early || !c.at.After(t)
			}
		}
		if hit {
			f.arrived++
			f.byOut[m.out]++
		}
		if hit && early {
			f.before++
		}
	}
	for _, id := range ids {
		if !found[id] {
			f.missing = append(f.missing, id)
		}
	}
	return f
}

// timeline counts first copies per width-long slice of time from start.
func (l *ledger) timeline(start time.Time, width time.Duration) []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	var n []int
	for _, m := range l.msgs {
		if len(m.copies) == 0 {
			continue
		}
		i := max(int(earliest(m.copies).at.Sub(start)/width), 0)
		for len(n) <= i {
			n = append(n, 0)
		}
		n[i]++
	}
	return n
}

// delays is, for every acknowledged message that arrived, the time from
// the client's 250 to its first copy at the sink (0 when the copy came
// first: inkan delivers right after the fsync), sorted.
func (l *ledger) delays() []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var d []time.Duration
	for _, m := range l.msgs {
		if m.out == outAcked && len(m.copies) > 0 {
			d = append(d, max(earliest(m.copies).at.Sub(m.ackedAt), 0))
		}
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d
}

// percentile is the nearest-rank percentile of sorted d (0 when empty).
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(float64(len(d))*p+0.999999) - 1
	return d[min(max(i, 0), len(d)-1)]
}
