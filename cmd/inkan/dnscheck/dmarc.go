package dnscheck

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/publicsuffix"

	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// DMARCRecord is a parsed DMARC record (RFC 7489 §6.3).
type DMARCRecord struct {
	Policy          string // p=: none, quarantine, reject
	SubdomainPolicy string // sp=; "" = same as p
	ADKIM, ASPF     string // "r" or "s"
	Pct             int
	RUA, RUF        []string
	Notes           []string // lenient readings, e.g. a missing p= with rua=
}

// IsDMARC reports whether a TXT value is a DMARC record.
func IsDMARC(txt string) bool {
	t := strings.TrimLeft(txt, " \t")
	if len(t) < 2 || !strings.EqualFold(t[:2], "v=") {
		return false
	}
	v, _, _ := strings.Cut(t[2:], ";")
	return strings.EqualFold(strings.TrimSpace(v), "DMARC1")
}

// ParseDMARC parses a record published at _dmarc.DOMAIN.
func ParseDMARC(s string) (*DMARCRecord, error) {
	tags, order, err := parseTags(s)
	if err != nil {
		return nil, err
	}
	// IsDMARC decides, so a record the check parses is one it recognises
	// (";v=DMARC1" has an empty first tag: not a DMARC record).
	if !IsDMARC(s) || order[0] != "v" || !strings.EqualFold(tags["v"], "DMARC1") {
		return nil, errors.New(`the record must start with "v=DMARC1"`)
	}
	r := &DMARCRecord{ADKIM: "r", ASPF: "r", Pct: 100}
	policy := func(tag string) (string, error) {
		v := strings.ToLower(tags[tag])
		if v != "none" && v != "quarantine" && v != "reject" {
			return "", fmt.Errorf("%s=%s is not none, quarantine or reject", tag, tags[tag])
		}
		return v, nil
	}
	for _, u := range splitList(tags["rua"], ",") {
		r.RUA = append(r.RUA, u)
	}
	for _, u := range splitList(tags["ruf"], ",") {
		r.RUF = append(r.RUF, u)
	}
	for _, u := range append(append([]string(nil), r.RUA...), r.RUF...) {
		if !strings.Contains(u, ":") {
			return nil, fmt.Errorf("report address %q is not a URI (write mailto:%s)", u, u)
		}
	}
	if _, ok := tags["p"]; ok {
		if r.Policy, err = policy("p"); err != nil {
			return nil, err
		}
	} else if len(r.RUA) > 0 {
		r.Policy = "none" // RFC 7489 §6.6.3: a record with rua= but no p= is p=none
		r.Notes = append(r.Notes, "no p= tag: read as p=none")
	} else {
		return nil, errors.New("no p= tag (the policy)")
	}
	if _, ok := tags["sp"]; ok {
		if r.SubdomainPolicy, err = policy("sp"); err != nil {
			return nil, err
		}
	}
	for _, a := range []struct {
		tag string
		dst *string
	}{{"adkim", &r.ADKIM}, {"aspf", &r.ASPF}} {
		if v, ok := tags[a.tag]; ok {
			v = strings.ToLower(v)
			if v != "r" && v != "s" {
				return nil, fmt.Errorf("%s=%s is not r or s", a.tag, tags[a.tag])
			}
			*a.dst = v
		}
	}
	if v, ok := tags["pct"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 100 {
			return nil, fmt.Errorf("pct=%s is not 0-100", v)
		}
		r.Pct = n
	}
	return r, nil
}

// CheckDMARC finds the DMARC policy for domain: _dmarc.DOMAIN, else the
// organizational domain's record (public suffix + 1); the finding says when
// the fallback was used.
func (c *Checker) CheckDMARC(ctx context.Context, domain string) Finding {
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	f := Finding{Check: "dmarc _dmarc." + domain}
	rec, where, err := c.findDMARC(ctx, domain)
	if rec == "" && err == nil {
		if org := orgDomain(domain); org != domain {
			f.Check += " (and _dmarc." + org + ")"
			rec, where, err = c.findDMARC(ctx, org)
		}
	}
	switch {
	case err != nil && isTemp(err):
		f.Status, f.Detail = Warn, "could not check: "+err.Error()
		return f
	case err != nil:
		f.Status, f.Detail = Fail, err.Error()
		return f
	case rec == "":
		f.Status, f.Detail = Fail, fmt.Sprintf("no DMARC record: publish TXT at _dmarc.%s, e.g. \"v=DMARC1; p=none; rua=mailto:dmarc-reports@%s\"", domain, domain)
		return f
	}
	r, err := ParseDMARC(rec)
	if err != nil {
		f.Status, f.Detail = Fail, fmt.Sprintf("record at %s does not parse: %v", where, err)
		return f
	}
	pol := r.Policy
	inherited := where != "_dmarc."+domain
	if inherited && r.SubdomainPolicy != "" {
		pol = r.SubdomainPolicy
	}
	align := map[string]string{"r": "relaxed", "s": "strict"}
	d := fmt.Sprintf("policy %s, DKIM alignment %s, SPF alignment %s, pct=%d", pol, align[r.ADKIM], align[r.ASPF], r.Pct)
	if inherited {
		d += " (from " + where + ", the organizational domain)"
	}
	if len(r.RUA) > 0 {
		d += ", aggregate reports to " + strings.Join(r.RUA, ",")
	} else {
		d += ", no rua= so no reports"
	}
	for _, n := range r.Notes {
		d += "; " + n
	}
	f.Status, f.Detail = Pass, d
	if pol == "none" {
		f.Status = Warn
		f.Detail += "; p=none only monitors: move to quarantine once reports show your mail passing"
	}
	return f
}

// findDMARC returns the one DMARC record at _dmarc.domain, "" if none.
func (c *Checker) findDMARC(ctx context.Context, domain string) (rec, where string, err error) {
	where = "_dmarc." + domain
	txts, err := c.txt(ctx, where)
	if errors.Is(err, errNXDomain) {
		return "", where, nil
	}
	if err != nil {
		return "", where, err
	}
	var recs []string
	for _, t := range txts {
		if IsDMARC(t) {
			recs = append(recs, t)
		}
	}
	if len(recs) > 1 {
		return "", where, fmt.Errorf("%d DMARC records at %s: receivers ignore them all; keep one", len(recs), where)
	}
	if len(recs) == 0 {
		return "", where, nil
	}
	return recs[0], where, nil
}

// orgDomain is the organizational domain (RFC 7489 §3.2): the public
// suffix plus one label, from the public suffix list.
func orgDomain(d string) string {
	od, err := publicsuffix.EffectiveTLDPlusOne(d)
	if err != nil {
		return d
	}
	return od
}

// CheckReportAuth checks that every mailto: report address (rua= and ruf=)
// of domain's DMARC record may receive its reports: one outside the
// domain's organizational domain must publish "v=DMARC1" at
// DOMAIN._report._dmarc.RUADOMAIN (RFC 7489 §7.1), else receivers send it
// nothing. Addresses within the organization need no such record and give
// no finding.
func (c *Checker) CheckReportAuth(ctx context.Context, domain string) []Finding {
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	rec, where, err := c.findDMARC(ctx, domain)
	if rec == "" && err == nil {
		if org := orgDomain(domain); org != domain {
			rec, where, err = c.findDMARC(ctx, org)
		}
	}
	if err != nil || rec == "" {
		return nil // CheckDMARC reports it
	}
	r, err := ParseDMARC(rec)
	if err != nil {
		return nil
	}
	policyDomain := strings.TrimPrefix(where, "_dmarc.")
	var out []Finding
	seen := map[string]bool{}
	for _, uri := range append(append([]string(nil), r.RUA...), r.RUF...) {
		target := reportDomain(uri)
		if target == "" || seen[target] || orgDomain(target) == orgDomain(policyDomain) {
			continue
		}
		seen[target] = true
		name := policyDomain + "._report._dmarc." + target
		f := Finding{Check: "dmarc-report " + name}
		txts, err := c.txt(ctx, name)
		authorized := false
		for _, t := range txts {
			authorized = authorized || IsDMARC(t)
		}
		switch {
		case isTemp(err):
			f.Status, f.Detail = Warn, "could not check: "+err.Error()
		case authorized:
			f.Status, f.Detail = Pass, fmt.Sprintf("%s may receive the reports of %s (%s is published)", target, policyDomain, name)
		default:
			f.Status = Warn
			f.Detail = fmt.Sprintf("reports go to %s, outside %s, and %s has not agreed to take them, so receivers send none: its owner publishes the record below (report services do when you add %s in their panel), or send reports to an address in %s",
				uri, policyDomain, target, policyDomain, policyDomain)
			f.Publish = zoneTXT(name, "v=DMARC1")
		}
		out = append(out, f)
	}
	return out
}

// reportDomain is the domain of a mailto: report URI ("mailto:d@example.net!10m"), or "".
func reportDomain(uri string) string {
	rest, ok := strings.CutPrefix(strings.ToLower(strings.TrimSpace(uri)), "mailto:")
	if !ok {
		return ""
	}
	if i := strings.IndexByte(rest, '!'); i >= 0 {
		rest = rest[:i] // size limit
	}
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		rest = rest[:i]
	}
	if u, err := url.PathUnescape(rest); err == nil {
		rest = u
	}
	d := mailsyntax.DomainOf(rest)
	if !mailsyntax.ValidDomain(d, mailsyntax.MailDomain) {
		return ""
	}
	return d
}
