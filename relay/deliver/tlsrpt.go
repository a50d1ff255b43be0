package deliver

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/inkan-relay/inkan/queue"
	"github.com/inkan-relay/inkan/queue/safefile"
	"github.com/inkan-relay/inkan/relay/deliver/tlsrecords"
	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// TLS reporting (RFC 8460).
//
// Promises:
//   - Sessions are counted per recipient domain, policy (sts, tlsa or
//     no-policy-found) and failure, for one UTC day at a time; the counts
//     are saved to Dir (through safefile) every few minutes and when Run
//     ends, so a restart loses at most those minutes.
//   - Deliveries whose envelope sender is the report address are never
//     counted: reports do not report on reports.
//   - After the day ends, each domain that publishes one _smtp._tls record
//     gets one gzipped JSON report per rua: mailto: through Submit (inkan's
//     own queue, which signs and retries it), https: as a POST. A failed
//     POST is tried again each hour for a day; domains without a record
//     are dropped.

// Intervals of the report loop; tests shorten them.
var (
	rptTick        = 5 * time.Minute
	rptRetry       = time.Hour
	rptGiveUp      = 24 * time.Hour // after the day's end
	rptPostTimeout = 30 * time.Second
)

const (
	rptMaxDomains  = 50000 // per day; more are not counted
	rptMaxFailures = 100   // distinct failure lines per policy
	rptMaxReason   = 300   // bytes of failure-reason-code
)

// ReportOptions configures TLSReports.
type ReportOptions struct {
	Dir          string // where counts and pending reports are kept; "" = memory only
	Hostname     string // the submitter: Message-ID, filename, Subject
	From         string // sender of mailed reports, envelope and header; "" = tls-reports@Hostname
	Organization string // organization-name; "" = Hostname
	Contact      string // contact-info; "" = From
	Resolver     string // "ip:port" for _smtp._tls lookups; "" = resolv.conf
	RootCAs      *x509.CertPool
	Logger       *slog.Logger
	// Submit queues a mailed report from From to the rua address; the
	// queue signs and delivers it. nil = mailto: addresses are skipped.
	Submit func(from, to string, msg []byte) error
}

// TLSReports collects TLS session results and sends the daily reports. It
// outlives Transports (a reload makes a new Transport with the same
// TLSReports); Run owns its loop.
type TLSReports struct {
	o      ReportOptions
	res    *resolver
	client *http.Client
	log    *slog.Logger

	mu      sync.Mutex
	cur     *rptDay
	pending []*rptDay
	dirty   bool
	tried   map[string]time.Time // day/domain -> last attempt
}

// rptDay is one UTC day of counts, as saved.
type rptDay struct {
	Day     string                `json:"day"` // 2006-01-02
	Domains map[string]*rptDomain `json:"domains"`
	Done    map[string]bool       `json:"done,omitempty"` // domains whose report is sent (or dropped)
}

type rptDomain struct {
	Policies []*rptEntry `json:"policies"`
}

type rptEntry struct {
	Policy   rptPolicy          `json:"policy"`
	Success  int64              `json:"success"`
	Failures []*rptFailureCount `json:"failures,omitempty"`
}

// rptPolicy identifies a policy in a report.
type rptPolicy struct {
	Type    string `json:"type"`              // sts, tlsa, no-policy-found
	Strings string `json:"strings,omitempty"` // policy-string, one per line
	MXHosts string `json:"mx_hosts,omitempty"`
}

// rptFailure is one kind of failed session.
type rptFailure struct {
	ResultType  string `json:"result_type"`
	MXHost      string `json:"mx_host,omitempty"`
	ReceivingIP string `json:"receiving_ip,omitempty"`
	Reason      string `json:"reason,omitempty"`
}

type rptFailureCount struct {
	rptFailure
	Count int64 `json:"count"`
}

// NewTLSReports loads saved counts and pending reports from o.Dir.
func NewTLSReports(o ReportOptions) (*TLSReports, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.From == "" {
		o.From = "tls-reports@" + o.Hostname
	}
	if o.Organization == "" {
		o.Organization = o.Hostname
	}
	if o.Contact == "" {
		o.Contact = o.From
	}
	if err := mailsyntax.CheckPath(o.From, false); err != nil {
		return nil, fmt.Errorf("delivery.tls_rpt.from: %q is not an address: %v", o.From, err)
	}
	r := &TLSReports{o: o, res: newResolver(o.Resolver), log: o.Logger, tried: map[string]time.Time{}}
	r.client = policyHTTPClient(r.res, o.RootCAs, rptPostTimeout, "")
	r.cur = &rptDay{Day: dayOf(now()), Domains: map[string]*rptDomain{}}
	if o.Dir != "" {
		if err := os.MkdirAll(o.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("tls reports: %w", err)
		}
		if err := r.load(); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func dayOf(t time.Time) string { return t.UTC().Format(time.DateOnly) }

// isReport reports whether d is a report (its sender is the report address).
func (r *TLSReports) isReport(d *queue.Delivery) bool { return strings.EqualFold(d.From, r.o.From) }

func (r *TLSReports) success(domain string, p rptPolicy) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.entry(domain, p); e != nil {
		e.Success++
		r.dirty = true
	}
}

func (r *TLSReports) failure(domain string, p rptPolicy, f rptFailure) {
	if len(f.Reason) > rptMaxReason {
		f.Reason = f.Reason[:rptMaxReason]
	}
	f.Reason = mailsyntax.Printable(f.Reason)
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.entry(domain, p)
	if e == nil {
		return
	}
	r.dirty = true
	for _, c := range e.Failures {
		if c.rptFailure == f {
			c.Count++
			return
		}
	}
	if len(e.Failures) < rptMaxFailures {
		e.Failures = append(e.Failures, &rptFailureCount{rptFailure: f, Count: 1})
	}
}

// entry finds or makes the counts of a policy of domain. r.mu is held.
func (r *TLSReports) entry(domain string, p rptPolicy) *rptEntry {
	r.rollover()
	d := r.cur.Domains[domain]
	if d == nil {
		if len(r.cur.Domains) >= rptMaxDomains {
			return nil
		}
		d = &rptDomain{}
		r.cur.Domains[domain] = d
	}
	for _, e := range d.Policies {
		if e.Policy == p {
			return e
		}
	}
	e := &rptEntry{Policy: p}
	d.Policies = append(d.Policies, e)
	return e
}

// rollover ends the current day once the clock has passed it. r.mu is held.
func (r *TLSReports) rollover() {
	today := dayOf(now())
	if r.cur.Day == today {
		return
	}
	if len(r.cur.Domains) > 0 {
		r.pending = append(r.pending, r.cur)
		r.savePendingLocked(r.cur)
	}
	r.cur = &rptDay{Day: today, Domains: map[string]*rptDomain{}}
	r.dirty = true
}

// Run saves the counts and sends due reports until ctx ends, then saves
// once more.
func (r *TLSReports) Run(ctx context.Context) {
	tick := time.NewTicker(rptTick)
	defer tick.Stop()
	for {
		r.SendDue(ctx)
		select {
		case <-ctx.Done():
			r.save()
			return
		case <-tick.C:
		}
	}
}

// SendDue saves the counts, ends the day if it is over, and sends the
// reports of ended days that are due.
func (r *TLSReports) SendDue(ctx context.Context) {
	r.mu.Lock()
	r.rollover()
	pending := slices.Clone(r.pending)
	r.mu.Unlock()
	r.save()
	for _, day := range pending {
		r.sendDay(ctx, day)
	}
}

// sendDay sends what is due of one ended day.
func (r *TLSReports) sendDay(ctx context.Context, day *rptDay) {
	start, _ := time.Parse(time.DateOnly, day.Day)
	end := start.Add(24 * time.Hour)
	giveUp := !now().Before(end.Add(rptGiveUp))
	r.mu.Lock()
	var todo []string
	for dom := range day.Domains {
		if day.Done[dom] {
			continue
		}
		if last, ok := r.tried[day.Day+"/"+dom]; ok && now().Sub(last) < rptRetry && !giveUp {
			continue
		}
		todo = append(todo, dom)
	}
	r.mu.Unlock()
	sort.Strings(todo)
	for _, dom := range todo {
		if ctx.Err() != nil {
			return
		}
		done := r.sendDomain(ctx, day, dom, start, end)
		r.mu.Lock()
		r.tried[day.Day+"/"+dom] = now()
		if done || giveUp {
			if !done {
				r.log.Warn("TLS report not delivered; giving up", "domain", dom, "day", day.Day)
			}
			if day.Done == nil {
				day.Done = map[string]bool{}
			}
			day.Done[dom] = true
			delete(r.tried, day.Day+"/"+dom)
		}
		r.mu.Unlock()
	}
	r.mu.Lock()
	finished := len(day.Done) >= len(day.Domains)
	if finished {
		r.pending = deleteDay(r.pending, day)
	}
	r.mu.Unlock()
	if finished {
		r.removePending(day.Day)
	} else {
		r.savePending(day)
	}
}

func deleteDay(list []*rptDay, d *rptDay) []*rptDay {
	out := list[:0]
	for _, x := range list {
		if x != d {
			out = append(out, x)
		}
	}
	return out
}

// sendDomain sends the report of one domain to its rua addresses; true
// means there is nothing more to do (sent, or the domain wants none).
func (r *TLSReports) sendDomain(ctx context.Context, day *rptDay, domain string, start, end time.Time) bool {
	rrs, err := r.res.lookup(ctx, "_smtp._tls."+domain, dns.TypeTXT)
	if errors.Is(err, errNXDomain) || err == nil && len(rrs) == 0 {
		return true
	}
	if err != nil {
		r.log.Warn("cannot look up the TLS-RPT record; will try again", "domain", domain, "err", err)
		return false
	}
	rec, err := tlsrecords.FindTLSRPTRecord(txtStrings(rrs))
	if errors.Is(err, tlsrecords.ErrNoRecord) {
		return true
	}
	if err != nil {
		r.log.Info("TLS-RPT record unusable; no report sent", "domain", domain, "err", err)
		return true
	}
	r.mu.Lock()
	rep, id := r.build(day, domain, start, end)
	r.mu.Unlock()
	js, err := json.Marshal(rep)
	if err != nil {
		r.log.Error("cannot encode TLS report", "domain", domain, "err", err)
		return true
	}
	gz := gzipBytes(js)
	unique := strings.ReplaceAll(strings.SplitN(id, "@", 2)[0], ".", "") // 1*(ALPHA / DIGIT)
	filename := fmt.Sprintf("%s!%s!%d!%d!%s.json.gz", r.o.Hostname, domain, start.Unix(), end.Add(-time.Second).Unix(), unique)
	ok := true
	for _, u := range rec.RUA {
		var err error
		switch u.Scheme {
		case "mailto":
			err = r.mail(domain, tlsrecords.MailtoAddress(u), id, filename, gz, start)
		case "https":
			err = r.post(ctx, u.String(), gz)
		}
		if err != nil {
			ok = false
			r.log.Warn("TLS report not sent; will try again", "domain", domain, "rua", u.String(), "err", err)
			continue
		}
		r.log.Info("TLS report sent", "domain", domain, "rua", u.String(), "report_id", id, "day", day.Day)
	}
	return ok
}

// report is the JSON document of RFC 8460 section 4.4.
type report struct {
	Organization string         `json:"organization-name"`
	DateRange    reportRange    `json:"date-range"`
	Contact      string         `json:"contact-info"`
	ReportID     string         `json:"report-id"`
	Policies     []reportPolicy `json:"policies"`
}

type reportRange struct {
	Start string `json:"start-datetime"`
	End   string `json:"end-datetime"`
}

type reportPolicy struct {
	Policy struct {
		Type    string   `json:"policy-type"`
		Strings []string `json:"policy-string,omitempty"`
		Domain  string   `json:"policy-domain"`
		MXHost  []string `json:"mx-host,omitempty"`
	} `json:"policy"`
	Summary struct {
		Success int64 `json:"total-successful-session-count"`
		Failure int64 `json:"total-failure-session-count"`
	} `json:"summary"`
	Failures []reportFailure `json:"failure-details,omitempty"`
}

type reportFailure struct {
	ResultType  string `json:"result-type"`
	MXHost      string `json:"receiving-mx-hostname,omitempty"`
	ReceivingIP string `json:"receiving-ip,omitempty"`
	Count       int64  `json:"failed-session-count"`
	Reason      string `json:"failure-reason-code,omitempty"`
}

// build makes the report of domain for day. r.mu is held.
func (r *TLSReports) build(day *rptDay, domain string, start, end time.Time) (*report, string) {
	var rnd [8]byte
	rand.Read(rnd[:])
	id := fmt.Sprintf("%s.%s@%s", start.UTC().Format("20060102"), hex.EncodeToString(rnd[:]), r.o.Hostname)
	rep := &report{Organization: r.o.Organization, Contact: r.o.Contact, ReportID: id,
		DateRange: reportRange{Start: start.UTC().Format(time.RFC3339), End: end.Add(-time.Second).UTC().Format(time.RFC3339)}}
	for _, e := range day.Domains[domain].Policies {
		var p reportPolicy
		p.Policy.Type, p.Policy.Domain = e.Policy.Type, domain
		p.Policy.Strings = splitLines(e.Policy.Strings)
		p.Policy.MXHost = splitLines(e.Policy.MXHosts)
		p.Summary.Success = e.Success
		for _, f := range e.Failures {
			p.Summary.Failure += f.Count
			p.Failures = append(p.Failures, reportFailure{ResultType: f.ResultType, MXHost: f.MXHost,
				ReceivingIP: f.ReceivingIP, Count: f.Count, Reason: f.Reason})
		}
		rep.Policies = append(rep.Policies, p)
	}
	return rep, id
}

func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func gzipBytes(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// mail queues the report as the message RFC 8460 section 5.3 describes.
func (r *TLSReports) mail(domain, to, id, filename string, gz []byte, start time.Time) error {
	if r.o.Submit == nil {
		return errors.New("mailto: reports cannot be queued here")
	}
	var b strings.Builder
	boundary := "tlsrpt-" + strings.NewReplacer("@", "-", ".", "-").Replace(id)
	hdr := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	hdr("From", "<"+r.o.From+">")
	hdr("To", "<"+to+">")
	hdr("Subject", fmt.Sprintf("Report Domain: %s Submitter: %s Report-ID: <%s>", domain, r.o.Hostname, id))
	hdr("Date", now().Format(time.RFC1123Z))
	hdr("Message-ID", "<"+id+">")
	hdr("MIME-Version", "1.0")
	hdr("TLS-Report-Domain", domain)
	hdr("TLS-Report-Submitter", r.o.Hostname)
	hdr("Auto-Submitted", "auto-generated")
	hdr("Content-Type", `multipart/report; report-type="tlsrpt"; boundary="`+boundary+`"`)
	b.WriteString("\r\n--" + boundary + "\r\n")
	b.WriteString("Content-Type: text/plain; charset=us-ascii\r\n\r\n")
	fmt.Fprintf(&b, "This is the aggregate TLS report (RFC 8460) of %s about mail to %s\r\non %s (UTC). The report is attached.\r\n",
		r.o.Hostname, domain, start.UTC().Format(time.DateOnly))
	b.WriteString("\r\n--" + boundary + "\r\n")
	b.WriteString("Content-Type: application/tlsrpt+gzip\r\n")
	b.WriteString("Content-Transfer-Encoding: base64\r\n")
	b.WriteString(`Content-Disposition: attachment; filename="` + filename + `"` + "\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(gz)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	b.WriteString("--" + boundary + "--\r\n")
	return r.o.Submit(r.o.From, to, []byte(b.String()))
}

// post sends the report to an https: rua (RFC 8460 section 5.4).
func (r *TLSReports) post(ctx context.Context, url string, gz []byte) error {
	ctx, cancel := context.WithTimeout(ctx, rptPostTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(gz))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/tlsrpt+gzip")
	req.Header.Set("User-Agent", "inkan TLS-RPT")
	resp, err := r.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("HTTP status %s", resp.Status)
	}
	return nil
}

// policyHTTPClient is the HTTPS client of policy fetches and report posts:
// names are resolved with res, no proxy, no redirect; port, if set, is
// dialled whatever the URL says.
func policyHTTPClient(res *resolver, roots *x509.CertPool, timeout time.Duration, port string) *http.Client {
	dialer := &net.Dialer{Timeout: timeout}
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				host, p, err := net.SplitHostPort(addr)
				if err != nil {
					return nil, err
				}
				if port != "" {
					p = port
				}
				addrs, v := res.addrs(ctx, host)
				if v != nil {
					return nil, errors.New(v.msg)
				}
				var last error
				for _, a := range addrs {
					conn, err := dialer.DialContext(ctx, "tcp", net.JoinHostPort(a.String(), p))
					if err == nil {
						return conn, nil
					}
					last = err
				}
				return nil, last
			},
			TLSClientConfig:     &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout: timeout,
			MaxIdleConns:        4,
			IdleConnTimeout:     30 * time.Second,
			DisableCompression:  true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return errors.New("the server answered with a redirect, which is not followed")
		},
	}
}

// ---- saving ----

func (r *TLSReports) save() {
	r.mu.Lock()
	if !r.dirty || r.o.Dir == "" {
		r.mu.Unlock()
		return
	}
	b, err := json.Marshal(r.cur)
	r.dirty = false
	r.mu.Unlock()
	if err == nil {
		err = safefile.WriteFile(filepath.Join(r.o.Dir, "current.json"), b, 0o600)
	}
	if err != nil {
		r.log.Error("cannot save TLS report counts", "err", err)
	}
}

func (r *TLSReports) savePending(d *rptDay) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.savePendingLocked(d)
}

// savePendingLocked writes an ended day's file. r.mu is held.
func (r *TLSReports) savePendingLocked(d *rptDay) {
	if r.o.Dir == "" {
		return
	}
	b, err := json.Marshal(d)
	if err == nil {
		err = safefile.WriteFile(filepath.Join(r.o.Dir, "day-"+d.Day+".json"), b, 0o600)
	}
	if err != nil {
		r.log.Error("cannot save TLS report of a finished day", "day", d.Day, "err", err)
	}
}

func (r *TLSReports) removePending(day string) {
	if r.o.Dir != "" {
		os.Remove(filepath.Join(r.o.Dir, "day-"+day+".json"))
	}
}

// load reads current.json and the pending day-*.json files. A broken file
// is renamed aside with a .broken suffix and logged.
func (r *TLSReports) load() error {
	entries, err := os.ReadDir(r.o.Dir)
	if err != nil {
		return fmt.Errorf("tls reports: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if name != "current.json" && !(strings.HasPrefix(name, "day-") && strings.HasSuffix(name, ".json")) {
			continue
		}
		path := filepath.Join(r.o.Dir, name)
		d := new(rptDay)
		b, err := os.ReadFile(path)
		if err == nil {
			err = json.Unmarshal(b, d)
		}
		if err == nil {
			_, err = time.Parse(time.DateOnly, d.Day)
		}
		if err != nil {
			r.log.Warn("broken TLS report file set aside", "file", path, "err", err)
			os.Rename(path, path+".broken")
			continue
		}
		if d.Domains == nil {
			d.Domains = map[string]*rptDomain{}
		}
		switch {
		case name == "current.json" && d.Day == r.cur.Day:
			r.cur = d
		case len(d.Domains) == 0:
		case name == "current.json":
			// A day that ended while inkan was stopped. ("current.json"
			// sorts before "day-*", which win if the day is there too.)
			r.pending = append(r.pending, d)
			r.dirty = true
		default:
			r.pending = slices.DeleteFunc(r.pending, func(x *rptDay) bool { return x.Day == d.Day })
			r.pending = append(r.pending, d)
		}
	}
	for _, d := range r.pending {
		r.savePending(d)
	}
	return nil
}
