package reportcmd

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"unicode/utf8"

	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// feedback is a DMARC aggregate report (RFC 7489 appendix C). Elements are
// matched by local name, so the namespaced reports of the DMARC revision
// (urn:ietf:params:xml:ns:dmarc-2.0) read the same; elements it does not
// know are ignored.
type feedback struct {
	Version  string `xml:"version"`
	Metadata struct {
		OrgName   string `xml:"org_name"`
		Email     string `xml:"email"`
		ReportID  string `xml:"report_id"`
		DateRange struct {
			Begin int64 `xml:"begin"`
			End   int64 `xml:"end"`
		} `xml:"date_range"`
		Errors []string `xml:"error"`
	} `xml:"report_metadata"`
	Policy struct {
		Domain string `xml:"domain"`
		ADKIM  string `xml:"adkim"`
		ASPF   string `xml:"aspf"`
		P      string `xml:"p"`
		SP     string `xml:"sp"`
		Pct    string `xml:"pct"`
		FO     string `xml:"fo"`
	} `xml:"policy_published"`
	Records []xmlRecord `xml:"record"`
}

type xmlRecord struct {
	Row struct {
		SourceIP string `xml:"source_ip"`
		Count    int64  `xml:"count"`
		Policy   struct {
			Disposition string `xml:"disposition"`
			DKIM        string `xml:"dkim"`
			SPF         string `xml:"spf"`
			Reasons     []struct {
				Type    string `xml:"type"`
				Comment string `xml:"comment"`
			} `xml:"reason"`
		} `xml:"policy_evaluated"`
	} `xml:"row"`
	Identifiers struct {
		EnvelopeTo   string `xml:"envelope_to"`
		EnvelopeFrom string `xml:"envelope_from"`
		HeaderFrom   string `xml:"header_from"`
	} `xml:"identifiers"`
	Auth struct {
		DKIM []struct {
			Domain   string `xml:"domain"`
			Selector string `xml:"selector"`
			Result   string `xml:"result"`
		} `xml:"dkim"`
		SPF []struct {
			Domain string `xml:"domain"`
			Scope  string `xml:"scope"`
			Result string `xml:"result"`
		} `xml:"spf"`
	} `xml:"auth_results"`
}

// maxCount is the largest message count one record may claim; it keeps sums
// far from overflowing (a billion messages a day is already absurd).
const maxCount = 1 << 40

// errDoctype refuses any document type declaration: reports have none, and
// it is how entity-expansion bombs ("billion laughs") begin.
var errDoctype = errors.New("XML with a <!DOCTYPE> declaration refused: DMARC reports have none (an entity-expansion bomb?)")

// parseDMARC reads and checks one aggregate report. Go's encoding/xml never
// expands entities it was not given and limits nesting; the input is already
// bounded by maxDocument.
func parseDMARC(data []byte) (*feedback, error) {
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	d.CharsetReader = charsetReader
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return nil, errors.New("no XML element: not a DMARC aggregate report")
		}
		if err != nil {
			return nil, fmt.Errorf("XML: %w", err)
		}
		switch t := tok.(type) {
		case xml.Directive:
			if bytes.HasPrefix(bytes.ToUpper(bytes.TrimSpace(t)), []byte("DOCTYPE")) {
				return nil, errDoctype
			}
		case xml.StartElement:
			if t.Name.Local != "feedback" {
				return nil, fmt.Errorf("root element <%s>, not <feedback>: not a DMARC aggregate report", t.Name.Local)
			}
			f := &feedback{}
			if err := d.DecodeElement(f, &t); err != nil {
				return nil, fmt.Errorf("XML: %w", err)
			}
			if err := f.check(); err != nil {
				return nil, fmt.Errorf("not a valid DMARC aggregate report: %w", err)
			}
			return f, nil
		}
	}
}

// charsetReader reads the encodings reports are written in: UTF-8 (nearly
// all), US-ASCII and ISO-8859-1.
func charsetReader(label string, r io.Reader) (io.Reader, error) {
	switch strings.ToLower(label) {
	case "utf-8", "utf8", "us-ascii", "ascii":
		return r, nil
	case "iso-8859-1", "latin1", "iso8859-1":
		b, err := io.ReadAll(io.LimitReader(r, maxDocument))
		if err != nil {
			return nil, err
		}
		out := make([]byte, 0, len(b))
		for _, c := range b {
			out = utf8.AppendRune(out, rune(c))
		}
		return bytes.NewReader(out), nil
	}
	return nil, fmt.Errorf("encoding %q is not supported (UTF-8, US-ASCII, ISO-8859-1)", label)
}

var (
	policies     = map[string]bool{"none": true, "quarantine": true, "reject": true}
	dispositions = map[string]bool{"none": true, "quarantine": true, "reject": true, "pass": true}
	passFail     = map[string]bool{"pass": true, "fail": true}
)

// check normalises f (spaces trimmed, values lower case) and refuses what
// the schema does not allow, naming the element.
func (f *feedback) check() error {
	m := &f.Metadata
	m.OrgName, m.ReportID, m.Email = strings.TrimSpace(m.OrgName), strings.TrimSpace(m.ReportID), strings.TrimSpace(m.Email)
	p := &f.Policy
	for _, s := range []*string{&p.Domain, &p.ADKIM, &p.ASPF, &p.P, &p.SP, &p.Pct, &p.FO} {
		*s = strings.ToLower(strings.TrimSpace(*s))
	}
	p.Domain = mailsyntax.NormDomain(p.Domain)
	switch {
	case m.OrgName == "":
		return errors.New("report_metadata/org_name is missing")
	case m.ReportID == "":
		return errors.New("report_metadata/report_id is missing")
	case m.DateRange.Begin <= 0 || m.DateRange.End < m.DateRange.Begin:
		return fmt.Errorf("report_metadata/date_range %d to %d is not a period", m.DateRange.Begin, m.DateRange.End)
	case p.Domain == "":
		return errors.New("policy_published/domain is missing")
	case !mailsyntax.ValidDomain(p.Domain, mailsyntax.MailDomain):
		return fmt.Errorf("policy_published/domain %q is not a domain", p.Domain)
	case !policies[p.P]:
		return fmt.Errorf("policy_published/p %q is not none, quarantine or reject", p.P)
	case p.SP != "" && !policies[p.SP]:
		return fmt.Errorf("policy_published/sp %q is not none, quarantine or reject", p.SP)
	}
	if p.ADKIM == "" {
		p.ADKIM = "r"
	}
	if p.ASPF == "" {
		p.ASPF = "r"
	}
	if p.Pct == "" {
		p.Pct = "100"
	}
	for i := range f.Records {
		if err := f.Records[i].check(); err != nil {
			return fmt.Errorf("record %d: %w", i+1, err)
		}
	}
	return nil
}

func (r *xmlRecord) check() error {
	row := &r.Row
	row.SourceIP = strings.TrimSpace(row.SourceIP)
	a, err := netip.ParseAddr(row.SourceIP)
	if err != nil || a.Zone() != "" {
		return fmt.Errorf("row/source_ip %q is not an IP address", row.SourceIP)
	}
	row.SourceIP = a.Unmap().String()
	if row.Count < 0 || row.Count > maxCount {
		return fmt.Errorf("row/count %d is out of range", row.Count)
	}
	pe := &row.Policy
	for _, s := range []*string{&pe.Disposition, &pe.DKIM, &pe.SPF} {
		*s = strings.ToLower(strings.TrimSpace(*s))
	}
	if !dispositions[pe.Disposition] {
		return fmt.Errorf("row/policy_evaluated/disposition %q is not none, quarantine or reject", pe.Disposition)
	}
	if !passFail[pe.DKIM] || !passFail[pe.SPF] {
		return fmt.Errorf("row/policy_evaluated dkim %q, spf %q: each must be pass or fail", pe.DKIM, pe.SPF)
	}
	for i := range pe.Reasons {
		pe.Reasons[i].Type = strings.ToLower(strings.TrimSpace(pe.Reasons[i].Type))
		pe.Reasons[i].Comment = strings.TrimSpace(pe.Reasons[i].Comment)
	}
	id := &r.Identifiers
	id.HeaderFrom = mailsyntax.NormDomain(id.HeaderFrom)
	id.EnvelopeFrom = mailsyntax.NormDomain(id.EnvelopeFrom)
	id.EnvelopeTo = mailsyntax.NormDomain(id.EnvelopeTo)
	for i := range r.Auth.DKIM {
		d := &r.Auth.DKIM[i]
		d.Domain = mailsyntax.NormDomain(d.Domain)
		d.Selector = strings.ToLower(strings.TrimSpace(d.Selector))
		d.Result = strings.ToLower(strings.TrimSpace(d.Result))
	}
	for i := range r.Auth.SPF {
		s := &r.Auth.SPF[i]
		s.Domain = mailsyntax.NormDomain(s.Domain)
		s.Scope = strings.ToLower(strings.TrimSpace(s.Scope))
		s.Result = strings.ToLower(strings.TrimSpace(s.Result))
	}
	return nil
}
