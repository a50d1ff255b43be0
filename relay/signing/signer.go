package signing

import (
	"bytes"
	"crypto"
	"encoding/base64"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/inkan-relay/inkan/relay/mailsyntax"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Clock, replaceable in tests: it stamps t= and x=.
var now = time.Now

// Reasons a message leaves unsigned; the values label inkan_dkim_unsigned_total.
const (
	UnsignedNoRule        = "no_rule"
	UnsignedNoFrom        = "no_from"
	UnsignedAlreadySigned = "already_signed"
	UnsignedDisabled      = "disabled"
	UnsignedError         = "error"
)

var (
	signaturesTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "inkan_dkim_signatures_total",
		Help: "DKIM signatures added, by signing domain and algorithm.",
	}, []string{"domain", "algorithm"})
	unsignedTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "inkan_dkim_unsigned_total",
		Help: "Messages that left without an inkan DKIM signature, by reason.",
	}, []string{"reason"})
)

// At most maxDomainLabels d= domains that the configuration does not name
// get their own domain label on inkan_dkim_signatures_total; the rest count
// as otherDomainLabel. Only "%" keys sign such domains, for whatever From
// domain arrives, and each label value is a series kept forever. "other"
// cannot be a configured d= domain: those have at least two labels.
const (
	maxDomainLabels  = 100
	otherDomainLabel = "other"
)

// dynamicLabels are the unconfigured domains given a label so far, shared
// by every Signer (a reload builds a new one; the series stay).
var dynamicLabels = struct {
	sync.Mutex
	seen map[string]bool
}{seen: map[string]bool{}}

// domainLabel is the domain label value for a signature with d=domain.
func (s *Signer) domainLabel(domain string) string {
	if s.configured[domain] {
		return domain
	}
	dynamicLabels.Lock()
	defer dynamicLabels.Unlock()
	switch {
	case dynamicLabels.seen[domain]:
	case len(dynamicLabels.seen) >= maxDomainLabels:
		return otherDomainLabel
	default:
		dynamicLabels.seen[domain] = true
	}
	return domain
}

func init() {
	for _, r := range []string{UnsignedNoRule, UnsignedNoFrom, UnsignedAlreadySigned, UnsignedDisabled, UnsignedError} {
		unsignedTotal.WithLabelValues(r) // export zeros so rate() works from the start
	}
}

// KeyInfo names one signature.
type KeyInfo struct {
	Domain    string // d=
	Selector  string // s=
	Algorithm string // a=
}

// Decision says what Begin decided for one message.
type Decision struct {
	Keys []KeyInfo
	// Reason is a human sentence: why these keys, or why none
	// ("no rule matches alice@other.org", "no From header").
	Reason string
	// Unsigned is "" when Keys is not empty, else one of the Unsigned* values.
	Unsigned string
	// Err is set when a rule applies but its key cannot be used (unreadable
	// key file): the message should be deferred (451), not sent unsigned.
	Err error
}

// String is the one-line form for logs.
func (d Decision) String() string {
	if len(d.Keys) == 0 {
		return "not signed: " + d.Reason
	}
	parts := make([]string, len(d.Keys))
	for i, k := range d.Keys {
		parts[i] = fmt.Sprintf("d=%s s=%s a=%s", k.Domain, k.Selector, k.Algorithm)
	}
	return "signed " + strings.Join(parts, ", ")
}

// Domain is one published key, for DNS tooling.
type Domain struct {
	Name         string // d=
	Selector     string
	Algorithm    string
	PublicKeyTXT string // the TXT value for Selector._domainkey.Name
	KeyFile      string // "" for keys inlined in a KeyTable
	PublicKey    crypto.PublicKey
}

// Signer holds the keys and rules. It is safe for concurrent use; build one
// with New at start (or reload) and share it.
type Signer struct {
	log        *slog.Logger
	native     []*nativeRule
	single     *singleRule
	table      *tableRules
	headerCan  dkim.Canonicalization
	bodyCan    dkim.Canonicalization
	plan       *headerPlan
	expiration time.Duration
	warnings   []string
	domains    []Domain
	configured map[string]bool // d= names of domains, for the metric label
}

// Enabled reports whether any key is configured.
func (s *Signer) Enabled() bool {
	return s != nil && (len(s.native) > 0 || s.single != nil || s.table != nil)
}

// Skip records a message that is not signed on purpose (a no_sign route, or
// signing switched off) and returns the matching Decision. s may be nil.
func (s *Signer) Skip(reason string) Decision {
	unsignedTotal.WithLabelValues(UnsignedDisabled).Inc()
	return Decision{Reason: reason, Unsigned: UnsignedDisabled}
}

// Message is what the signer knows about one message. Both parts come from
// the one parse of the header section that the sender policy also read, so
// the signer never derives the signing domain from raw text on its own.
type Message struct {
	// Header is the header section as it will leave, inkan's own additions
	// (Date, Message-ID) included: it decides h= and oversigning, and its
	// DKIM-Signature fields tell what was signed upstream.
	Header mailsyntax.Header
	// Author is the header From address the sender policy approved; the
	// zero Address means there is none and the message leaves unsigned.
	Author mailsyntax.Address
}

// MessageOf parses a header section and takes its first From mailbox as
// the author. It is for messages inkan writes itself (bounces) and for
// tools; the SMTP session builds its Message from the parse its policy
// check used. A header without a readable From gives a Message without an
// author, and the parse error.
func MessageOf(header []byte) (Message, error) {
	m := Message{Header: mailsyntax.ParseHeader(header)}
	a, err := m.Header.Authors()
	if err == nil {
		m.Author = a.From[0]
	}
	return m, err
}

// Begin decides how to sign m. The signing domain comes from m.Author, the
// header From, so DMARC aligns. Keys whose d= and s= already appear in a
// DKIM-Signature field are skipped (the message was signed upstream, e.g. by
// a Postfix+OpenDKIM still in the path). A nil Stream means: send unsigned,
// unless Decision.Err is set.
func (s *Signer) Begin(m Message) (*Stream, Decision) {
	if !s.Enabled() {
		return nil, s.Skip("DKIM signing is not configured")
	}
	if m.Author == (mailsyntax.Address{}) {
		unsignedTotal.WithLabelValues(UnsignedNoFrom).Inc()
		return nil, Decision{Reason: "no From header", Unsigned: UnsignedNoFrom}
	}
	addr := m.Author.String()
	cands, notes, err := s.choose(addr)
	if err != nil {
		unsignedTotal.WithLabelValues(UnsignedError).Inc()
		return nil, Decision{Reason: "signing key unusable: " + err.Error(), Unsigned: UnsignedError, Err: err}
	}
	if len(cands) == 0 {
		unsignedTotal.WithLabelValues(UnsignedNoRule).Inc()
		return nil, Decision{Reason: withNotes("no rule matches "+addr, notes), Unsigned: UnsignedNoRule}
	}
	existing := existingSignatures(m.Header)
	var use []candidate
	for _, c := range cands {
		if existing[strings.ToLower(c.domain+"/"+c.k.selector)] {
			notes = append(notes, fmt.Sprintf("d=%s s=%s already signed upstream", c.domain, c.k.selector))
			continue
		}
		use = append(use, c)
	}
	if len(use) == 0 {
		unsignedTotal.WithLabelValues(UnsignedAlreadySigned).Inc()
		return nil, Decision{Reason: withNotes("already signed", notes), Unsigned: UnsignedAlreadySigned}
	}
	st, err := s.newStream(use, s.plan.keys(m.Header))
	if err != nil {
		unsignedTotal.WithLabelValues(UnsignedError).Inc()
		return nil, Decision{Reason: "cannot start signing: " + err.Error(), Unsigned: UnsignedError, Err: err}
	}
	dec := Decision{Keys: st.keys}
	whys := make([]string, len(use))
	for i, c := range use {
		whys[i] = c.why
	}
	dec.Reason = withNotes(addr+": "+strings.Join(whys, "; "), notes)
	return st, dec
}

// Sign signs a whole message held in memory (msg is the header section and
// body m describes) and returns the DKIM-Signature fields to prepend, nil
// when it leaves unsigned; the error is Decision.Err or a signing failure.
func (s *Signer) Sign(m Message, msg []byte) ([]byte, Decision, error) {
	st, d := s.Begin(m)
	if st == nil {
		return nil, d, d.Err
	}
	defer st.Abort()
	st.Write(msg)
	sigs, err := st.Finish()
	if err == nil {
		st.Count() // the callers queue it at once
	}
	return sigs, d, err
}

func withNotes(s string, notes []string) string {
	if len(notes) == 0 {
		return s
	}
	return s + " (" + strings.Join(notes, "; ") + ")"
}

func (s *Signer) newStream(use []candidate, headerKeys []string) (*Stream, error) {
	st := &Stream{state: 2, label: s.domainLabel, headerCan: s.headerCan, bodyCan: s.bodyCan,
		headers: headerKeys, body: newBodyHasher(s.bodyCan == dkim.CanonicalizationRelaxed), t: now()}
	if s.expiration > 0 {
		st.x = st.t.Add(s.expiration)
	}
	if !slices.ContainsFunc(headerKeys, func(k string) bool { return strings.EqualFold(k, "From") }) {
		return nil, fmt.Errorf("the From header field must be signed")
	}
	for _, c := range use {
		if c.k.algo == "" {
			return nil, fmt.Errorf("d=%s s=%s: unsupported key type %T", c.domain, c.k.selector, c.k.signer.Public())
		}
		st.use = append(st.use, c)
		st.keys = append(st.keys, KeyInfo{Domain: c.domain, Selector: c.k.selector, Algorithm: c.k.algo})
	}
	return st, nil
}

// Stream hashes one message for one or more keys as it passes through, on
// the writer's goroutine: the header section is kept (it is small and the
// h= fields are picked from it at the end), the body is canonicalized and
// hashed once for every key. Write it the whole message (the header again,
// then the body), then call Finish, or Abort when the message is dropped; Count once the
// signed message is queued.
// A Stream is used by one goroutine.
type Stream struct {
	keys      []KeyInfo
	use       []candidate
	label     func(domain string) string // metric label for a d= domain
	headerCan dkim.Canonicalization
	bodyCan   dkim.Canonicalization
	headers   []string // the h= list
	t, x      time.Time
	head      []byte
	body      *bodyHasher
	state     int  // progress through "\r\n\r\n"; starts as if after a line end
	eoh       bool // the blank line ending the header has been seen
	done      bool
	signed    bool // Finish succeeded and Count has not run
}

// Write never fails: a signing problem is reported by Finish, so that it is
// never mistaken for a failure of the spool it is teed with.
func (st *Stream) Write(p []byte) (int, error) {
	n := len(p)
	if st.done {
		return n, nil
	}
	if !st.eoh {
		h := st.scan(p)
		st.head = append(st.head, p[:h]...)
		p = p[h:]
	}
	if len(p) > 0 {
		st.body.Write(p)
	}
	return n, nil
}

// scan tracks the end of the header (an empty line), tolerating bare LF,
// and returns how many bytes of p belong to the header section.
func (st *Stream) scan(p []byte) int {
	for i, c := range p {
		switch {
		case c == '\r':
			if st.state == 2 {
				st.state = 3
			} else {
				st.state = 1
			}
		case c == '\n':
			if st.state == 3 || st.state == 2 {
				st.eoh = true
				return i + 1
			}
			st.state = 2
		default:
			st.state = 0
		}
	}
	return len(p)
}

// Finish completes the signatures and returns the DKIM-Signature fields,
// CRLF-terminated, to prepend to the message.
func (st *Stream) Finish() ([]byte, error) {
	if st.done {
		return nil, fmt.Errorf("dkim: stream already finished")
	}
	st.done = true
	if !st.eoh {
		// Header only, no blank line: end it so the body is empty.
		end := "\r\n\r\n"
		if st.state == 2 {
			end = "\r\n"
		}
		st.head = append(st.head, end...)
	}
	fields := mailsyntax.SplitFields(st.head)
	if err := unsignable(st.head, fields); err != nil {
		unsignedTotal.WithLabelValues(UnsignedError).Inc()
		return nil, fmt.Errorf("dkim sign: %w", err)
	}
	bh := base64.StdEncoding.EncodeToString(st.body.Sum())
	st.body.release()
	st.body = nil // Write after Finish returns before it
	signed := canonHeaders(string(st.head), fields, st.headerCan == dkim.CanonicalizationRelaxed, st.headers)
	var out []byte
	for i, c := range st.use {
		f, err := signOne(signed, st.headerCan, st.bodyCan, c.k, sigParams{
			algo: c.k.algo, domain: c.domain, selector: c.k.selector, identity: c.identity,
			headers: st.headers, bodyHash: bh, t: st.t, x: st.x})
		if err != nil {
			unsignedTotal.WithLabelValues(UnsignedError).Inc()
			return nil, fmt.Errorf("dkim sign: d=%s s=%s: %w", st.keys[i].Domain, st.keys[i].Selector, err)
		}
		out = append(out, f...)
	}
	st.signed = true
	return out, nil
}

// Count adds the stream's signatures to inkan_dkim_signatures_total. The
// caller calls it once the message carrying them is on the queue: a message
// refused after Finish (the spool failed, 451) never left signed.
func (st *Stream) Count() {
	if !st.signed {
		return
	}
	st.signed = false
	for _, k := range st.keys {
		signaturesTotal.WithLabelValues(st.label(k.Domain), k.Algorithm).Inc()
	}
}

// unsignable says why a header section cannot be signed so that verifiers
// agree, or nil: every line must belong to a field as mailsyntax splits it
// (a verifier would read a skipped line such as "Subject : x" as a field
// and fail the signature), and lines end in CRLF, no CR or LF alone. The SMTP session never
// passes such a header; this guards Sign's other callers.
func unsignable(head []byte, fields []mailsyntax.RawField) error {
	end := 0
	for _, f := range fields {
		if f.Start != end {
			return fmt.Errorf("header line %q is not a field", firstLine(head[end:]))
		}
		end = f.End
	}
	if string(head[end:]) != "\r\n" {
		return fmt.Errorf("header line %q is not a field", firstLine(head[end:]))
	}
	for i, c := range head {
		if c == '\r' && (i+1 == len(head) || head[i+1] != '\n') || c == '\n' && (i == 0 || head[i-1] != '\r') {
			return fmt.Errorf("bare CR or LF in the header")
		}
	}
	return nil
}

func firstLine(b []byte) string {
	l, _, _ := bytes.Cut(b, []byte{'\n'})
	return string(bytes.TrimRight(l[:min(len(l), 80)], "\r"))
}

// Abort drops the stream without producing signatures.
func (st *Stream) Abort() {
	if st != nil {
		st.done = true
	}
}

// Keys lists the signatures this stream will produce.
func (st *Stream) Keys() []KeyInfo { return st.keys }

// Explain says, in lines for people, which keys would sign mail whose header
// From is from (an address or a full From value) and why, or why none would.
func (s *Signer) Explain(from string) []string {
	if !s.Enabled() {
		return []string{"DKIM signing is not configured: no dkim.keys, key_table or opendkim_conf"}
	}
	var addr string
	if list, err := mailsyntax.ParseMailboxList(from); err == nil {
		addr = list[0].String()
	} else if !strings.Contains(from, "@") && from != "" {
		addr = "postmaster@" + from
	} else {
		return []string{fmt.Sprintf("%q is not an address: %v", from, err)}
	}
	cands, notes, err := s.choose(addr)
	var out []string
	if err != nil {
		out = append(out, "ERROR "+err.Error()+": mail from "+addr+" would be deferred (451) until this is fixed")
	}
	for _, c := range cands {
		line := fmt.Sprintf("sign d=%s s=%s (%s) for %s: %s", c.domain, c.k.selector, c.k.algo, addr, c.why)
		if c.identity != "" {
			line += ", i=" + c.identity
		}
		if d := mailsyntax.DomainOf(addr); d != strings.ToLower(c.domain) && !strings.HasSuffix(d, "."+strings.ToLower(c.domain)) {
			line += fmt.Sprintf(" (warning: d=%s does not align with From domain %s for DMARC)", c.domain, d)
		}
		out = append(out, line)
	}
	for _, n := range notes {
		out = append(out, "note: "+n)
	}
	if len(cands) == 0 && err == nil {
		out = append(out, "no rule matches "+addr+": mail from it leaves unsigned")
		out = append(out, s.coverage()...)
	}
	return out
}

// coverage describes what the rules do sign, for "no rule matches" answers.
func (s *Signer) coverage() []string {
	var out []string
	for i, r := range s.native {
		pats := make([]string, len(r.patterns))
		for j, p := range r.patterns {
			pats[j] = p.raw
		}
		sub := ""
		if r.subdomains {
			sub = " and subdomains"
		}
		out = append(out, fmt.Sprintf("dkim.keys[%d] (d=%s s=%s) signs %s%s", i, r.k.domain, r.k.selector, strings.Join(pats, ", "), sub))
	}
	if r := s.single; r != nil {
		out = append(out, fmt.Sprintf("%s signs %s", r.origin, strings.Join(r.domains, ", ")))
	}
	if t := s.table; t != nil {
		kind := "exact lookups (user@host, host, .parent domains, user@*, *)"
		if t.st.Regex {
			kind = "patterns tried in file order"
		}
		out = append(out, fmt.Sprintf("SigningTable %s: %d lines, %s; none matched", t.st.File, len(t.st.Rules), kind))
	}
	return out
}

// Warnings lists configuration problems found by New that do not stop
// signing: unused keys, keys that sign for domains they do not align with,
// group-readable key files, OpenDKIM settings inkan ignores. (A SigningTable
// line naming a key the KeyTable lacks is an error from New.)
func (s *Signer) Warnings() []string {
	if s == nil {
		return nil
	}
	return append([]string(nil), s.warnings...)
}

// CheckDomains returns a warning for each domain (e.g. from the sender
// policy) whose mail no rule signs.
func (s *Signer) CheckDomains(domains []string) []string {
	var out []string
	for _, d := range domains {
		d = strings.ToLower(strings.TrimPrefix(strings.TrimSpace(d), "@"))
		if d == "" {
			continue
		}
		if cands, _, _ := s.chooseSafe("postmaster@" + d); len(cands) == 0 {
			out = append(out, fmt.Sprintf("no DKIM key signs mail from %s: create one with inkan dkim keygen -d %s -s SELECTOR and add it to dkim.keys", d, d))
		}
	}
	return out
}

func (s *Signer) chooseSafe(addr string) ([]candidate, []string, error) {
	if !s.Enabled() {
		return nil, nil, nil
	}
	return s.choose(addr)
}

// Domains lists the published keys (d=, s=) with their TXT records, sorted.
func (s *Signer) Domains() []Domain {
	if s == nil {
		return nil
	}
	return append([]Domain(nil), s.domains...)
}

// SigningDomains lists the d= domains the configured keys sign for, with
// subdomains where a rule signs them too (as "@.domain" sender patterns:
// "@example.com", "@.example.com"). complete is false when a KeyTable "%"
// entry signs whatever domain a From names, so no list can say it.
func (s *Signer) SigningDomains() (patterns []string, complete bool) {
	if !s.Enabled() {
		return nil, true
	}
	seen := map[string]bool{}
	add := func(d string, sub bool) {
		d = strings.ToLower(d)
		if !seen["@"+d] {
			seen["@"+d] = true
			patterns = append(patterns, "@"+d)
		}
		if sub && !seen["@."+d] {
			seen["@."+d] = true
			patterns = append(patterns, "@."+d)
		}
	}
	for _, r := range s.native {
		sub := r.subdomains
		for _, p := range r.patterns {
			switch {
			case p.re != nil:
				sub = true // "*@lists.example.org" and the like
			case p.domain != "":
				add(p.domain, r.subdomains)
			case p.exact != "":
				add(mailsyntax.DomainOf(p.exact), false)
			}
		}
		add(r.k.domain, sub)
	}
	if r := s.single; r != nil {
		for _, d := range r.domains {
			add(d, r.subdomains)
		}
	}
	if t := s.table; t != nil {
		for _, e := range t.entries {
			if e.Domain == "%" {
				return nil, false
			}
			add(e.Domain, true) // SigningTable patterns may name subdomains
		}
	}
	return patterns, true
}
