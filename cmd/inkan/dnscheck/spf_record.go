package dnscheck

import (
	"context"
	"fmt"
	"strings"
)

// TermLookups is how many DNS-querying terms one top-level term of an SPF
// record costs, its includes counted in.
type TermLookups struct {
	Term    string `json:"term"`
	Lookups int    `json:"lookups"`
}

// SPFLookups walks the whole SPF record of domain, includes and redirect
// included, as for an address that no term authorizes, and counts its DNS
// lookups past the limit of 10 (a receiver stops at the 11th with
// permerror). res and reason are the outcome of that walk; a permerror
// other than the limits (a missing include) ends it early.
func (c *Checker) SPFLookups(ctx context.Context, domain string) (total int, perTerm []TermLookups, voids []string, res SPFResult, reason string) {
	// No address: no ip4, ip6, a or mx term can match, so the walk goes on
	// to the end (only an all term, or +all in an include, stops it).
	e := &spfEval{c: c, sender: "postmaster@" + domain, helo: domain, countAll: true}
	res, reason = e.checkHost(ctx, strings.TrimSuffix(strings.ToLower(domain), "."), 0)
	return e.lookups, e.perTerm, e.voidNames, res, reason
}

// CheckSPFRecord looks at the shape of domain's SPF record, whatever the
// address: several SPF records (with the one merged record to publish),
// more than 10 DNS lookups (with what each term costs), more than 2 void
// lookups, and an ending that authorizes everyone (+all) or says nothing
// (?all, or no all). broken is true when receivers see a permerror for
// every sender; CheckSPF then has nothing to add.
func (c *Checker) CheckSPFRecord(ctx context.Context, domain string) (out []Finding, broken bool) {
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	check := "spf-record " + domain
	txts, err := c.txt(ctx, domain)
	if err != nil {
		return nil, false // CheckSPF reports it
	}
	var recs []string
	for _, t := range txts {
		if IsSPF(t) {
			recs = append(recs, t)
		}
	}
	switch {
	case len(recs) == 0:
		return nil, false
	case len(recs) > 1:
		f := Finding{Check: check, Status: Fail,
			Detail: fmt.Sprintf("%d SPF records (%s): receivers treat several as a permerror, as if there were no SPF at all: replace them with one record holding all their terms", len(recs), strings.Join(quoteAll(recs), ", "))}
		if merged, ok := mergeSPF(recs); ok {
			f.Publish = zoneTXT(domain, merged)
		}
		return []Finding{f}, true
	}
	rec, err := ParseSPF(recs[0])
	if err != nil {
		return nil, false // CheckSPF reports the permerror
	}
	out = append(out, endingFindings(check, domain, recs[0], rec)...)
	total, perTerm, voids, _, _ := c.SPFLookups(ctx, domain)
	if total > maxLookups {
		var costs []string
		for _, t := range perTerm {
			costs = append(costs, fmt.Sprintf("%s %d", t.Term, t.Lookups))
		}
		out = append(out, Finding{Check: check, Status: Fail,
			Detail: fmt.Sprintf("%d DNS lookups, over the limit of %d: receivers stop at the 11th with permerror, so SPF fails for all your mail; drop the include: terms of services you no longer use, or list their ip4:/ip6: ranges instead (lookups per term: %s)", total, maxLookups, strings.Join(costs, ", "))})
		broken = true
	}
	if len(voids) > maxVoid {
		out = append(out, Finding{Check: check, Status: Fail,
			Detail: fmt.Sprintf("%d lookups found nothing (%s), over the limit of %d: receivers give permerror; remove the terms naming them", len(voids), strings.Join(voids, ", "), maxVoid)})
		broken = true
	}
	return out, broken
}

// endingFindings judges the all term (or its absence) of a record.
func endingFindings(check, domain, raw string, rec *SPFRecord) []Finding {
	var all *SPFTerm
	for i := range rec.Terms {
		if rec.Terms[i].Mechanism == "all" {
			all = &rec.Terms[i]
			break // terms after all are never reached
		}
	}
	switch {
	case all == nil && rec.Redirect == "":
		return []Finding{{Check: check, Status: Warn,
			Detail:  "the record has no all term, so mail from any other address is neutral: end it with -all (or ~all while you check the DMARC reports)",
			Publish: zoneTXT(domain, strings.TrimSpace(raw)+" -all")}}
	case all == nil:
		return nil
	case all.Qualifier == '+':
		return []Finding{{Check: check, Status: Fail,
			Detail:  "+all authorizes every host on the internet to send as " + domain + ": end the record with -all (or ~all)",
			Publish: zoneTXT(domain, replaceAll(raw, "-all"))}}
	case all.Qualifier == '?':
		return []Finding{{Check: check, Status: Warn,
			Detail:  "?all tells receivers nothing about mail from other addresses (neutral): end with ~all, then -all once the DMARC reports show your mail passing",
			Publish: zoneTXT(domain, replaceAll(raw, "~all"))}}
	}
	return nil
}

// replaceAll replaces the all term of an SPF record with end.
func replaceAll(raw, end string) string {
	terms := strings.Fields(raw)
	for i, t := range terms {
		if strings.EqualFold(strings.TrimLeft(t, "+-~?"), "all") {
			terms[i] = end
		}
	}
	return strings.Join(terms, " ")
}

// mergeSPF joins several SPF records into one: their terms in order, as
// written, without repeats, then the strictest all of them (-all, ~all,
// ?all; +all becomes -all).
func mergeSPF(recs []string) (string, bool) {
	terms := []string{"v=spf1"}
	seen := map[string]bool{}
	rank := map[byte]int{'-': 3, '~': 2, '?': 1, '+': 0}
	end, endQ := "", byte('+')
	for _, r := range recs {
		rec, err := ParseSPF(r)
		if err != nil || rec.Redirect != "" {
			return "", false // a redirect cannot be merged by rule
		}
		for _, field := range strings.Fields(r)[1:] {
			if _, _, isMod := modifier(field); isMod {
				continue
			}
			t, err := parseDirective(field)
			if err != nil {
				return "", false
			}
			if t.Mechanism == "all" {
				if end == "" || rank[t.Qualifier] > rank[endQ] {
					end, endQ = t.String(), t.Qualifier
				}
				break
			}
			if k := t.String(); !seen[k] {
				seen[k] = true
				terms = append(terms, field)
			}
		}
	}
	if end == "" || endQ == '+' {
		end = "-all"
	}
	return strings.Join(append(terms, end), " "), true
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}
