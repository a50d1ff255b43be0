package reportcmd

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/inkan-relay/inkan/cmd/inkan/internal/cli"
	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// tlsReport is an SMTP TLS report (RFC 8460 §4).
type tlsReport struct {
	Input string `json:"input"`
	Org   string `json:"organization-name"`
	Range struct {
		Start time.Time `json:"start-datetime"`
		End   time.Time `json:"end-datetime"`
	} `json:"date-range"`
	Contact    string      `json:"contact-info"`
	ReportID   string      `json:"report-id"`
	Policies   []tlsPolicy `json:"policies"`
	Duplicates []string    `json:"duplicates,omitempty"`
}

type tlsPolicy struct {
	Policy struct {
		Type   string     `json:"policy-type"`
		String []string   `json:"policy-string,omitempty"`
		Domain string     `json:"policy-domain"`
		MXHost stringList `json:"mx-host,omitempty"`
	} `json:"policy"`
	Summary struct {
		Success int64 `json:"total-successful-session-count"`
		Failure int64 `json:"total-failure-session-count"`
	} `json:"summary"`
	Failures []tlsFailure `json:"failure-details,omitempty"`
}

type tlsFailure struct {
	ResultType     string `json:"result-type"`
	SendingMTAIP   string `json:"sending-mta-ip,omitempty"`
	ReceivingMX    string `json:"receiving-mx-hostname,omitempty"`
	ReceivingHelo  string `json:"receiving-mx-helo,omitempty"`
	ReceivingIP    string `json:"receiving-ip,omitempty"`
	Count          int64  `json:"failed-session-count"`
	AdditionalInfo string `json:"additional-information,omitempty"`
	ReasonCode     string `json:"failure-reason-code,omitempty"`
}

// stringList reads a list of strings, or one string: reporters write
// "mx-host" both ways.
type stringList []string

func (l *stringList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*l = stringList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("mx-host is neither a string nor a list of strings")
	}
	*l = many
	return nil
}

// resultTypes are the result types of RFC 8460 §4.3, each with what to do.
var resultTypes = map[string]string{
	"starttls-not-supported":    "%s did not offer STARTTLS: enable TLS on it, with a certificate for its name",
	"certificate-host-mismatch": "the certificate of %s does not name it: get one that names the MX host itself",
	"certificate-expired":       "the certificate of %s has expired: renew it, and make renewal automatic",
	"certificate-not-trusted":   "the certificate of %s is not trusted (self-signed, or the intermediate certificates are missing): install the full chain of a public CA",
	"validation-failure":        "the certificate of %s failed validation for another reason: check its chain and names",
	"tlsa-invalid":              "the TLSA records of %s do not match its certificate: publish TLSA for the new key before changing certificates",
	"dnssec-invalid":            "the DNSSEC records behind %s did not validate: fix the DS/DNSKEY chain of the zone",
	"dane-required":             "senders required DANE for %s and found no usable TLSA record: publish TLSA at _25._tcp of the MX host",
	"sts-policy-fetch-error":    "senders could not fetch the MTA-STS policy of %s: serve https://mta-sts.DOMAIN/.well-known/mta-sts.txt with a valid certificate",
	"sts-policy-invalid":        "the MTA-STS policy of %s does not parse: fix mta-sts.txt (version: STSv1, mode, mx, max_age)",
	"sts-webpki-invalid":        "the certificate of the MTA-STS policy host of %s is not valid: renew or fix it",
}

var tlsPolicyTypes = map[string]bool{"sts": true, "tlsa": true, "no-policy-found": true}

// parseTLSRPT reads and checks one report. encoding/json limits nesting;
// the input is already bounded by maxDocument.
func parseTLSRPT(data []byte) (*tlsReport, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	r := &tlsReport{}
	if err := d.Decode(r); err != nil {
		return nil, fmt.Errorf("JSON: %w", err)
	}
	if d.More() {
		return nil, errors.New("JSON: more than one value in the file")
	}
	if err := r.check(); err != nil {
		return nil, fmt.Errorf("not a valid TLS-RPT report: %w", err)
	}
	return r, nil
}

func (r *tlsReport) check() error {
	switch {
	case strings.TrimSpace(r.Org) == "":
		return errors.New("organization-name is missing")
	case strings.TrimSpace(r.ReportID) == "":
		return errors.New("report-id is missing")
	case r.Range.Start.IsZero() || r.Range.End.Before(r.Range.Start):
		return errors.New("date-range is missing or not a period")
	case len(r.Policies) == 0:
		return errors.New("policies is missing or empty")
	}
	for i := range r.Policies {
		p := &r.Policies[i]
		p.Policy.Type = strings.ToLower(strings.TrimSpace(p.Policy.Type))
		p.Policy.Domain = mailsyntax.NormDomain(p.Policy.Domain)
		switch {
		case !tlsPolicyTypes[p.Policy.Type]:
			return fmt.Errorf("policy %d: policy-type %q is not sts, tlsa or no-policy-found", i+1, p.Policy.Type)
		case !mailsyntax.ValidDomain(p.Policy.Domain, mailsyntax.MailDomain):
			return fmt.Errorf("policy %d: policy-domain %q is not a domain", i+1, p.Policy.Domain)
		case p.Summary.Success < 0 || p.Summary.Failure < 0 || p.Summary.Success > maxCount || p.Summary.Failure > maxCount:
			return fmt.Errorf("policy %d: session counts out of range", i+1)
		}
		for j := range p.Failures {
			f := &p.Failures[j]
			f.ResultType = strings.ToLower(strings.TrimSpace(f.ResultType))
			if f.Count < 0 || f.Count > maxCount {
				return fmt.Errorf("policy %d, failure %d: failed-session-count out of range", i+1, j+1)
			}
			if f.ResultType == "" {
				return fmt.Errorf("policy %d, failure %d: result-type is missing", i+1, j+1)
			}
		}
	}
	return nil
}

func runTLSRPT(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("inkan report tlsrpt", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: inkan report tlsrpt [flags] INPUT...\n\nReads TLS-RPT reports (RFC 8460: .json, .json.gz, mail messages, mbox, Maildir,\nfolders, - for stdin) and says which TLS sessions to your MX hosts failed.\n\n")
		fs.PrintDefaults()
	}
	asJSON := fs.Bool("json", false, "print JSON for programs")
	verbose := fs.Bool("v", false, "list every mailbox message and file that held no report")
	inputs, status, ok := parseInterleaved(fs, args, stdout, stderr)
	if !ok {
		return status
	}
	if len(inputs) == 0 {
		fmt.Fprintln(stderr, "inkan report tlsrpt: name the reports to read (files, folders, mbox, Maildir, or - for stdin)")
		return cli.ExitUsage
	}
	x := newExtractor(kindJSON, stdin)
	for _, in := range inputs {
		x.add(in)
	}
	var reports []*tlsReport
	seen := map[string]*tlsReport{}
	for _, d := range x.docs {
		r, err := parseTLSRPT(d.data)
		if err != nil {
			x.fail(d.name, err)
			continue
		}
		key := r.Org + "\x00" + r.ReportID
		if first := seen[key]; first != nil {
			first.Duplicates = append(first.Duplicates, d.name)
			continue
		}
		r.Input = d.name
		seen[key] = r
		reports = append(reports, r)
	}
	sort.SliceStable(reports, func(i, j int) bool {
		if !reports[i].Range.Start.Equal(reports[j].Range.Start) {
			return reports[i].Range.Start.Before(reports[j].Range.Start)
		}
		return reports[i].Org < reports[j].Org
	})
	concl := concludeTLS(reports)
	if *asJSON {
		writeJSON(stdout, map[string]any{
			"reports": nonNil(reports), "conclusions": nonNil(concl),
			"errors": nonNil(x.errors), "skipped": nonNil(x.skipped),
		})
	} else {
		renderTLS(newPrintable(stdout), reports, concl)
	}
	return finish(stderr, "tlsrpt", x, len(reports), *verbose)
}

// concludeTLS sums failures per policy domain, MX host and result type.
func concludeTLS(reports []*tlsReport) []conclusion {
	type key struct{ domain, mx, result string }
	fails := map[key]int64{}
	reporters := map[key]map[string]bool{}
	ok := map[string][2]int64{} // domain -> success, failure
	noPolicy := map[string]bool{}
	for _, r := range reports {
		for _, p := range r.Policies {
			d := p.Policy.Domain
			s := ok[d]
			s[0] += p.Summary.Success
			s[1] += p.Summary.Failure
			ok[d] = s
			if p.Policy.Type == "no-policy-found" {
				noPolicy[d] = true
			}
			for _, f := range p.Failures {
				mx := f.ReceivingMX
				if mx == "" {
					mx = d
				}
				k := key{d, mailsyntax.NormDomain(mx), f.ResultType}
				fails[k] += f.Count
				if reporters[k] == nil {
					reporters[k] = map[string]bool{}
				}
				reporters[k][r.Org] = true
			}
		}
	}
	var out []conclusion
	keys := make([]key, 0, len(fails))
	for k := range fails {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if fails[keys[i]] != fails[keys[j]] {
			return fails[keys[i]] > fails[keys[j]]
		}
		return keys[i].domain+keys[i].mx+keys[i].result < keys[j].domain+keys[j].mx+keys[j].result
	})
	for _, k := range keys {
		advice, known := resultTypes[k.result]
		if !known {
			advice = "%s: result " + k.result + " (not one RFC 8460 defines): see the report's additional-information"
		}
		out = append(out, conclusion{Domain: k.domain, Level: levelAction, Messages: fails[k],
			Text: fmt.Sprintf("%d failed sessions (%s, reported by %s): %s", fails[k], k.result, joinSet(reporters[k]), fmt.Sprintf(advice, k.mx))})
	}
	for _, d := range sortedKeys(ok) {
		s := ok[d]
		total := s[0] + s[1]
		switch {
		case total == 0:
			continue
		case s[1] == 0:
			out = append(out, conclusion{Domain: d, Level: levelOK, Messages: total,
				Text: fmt.Sprintf("all %d sessions to the MX hosts of %s used TLS", total, d)})
		default:
			out = append(out, conclusion{Domain: d, Level: levelInfo, Messages: total,
				Text: fmt.Sprintf("%s of %d sessions to the MX hosts of %s used TLS", share(s[0], total), total, d)})
		}
		if noPolicy[d] {
			out = append(out, conclusion{Domain: d, Level: levelInfo,
				Text: fmt.Sprintf("%s publishes neither MTA-STS nor DANE, so senders fall back to plain text when TLS fails: publish an MTA-STS policy (mode: testing first)", d)})
		}
	}
	return out
}

func renderTLS(w *printable, reports []*tlsReport, concl []conclusion) {
	defer w.Flush()
	for i, r := range reports {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "== %s: %s ==\n", r.Org, period(r.Range.Start.UTC(), r.Range.End.UTC()))
		fmt.Fprintf(w, "report %s", r.ReportID)
		if r.Contact != "" {
			fmt.Fprintf(w, " from %s", r.Contact)
		}
		fmt.Fprintf(w, " (%s)\n", r.Input)
		for _, d := range r.Duplicates {
			fmt.Fprintf(w, "  (the same report was also in %s)\n", d)
		}
		for _, p := range r.Policies {
			total := p.Summary.Success + p.Summary.Failure
			fmt.Fprintf(w, "\n%s, policy %s", p.Policy.Domain, p.Policy.Type)
			if mode := stsMode(p.Policy.String); mode != "" {
				fmt.Fprintf(w, " (mode %s)", mode)
			}
			if len(p.Policy.MXHost) > 0 {
				fmt.Fprintf(w, ", mx %s", strings.Join(p.Policy.MXHost, ", "))
			}
			fmt.Fprintf(w, ": %d sessions, %s with TLS, %d failed\n", total, share(p.Summary.Success, total), p.Summary.Failure)
			if len(p.Failures) == 0 {
				continue
			}
			tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "  RESULT\tSESSIONS\tMX\tRECEIVING IP\tSENDING MTA\tDETAIL")
			for _, f := range p.Failures {
				detail := f.ReasonCode
				if f.AdditionalInfo != "" {
					detail = strings.TrimSpace(detail + " " + f.AdditionalInfo)
				}
				fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\t%s\t%s\n", f.ResultType, f.Count, dash(f.ReceivingMX), dash(f.ReceivingIP), dash(f.SendingMTAIP), dash(truncate(detail, 60)))
			}
			tw.Flush()
		}
	}
	if len(concl) > 0 {
		fmt.Fprintln(w, "\nConclusions")
		for _, c := range concl {
			fmt.Fprintf(w, "  %-6s %s: %s\n", strings.ToUpper(c.Level), c.Domain, c.Text)
		}
	}
}

// stsMode finds "mode: X" in an MTA-STS policy-string.
func stsMode(lines []string) string {
	for _, l := range lines {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(strings.TrimSpace(k), "mode") {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
