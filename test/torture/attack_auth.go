package main

import (
	"fmt"
	"sync"
	"time"
)

// authGuesses is how many of alice's passwords the attacker tries.
const authGuesses = 12

// guess tries one wrong password for alice from ip on a fresh connection.
func (a *attack) guess(ip string, i int) reply {
	c, rep, err := a.login(ip, "alice", fmt.Sprintf("guess-%d-%s", i, randomToken(8)))
	if err != nil {
		return rep
	}
	c.close()
	return rep
}

// lockedOut: the answer to a login while locked out.
func lockedOut(rep reply) bool { return rep.code == 454 && rep.enhanced() == "4.7.0" }

// lockoutOwnAccount: the attacker owns mallory, and between guesses at
// alice's password logs in as mallory from the same address, hoping that
// its successes reset the failure count (they did when the count was per
// address). alice must be locked out at this address after max_failures
// guesses, with the right password too, and only there; mallory is not
// punished for logging in as itself.
func (a *attack) lockoutOwnAccount(r *result, led *ledger) {
	const ip, elsewhere = "127.0.0.30", "127.0.0.31"
	var checked, locked, own int
	var first454 int
	for i := range authGuesses {
		r.Attempts++
		rep := a.guess(ip, i)
		switch {
		case rep.code == 535:
			checked++
			if locked > 0 {
				r.failf("guess %d was checked (535) after guess %d was refused as locked out", i+1, first454)
			}
		case lockedOut(rep):
			if locked == 0 {
				first454 = i + 1
			}
			locked++
		default:
			r.failf("guess %d: %s, want 535 or 454 4.7.0", i+1, rep)
		}
		r.Attempts++
		c, orep, err := a.login(ip, "mallory", a.pass["mallory"])
		if err == nil {
			c.close()
		}
		if orep.code == 235 {
			own++
		} else {
			r.failf("round %d: the attacker's own login: %s %v, want 235", i+1, orep, err)
		}
	}
	if checked > attackMaxFailures {
		r.failf("%d of %d guesses at alice's password were checked (535), want at most auth.max_failures=%d", checked, authGuesses, attackMaxFailures)
	}
	if checked == 0 || locked == 0 {
		r.failf("%d guesses checked, %d refused as locked out: the lockout was not exercised", checked, locked)
	}
	r.Attempts++
	right := a.loginReply(ip, "alice")
	if !lockedOut(right) {
		r.failf("alice's right password from %s after the guesses: %s, want 454 4.7.0", ip, right)
	}
	r.notef("%d guesses at alice's password from %s, each followed by the attacker's own login (%d/%d got 235): %d checked (535), %d refused as locked out (454 4.7.0) from guess %d on; alice's right password there: %s",
		authGuesses, ip, own, authGuesses, checked, locked, first454, firstLine(right))
	// Locked out at that address only: alice elsewhere and mallory still send.
	a.sendAs(r, led, "alice", elsewhere, "alice from another address after the lockout")
	a.sendAs(r, led, "mallory", ip, "the attacker's own account from the locked address")
}

// loginReply logs in with the right password and returns the reply.
func (a *attack) loginReply(ip, user string) reply {
	c, rep, err := a.login(ip, user, a.pass[user])
	if err == nil {
		c.close()
	}
	return rep
}

// sendAs sends one message as user from ip, which must be accepted.
func (a *attack) sendAs(r *result, led *ledger, user, ip, what string) {
	from := attackUsers[user][0]
	snd := a.sender(user, ip)
	defer snd.close()
	m, msg := led.compose(from, []string{"friend@elsewhere.test"}, 500, "")
	if s := snd.send(led, m, from, msg); s.out != outAcked {
		r.failf("%s: %s (%v), want 250", what, s.reply, s.err)
	}
}

// parallelGuesses: 20 connections from one address guess alice's password
// at the same moment, before any failure is recorded. At most max_failures
// of them may be checked (535); the rest get 454 4.7.0.
func (a *attack) parallelGuesses(r *result, led *ledger) {
	const ip, elsewhere, n = "127.0.0.32", "127.0.0.33", 20
	var conns []*client
	for range n {
		c, _, err := openAs(a.smtps(), ip)
		if err != nil {
			r.failf("connection %d: %v", len(conns)+1, err)
			break
		}
		c.deadline(60 * time.Second)
		conns = append(conns, c)
	}
	replies := make([]reply, len(conns))
	var wg sync.WaitGroup
	gun := make(chan struct{})
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.close()
			<-gun
			replies[i], _ = c.cmd("AUTH PLAIN " + plainResp("alice", fmt.Sprintf("parallel-%d-%s", i, randomToken(8))))
		}()
	}
	start := time.Now()
	close(gun)
	wg.Wait()
	took := time.Since(start)
	var checked, locked int
	for i, rep := range replies {
		r.Attempts++
		switch {
		case rep.code == 535:
			checked++
		case lockedOut(rep):
			locked++
		default:
			r.failf("parallel guess %d: %s, want 535 or 454 4.7.0", i+1, rep)
		}
	}
	if checked > attackMaxFailures {
		r.failf("%d of %d parallel guesses were checked (535), want at most auth.max_failures=%d", checked, len(replies), attackMaxFailures)
	}
	r.Attempts++
	right := a.loginReply(ip, "alice")
	if !lockedOut(right) {
		r.failf("alice's right password from %s after the parallel guesses: %s, want 454 4.7.0", ip, right)
	}
	r.notef("%d guesses at once from %s: %d checked (535), %d refused (454 4.7.0), all answered in %s; alice's right password there: %s",
		len(replies), ip, checked, locked, took.Round(100*time.Millisecond), firstLine(right))
	a.sendAs(r, led, "alice", elsewhere, "alice from another address after the parallel guesses")
}
