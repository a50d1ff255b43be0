package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/emersion/go-message/textproto"
)

// ledger is the book of one scenario: every message sent (with a unique
// X-Torture-Seq), what the client was told, and what reached the sinks. Its
// tally is the row's figures.
type ledger struct {
	run string // X-Torture-Run: tells this scenario's mail from any other

	mu      sync.Mutex
	next    int
	msgs    map[int]*msgRec
	strays  []string // deliveries that match no message of this ledger
	corrupt []string
}

// msgRec is one message: what was sent, what the client was told, what
// arrived.
type msgRec struct {
	seq     int
	from    string
	to      []string
	sum     [32]byte // SHA-256 of the body as it should arrive
	anyBody bool     // do not compare bodies (raw protocol tricks)
	sub     submission
	copies  map[string]int     // recipient -> deliveries
	bounces map[string]dsnRcpt // recipient -> what the DSN said
}

func newLedger(run string) *ledger {
	return &ledger{run: run, msgs: map[int]*msgRec{}}
}

// compose makes a new message of about size bytes. The body is derived from
// the sequence number, so the sink can tell a damaged copy.
func (l *ledger) compose(from string, to []string, size int, extraHeader string) (*msgRec, string) {
	l.mu.Lock()
	l.next++
	seq := l.next
	l.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: torture %s #%d\r\nMessage-ID: <%d.%s@torture.test>\r\n",
		from, strings.Join(to, ">, <"), l.run, seq, seq, l.run)
	fmt.Fprintf(&b, "X-Torture-Run: %s\r\nX-Torture-Seq: %d\r\n%s\r\n", l.run, seq, extraHeader)
	body := payload(seq, size)
	b.WriteString(body)
	m := &msgRec{seq: seq, from: from, to: to, sum: sha256.Sum256([]byte(body)),
		copies: map[string]int{}, bounces: map[string]dsnRcpt{}}
	l.mu.Lock()
	l.msgs[seq] = m
	l.mu.Unlock()
	return m, b.String()
}

// composeBody makes a message with a given body (CRLF line endings are the
// caller's business). want is the body as it should arrive; "" means it is
// not compared.
func (l *ledger) composeBody(from string, to []string, extraHeader, body, want string) (*msgRec, string) {
	m, msg := l.compose(from, to, 0, extraHeader)
	msg = strings.TrimSuffix(msg, payload(m.seq, 0)) + body
	l.mu.Lock()
	m.sum, m.anyBody = sha256.Sum256([]byte(want)), want == ""
	l.mu.Unlock()
	return m, msg
}

// payload is size bytes of printable lines; no line starts with a dot.
func payload(seq, size int) string {
	rng := rand.New(rand.NewPCG(uint64(seq), 0x746f7274757265))
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 "
	var b strings.Builder
	for line := 0; b.Len() < size || line == 0; line++ {
		fmt.Fprintf(&b, "%06d ", line)
		for range 68 {
			b.WriteByte(letters[rng.IntN(len(letters))])
		}
		b.WriteString("\r\n")
	}
	return b.String()
}

// record stores the client's view of a message.
func (l *ledger) record(m *msgRec, s submission) {
	l.mu.Lock()
	m.sub = s
	l.mu.Unlock()
}

// delivered books a copy that reached a sink, for the given recipients.
// Messages of other runs are ignored.
func (l *ledger) delivered(rcpts []string, data []byte) {
	run, seq, ok := parseTorture(data)
	if !ok || run != l.run {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.msgs[seq]
	if m == nil {
		l.strays = append(l.strays, fmt.Sprintf("seq %d (never sent)", seq))
		return
	}
	if !m.anyBody && sha256.Sum256(bodyOf(data)) != m.sum {
		l.corrupt = append(l.corrupt, fmt.Sprintf("seq %d arrived with a different body", seq))
	}
	for _, r := range rcpts {
		m.copies[strings.ToLower(r)]++
	}
}

// bounced books the recipients a DSN reports as failed.
func (l *ledger) bounced(d *dsnReport) {
	if d.run != l.run {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.msgs[d.seq]
	if m == nil {
		l.strays = append(l.strays, fmt.Sprintf("DSN for seq %d (never sent)", d.seq))
		return
	}
	for _, r := range d.rcpts {
		if strings.EqualFold(r.action, "failed") {
			m.bounces[strings.ToLower(r.addr)] = r
		}
	}
}

// find returns the message with a sequence number.
func (l *ledger) find(seq int) *msgRec {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.msgs[seq]
}

// ledgerTally is what a ledger adds up to.
type ledgerTally struct {
	attempts, accepted, delivered, bounced, lost, duplicated, unackDelivered int
	failures                                                                 []string
	lostSeqs                                                                 []int
}

// tally checks every message against what its client was told:
//   - acked: each recipient got a copy or a bounce, else the message is lost;
//   - refused or cut: nothing may arrive;
//   - unsure: arriving is allowed, and counted apart.
func (l *ledger) tally() ledgerTally {
	l.mu.Lock()
	defer l.mu.Unlock()
	var t ledgerTally
	seqs := make([]int, 0, len(l.msgs))
	for s := range l.msgs {
		seqs = append(seqs, s)
	}
	sort.Ints(seqs)
	var badSeqs []string
	for _, s := range seqs {
		m := l.msgs[s]
		if m.sub.out == outPending {
			continue // composed, never tried
		}
		t.attempts++
		arrived, complete := false, true
		for _, r := range m.to {
			r = strings.ToLower(r)
			n := m.copies[r]
			_, b := m.bounces[r]
			if n > 0 || b {
				arrived = true
			}
			if n == 0 && !b {
				complete = false
			}
			if n > 1 {
				t.duplicated += n - 1
			}
		}
		if len(m.bounces) > 0 {
			t.bounced++
		}
		delivered := false
		for _, n := range m.copies {
			if n > 0 {
				delivered = true
			}
		}
		if delivered {
			t.delivered++
		}
		switch m.sub.out {
		case outAcked:
			t.accepted++
			if !complete {
				t.lost++
				t.lostSeqs = append(t.lostSeqs, s)
			}
		case outUnsure:
			if arrived {
				t.unackDelivered++
			}
		case outRefused, outCut:
			if arrived {
				badSeqs = append(badSeqs, fmt.Sprintf("%d (%s at %s: %s)", s, m.sub.out, m.sub.stage, m.sub.reply))
			}
		}
	}
	if len(t.lostSeqs) > 0 {
		var ids []string
		for _, s := range t.lostSeqs[:min(len(t.lostSeqs), 10)] {
			ids = append(ids, fmt.Sprintf("seq %d (queue ID %s)", s, l.msgs[s].sub.id))
		}
		t.failures = append(t.failures, fmt.Sprintf("%d acknowledged messages never arrived: %s", len(t.lostSeqs), strings.Join(ids, ", ")))
	}
	if len(badSeqs) > 0 {
		t.failures = append(t.failures, fmt.Sprintf("%d messages arrived although the client was refused or cut off before the final dot: %s",
			len(badSeqs), strings.Join(badSeqs[:min(len(badSeqs), 10)], "; ")))
	}
	if len(l.corrupt) > 0 {
		t.failures = append(t.failures, fmt.Sprintf("%d damaged copies: %s", len(l.corrupt), strings.Join(l.corrupt[:min(len(l.corrupt), 10)], "; ")))
	}
	if len(l.strays) > 0 {
		t.failures = append(t.failures, fmt.Sprintf("%d unexpected deliveries: %s", len(l.strays), strings.Join(l.strays[:min(len(l.strays), 10)], "; ")))
	}
	return t
}

// parseTorture reads X-Torture-Run and X-Torture-Seq from a message.
func parseTorture(data []byte) (run string, seq int, ok bool) {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(headerOf(data))))
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return "", 0, false
	}
	run = strings.TrimSpace(h.Get("X-Torture-Run"))
	seq, err = strconv.Atoi(strings.TrimSpace(h.Get("X-Torture-Seq")))
	if err != nil || run == "" || seq <= 0 {
		return "", 0, false
	}
	return run, seq, true
}

// headerOf is the header section including the blank line (all of data if
// there is none).
func headerOf(data []byte) []byte {
	if i := bytes.Index(data, []byte("\r\n\r\n")); i >= 0 {
		return data[:i+4]
	}
	return data
}

// bodyOf is what follows the first blank line.
func bodyOf(data []byte) []byte {
	if i := bytes.Index(data, []byte("\r\n\r\n")); i >= 0 {
		return data[i+4:]
	}
	return nil
}
