package main

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Kill moments of the crash scenario, used in turn.
var crashModes = []string{
	"data",      // a client is in the middle of DATA
	"commit",    // a message file is being renamed into the spool
	"after-250", // right after a client read "250 ... queued as"
	"delivery",  // the sink is receiving a message from inkan
	"queued",    // the sink is down; messages sit in the queue
	"rewrite",   // a state file is being replaced (retry bookkeeping)
	"random",    // any time at all
	"sigterm",   // a graceful stop (SIGTERM) while clients submit
}

// runCrash kills inkan with SIGKILL at chosen moments while clients submit,
// restarts it on the same spool, and at the end checks that every message
// that got a 250 arrived at the sink.
func runCrash(h *harness) {
	r := h.row("crash")
	defer r.end()
	cycles := 100
	if h.quick {
		cycles = 16 // each kill mode twice
	}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 1))
	led := newLedger(fmt.Sprintf("crash-%x", seed&0xffffff))
	sk, err := h.newSink("crash", nil, nil)
	if err != nil {
		r.failf("%v", err)
		return
	}
	var firstMu sync.Mutex
	firstCycle := map[int]int64{} // seq -> cycle of its first copy
	sk.subscribe(func(m sunk) {
		if _, seq, ok := parseTorture(m.data); ok && m.from != "" {
			firstMu.Lock()
			if _, seen := firstCycle[seq]; !seen {
				firstCycle[seq] = m.tag
			}
			firstMu.Unlock()
		}
		if m.from == "" {
			if d, err := parseDSN(m.data); err != nil {
				r.failf("a bounce does not parse: %v", err)
			} else {
				led.bounced(d)
			}
			return
		}
		led.delivered(m.to, m.data)
	})
	in, err := h.newInkan("crash", func(cfg map[string]any) { routeAllTo(cfg, sk.addr) })
	if err != nil {
		r.failf("%v", err)
		return
	}
	kills := map[string][2]int{} // mode -> {on the event, on the fallback timer}
	listChecks := 0
	var stops []time.Duration
	for i := 0; i < cycles; i++ {
		mode := crashModes[i%len(crashModes)]
		sk.tag.Store(int64(i + 1)) // the cycle in progress, for duplicates
		cy := &crashCycle{h: h, r: r, in: in, sk: sk, led: led, rng: rng, mode: mode, n: i + 1}
		onEvent, ok := cy.run()
		if !ok {
			break
		}
		k := kills[mode]
		if onEvent {
			k[0]++
		} else {
			k[1]++
		}
		kills[mode] = k
		if cy.stopTook > 0 {
			stops = append(stops, cy.stopTook)
		}
		if cy.checkStoppedSpool() {
			listChecks++
		}
	}

	// Last start: the sink stays up until the queue is empty.
	sk.tag.Store(int64(cycles + 1))
	sk.setBehavior(sinkBehavior{reject: crashReject})
	if err := sk.up(); err != nil {
		r.failf("%v", err)
	}
	if err := in.start(); err != nil {
		r.crashed("final restart failed: %v", err)
	} else {
		if left, err := in.waitQueueEmpty(90 * time.Second); err != nil {
			r.failf("queue did not drain with the sink up: %v (IDs %s)", err, strings.Join(left[:min(len(left), 5)], " "))
		}
		waitLedger(led, 10*time.Second)
		in.stop(r)
	}
	in.collect(r)
	t := led.tally()
	r.tally(t)
	var modes []string
	for _, m := range crashModes {
		if k, ok := kills[m]; ok {
			modes = append(modes, fmt.Sprintf("%s %d/%d", m, k[0], k[0]+k[1]))
		}
	}
	r.notef("%d stops; on the awaited moment per mode: %s (the rest on a fallback timer)", sumKills(kills), strings.Join(modes, ", "))
	if len(stops) > 0 {
		slices.Sort(stops)
		r.notef("SIGTERM under load: %d graceful stops, exit 0, slowest %s", len(stops), stops[len(stops)-1].Round(time.Millisecond))
	}
	r.notef("`inkan queue list` on the stopped spool after every stop: %d/%d ran and listed every undelivered acknowledged message", listChecks, sumKills(kills))
	firstMu.Lock()
	r.notef("duplicates by the stop that interrupted the first copy: %s (allowed: a stop between the sink's 250 and inkan's bookkeeping repeats a delivery); seed %d",
		dupsByMode(led, firstCycle, cycles), seed)
	firstMu.Unlock()
}

// dupsByMode attributes extra copies to the mode of the cycle in which the
// first copy arrived.
func dupsByMode(led *ledger, firstCycle map[int]int64, cycles int) string {
	by := map[string]int{}
	led.mu.Lock()
	for seq, m := range led.msgs {
		for _, n := range m.copies {
			if n > 1 {
				mode := "final drain"
				if c := firstCycle[seq]; c >= 1 && int(c) <= cycles {
					mode = crashModes[(c-1)%int64(len(crashModes))]
				}
				by[mode] += n - 1
			}
		}
	}
	led.mu.Unlock()
	if len(by) == 0 {
		return "none"
	}
	var parts []string
	for _, m := range append(crashModes, "final drain") {
		if by[m] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", m, by[m]))
		}
	}
	return strings.Join(parts, ", ")
}

func sumKills(k map[string][2]int) int {
	n := 0
	for _, v := range k {
		n += v[0] + v[1]
	}
	return n
}

// waitLedger waits until no acknowledged message is missing.
func waitLedger(led *ledger, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) && led.tally().lost > 0 {
		time.Sleep(100 * time.Millisecond)
	}
}

// crashCycle is one start, submit, SIGKILL.
type crashCycle struct {
	h    *harness
	r    *result
	in   *inkan
	sk   *sink
	led  *ledger
	rng  *rand.Rand
	mode string
	n    int

	acks     atomic.Int64
	ackc     chan struct{}
	midData  chan struct{}
	stopTook time.Duration // sigterm mode: time from SIGTERM to exit
}

// run returns whether the kill happened on the awaited event, and false in
// ok when inkan could not be started (the scenario stops there).
func (c *crashCycle) run() (onEvent, ok bool) {
	c.setSink()
	if err := c.in.start(); err != nil {
		c.r.crashed("cycle %d (%s): inkan did not start after the previous kill: %v", c.n, c.mode, err)
		return false, false
	}
	c.ackc = make(chan struct{}, 1)
	c.midData = make(chan struct{}, 1)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for k := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.client(k, stop)
		}()
	}
	if c.mode == "sigterm" {
		onEvent = c.gracefulStop(stop, &wg)
	} else {
		onEvent = c.killAtMoment()
		close(stop)
		wg.Wait()
	}
	c.in.collect(c.r)
	c.h.debugf("crash cycle %d (%s): killed (on event: %v), %d acks", c.n, c.mode, onEvent, c.acks.Load())
	return onEvent, true
}

// crashReject is refused by the sink with 550, so that bounces are made
// (and interrupted) too.
var crashReject = map[string]bool{"reject@crash.test": true}

func (c *crashCycle) setSink() {
	up := c.rng.IntN(2) == 0
	b := sinkBehavior{reject: crashReject}
	switch c.mode {
	case "delivery":
		up, b.dataDelay = true, time.Duration(50+c.rng.IntN(150))*time.Millisecond
	case "queued", "rewrite":
		up = false
	}
	c.sk.setBehavior(b)
	if up {
		if err := c.sk.up(); err != nil {
			c.r.failf("%v", err)
		}
	} else {
		c.sk.down()
	}
}

// client submits numbered messages until stop, reconnecting after errors.
func (c *crashCycle) client(k int, stop chan struct{}) {
	rng := rand.New(rand.NewPCG(uint64(c.n), uint64(k)))
	hooks := &submitHooks{midData: func() {
		select {
		case c.midData <- struct{}{}:
		default:
		}
		time.Sleep(2 * time.Millisecond)
	}}
	for {
		select {
		case <-stop:
			return
		default:
		}
		cl, _, err := dial(c.in.relay, dialOpts{timeout: 5 * time.Second})
		if err != nil {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if _, _, err := cl.ehlo("crash-client"); err != nil {
			cl.close()
			continue
		}
		for alive := true; alive; {
			select {
			case <-stop:
				cl.close()
				return
			default:
			}
			to := []string{fmt.Sprintf("rcpt%d@crash.test", rng.IntN(50))}
			if rng.IntN(4) == 0 {
				to = append(to, fmt.Sprintf("other%d@crash.test", rng.IntN(50)))
			}
			if rng.IntN(10) == 0 {
				to = append(to, "reject@crash.test")
			}
			m, body := c.led.compose(fmt.Sprintf("client%d@crash.test", k), to, 500+rng.IntN(30000), "")
			cl.deadline(5 * time.Second)
			s := cl.submit(m.from, m.to, body, hooks)
			c.led.record(m, s)
			switch s.out {
			case outAcked:
				c.acks.Add(1)
				select {
				case c.ackc <- struct{}{}:
				default:
				}
			case outRefused:
				alive = cl.reset() == nil
			default:
				alive = false
			}
			time.Sleep(time.Duration(10+rng.IntN(30)) * time.Millisecond)
		}
		cl.close()
	}
}

// killAtMoment waits for the mode's moment, or a fallback timer, and sends
// SIGKILL. It reports whether the moment came.
func (c *crashCycle) killAtMoment() bool {
	fallback := time.After(4 * time.Second)
	fire := make(chan struct{}, 1)
	trigger := func() {
		select {
		case fire <- struct{}{}:
		default:
		}
	}
	tmp := filepath.Join(c.in.dataDir, "queue", "tmp")
	onEvent := true
	switch c.mode {
	case "data":
		time.Sleep(time.Duration(c.rng.IntN(800)) * time.Millisecond)
		drain(c.midData)
		go func() {
			select {
			case <-c.midData:
				trigger()
			case <-time.After(5 * time.Second):
			}
		}()
	case "after-250":
		want := int64(1 + c.rng.IntN(15))
		go func() {
			deadline := time.After(5 * time.Second)
			for c.acks.Load() < want {
				select {
				case <-c.ackc:
				case <-deadline:
					return
				}
			}
			trigger()
		}()
	case "delivery":
		drain(c.sk.inData)
		delay := time.Duration(c.rng.IntN(150)) * time.Millisecond
		go func() {
			select {
			case <-c.sk.inData:
				time.Sleep(delay)
				trigger()
			case <-time.After(5 * time.Second):
			}
		}()
	case "commit", "rewrite":
		state := c.mode == "rewrite"
		// Let a backlog build first, so "rewrite" replaces existing states.
		time.Sleep(time.Duration(200+c.rng.IntN(1000)) * time.Millisecond)
		fallback = time.After(4 * time.Second)
		stopWatch, err := watchDir(tmp, func(name string, ev uint32) bool {
			isState := strings.Contains(name, ".state")
			if (state && isState && ev&evCreate != 0) || (!state && !isState && ev&evMovedFrom != 0) {
				trigger()
				return true
			}
			return false
		})
		if err != nil {
			c.r.notef("cannot watch %s (%v); killing on a timer", tmp, err)
		} else {
			defer stopWatch()
		}
	case "queued":
		fallback = time.After(time.Duration(200+c.rng.IntN(1300)) * time.Millisecond)
		onEvent = false
	default:
		fallback = time.After(time.Duration(50+c.rng.IntN(2000)) * time.Millisecond)
		onEvent = false
	}
	select {
	case <-fire:
	case <-fallback:
		if c.mode == "queued" || c.mode == "random" {
			onEvent = true // the timer is the moment
		} else {
			onEvent = false
		}
	}
	c.in.kill()
	return onEvent
}

// gracefulStop sends SIGTERM while clients submit, lets them run a moment
// longer (their sessions delay the stop: inkan lets them finish), then
// stops them. inkan must exit 0 within its 30 s grace period.
func (c *crashCycle) gracefulStop(stop chan struct{}, clients *sync.WaitGroup) bool {
	time.Sleep(time.Duration(200+c.rng.IntN(1300)) * time.Millisecond)
	start := time.Now()
	done := make(chan struct{})
	var code int
	var hung bool
	go func() {
		defer close(done)
		code, hung = c.in.terminate(40 * time.Second)
	}()
	time.Sleep(300 * time.Millisecond)
	close(stop)
	clients.Wait()
	<-done
	c.stopTook = time.Since(start)
	switch {
	case hung:
		c.r.failf("cycle %d (sigterm): inkan did not exit within 40s of SIGTERM", c.n)
	case code != 0:
		c.r.failf("cycle %d (sigterm): inkan exited with status %d after SIGTERM", c.n, code)
	}
	return true
}

func drain(ch chan struct{}) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// checkStoppedSpool runs `inkan queue list` on the stopped spool and checks
// that every acknowledged message not yet delivered is listed.
func (c *crashCycle) checkStoppedSpool() bool {
	entries, err := c.in.queueList()
	if err != nil {
		c.r.failf("cycle %d (%s): %v", c.n, c.mode, err)
		return false
	}
	listed := map[string]bool{}
	bounceFor := map[string]bool{} // senders with a DSN waiting in the queue
	for _, e := range entries {
		listed[e.id] = true
		if e.from == "MAILER-DAEMON" {
			for _, r := range e.rcpts {
				bounceFor[strings.ToLower(r)] = true
			}
		}
	}
	c.led.mu.Lock()
	var missing []string
	for _, m := range c.led.msgs {
		if m.sub.out != outAcked || listed[m.sub.id] || allArrived(m) {
			continue
		}
		// Done with, except for a recipient whose bounce is still queued.
		if bounceFor[strings.ToLower(m.from)] && onlyRejectsMissing(m) {
			continue
		}
		missing = append(missing, fmt.Sprintf("seq %d (%s)", m.seq, m.sub.id))
	}
	c.led.mu.Unlock()
	sort.Strings(missing)
	if len(missing) > 0 {
		c.r.failf("cycle %d (%s): after the kill, %d acknowledged undelivered messages are missing from `inkan queue list`: %s",
			c.n, c.mode, len(missing), strings.Join(missing[:min(len(missing), 5)], ", "))
		return false
	}
	return true
}

// onlyRejectsMissing: the recipients without a copy or a bounce are all
// ones the sink refuses. ledger.mu held.
func onlyRejectsMissing(m *msgRec) bool {
	for _, r := range m.to {
		r = strings.ToLower(r)
		if _, b := m.bounces[r]; m.copies[r] == 0 && !b && !crashReject[r] {
			return false
		}
	}
	return true
}

// allArrived: every recipient got a copy or a bounce. ledger.mu held.
func allArrived(m *msgRec) bool {
	for _, r := range m.to {
		r = strings.ToLower(r)
		if _, b := m.bounces[r]; m.copies[r] == 0 && !b {
			return false
		}
	}
	return true
}
