package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// sealProbe is a message by which alice (allowed: alice@example.com) tries
// to get other.example's DKIM seal, or at least to name another domain's
// sender. hdr replaces the From line; envFrom is MAIL FROM (alice's own
// address unless set; "<>" for the null sender).
type sealProbe struct {
	name    string
	hdr     string
	envFrom string
	// refuse: the message names bob@other.example as a sender in a way
	// every reader sees (RFC 5322 §3.6 allows one From and one Sender), so
	// a refusal is the only right answer; the other probes may also be
	// accepted, as long as nothing but example.com signs them.
	refuse bool
	// endsHeader: inkan reads hdr's first line as the start of the body
	// (it is not "Name:"), so the body that arrives is not the one sent.
	endsHeader bool
}

const otherAddr = "bob@other.example"

var sealProbes = []sealProbe{
	// Issue 10: the policy read one address, the signer another.
	{name: "unknown charset hides a quoted <addr>", hdr: `From: =?x-unknown?q?a?= "<bob@other.example>" <alice@example.com>`},
	{name: "encoded word spelling <addr>", hdr: `From: =?utf-8?q?=3Cbob=40other.example=3E?= <alice@example.com>`},
	{name: "encoded word, unknown charset, spelling <addr>", hdr: `From: =?x-foo?b?PGJvYkBvdGhlci5leGFtcGxlPg==?= <alice@example.com>`},
	{name: "encoded word as the whole address", hdr: `From: =?utf-8?q?bob=40other.example?=`},
	{name: "comment before", hdr: `From: (<bob@other.example>) alice@example.com`},
	{name: "comment after", hdr: `From: alice@example.com (<bob@other.example>)`},
	{name: "comment inside the angle", hdr: `From: Alice <(bob@other.example) alice@example.com>`},
	{name: "nested comment", hdr: `From: ((x) <bob@other.example>) <alice@example.com>`},
	{name: "quoted display name is the other address", hdr: `From: "bob@other.example" <alice@example.com>`},
	{name: "broken quote", hdr: `From: "<bob@other.example> <alice@example.com>`},
	{name: "unclosed angle", hdr: `From: <bob@other.example`},
	{name: "two angle addresses", hdr: `From: <alice@example.com> <bob@other.example>`},
	{name: "address list", hdr: `From: alice@example.com, bob@other.example`},
	{name: "group", hdr: `From: friends: bob@other.example, alice@example.com;`},
	{name: "empty group, then the other address", hdr: `From: undisclosed:;, bob@other.example`},
	{name: "folded display name", hdr: "From: \"x\r\n <bob@other.example>\" <alice@example.com>"},
	{name: "route-addr through the other domain", hdr: `From: <@other.example:bob@other.example>`},
	{name: "obsolete route to the allowed address", hdr: `From: <@other.example:alice@example.com>`},
	{name: "8-bit display name", hdr: "From: J\xfcrgen <bob@other.example> <alice@example.com>"},
	{name: "quoted local part holding an @", hdr: `From: "bob@other.example"@example.com`},
	{name: "domain literal", hdr: `From: alice@[127.0.0.1]`},
	{name: "same local part, other domain", hdr: `From: alice@other.example`, refuse: true},
	{name: "allowed domain as a prefix", hdr: `From: alice@example.com.other.example`, refuse: true},
	{name: "look-alike domain (Cyrillic a)", hdr: "From: alice@ex\u0430mple.com"},
	{name: "upper-case allowed address", hdr: `From: ALICE@EXAMPLE.COM`},
	{name: "field name in lower case", hdr: `from: bob@other.example`, refuse: true},
	{name: "white space before the colon", hdr: `From : bob@other.example`, endsHeader: true},
	{name: "tab then angle", hdr: "From:\t<bob@other.example>", refuse: true},
	// Two authors, and the other sender fields.
	{name: "two From fields", hdr: "From: alice@example.com\r\nFrom: bob@other.example", refuse: true},
	{name: "two From fields, other first", hdr: "From: bob@other.example\r\nFrom: alice@example.com", refuse: true},
	{name: "Sender of another domain", hdr: "From: alice@example.com\r\nSender: bob@other.example", refuse: true},
	{name: "two Sender fields", hdr: "From: alice@example.com\r\nSender: alice@example.com\r\nSender: bob@other.example", refuse: true},
	{name: "Resent-From of another domain", hdr: "From: alice@example.com\r\nResent-From: bob@other.example", refuse: true},
	{name: "Resent-Sender of another domain", hdr: "From: alice@example.com\r\nResent-Sender: bob@other.example", refuse: true},
	{name: "no From, Sender of another domain", hdr: "Sender: bob@other.example", refuse: true},
	{name: "no From, Resent-From of another domain", hdr: "Resent-From: bob@other.example", refuse: true},
	{name: "null sender, no From, Sender of another domain", hdr: "Sender: bob@other.example", envFrom: "<>", refuse: true},
	// The envelope.
	{name: "plain forged From", hdr: "From: bob@other.example", refuse: true},
	{name: "null sender with a forged From", hdr: "From: bob@other.example", envFrom: "<>", refuse: true},
	{name: "MAIL FROM of another domain", hdr: "From: bob@other.example", envFrom: otherAddr, refuse: true},
	{name: "MAIL FROM of another domain, own From", hdr: "From: alice@example.com", envFrom: otherAddr, refuse: true},
}

// sealMessage is a message from alice whose sender fields are p.hdr in
// place of the From that ledger.compose writes. They come last in the
// header section, after the X-Torture fields, so that the copy that arrives
// can be told even when they end the header early.
func sealMessage(led *ledger, alice string, to []string, p sealProbe) (*msgRec, string) {
	body := payload(0, 300)
	want := body
	if p.endsHeader {
		want = ""
	}
	m, msg := led.composeBody(alice, to, p.hdr+"\r\n", body, want)
	return m, strings.TrimPrefix(msg, "From: <"+alice+">\r\n")
}

// foreignSeal sends every probe as alice. A probe must be refused with a
// 5xx reply, or arrive with DKIM signatures that all verify and all have
// d=example.com. Two controls show that both keys sign what they should:
// alice's plain message (d=example.com) and bob's (d=other.example), so
// the absence of d=other.example on alice's mail means something.
func (a *attack) foreignSeal(r *result, led *ledger) {
	const alice = "alice@example.com"
	to := []string{"rcpt@elsewhere.test"}
	snd := a.sender("alice", "127.0.0.21")
	defer snd.close()
	verdict := map[int]string{} // seq -> probe name, of the accepted probes
	wrong := map[int]string{}   // the accepted probes that must have been refused
	var refused, accepted []string
	for _, p := range sealProbes {
		m, msg := sealMessage(led, alice, to, p)
		env := alice
		switch p.envFrom {
		case "<>":
			env = ""
		case "":
		default:
			env = p.envFrom
		}
		s := snd.send(led, m, env, msg)
		switch {
		case s.out == outAcked && p.refuse:
			wrong[m.seq] = p.name
			verdict[m.seq] = p.name
		case s.out == outAcked:
			accepted = append(accepted, p.name)
			verdict[m.seq] = p.name
		case s.out == outRefused && s.reply.class() == 5:
			refused = append(refused, fmt.Sprintf("%s at %s", s.reply.enhancedOr(), s.stage))
		default:
			r.failf("%q: no clear answer: %s at %s (%v), want 5xx or 250", p.name, s.reply, s.stage, s.err)
		}
		a.checkAlive(r, a.in, "probe "+p.name)
	}
	// The controls.
	ctl := map[int]string{}
	m, msg := led.compose(alice, to, 300, "")
	if s := snd.send(led, m, alice, msg); s.out != outAcked {
		r.failf("control: alice as herself: %s, want 250", s.reply)
	}
	ctl[m.seq] = "example.com"
	bob := a.sender("bob", "127.0.0.22")
	defer bob.close()
	m, msg = led.compose(otherAddr, to, 300, "")
	if s := bob.send(led, m, otherAddr, msg); s.out != outAcked {
		r.failf("control: bob as %s: %s, want 250", otherAddr, s.reply)
	}
	ctl[m.seq] = "other.example"

	a.wait(r, led, a.in)
	a.checkSeals(r, led, verdict, ctl)
	a.explainAccepted(r, led, wrong)
	r.notef("%d probes as alice: %d refused (%s), %d accepted and sealed by example.com only: %s; controls: alice's plain message verified d=example.com, bob's d=other.example",
		len(sealProbes), len(refused), countCodes(refused), len(accepted), strings.Join(accepted, "; "))
}

// checkSeals verifies the copies at the sink: the probes may carry only
// d=example.com, the controls must carry (at least) their own domain.
func (a *attack) checkSeals(r *result, led *ledger, probes, controls map[int]string) {
	got := a.copies(led)
	for _, seq := range slices.Sorted(maps.Keys(probes)) {
		name := probes[seq]
		for _, m := range got[seq] {
			domains, problems := a.verifyDKIM(m.data)
			for _, p := range problems {
				r.failf("%q: %s", name, p)
			}
			if len(domains) == 0 {
				r.notef("%q arrived unsigned", name)
			}
			for _, d := range domains {
				if d != "example.com" {
					r.failf("%q: delivered with a DKIM signature d=%s, which alice may not use; header:\n%s", name, d, indent(string(headerOf(m.data))))
				}
			}
		}
	}
	for seq, want := range controls {
		for _, m := range got[seq] {
			domains, problems := a.verifyDKIM(m.data)
			for _, p := range problems {
				r.failf("control for %s: %s", want, p)
			}
			if !slices.Contains(domains, want) {
				r.failf("control: the message that should be signed by %s has d=%v: the check above would prove nothing", want, domains)
			}
		}
	}
}

// explainAccepted fails the row for each probe that must have been
// refused, showing the sender fields and signatures it arrived with.
func (a *attack) explainAccepted(r *result, led *ledger, wrong map[int]string) {
	got := a.copies(led)
	for _, seq := range slices.Sorted(maps.Keys(wrong)) {
		name := wrong[seq]
		var seen []string
		for _, m := range got[seq] {
			h := mailsyntax.ParseHeader(headerOf(m.data))
			for _, f := range h {
				switch strings.ToLower(f.Name) {
				case "from", "sender", "resent-from", "resent-sender":
					seen = append(seen, f.Name+": "+f.Value)
				}
			}
			if domains, _ := a.verifyDKIM(m.data); len(domains) > 0 {
				seen = append(seen, "DKIM d="+strings.Join(domains, ","))
			} else {
				seen = append(seen, "no DKIM signature")
			}
		}
		r.failf("%q: accepted, want a 5xx refusal (it names %s as a sender); arrived with %s",
			name, otherAddr, strings.Join(seen, "; "))
	}
}

// countCodes summarises replies such as "5.7.1 at dot" by how often each
// occurs.
func countCodes(list []string) string {
	n := map[string]int{}
	var order []string
	for _, s := range list {
		if n[s] == 0 {
			order = append(order, s)
		}
		n[s]++
	}
	var out []string
	for _, s := range order {
		out = append(out, fmt.Sprintf("%d× %s", n[s], s))
	}
	return strings.Join(out, ", ")
}

// enhancedOr is the reply's code, enhanced code when it has one.
func (r reply) enhancedOr() string {
	if e := r.enhanced(); e != "" {
		return fmt.Sprintf("%d %s", r.code, e)
	}
	return fmt.Sprint(r.code)
}
