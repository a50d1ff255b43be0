package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

// The attacks of issue 11 against the built binary, one report row each.
// Each row checks the security property from outside (the reply codes, the
// queue, the copies at the sink and their DKIM signatures) and books every
// message in a ledger, so that a message the attacks made inkan lose or
// deliver twice fails the row like any other.
//
// One inkan serves every row. Its users:
//
//	alice    may send as alice@example.com only: the victim, and the author
//	         who tries to borrow other.example's seal
//	mallory  the attacker's own account (mallory@example.com)
//	bob      may send as @other.example: proves other.example's key signs
//	carol    sequential sending past quotas.user.messages_per_hour
//	dave     parallel sending past the same quota
//
// DKIM keys exist for example.com and other.example (Ed25519, selector
// ed1), so "alice's mail never carries d=other.example" is a property of
// inkan's policy, not of a missing key. A second inkan, started only by the
// mail-loop row, relays loop.test back to the first.
type attack struct {
	h    *harness
	in   *inkan
	loop *inkan // the far end of the mail loop; prepared at setup, run by attack/mail-loop
	sk   *sink
	pass map[string]string // user -> password
	txt  map[string]string // "ed1._domainkey.example.com" -> DKIM TXT record
}

// The settings the rows test; the rows' expectations are derived from them.
const (
	attackMaxFailures = 5 // auth.max_failures
	attackQuota       = 5 // quotas.user.messages_per_hour
	attackMaxHops     = 50
)

var attackUsers = map[string][]string{
	"alice":   {"alice@example.com"},
	"mallory": {"mallory@example.com"},
	"bob":     {"@other.example"},
	"carol":   {"carol@example.com"},
	"dave":    {"dave@example.com"},
}

// attackRow is one attack and its report row.
type attackRow struct {
	name string
	run  func(a *attack, r *result, led *ledger)
}

var attackRows = []attackRow{
	{"foreign-seal", (*attack).foreignSeal},
	{"lockout-own-account", (*attack).lockoutOwnAccount},
	{"parallel-guesses", (*attack).parallelGuesses},
	{"unverifiable-bytes", (*attack).unverifiableBytes},
	{"mail-loop", (*attack).mailLoop},
	{"quota", (*attack).quota},
	{"unqualified-relay", (*attack).unqualifiedRelay},
}

func runAttack(h *harness) {
	a := &attack{h: h, pass: map[string]string{}, txt: map[string]string{}}
	setup := h.row("attack/setup")
	ok := a.setup(setup)
	setup.end()
	if !ok {
		return
	}
	defer func() {
		a.in.stop(setup)
		a.loop.stop(setup)
		if setup.passed() {
			h.dropRow(setup) // only shown when something is wrong
		}
	}()
	for _, ar := range attackRows {
		name := "attack/" + ar.name
		if !h.wants(name) {
			continue
		}
		r := h.row(name)
		led := newLedger(fmt.Sprintf("attack-%s-%s", ar.name, randomToken(4)))
		a.sk.subscribe(func(m sunk) { book(led, m) })
		ar.run(a, r, led)
		a.settle(r, led, a.in)
		a.checkAlive(r, a.in, "the row")
		r.end()
	}
}

// book enters a copy that reached the sink: a DSN as the bounce of the
// message it returns, anything else (a null sender's message too) as a
// delivery. A DSN that does not parse books nothing, so the message it
// should have bounced shows as lost.
func book(led *ledger, m sunk) {
	if m.from == "" {
		if d, err := parseDSN(m.data); err == nil {
			led.bounced(d)
			return
		}
	}
	led.delivered(m.to, m.data)
}

// settle waits for the row's mail (wait), then adds the ledger to the row.
func (a *attack) settle(r *result, led *ledger, ins ...*inkan) {
	a.wait(r, led, ins...)
	t := led.tally()
	r.tally(t)
	if t.duplicated > 0 {
		r.failf("%d duplicate deliveries", t.duplicated)
	}
}

// wait waits until what the inkans accepted has left their queues and
// reached the sink.
func (a *attack) wait(r *result, led *ledger, ins ...*inkan) {
	for _, in := range ins {
		if !in.alive() {
			continue
		}
		if ids, err := in.waitQueueEmpty(30 * time.Second); err != nil {
			r.failf("%s: queue did not drain: %v (%s)", in.name, err, strings.Join(ids, " "))
		}
	}
	waitLedger(led, 10*time.Second)
}

func (a *attack) setup(r *result) bool {
	h := a.h
	var err error
	if a.sk, err = h.newSink("attack", nil, nil); err != nil {
		r.failf("%v", err)
		return false
	}
	// The far end of the mail loop: any sender from the loopback (a relay
	// in a chain), loop.test back to the first inkan, the rest to the sink.
	if a.loop, err = h.newInkan("attack-loop", func(cfg map[string]any) {
		routeAllTo(cfg, a.sk.addr)
		set(cfg, "auth.trusted_senders", []string{"*"})
	}); err != nil {
		r.failf("%v", err)
		return false
	}
	a.in, err = h.newInkan("attack", func(cfg map[string]any) {
		routeAllTo(cfg, a.sk.addr)
		set(cfg, "auth.senders", attackUsers)
		set(cfg, "auth.max_failures", attackMaxFailures)
		set(cfg, "auth.lockout", "10m") // no failure leaks away during a row
		set(cfg, "limits.max_hops", attackMaxHops)
		// Room for the 20 parallel guesses and the parallel quota burst
		// from one address; the connection flood has its own abuse row.
		set(cfg, "limits.max_connections_per_ip", 40)
		set(cfg, "quotas.user", map[string]any{"messages_per_hour": attackQuota})
		var over []any
		for _, u := range []string{"alice", "mallory", "bob"} {
			over = append(over, map[string]any{"user": u, "messages_per_hour": 1000})
		}
		set(cfg, "quotas.overrides", over)
	})
	if err != nil {
		r.failf("%v", err)
		return false
	}
	set(a.loop.cfg, "delivery.transport", map[string]any{"loop.test": "[127.0.0.1]:" + portOf(a.in.relay)})
	if err := a.loop.writeConfig(); err != nil {
		r.failf("%v", err)
		return false
	}
	var keys []any
	for _, d := range []string{"example.com", "other.example"} {
		path := filepath.Join(a.in.dir, d+".ed1.key")
		txt, err := writeEd25519Key(path)
		if err != nil {
			r.failf("DKIM key for %s: %v", d, err)
			return false
		}
		a.txt["ed1._domainkey."+d] = txt
		keys = append(keys, map[string]any{"domain": d, "selector": "ed1", "key_file": path})
	}
	set(a.in.cfg, "dkim.keys", keys)
	set(a.in.cfg, "delivery.transport", map[string]any{
		"loop.test": "[127.0.0.1]:" + portOf(a.loop.relay),
		"self.test": "[127.0.0.1]:" + portOf(a.in.relay), // a next hop that is this server
	})
	set(a.in.cfg, "auth.users_file", filepath.Join(a.in.dir, "users"))
	if err := a.in.writeConfig(); err != nil {
		r.failf("%v", err)
		return false
	}
	for u := range attackUsers {
		a.pass[u] = "Attack-" + u + "-" + randomToken(12)
		h.addSecret("password of "+u, a.pass[u])
		h.addSecret("AUTH PLAIN of "+u, plainResp(u, a.pass[u]))
		if out, code := a.in.cliInput(a.pass[u]+"\n", "user", "add", u); code != 0 {
			r.failf("inkan user add %s: exit %d: %s", u, code, out)
			return false
		}
	}
	if err := a.in.start(); err != nil {
		r.crashed("start: %v", err)
		return false
	}
	return true
}

// writeEd25519Key writes a new PKCS#8 key (mode 0600) and returns its TXT.
func writeEd25519Key(path string) (string, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return "", err
	}
	return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub), nil
}

// checkAlive: a dead server is a crash, and is restarted for the next rows.
func (a *attack) checkAlive(r *result, in *inkan, after string) {
	if in.alive() {
		return
	}
	r.crashed("%s (pid %d) died after %s", in.name, in.pid(), after)
	in.collect(r)
	if err := in.start(); err != nil {
		r.failf("restart after the crash: %v", err)
	}
}

// smtps is the implicit-TLS listener, where the rows log in.
func (a *attack) smtps() listener { return listener{"smtps", a.in.smtps, true, false} }

// login connects from ip over implicit TLS and authenticates as user with
// pass; the reply to AUTH is returned with the open connection.
func (a *attack) login(ip, user, pass string) (*client, reply, error) {
	c, _, err := openAs(a.smtps(), ip)
	if err != nil {
		return nil, reply{}, err
	}
	c.deadline(60 * time.Second)
	rep, err := c.cmd("AUTH PLAIN " + plainResp(user, pass))
	if err != nil {
		c.close()
		return nil, rep, fmt.Errorf("AUTH as %s from %s: %v", user, ip, err)
	}
	return c, rep, nil
}

// sender submits one message after another for a user from one address,
// on one session while the server keeps it, logging in again when not.
type sender struct {
	a        *attack
	user, ip string
	c        *client
}

func (a *attack) sender(user, ip string) *sender { return &sender{a: a, user: user, ip: ip} }

// send submits msg as m with MAIL FROM:<from> and books the outcome.
func (s *sender) send(led *ledger, m *msgRec, from, msg string) submission {
	if s.c == nil {
		c, rep, err := s.a.login(s.ip, s.user, s.a.pass[s.user])
		if err != nil || rep.code != 235 {
			sub := submission{out: outCut, reply: rep, err: errOr(err, rep)}
			led.record(m, sub)
			return sub
		}
		s.c = c
	}
	sub := s.c.submit(from, m.to, msg, nil)
	led.record(m, sub)
	if sub.out == outCut || sub.out == outUnsure || s.c.reset() != nil {
		s.close()
	}
	return sub
}

func (s *sender) close() {
	if s.c != nil {
		s.c.close()
		s.c = nil
	}
}

// verifyDKIM checks every DKIM-Signature of a delivered copy with the
// public keys of the row's inkan, as a receiver would. It returns the d= of
// each signature and the problems found.
func (a *attack) verifyDKIM(data []byte) (domains []string, problems []string) {
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(data), &dkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) {
			if t, ok := a.txt[strings.TrimSuffix(strings.ToLower(name), ".")]; ok {
				return []string{t}, nil
			}
			return nil, fmt.Errorf("no TXT record for %s", name)
		},
	})
	if err != nil {
		return nil, []string{fmt.Sprintf("DKIM verification: %v", err)}
	}
	for _, v := range vs {
		domains = append(domains, strings.ToLower(v.Domain))
		if v.Err != nil {
			problems = append(problems, fmt.Sprintf("signature d=%s does not verify: %v", v.Domain, v.Err))
		}
	}
	return domains, problems
}

// copies returns the row's delivered copies by sequence (a DSN has no
// X-Torture fields of its own: bounces are not among them).
func (a *attack) copies(led *ledger) map[int][]sunk {
	out := map[int][]sunk{}
	for _, m := range a.sk.messages() {
		if run, seq, ok := parseTorture(m.data); ok && run == led.run {
			out[seq] = append(out[seq], m)
		}
	}
	return out
}

// queueGrew fails the row when the queue holds anything: called after a
// batch of probes that must all be refused, once the queue was empty.
func (a *attack) queueGrew(r *result, in *inkan, what string) {
	ids, err := in.queueIDs()
	switch {
	case err != nil:
		r.failf("%v", err)
	case len(ids) > 0:
		r.failf("%s: %d messages queued (%s), want none", what, len(ids), strings.Join(ids, " "))
	}
}

// drain waits until the queue is empty before a batch that must leave it so.
func (a *attack) drain(r *result, in *inkan) {
	if _, err := in.waitQueueEmpty(30 * time.Second); err != nil {
		r.failf("queue did not drain before the probes: %v", err)
	}
}
