package reportcmd

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// printable writes each line through mailsyntax.Printable: report contents
// (organisation names, comments, domains, file names) are remote text, and
// reach the terminal only this way.
type printable struct {
	w   io.Writer
	buf []byte
}

func newPrintable(w io.Writer) *printable { return &printable{w: w} }

func (p *printable) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		if _, err := io.WriteString(p.w, mailsyntax.Printable(string(p.buf[:i]))+"\n"); err != nil {
			return 0, err
		}
		p.buf = p.buf[i+1:]
	}
}

// Flush writes a last line without a newline.
func (p *printable) Flush() {
	if len(p.buf) > 0 {
		io.WriteString(p.w, mailsyntax.Printable(string(p.buf)))
		p.buf = nil
	}
}

const stamp = "2006-01-02 15:04"

func period(b, e time.Time) string {
	return b.Format(stamp) + " to " + e.Format(stamp) + " UTC"
}

var kindLabel = map[string]string{
	classOther:      "passes: another service",
	classUnaligned:  "authenticated as another domain",
	classUnauthentd: "unauthenticated",
}

func renderDMARC(w *printable, reps []dmarcReport, concl []conclusion, me *self) {
	defer w.Flush()
	for i, r := range reps {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "== %s: %s, %s ==\n", r.Org, r.Domain, period(r.Begin, r.End))
		fmt.Fprintf(w, "report %s", r.ReportID)
		if r.Email != "" {
			fmt.Fprintf(w, " from %s", r.Email)
		}
		fmt.Fprintf(w, " (%s)\n", r.Input)
		for _, d := range r.Duplicates {
			fmt.Fprintf(w, "  (the same report was also in %s)\n", d)
		}
		fmt.Fprintf(w, "published %s; %s, %s passed DMARC\n", r.Policy, msgs(r.Messages), share(r.DMARCPass, r.Messages))
		for _, e := range r.Errors {
			fmt.Fprintf(w, "the reporter noted: %s\n", e)
		}
		var mine, others []row
		var nMine, nOthers int64
		for _, rw := range r.Rows {
			if rw.Class == classInkan {
				mine, nMine = append(mine, rw), nMine+rw.Count
			} else {
				others, nOthers = append(others, rw), nOthers+rw.Count
			}
		}
		if len(mine) > 0 {
			fmt.Fprintf(w, "\nSigned by inkan (%s): %s\n", keysLabel(me), msgs(nMine))
			rowTable(w, r.Domain, mine, false)
		}
		if len(others) > 0 {
			fmt.Fprintf(w, "\nNot signed by inkan: %s\n", msgs(nOthers))
			rowTable(w, r.Domain, others, true)
		}
	}
	if len(concl) == 0 {
		return
	}
	fmt.Fprintln(w, "\nConclusions")
	for _, c := range concl {
		fmt.Fprintf(w, "  %-6s %s: %s\n", strings.ToUpper(c.Level), c.Domain, c.Text)
	}
}

func keysLabel(me *self) string {
	var parts []string
	if len(me.labels) > 0 {
		parts = append(parts, "keys "+strings.Join(me.labels, ", "))
	}
	if len(me.ips) > 0 {
		parts = append(parts, "or sent from -ip")
	}
	if len(parts) == 0 {
		return "sent from -ip"
	}
	return strings.Join(parts, ", ")
}

func rowTable(w io.Writer, domain string, rows []row, kind bool) {
	showFrom := false
	for _, rw := range rows {
		showFrom = showFrom || rw.HeaderFrom != domain
	}
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	head := "  SOURCE\tMESSAGES\tDISPOSITION\tDMARC\tSPF\tDKIM"
	if showFrom {
		head += "\tFROM"
	}
	if kind {
		head += "\tKIND"
	}
	fmt.Fprintln(tw, head)
	for _, rw := range rows {
		src := rw.SourceIP
		if len(rw.ReverseDNS) > 0 {
			src += " (" + strings.Join(rw.ReverseDNS, ", ") + ")"
		}
		if rw.ThisHost {
			src += " [this host]"
		}
		line := fmt.Sprintf("  %s\t%d\t%s\t%s\t%s\t%s", src, rw.Count, disposition(rw), dmarcCell(rw), spfCell(rw), dkimCell(rw))
		if showFrom {
			line += "\t" + rw.HeaderFrom
		}
		if kind {
			line += "\t" + kindLabel[rw.Class]
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
}

func disposition(rw row) string {
	if len(rw.Reasons) == 0 {
		return rw.Disposition
	}
	var rs []string
	for _, r := range rw.Reasons {
		s := r.Type
		if r.Comment != "" {
			s += ": " + truncate(r.Comment, 40)
		}
		rs = append(rs, s)
	}
	return rw.Disposition + " (" + strings.Join(rs, "; ") + ")"
}

func dmarcCell(rw row) string {
	switch {
	case rw.DKIMAligned && rw.SPFAligned:
		return "pass dkim+spf"
	case rw.DKIMAligned:
		return "pass dkim"
	case rw.SPFAligned:
		return "pass spf"
	}
	return "fail"
}

func spfCell(rw row) string {
	var out []string
	for _, s := range rw.SPF {
		v := s.Domain + " " + s.Result
		if s.Scope == "helo" {
			v = "helo " + v
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return "-"
	}
	return strings.Join(out, ", ")
}

func dkimCell(rw row) string {
	var out []string
	for _, d := range rw.DKIM {
		id := d.Domain
		if d.Selector != "" {
			id += "/" + d.Selector
		}
		out = append(out, id+" "+d.Result)
	}
	if len(out) == 0 {
		return "-"
	}
	return strings.Join(out, ", ")
}

func share(n, total int64) string {
	if total == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (%s)", n, percent(float64(n)/float64(total)))
}
