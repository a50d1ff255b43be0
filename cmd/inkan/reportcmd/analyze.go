package reportcmd

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"golang.org/x/net/publicsuffix"

	"github.com/inkan-relay/inkan/relay/signing"
)

// Classes of a report row: who sent the mail, as far as the report tells.
const (
	classInkan      = "inkan"           // signed with one of this config's keys, or sent from one of -ip
	classOther      = "other-service"   // not inkan, and passes DMARC: another service sends as the domain
	classUnaligned  = "not-aligned"     // authenticated, but as another domain: a service set up halfway
	classUnauthentd = "unauthenticated" // nothing passed: a spoofer, or a forgotten sender
)

// self is what inkan knows about itself: its keys and, with -ip, its addresses.
type self struct {
	keys    map[string]bool // "domain/selector", lower case
	domains map[string]bool // signing domains
	ips     map[netip.Addr]bool
	labels  []string // "example.com/rsa1", for headings
}

func newSelf(keys []signing.Domain, ips []netip.Addr) *self {
	s := &self{keys: map[string]bool{}, domains: map[string]bool{}, ips: map[netip.Addr]bool{}}
	for _, k := range keys {
		id := strings.ToLower(k.Name) + "/" + strings.ToLower(k.Selector)
		if !s.keys[id] {
			s.labels = append(s.labels, id)
		}
		s.keys[id] = true
		s.domains[strings.ToLower(k.Name)] = true
	}
	for _, a := range ips {
		s.ips[a.Unmap()] = true
	}
	return s
}

// dmarcReport is one aggregate report as printed and as -json gives it.
type dmarcReport struct {
	Input      string    `json:"input"`
	Org        string    `json:"org_name"`
	Email      string    `json:"email,omitempty"`
	ReportID   string    `json:"report_id"`
	Begin      time.Time `json:"begin"`
	End        time.Time `json:"end"`
	Domain     string    `json:"domain"`
	Policy     policy    `json:"policy_published"`
	Messages   int64     `json:"messages"`
	DMARCPass  int64     `json:"dmarc_pass"`
	Rows       []row     `json:"records"`
	Errors     []string  `json:"reporter_errors,omitempty"`
	Duplicates []string  `json:"duplicates,omitempty"` // other inputs holding the same report
}

type policy struct {
	P     string `json:"p"`
	SP    string `json:"sp,omitempty"`
	ADKIM string `json:"adkim"`
	ASPF  string `json:"aspf"`
	Pct   string `json:"pct"`
	FO    string `json:"fo,omitempty"`
}

func (p policy) String() string {
	s := "p=" + p.P
	if p.SP != "" {
		s += " sp=" + p.SP
	}
	return s + " adkim=" + p.ADKIM + " aspf=" + p.ASPF + " pct=" + p.Pct
}

type row struct {
	SourceIP     string       `json:"source_ip"`
	ReverseDNS   []string     `json:"reverse_dns,omitempty"`
	Count        int64        `json:"count"`
	Disposition  string       `json:"disposition"`
	Reasons      []reason     `json:"reasons,omitempty"` // the receiver's overrides of the policy
	DMARC        string       `json:"dmarc"`             // pass or fail
	DKIMAligned  bool         `json:"dkim_aligned_pass"` // policy_evaluated dkim
	SPFAligned   bool         `json:"spf_aligned_pass"`  // policy_evaluated spf
	HeaderFrom   string       `json:"header_from"`
	EnvelopeFrom string       `json:"envelope_from,omitempty"`
	EnvelopeTo   string       `json:"envelope_to,omitempty"`
	DKIM         []dkimResult `json:"dkim"`
	SPF          []spfResult  `json:"spf"`
	Class        string       `json:"class"`
	ThisHost     bool         `json:"from_this_host,omitempty"` // source_ip is one of -ip
}

type reason struct {
	Type    string `json:"type"`
	Comment string `json:"comment,omitempty"`
}

type dkimResult struct {
	Domain   string `json:"domain"`
	Selector string `json:"selector,omitempty"`
	Result   string `json:"result"`
	Aligned  bool   `json:"aligned"`
	Inkan    bool   `json:"inkan"` // one of this config's keys
}

type spfResult struct {
	Domain  string `json:"domain"`
	Scope   string `json:"scope,omitempty"`
	Result  string `json:"result"`
	Aligned bool   `json:"aligned"`
}

// view turns a parsed report into what is printed.
func (s *self) view(input string, f *feedback) dmarcReport {
	m, p := f.Metadata, f.Policy
	rep := dmarcReport{
		Input: input, Org: m.OrgName, Email: m.Email, ReportID: m.ReportID,
		Begin: time.Unix(m.DateRange.Begin, 0).UTC(), End: time.Unix(m.DateRange.End, 0).UTC(),
		Domain: p.Domain, Errors: m.Errors, Rows: []row{},
		Policy: policy{P: p.P, SP: p.SP, ADKIM: p.ADKIM, ASPF: p.ASPF, Pct: p.Pct, FO: p.FO},
	}
	for _, r := range f.Records {
		rw := s.row(p.Domain, p.ADKIM, p.ASPF, r)
		rep.Messages += rw.Count
		if rw.DMARC == "pass" {
			rep.DMARCPass += rw.Count
		}
		rep.Rows = append(rep.Rows, rw)
	}
	sort.SliceStable(rep.Rows, func(i, j int) bool { return rep.Rows[i].Count > rep.Rows[j].Count })
	return rep
}

func (s *self) row(domain, adkim, aspf string, r xmlRecord) row {
	pe := r.Row.Policy
	rw := row{
		SourceIP: r.Row.SourceIP, Count: r.Row.Count, Disposition: pe.Disposition,
		DKIMAligned: pe.DKIM == "pass", SPFAligned: pe.SPF == "pass", DMARC: "fail",
		HeaderFrom: r.Identifiers.HeaderFrom, EnvelopeFrom: r.Identifiers.EnvelopeFrom, EnvelopeTo: r.Identifiers.EnvelopeTo,
	}
	if rw.HeaderFrom == "" {
		rw.HeaderFrom = domain
	}
	if rw.DKIMAligned || rw.SPFAligned {
		rw.DMARC = "pass"
	}
	for _, rs := range pe.Reasons {
		rw.Reasons = append(rw.Reasons, reason{Type: rs.Type, Comment: rs.Comment})
	}
	ip, _ := netip.ParseAddr(rw.SourceIP)
	rw.ThisHost = s.ips[ip]
	signed, authenticated := false, false
	for _, d := range r.Auth.DKIM {
		res := dkimResult{Domain: d.Domain, Selector: d.Selector, Result: d.Result,
			Aligned: aligned(d.Domain, rw.HeaderFrom, adkim)}
		res.Inkan = s.keys[d.Domain+"/"+d.Selector] || (d.Selector == "" && s.domains[d.Domain] && rw.ThisHost)
		signed = signed || res.Inkan
		authenticated = authenticated || d.Result == "pass"
		rw.DKIM = append(rw.DKIM, res)
	}
	for _, sp := range r.Auth.SPF {
		rw.SPF = append(rw.SPF, spfResult{Domain: sp.Domain, Scope: sp.Scope, Result: sp.Result,
			Aligned: aligned(sp.Domain, rw.HeaderFrom, aspf)})
		authenticated = authenticated || sp.Result == "pass"
	}
	switch {
	case signed || rw.ThisHost:
		rw.Class = classInkan
	case rw.DMARC == "pass":
		rw.Class = classOther
	case authenticated:
		rw.Class = classUnaligned
	default:
		rw.Class = classUnauthentd
	}
	return rw
}

// aligned applies DMARC identifier alignment (RFC 7489 §3.1): strict means
// the same name, relaxed the same organizational domain (public suffix + 1).
func aligned(auth, from, mode string) bool {
	if auth == "" || from == "" {
		return false
	}
	if auth == from {
		return true
	}
	return mode != "s" && orgDomain(auth) == orgDomain(from)
}

func orgDomain(d string) string {
	od, err := publicsuffix.EffectiveTLDPlusOne(d)
	if err != nil {
		return d
	}
	return od
}

// conclusion is one plain-language finding over all the reports of a domain.
type conclusion struct {
	Domain   string `json:"domain"`
	Level    string `json:"level"` // "action", "info" or "ok"
	Text     string `json:"text"`
	SourceIP string `json:"source_ip,omitempty"`
	Messages int64  `json:"messages,omitempty"`
}

// Levels of a conclusion, most urgent first.
const (
	levelAction = "action"
	levelInfo   = "info"
	levelOK     = "ok"
)

// Thresholds for the policy advice.
const (
	readyShare   = 0.98 // DMARC pass share that makes a domain ready for the next policy
	rejectShare  = 0.99
	minDays      = 14 // days of reports before moving from p=none
	minRejectDay = 30 // days of reports at p=quarantine before p=reject
	maxSources   = 10 // sources named one by one per kind; the rest are summed
)

// source sums the rows of one source address over a domain's reports.
type source struct {
	ip        string
	rdns      []string
	count     int64
	reporters map[string]bool
	identity  map[string]bool // what it authenticated as: "DKIM d=x", "SPF x"
}

// conclude looks at all the reports of every domain and says what they mean.
func (s *self) conclude(reports []dmarcReport) []conclusion {
	byDomain := map[string][]dmarcReport{}
	var domains []string
	for _, r := range reports {
		if _, ok := byDomain[r.Domain]; !ok {
			domains = append(domains, r.Domain)
		}
		byDomain[r.Domain] = append(byDomain[r.Domain], r)
	}
	sort.Strings(domains)
	var out []conclusion
	for _, d := range domains {
		out = append(out, s.concludeDomain(d, byDomain[d])...)
	}
	rank := map[string]int{levelAction: 0, levelInfo: 1, levelOK: 2}
	sort.SliceStable(out, func(i, j int) bool {
		if rank[out[i].Level] != rank[out[j].Level] {
			return rank[out[i].Level] < rank[out[j].Level]
		}
		return out[i].Domain < out[j].Domain
	})
	return out
}

// tally sums the rows of one domain's reports by what they say.
type tally struct {
	unauth, unaligned, unsignedHere map[string]*source // by source address
	others                          map[string]*source // by identity; their "identity" set holds the addresses
	keyUses                         map[string]*keyUse // by inkan key "domain/selector"
	keyOrder                        []string
	misaligned                      map[string]int64 // "from|d=" -> messages inkan signed that do not align
	reasons                         map[string]int64 // override type -> messages
	total, pass, unauthTotal        int64
	begin, end                      time.Time
	latest                          dmarcReport
	orgs                            map[string]bool
}

type keyUse struct{ pass, fail int64 }

func newTally(reps []dmarcReport) *tally {
	t := &tally{
		unauth: map[string]*source{}, unaligned: map[string]*source{}, unsignedHere: map[string]*source{},
		others: map[string]*source{}, keyUses: map[string]*keyUse{}, misaligned: map[string]int64{},
		reasons: map[string]int64{}, orgs: map[string]bool{},
		begin: reps[0].Begin, end: reps[0].End, latest: reps[0],
	}
	for _, rep := range reps {
		t.orgs[rep.Org] = true
		if rep.Begin.Before(t.begin) {
			t.begin = rep.Begin
		}
		if rep.End.After(t.end) {
			t.end = rep.End
		}
		if rep.End.After(t.latest.End) {
			t.latest = rep
		}
		for _, rw := range rep.Rows {
			t.row(rep.Org, rw)
		}
	}
	return t
}

func (t *tally) row(org string, rw row) {
	t.total += rw.Count
	if rw.DMARC == "pass" {
		t.pass += rw.Count
	}
	for _, rs := range rw.Reasons {
		t.reasons[rs.Type] += rw.Count
	}
	switch rw.Class {
	case classUnauthentd:
		t.unauthTotal += rw.Count
		addSource(t.unauth, rw.SourceIP, rw, org, "")
	case classUnaligned:
		for _, id := range identities(rw, false) {
			addSource(t.unaligned, rw.SourceIP, rw, org, id)
		}
	case classOther:
		for _, id := range identities(rw, true) {
			addSource(t.others, id, rw, org, rw.SourceIP)
		}
	case classInkan:
		t.inkanRow(org, rw)
	}
}

func (t *tally) inkanRow(org string, rw row) {
	signed := false
	for _, d := range rw.DKIM {
		if !d.Inkan {
			continue
		}
		signed = true
		id := d.Domain + "/" + d.Selector
		ku := t.keyUses[id]
		if ku == nil {
			ku = &keyUse{}
			t.keyUses[id] = ku
			t.keyOrder = append(t.keyOrder, id)
		}
		if d.Result != "pass" {
			ku.fail += rw.Count
			continue
		}
		ku.pass += rw.Count
		if !d.Aligned {
			t.misaligned[rw.HeaderFrom+"|"+d.Domain] += rw.Count
		}
	}
	if !signed && rw.ThisHost {
		addSource(t.unsignedHere, rw.SourceIP, rw, org, "")
	}
}

func (s *self) concludeDomain(domain string, reps []dmarcReport) []conclusion {
	t := newTally(reps)
	var out []conclusion
	add := func(level, text, ip string, n int64) {
		out = append(out, conclusion{Domain: domain, Level: level, Text: text, SourceIP: ip, Messages: n})
	}
	t.sourceConclusions(domain, add)
	t.keyConclusions(domain, add)
	if len(s.domains) > 0 && !s.signsFor(domain) {
		add(levelInfo, fmt.Sprintf("this configuration has no DKIM key for %s: its mail in these reports was sent by others", domain), "", 0)
	}
	for _, src := range sortSources(t.others) {
		add(levelInfo, fmt.Sprintf("%s from %s passed DMARC through %s, not through inkan: another service sends as %s; fine if it is yours", msgs(src.count), plural(len(src.identity), "address", "addresses"), src.ip, domain), "", src.count)
	}
	if len(t.reasons) > 0 {
		var parts []string
		var n int64
		for _, k := range sortedKeys(t.reasons) {
			parts = append(parts, fmt.Sprintf("%s %d", k, t.reasons[k]))
			n += t.reasons[k]
		}
		add(levelInfo, fmt.Sprintf("receivers overrode the published policy for %s (%s): local decisions, nothing to publish", msgs(n), strings.Join(parts, ", ")), "", n)
	}
	return append(out, policyAdvice(domain, t.latest.Policy, t.begin, t.end, t.total, t.pass, t.unauthTotal, len(t.orgs))...)
}

type addFunc func(level, text, ip string, n int64)

// sourceConclusions names the sources outside inkan that fail DMARC, the
// largest first, and this host's mail that inkan did not sign.
func (t *tally) sourceConclusions(domain string, add addFunc) {
	for i, src := range sortSources(t.unauth) {
		if i == maxSources {
			n, c := restOf(sortSources(t.unauth)[i:])
			add(levelAction, fmt.Sprintf("%d more unauthenticated sources sent %d messages (see the tables)", n, c), "", c)
			break
		}
		spfTerm := "ip4:"
		if strings.Contains(src.ip, ":") {
			spfTerm = "ip6:"
		}
		add(levelAction, fmt.Sprintf("%s from %s failed SPF and DKIM (reported by %s): if it is yours, add %s%s to the SPF record of %s or route it through inkan; if not, it is spoofing %s, which p=quarantine or p=reject stops",
			msgs(src.count), src.label(), joinSet(src.reporters), spfTerm, src.ip, domain, domain), src.ip, src.count)
	}
	for i, src := range sortSources(t.unaligned) {
		if i == maxSources {
			n, c := restOf(sortSources(t.unaligned)[i:])
			add(levelAction, fmt.Sprintf("%d more sources sent %d messages authenticated as other domains (see the tables)", n, c), "", c)
			break
		}
		add(levelAction, fmt.Sprintf("%s from %s authenticated as %s, not as %s: a service sending as %s under its own name (a forgotten one?): have it sign with d=%s (its custom-domain DKIM setting) or route it through inkan",
			msgs(src.count), src.label(), joinSet(src.identity), domain, domain, domain), src.ip, src.count)
	}
	for _, src := range sortSources(t.unsignedHere) {
		add(levelAction, fmt.Sprintf("%s from this host (%s) carried no inkan DKIM signature: `inkan dkim explain ADDRESS` says why mail from an address is not signed", msgs(src.count), src.label()), src.ip, src.count)
	}
}

// keyConclusions says how inkan's keys fared.
func (t *tally) keyConclusions(domain string, add addFunc) {
	for _, id := range t.keyOrder {
		ku := t.keyUses[id]
		sel := id[strings.IndexByte(id, '/')+1:]
		switch {
		case ku.pass == 0:
			add(levelAction, fmt.Sprintf("no message signed with inkan's key %s passed DKIM (%d failed): the published key is missing or differs from the private key: run inkan dns check -d %s", id, ku.fail, domain), "", ku.fail)
		case ku.fail > 0:
			add(levelInfo, fmt.Sprintf("key %s: %d of %d messages signed by inkan passed DKIM; the %d that failed were most likely changed on the way (forwarders, mailing lists): nothing to fix in inkan", id, ku.pass, ku.pass+ku.fail, ku.fail), "", ku.fail)
		default:
			add(levelOK, fmt.Sprintf("key %s (selector %s): all %d messages signed by inkan passed DKIM", id, sel, ku.pass), "", ku.pass)
		}
	}
	for _, k := range sortedKeys(t.misaligned) {
		n := t.misaligned[k]
		from, d, _ := strings.Cut(k, "|")
		add(levelAction, fmt.Sprintf("%s From %s were signed by inkan as d=%s, which does not align with %s: add a key for %s (inkan dkim keygen -d %s -s SELECTOR) and publish it", msgs(n), from, d, from, from, from), "", n)
	}
}

func (s *self) signsFor(domain string) bool {
	for d := range s.domains {
		if d == domain || strings.HasSuffix(domain, "."+d) {
			return true
		}
	}
	return false
}

// policyAdvice says whether the domain may move to a stricter policy.
func policyAdvice(domain string, p policy, begin, end time.Time, total, pass, unauth int64, reporters int) []conclusion {
	if total == 0 {
		return []conclusion{{Domain: domain, Level: levelInfo, Text: "the reports count no messages"}}
	}
	days := int((end.Sub(begin) + 12*time.Hour) / (24 * time.Hour))
	if days < 1 {
		days = 1
	}
	share := float64(pass) / float64(total)
	legit := float64(pass) / float64(max(total-unauth, 1))
	span := fmt.Sprintf("%s of reports from %s: %s of %s passed DMARC under %s", plural(days, "day", "days"), plural(reporters, "reporter", "reporters"), percent(share), msgs(total), p)
	c := conclusion{Domain: domain, Messages: total}
	next := map[string]string{"none": "quarantine", "quarantine": "reject"}[p.P]
	minD, need := minDays, readyShare
	if p.P == "quarantine" {
		minD, need = minRejectDay, rejectShare
	}
	change := fmt.Sprintf("change p=%s to p=%s in the TXT record at _dmarc.%s", p.P, next, domain)
	switch {
	case p.P == "reject":
		c.Level, c.Text = levelOK, span+": receivers refuse mail that fails DMARC"
	case p.Pct != "100":
		c.Level, c.Text = levelAction, span+fmt.Sprintf(": pct=%s applies the policy to only part of the failing mail; raise it to 100 (or remove pct=) once the sources above are fixed", p.Pct)
	case share >= need && days >= minD:
		c.Level, c.Text = levelOK, span+": ready for p="+next+": "+change
	case share >= need:
		c.Level, c.Text = levelInfo, span+fmt.Sprintf(": collect %d days or more of reports before p=%s", minD, next)
	case unauth > 0 && legit >= need && days >= minD:
		c.Level, c.Text = levelAction, span+fmt.Sprintf(": the failures are unauthenticated sources; once you have confirmed that they are not yours (then they are spoofers, which the policy is for), %s", change)
	default:
		c.Level, c.Text = levelAction, span+fmt.Sprintf(": fix the failing sources above, or confirm that they are not yours, before p=%s", next)
	}
	return []conclusion{c}
}

func addSource(m map[string]*source, key string, rw row, org, ident string) {
	src := m[key]
	if src == nil {
		src = &source{ip: key, reporters: map[string]bool{}, identity: map[string]bool{}}
		m[key] = src
	}
	if src.ip == rw.SourceIP && len(src.rdns) == 0 {
		src.rdns = rw.ReverseDNS
	}
	src.count += rw.Count
	src.reporters[org] = true
	if ident != "" {
		src.identity[ident] = true
	}
}

// identities are what a row authenticated as: passing DKIM signatures and
// SPF, aligned ones when wantAligned (for sources that pass DMARC), else all.
func identities(rw row, wantAligned bool) []string {
	var out []string
	for _, d := range rw.DKIM {
		if d.Result == "pass" && (!wantAligned || d.Aligned) {
			id := "DKIM d=" + d.Domain
			if d.Selector != "" {
				id += " s=" + d.Selector
			}
			out = append(out, id)
		}
	}
	for _, sp := range rw.SPF {
		if sp.Result == "pass" && (!wantAligned || sp.Aligned) {
			out = append(out, "SPF "+sp.Domain)
		}
	}
	if len(out) == 0 {
		out = append(out, "an aligned result the report does not detail")
	}
	if wantAligned {
		return out[:1] // one identity per row: the sums stay true
	}
	return []string{strings.Join(out, ", ")}
}

func (src *source) label() string {
	if len(src.rdns) > 0 {
		return src.ip + " (" + strings.Join(src.rdns, ", ") + ")"
	}
	return src.ip
}

func sortSources(m map[string]*source) []*source {
	out := make([]*source, 0, len(m))
	for _, s := range m {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].count != out[j].count {
			return out[i].count > out[j].count
		}
		return out[i].ip < out[j].ip
	})
	return out
}

func restOf(rest []*source) (int, int64) {
	var c int64
	for _, s := range rest {
		c += s.count
	}
	return len(rest), c
}

func joinSet(m map[string]bool) string { return strings.Join(sortedKeys(m), ", ") }

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func msgs(n int64) string {
	if n == 1 {
		return "1 message"
	}
	return fmt.Sprintf("%d messages", n)
}

// percent formats a share with one decimal, never rounding up to 100%.
func percent(f float64) string {
	p := float64(int64(f*1000)) / 10
	return fmt.Sprintf("%.1f%%", p)
}
