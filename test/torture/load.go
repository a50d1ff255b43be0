package main

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds the load scenario holds inkan to.
const (
	loadMaxRSSMB         = 256 // peak resident memory under load
	loadGoroutineSlack   = 10  // goroutines above the idle baseline once clients left
	loadSettleGoroutines = 30 * time.Second
)

// runLoad opens hundreds of concurrent connections that submit for a
// bounded time, and measures memory, threads and goroutines before, during
// and after. Limits are raised so that no refusal is expected.
func runLoad(h *harness) {
	r := h.row("load")
	defer r.end()
	conns, dur := 500, 30*time.Second
	if h.quick {
		conns, dur = 200, 10*time.Second
	}
	led := newLedger(fmt.Sprintf("load-%d", time.Now().UnixNano()%1e6))
	sk, err := h.newSink("load", nil, nil)
	if err != nil {
		r.failf("%v", err)
		return
	}
	sk.subscribe(func(m sunk) { led.delivered(m.to, m.data) })
	in, err := h.newInkan("load", func(cfg map[string]any) {
		routeAllTo(cfg, sk.addr)
		set(cfg, "limits.max_connections", conns*2)
		set(cfg, "limits.max_connections_per_ip", conns*2)
		// All clients are 127.0.0.1, a trusted address: its default cap
		// (200) equals the quick run's clients, and a client that
		// reconnects right after QUIT can beat the server's release of
		// its old slot, which is a 421 at the cap, not a fault.
		set(cfg, "limits.max_connections_per_trusted_ip", conns*2)
		set(cfg, "log.level", "info") // tens of thousands of messages; errors show at the clients
	})
	if err != nil {
		r.failf("%v", err)
		return
	}
	if err := in.start(); err != nil {
		r.crashed("start: %v", err)
		return
	}
	defer in.stop(r)

	// Warm up (TLS certificate, first delivery), then take the baseline.
	if s := submitOne(in, led, "warmup@load.test", []string{"warm@load.test"}, 1000); s.out != outAcked {
		r.failf("warm-up message: %s", s.reply)
	}
	waitLedger(led, 10*time.Second)
	time.Sleep(time.Second)
	base, err := sample(in)
	if err != nil {
		r.failf("baseline: %v", err)
		return
	}

	peak := base
	stopSampler := make(chan struct{})
	samplerDone := make(chan struct{})
	go func() {
		defer close(samplerDone)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopSampler:
				return
			case <-t.C:
				if s, err := sample(in); err == nil {
					peak = peak.max(s)
				}
			}
		}
	}()

	start := time.Now()
	var opened atomic.Int64
	errs := &errorTally{}
	var wg sync.WaitGroup
	deadline := start.Add(dur)
	for k := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			loadClient(in, led, k, deadline, &opened, errs)
		}()
	}
	wg.Wait()
	submitTime := time.Since(start)
	close(stopSampler)
	<-samplerDone

	if left, err := in.waitQueueEmpty(120 * time.Second); err != nil {
		r.failf("queue did not drain: %v (%d left)", err, len(left))
	}
	drainTime := time.Since(start) - submitTime
	waitLedger(led, 10*time.Second)

	// Goroutines must come back to the baseline once clients are gone
	// (idle outbound connections close after a few seconds).
	var after procSample
	settle := time.Now().Add(loadSettleGoroutines)
	for {
		after, err = sample(in)
		if err == nil && after.goroutines <= base.goroutines+loadGoroutineSlack || time.Now().After(settle) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}

	t := led.tally()
	r.tally(t)
	r.notef("%d clients for %s: %d connections, %d messages acknowledged (%.0f/s), queue drained %s later",
		conns, dur, opened.Load(), t.accepted, float64(t.accepted)/submitTime.Seconds(), drainTime.Round(100*time.Millisecond))
	r.notef("RSS MB before/peak/after: %.1f / %.1f / %.1f (bound %d)", mb(base.rssKB), mb(peak.rssKB), mb(after.rssKB), loadMaxRSSMB)
	r.notef("goroutines before/peak/after: %d / %d / %d; OS threads %d / %d / %d",
		base.goroutines, peak.goroutines, after.goroutines, base.threads, peak.threads, after.threads)
	if mb(peak.rssKB) > loadMaxRSSMB {
		r.failf("peak RSS %.1f MB exceeds %d MB", mb(peak.rssKB), loadMaxRSSMB)
	}
	if after.goroutines > base.goroutines+loadGoroutineSlack {
		r.failf("goroutines did not return to the baseline within %s: %d before, %d after", loadSettleGoroutines, base.goroutines, after.goroutines)
	}
	if peak.goroutines < int64(conns/2) {
		r.failf("peak goroutines %d for %d clients: the load did not reach the server", peak.goroutines, conns)
	}
	if e := errs.String(); e != "" {
		r.failf("client errors (no limit should have been hit): %s", e)
	}
	if t.duplicated > 0 {
		r.failf("%d duplicate deliveries without any crash", t.duplicated)
	}
}

// loadClient submits messages until the deadline, 10 per connection.
func loadClient(in *inkan, led *ledger, k int, deadline time.Time, opened *atomic.Int64, errs *errorTally) {
	rng := rand.New(rand.NewPCG(uint64(k), 7))
	for time.Now().Before(deadline) {
		c, g, err := dial(in.relay, dialOpts{timeout: 10 * time.Second})
		if err != nil {
			errs.add(fmt.Sprintf("connect: %v %s", err, g))
			time.Sleep(100 * time.Millisecond)
			continue
		}
		opened.Add(1)
		if g.code != 220 {
			errs.add(fmt.Sprintf("greeting: %s", g))
			c.close()
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if _, rep, err := c.ehlo("load.test"); err != nil {
			errs.add(fmt.Sprintf("EHLO: %s %v", rep, err))
			c.close()
			continue
		}
		for i := 0; i < 10 && time.Now().Before(deadline); i++ {
			m, body := led.compose(fmt.Sprintf("c%d@load.test", k), []string{fmt.Sprintf("r%d@load.test", rng.IntN(100))}, 500+rng.IntN(8000), "")
			c.deadline(30 * time.Second)
			s := c.submit(m.from, m.to, body, nil)
			led.record(m, s)
			if s.out != outAcked {
				errs.add(fmt.Sprintf("%s at %s: %s", s.out, s.stage, s.reply))
				break
			}
		}
		c.cmd("QUIT")
		c.close()
	}
}

// procSample is one measurement of the server process.
type procSample struct {
	rssKB, threads, goroutines int64
}

func (a procSample) max(b procSample) procSample {
	return procSample{max(a.rssKB, b.rssKB), max(a.threads, b.threads), max(a.goroutines, b.goroutines)}
}

func sample(in *inkan) (procSample, error) {
	rss, threads, err := procStatus(in.pid())
	if err != nil {
		return procSample{}, err
	}
	g, err := in.metric("go_goroutines")
	if err != nil {
		return procSample{}, err
	}
	return procSample{rssKB: rss, threads: threads, goroutines: int64(g)}, nil
}

func mb(kb int64) float64 { return float64(kb) / 1024 }

// errorTally counts client-side errors by kind.
type errorTally struct {
	mu sync.Mutex
	m  map[string]int
}

func (e *errorTally) add(s string) {
	// Keep kinds few: drop port numbers and queue IDs.
	s = queuedRE.ReplaceAllString(s, "queued as ID")
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.m == nil {
		e.m = map[string]int{}
	}
	e.m[s]++
}

func (e *errorTally) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var parts []string
	for k, n := range e.m {
		parts = append(parts, fmt.Sprintf("%d x %s", n, k))
	}
	sort.Strings(parts)
	if len(parts) > 8 {
		parts = append(parts[:8], fmt.Sprintf("and %d more kinds", len(parts)-8))
	}
	return strings.Join(parts, "; ")
}
