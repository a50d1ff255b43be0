package deliver_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inkan-relay/inkan/queue"
	"github.com/inkan-relay/inkan/relay/deliver"
)

// testReport is the RFC 8460 section 4.4 report, decoded strictly.
type testReport struct {
	Organization string `json:"organization-name"`
	DateRange    struct {
		Start string `json:"start-datetime"`
		End   string `json:"end-datetime"`
	} `json:"date-range"`
	Contact  string             `json:"contact-info"`
	ReportID string             `json:"report-id"`
	Policies []testReportPolicy `json:"policies"`
}

type testReportPolicy struct {
	Policy struct {
		Type    string   `json:"policy-type"`
		Strings []string `json:"policy-string"`
		Domain  string   `json:"policy-domain"`
		MXHost  []string `json:"mx-host"`
	} `json:"policy"`
	Summary struct {
		Success int64 `json:"total-successful-session-count"`
		Failure int64 `json:"total-failure-session-count"`
	} `json:"summary"`
	Failures []struct {
		ResultType  string `json:"result-type"`
		SendingIP   string `json:"sending-mta-ip"`
		MXHost      string `json:"receiving-mx-hostname"`
		MXHelo      string `json:"receiving-mx-helo"`
		ReceivingIP string `json:"receiving-ip"`
		Count       int64  `json:"failed-session-count"`
		Info        string `json:"additional-information"`
		Reason      string `json:"failure-reason-code"`
	} `json:"failure-details"`
}

var resultTypes = map[string]bool{
	"starttls-not-supported": true, "certificate-host-mismatch": true, "certificate-expired": true,
	"certificate-not-trusted": true, "validation-failure": true, "tlsa-invalid": true, "dnssec-invalid": true,
	"dane-required": true, "sts-policy-fetch-error": true, "sts-policy-invalid": true, "sts-webpki-invalid": true,
}

// decodeReport decodes a report with unknown fields refused and checks what
// RFC 8460 section 4.4 requires of each field (the same rules as
// testdata/tlsrpt.schema.json, which .ci/transport-security.sh applies with
// a JSON Schema validator).
func decodeReport(t *testing.T, b []byte) *testReport {
	t.Helper()
	if b == nil {
		t.Fatal("no report")
	}
	if dir := os.Getenv("INKAN_TLSRPT_SAMPLES"); dir != "" {
		// .ci/transport-security.sh checks them with a JSON Schema validator.
		f, err := os.CreateTemp(dir, "report-*.json")
		if err != nil {
			t.Fatal(err)
		}
		f.Write(b)
		f.Close()
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	r := new(testReport)
	if err := dec.Decode(r); err != nil {
		t.Fatalf("report does not decode strictly: %v\n%s", err, b)
	}
	var raw map[string]any
	json.Unmarshal(b, &raw)
	for _, k := range []string{"organization-name", "date-range", "contact-info", "report-id", "policies"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("report lacks %s", k)
		}
	}
	for _, ts := range []string{r.DateRange.Start, r.DateRange.End} {
		if _, err := time.Parse(time.RFC3339, ts); err != nil || !strings.HasSuffix(ts, "Z") {
			t.Errorf("date-time %q is not RFC 3339 UTC", ts)
		}
	}
	if r.Organization == "" || r.Contact == "" || r.ReportID == "" || len(r.Policies) == 0 {
		t.Errorf("empty required field: %+v", r)
	}
	for _, p := range r.Policies {
		switch p.Policy.Type {
		case "sts", "tlsa":
			if len(p.Policy.Strings) == 0 {
				t.Errorf("%s policy without policy-string", p.Policy.Type)
			}
		case "no-policy-found":
		default:
			t.Errorf("policy-type %q", p.Policy.Type)
		}
		if p.Policy.Domain == "" {
			t.Error("empty policy-domain")
		}
		var n int64
		for _, f := range p.Failures {
			if !resultTypes[f.ResultType] || f.Count < 1 {
				t.Errorf("failure detail %+v", f)
			}
			n += f.Count
		}
		if n != p.Summary.Failure || p.Summary.Success < 0 {
			t.Errorf("summary %+v does not add up to the failure details (%d)", p.Summary, n)
		}
	}
	return r
}

func (r *testReport) policy(t *testing.T, typ string) testReportPolicy {
	t.Helper()
	for _, p := range r.Policies {
		if p.Policy.Type == typ {
			return p
		}
	}
	t.Fatalf("no %s policy in %+v", typ, r.Policies)
	return testReportPolicy{}
}

// mailbox collects submitted reports.
type mailbox struct {
	mu   sync.Mutex
	msgs []submitted
}

type submitted struct {
	from, to string
	msg      []byte
}

func (m *mailbox) submit(from, to string, msg []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.msgs = append(m.msgs, submitted{from, to, msg})
	return nil
}

func (m *mailbox) all() []submitted {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]submitted(nil), m.msgs...)
}

func newReports(t *testing.T, mb *mailbox, opts ...func(*deliver.ReportOptions)) *deliver.TLSReports {
	t.Helper()
	o := deliver.ReportOptions{Hostname: "relay.inkan.test", Organization: "inkan test",
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil)), RootCAs: policyCA(t).pool}
	if mb != nil {
		o.Submit = mb.submit
	}
	for _, f := range opts {
		f(&o)
	}
	r, err := deliver.NewTLSReports(o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// A report reaches its mailto: rua as RFC 8460 section 5.3 describes, from
// the report address, gzipped, and valid; a report delivery itself is not
// counted.
func TestTLSReportByMail(t *testing.T) {
	e := newSTSEnv(t, stsPolicy("enforce", 86400, "mx1.sts.test"))
	e.zone.add(t, `_smtp._tls.sts.test. 300 IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@sts.test"`)
	e.net.start(t, "127.0.0.2", sinkOpts{tls: tlsWith(sinkCert(t, goodCert, "mx1.sts.test"))})
	mb := &mailbox{}
	dir := t.TempDir()
	rep := newReports(t, mb, func(o *deliver.ReportOptions) { o.Dir = dir; o.Resolver = e.dns })
	tr := e.transport(t, e.config(), deliver.Options{Reports: rep, IdleTimeout: -1}) // a session per message
	for range 3 {
		wantStatus(t, deliverOne(t, tr, delivery("a@sender.test", "sts.test", testMessage, "bob@sts.test"))[0], queue.Sent)
	}
	// A report delivery (from the report address) is never counted.
	wantStatus(t, deliverOne(t, tr, delivery("tls-reports@relay.inkan.test", "sts.test", testMessage, "tlsrpt@sts.test"))[0], queue.Sent)

	rep.SendDue(context.Background())
	if len(mb.all()) != 0 {
		t.Fatal("report sent before the day ended")
	}
	tomorrow := time.Now().UTC().Add(24 * time.Hour)
	t.Cleanup(deliver.SetNow(func() time.Time { return tomorrow }))
	rep.SendDue(context.Background())
	msgs := mb.all()
	if len(msgs) != 1 {
		t.Fatalf("%d reports submitted, want 1", len(msgs))
	}
	if msgs[0].from != "tls-reports@relay.inkan.test" || msgs[0].to != "tlsrpt@sts.test" {
		t.Errorf("report from %q to %q", msgs[0].from, msgs[0].to)
	}
	r := decodeReport(t, reportFromMail(t, msgs[0].msg, "sts.test"))
	p := r.policy(t, "sts")
	if p.Summary.Success != 3 || p.Summary.Failure != 0 || p.Policy.Domain != "sts.test" || strings.Join(p.Policy.MXHost, ",") != "mx1.sts.test" {
		t.Errorf("policy %+v", p)
	}
	if r.Organization != "inkan test" || r.Contact != "tls-reports@relay.inkan.test" {
		t.Errorf("report header %+v", r)
	}
	// Sent once: the next round has nothing to do, and the day is gone.
	rep.SendDue(context.Background())
	if len(mb.all()) != 1 {
		t.Error("report sent twice")
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "day-*.json")); len(m) != 0 {
		t.Errorf("sent day still pending: %v", m)
	}
}

// reportFromMail checks the report message and returns its JSON.
func reportFromMail(t *testing.T, msg []byte, domain string) []byte {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Header.Get("TLS-Report-Domain"); got != domain {
		t.Errorf("TLS-Report-Domain %q", got)
	}
	if got := m.Header.Get("TLS-Report-Submitter"); got != "relay.inkan.test" {
		t.Errorf("TLS-Report-Submitter %q", got)
	}
	if !regexp.MustCompile(`^Report Domain: ` + regexp.QuoteMeta(domain) + ` Submitter: relay\.inkan\.test Report-ID: <.+>$`).MatchString(m.Header.Get("Subject")) {
		t.Errorf("Subject %q", m.Header.Get("Subject"))
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "tlsrpt" {
		t.Fatalf("Content-Type %q", m.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		part, err := mr.NextPart()
		if err != nil {
			t.Fatalf("no application/tlsrpt+gzip part: %v", err)
		}
		if part.Header.Get("Content-Type") != "application/tlsrpt+gzip" {
			continue
		}
		if fn := part.FileName(); !regexp.MustCompile(`^relay\.inkan\.test!` + regexp.QuoteMeta(domain) + `!\d+!\d+!\w+\.json\.gz$`).MatchString(fn) {
			t.Errorf("filename %q", fn)
		}
		if cte := part.Header.Get("Content-Transfer-Encoding"); cte != "base64" {
			t.Errorf("Content-Transfer-Encoding %q", cte)
		}
		raw, err := io.ReadAll(base64.NewDecoder(base64.StdEncoding, part))
		if err != nil {
			t.Fatalf("attachment is not base64: %v", err)
		}
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("attachment is not gzip: %v", err)
		}
		js, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		return js
	}
}

// An https: rua gets a gzipped POST; a failed POST is tried again later.
func TestTLSReportByHTTPS(t *testing.T) {
	e := newSTSEnv(t, stsPolicy("enforce", 86400, "mx1.sts.test"))
	e.net.start(t, "127.0.0.2", sinkOpts{tls: tlsWith(sinkCert(t, goodCert, "mx1.sts.test"))})
	var (
		mu     sync.Mutex
		bodies [][]byte
		fail   = true
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/tlsrpt+gzip" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, "not gzip", http.StatusBadRequest)
			return
		}
		b, _ := io.ReadAll(zr)
		bodies = append(bodies, b)
	}))
	srv.TLS = tlsWith(policyCA(t).issue(t, []string{"reports.sts.test"}, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), false))
	srv.StartTLS()
	t.Cleanup(srv.Close)
	port := strconv.Itoa(srv.Listener.Addr().(*net.TCPAddr).Port)
	e.zone.add(t, "reports.sts.test. 300 IN A 127.0.0.1",
		`_smtp._tls.sts.test. 300 IN TXT "v=TLSRPTv1; rua=https://reports.sts.test:`+port+`/tlsrpt"`)

	rep := newReports(t, nil, func(o *deliver.ReportOptions) { o.Resolver = e.dns })
	tr := e.transport(t, e.config(), deliver.Options{Reports: rep})
	wantStatus(t, deliverOne(t, tr, delivery("a@sender.test", "sts.test", testMessage, "bob@sts.test"))[0], queue.Sent)

	t0 := time.Now().UTC().Add(24 * time.Hour)
	restore := deliver.SetNow(func() time.Time { return t0 })
	rep.SendDue(context.Background()) // 503: kept for later
	mu.Lock()
	fail = false
	mu.Unlock()
	rep.SendDue(context.Background()) // too soon to try again
	restore()
	t1 := t0.Add(2 * time.Hour)
	t.Cleanup(deliver.SetNow(func() time.Time { return t1 }))
	rep.SendDue(context.Background())
	mu.Lock()
	defer mu.Unlock()
	if len(bodies) != 1 {
		t.Fatalf("%d reports posted, want 1", len(bodies))
	}
	decodeReport(t, bodies[0]).policy(t, "sts")
}

// Counts survive a restart.
func TestTLSReportCountsSurviveRestart(t *testing.T) {
	e := newSTSEnv(t, stsPolicy("testing", 86400, "mx1.sts.test"))
	e.net.start(t, "127.0.0.2", sinkOpts{}) // no STARTTLS
	dir := t.TempDir()
	rep := newReports(t, nil, func(o *deliver.ReportOptions) { o.Dir = dir })
	tr := e.transport(t, e.config(), deliver.Options{Reports: rep})
	wantStatus(t, deliverOne(t, tr, delivery("a@sender.test", "sts.test", testMessage, "bob@sts.test"))[0], queue.Sent)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { rep.Run(ctx); close(done) }()
	cancel()
	<-done
	again := newReports(t, nil, func(o *deliver.ReportOptions) { o.Dir = dir })
	p := decodeReport(t, again.ReportJSON("sts.test")).policy(t, "sts")
	if p.Summary.Failure != 1 || p.Failures[0].ResultType != "starttls-not-supported" {
		t.Errorf("after restart: %+v", p)
	}
}
