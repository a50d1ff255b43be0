package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// result is one row of the report. Counters are messages (crash, load...)
// or probes (abuse); notes explain the figures, failures say what broke.
type result struct {
	Name       string
	Attempts   int // messages (or probes) tried
	Accepted   int // got 250 ... queued as ID
	Delivered  int // distinct messages that reached a sink
	Bounced    int // recipients that came back in a DSN
	Lost       int // accepted, yet neither delivered nor bounced
	Duplicated int // extra copies at a sink
	Crashes    int // inkan died unasked, panicked, or did not come back

	UnackDelivered int // no reply to the final dot, yet delivered (allowed)

	Skipped  string // non-empty: not run, and why
	Failures []string
	Notes    []string
	Elapsed  time.Duration

	start time.Time
	mu    sync.Mutex
}

func (r *result) failf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Failures = append(r.Failures, fmt.Sprintf(format, args...))
}

func (r *result) notef(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

func (r *result) crashed(format string, args ...any) {
	r.mu.Lock()
	r.Crashes++
	r.mu.Unlock()
	r.failf(format, args...)
}

// passed: not skipped, nothing lost, no crash, every expectation met.
func (r *result) passed() bool {
	return r.Skipped == "" && r.Lost == 0 && r.Crashes == 0 && len(r.Failures) == 0
}

func (r *result) status() string {
	switch {
	case r.Skipped != "":
		return "SKIP"
	case r.passed():
		return "PASS"
	}
	return "FAIL"
}

// tally adds what a ledger knows to r.
func (r *result) tally(t ledgerTally) {
	r.Attempts += t.attempts
	r.Accepted += t.accepted
	r.Delivered += t.delivered
	r.Bounced += t.bounced
	r.Lost += t.lost
	r.Duplicated += t.duplicated
	r.UnackDelivered += t.unackDelivered
	for _, f := range t.failures {
		r.failf("%s", f)
	}
}

// writeTable prints the rows, then the notes and failures of each, then the
// "N passed, N failed" line.
func writeTable(w io.Writer, rows []*result, elapsed time.Duration) {
	nameW := len("scenario")
	for _, r := range rows {
		nameW = max(nameW, len(r.Name))
	}
	head := fmt.Sprintf("%-*s %8s %8s %9s %7s %5s %10s %7s %7s %s", nameW, "scenario",
		"attempts", "accepted", "delivered", "bounced", "lost", "duplicated", "crashes", "time", "result")
	fmt.Fprintln(w, head)
	fmt.Fprintln(w, strings.Repeat("-", len(head)))
	var passed, failed, skipped int
	for _, r := range rows {
		if r.Skipped != "" {
			fmt.Fprintf(w, "%-*s %8s %8s %9s %7s %5s %10s %7s %7s SKIP\n", nameW, r.Name, "-", "-", "-", "-", "-", "-", "-", "-")
			skipped++
			continue
		}
		fmt.Fprintf(w, "%-*s %8d %8d %9d %7d %5d %10d %7d %7s %s\n", nameW, r.Name, r.Attempts, r.Accepted,
			r.Delivered, r.Bounced, r.Lost, r.Duplicated, r.Crashes, shortDur(r.Elapsed), r.status())
		if r.passed() {
			passed++
		} else {
			failed++
		}
	}
	fmt.Fprintln(w)
	for _, r := range rows {
		if r.Skipped != "" {
			fmt.Fprintf(w, "SKIP %s: %s\n", r.Name, r.Skipped)
			continue
		}
		if len(r.Notes) == 0 && len(r.Failures) == 0 && r.UnackDelivered == 0 {
			continue
		}
		fmt.Fprintf(w, "%s %s:\n", r.status(), r.Name)
		if r.UnackDelivered > 0 {
			fmt.Fprintf(w, "  note: %d unacknowledged but delivered (no reply to the final dot, committed before the kill; allowed)\n", r.UnackDelivered)
		}
		for _, n := range r.Notes {
			fmt.Fprintf(w, "  note: %s\n", n)
		}
		for _, f := range r.Failures {
			fmt.Fprintf(w, "  FAIL: %s\n", f)
		}
	}
	fmt.Fprintf(w, "\ntotal time %s\n", elapsed.Round(100*time.Millisecond))
	line := fmt.Sprintf("%d passed, %d failed", passed, failed)
	if skipped > 0 {
		line += fmt.Sprintf(", %d skipped", skipped)
	}
	fmt.Fprintln(w, line)
}

func shortDur(d time.Duration) string {
	if d < 10*time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}
