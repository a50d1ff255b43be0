package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// applyResults records the transport's answers in r.st and logs one line per
// recipient. It returns the positions of recipients that failed permanently.
func (q *Queue) applyResults(ctx context.Context, r *round, run []*group, results [][]Result) []int {
	t := now()
	interrupted := ctx.Err() != nil
	var failed []int
	for gi, g := range run {
		byRcpt := make(map[string]*Result, len(results[gi]))
		for k := range results[gi] {
			byRcpt[results[gi][k].Rcpt] = &results[gi][k]
		}
		for _, addr := range g.rcpts {
			res := findResult(byRcpt, addr)
			if res == nil {
				// Errors are temporary by default.
				res = &Result{Rcpt: addr, Status: Deferred, Message: "no result from the transport"}
				if interrupted {
					res.Message = "delivery interrupted by shutdown"
				}
			}
			status := "deferred"
			switch {
			case res.Status == Sent:
				status = "sent"
			case res.Status == Failed:
				status = "bounced"
			case !res.NotBefore.IsZero():
				status = "paced" // waits for its turn; not an attempt
			}
			var rc *rcptState
			for _, i := range g.idx[addr] {
				rc = &r.st.Rcpts[i]
				rc.Code, rc.Enhanced, rc.Remote = res.Code, res.Enhanced, res.Remote
				rc.Policy = res.TLSPolicy
				rc.Reply = replyText(res)
				switch res.Status {
				case Sent:
					rc.Status = Sent
					if !res.DSNPassed && r.rec.Env.DSNOf(i).Wants(NotifySuccess) {
						r.relayed = append(r.relayed, i)
					}
				case Failed:
					rc.Status = Failed
					failed = append(failed, i)
				default:
					switch {
					case !res.NotBefore.IsZero():
						// Paced: not tried, so no attempt and no back-off.
						rc.Next = res.NotBefore
						rc.Attempts = max(0, rc.Attempts-1)
					case interrupted:
						rc.Next = t // abandoned, not tried: retry soon after restart
					}
				}
			}
			deliveriesTotal.WithLabelValues(status).Inc()
			r.log.Info("delivery", "to", addr, "relay", res.Remote, "tls", res.TLS,
				"delay", t.Sub(r.arrival).Round(time.Millisecond).String(),
				"attempt", rc.Attempts, "status", status, "reply", rc.Reply, "tls_policy", res.TLSPolicy)
		}
	}
	return failed
}

func findResult(m map[string]*Result, addr string) *Result {
	if res := m[addr]; res != nil {
		return res
	}
	for k, res := range m {
		if strings.EqualFold(k, addr) {
			return res
		}
	}
	return nil
}

// conclude bounces failed and expired recipients, sends a delay warning if
// due, and saves the state (or removes the finished message). it.mu is held.
func (q *Queue) conclude(it *item, r *round, failed []int) (time.Time, bool) {
	t := now()
	var expired []int
	if !t.Before(r.arrival.Add(q.opts.MaxLifetime)) {
		for i, rc := range r.st.Rcpts {
			if rc.Status == Pending {
				expired = append(expired, i)
			}
		}
	}
	if len(failed)+len(expired) > 0 {
		q.bounceFailed(r, failed, expired, t)
	}
	if len(r.relayed) > 0 {
		q.reportRelayed(r)
	}
	if q.opts.DelayWarning > 0 && !r.st.Warned && r.st.pending() &&
		t.Sub(r.arrival) >= q.opts.DelayWarning {
		if err := q.warnDelay(r, t); err != nil {
			r.log.Error("cannot queue delay warning; will try again", "err", err)
		} else {
			r.st.Warned = true
		}
	}
	q.mu.Lock()
	r.st.Held = it.held
	q.mu.Unlock()
	if !r.st.pending() {
		if err := q.finish(r); err != nil {
			return t.Add(q.opts.RetryMin), true
		}
		return time.Time{}, false
	}
	if err := q.materialize(it); err != nil {
		// Still in memory and in the journal: nothing is lost.
		r.log.Warn("cannot write the message file; kept in memory", "err", err)
	}
	if err := q.writeState(r.id, r.st); err != nil {
		// The state saved before delivery stays: at worst a duplicate.
		r.log.Error("cannot save delivery results", "err", err)
	}
	n, _ := r.st.nextAttempt()
	return n, true
}

// bounceFailed sends one DSN for the failed and expired recipients, then
// marks them failed. If the DSN cannot be queued they stay pending, so the
// failure is reported later rather than lost.
//
// A recipient whose NOTIFY leaves out FAILURE (NOTIFY=NEVER, or only
// SUCCESS/DELAY) is marked failed without a bounce, with a log line.
func (q *Queue) bounceFailed(r *round, failed, expired []int, t time.Time) {
	var rcpts []DSNRcpt
	var report []int
	for _, i := range failed {
		if q.suppressed(r, i, NotifyFailure) {
			continue
		}
		report = append(report, i)
		rcpts = append(rcpts, r.dsnRcpt(i, ActionFailed, "5.0.0"))
	}
	for _, i := range expired {
		if q.suppressed(r, i, NotifyFailure) {
			continue
		}
		report = append(report, i)
		d := r.dsnRcpt(i, ActionFailed, "4.4.7")
		if d.Diagnostic == "" {
			d.DiagnosticType, d.Diagnostic = "X-Inkan", "delivery time expired"
		}
		rcpts = append(rcpts, d)
	}
	reason := "failed"
	if len(failed) == 0 {
		reason = "expired"
	}
	if len(rcpts) > 0 {
		if err := q.sendDSN(r, rcpts, reason); err != nil {
			r.log.Error("cannot queue bounce; recipients stay pending", "err", err)
			for _, i := range report {
				r.st.Rcpts[i].Status = Pending
				r.st.Rcpts[i].Next = t.Add(q.opts.RetryMin)
			}
			expired = slices.DeleteFunc(expired, func(i int) bool { return slices.Contains(report, i) })
		}
	}
	for _, i := range expired {
		rc := &r.st.Rcpts[i]
		rc.Status = Failed
		deliveriesTotal.WithLabelValues("expired").Inc()
		r.log.Info("delivery", "to", rc.Addr, "relay", rc.Remote, "tls", "",
			"delay", t.Sub(r.arrival).Round(time.Millisecond).String(),
			"attempt", rc.Attempts, "status", "expired", "reply", rc.Reply)
	}
}

// suppressed reports (and logs) that the sender of r asked for no notice on
// condition for recipient i.
func (q *Queue) suppressed(r *round, i int, condition string) bool {
	d := r.rec.Env.DSNOf(i)
	if d.Wants(condition) {
		return false
	}
	dsnSuppressed.WithLabelValues(strings.ToLower(condition)).Inc()
	r.log.Info("no notice: the sender's NOTIFY leaves it out", "to", r.st.Rcpts[i].Addr,
		"condition", strings.ToLower(condition), "notify", strings.Join(d.Notify, ","))
	return true
}

// dsnRcpt describes recipient i of r for a DSN, with its ORCPT.
func (r *round) dsnRcpt(i int, action, status string) DSNRcpt {
	d := dsnRcpt(&r.st.Rcpts[i], action, status)
	if o := r.rec.Env.DSNOf(i); o.ORcpt != "" {
		d.OriginalRecipient = strings.ToLower(o.ORcptType) + ";" + o.ORcpt
	}
	return d
}

// dsnRcpt describes a recipient for a DSN; status is used when the remote
// gave no enhanced code.
func dsnRcpt(rc *rcptState, action, status string) DSNRcpt {
	d := DSNRcpt{
		Addr: rc.Addr, Action: action, Status: status,
		RemoteMTA: remoteHost(rc.Remote), Diagnostic: rc.Reply, LastAttempt: rc.Last,
	}
	if statusRE.MatchString(rc.Enhanced) && rc.Enhanced[0] == status[0] {
		d.Status = rc.Enhanced
	}
	if rc.Code == 0 && rc.Reply != "" {
		d.DiagnosticType = "X-Inkan" // a local error, not an SMTP reply
	}
	return d
}

// remoteHost turns "mx.example.com[192.0.2.1]:25" into "mx.example.com".
func remoteHost(remote string) string {
	if i := strings.IndexByte(remote, '['); i > 0 {
		return remote[:i]
	} else if i == 0 {
		if j := strings.IndexByte(remote, ']'); j > 0 {
			return remote[1:j]
		}
	}
	if i := strings.LastIndexByte(remote, ':'); i > 0 && !strings.Contains(remote[:i], ":") {
		return remote[:i]
	}
	return remote
}

// warnDelay queues a "delayed" DSN for the pending recipients.
func (q *Queue) warnDelay(r *round, t time.Time) error {
	var rcpts []DSNRcpt
	until := r.arrival.Add(q.opts.MaxLifetime)
	for i := range r.st.Rcpts {
		rc := &r.st.Rcpts[i]
		if rc.Status == Pending && !q.suppressed(r, i, NotifyDelay) {
			d := r.dsnRcpt(i, ActionDelayed, "4.0.0")
			d.WillRetryUntil = until
			rcpts = append(rcpts, d)
		}
	}
	if len(rcpts) == 0 {
		return nil
	}
	return q.sendDSN(r, rcpts, "delay")
}

// reportRelayed sends the success notices the sender asked for (NOTIFY
// with SUCCESS) for recipients handed to a next hop that does not support
// DSN: "relayed" (RFC 3464 section 2.3.3), as no later notice will come. A
// failure to queue it is logged; the recipients stay sent.
func (q *Queue) reportRelayed(r *round) {
	var rcpts []DSNRcpt
	for _, i := range r.relayed {
		rc := &r.st.Rcpts[i]
		d := r.dsnRcpt(i, ActionRelayed, "2.0.0")
		d.Diagnostic = rc.Reply
		rcpts = append(rcpts, d)
	}
	r.relayed = nil
	if err := q.sendDSN(r, rcpts, "relayed"); err != nil {
		r.log.Error("cannot queue the success notice the sender asked for", "err", err)
	}
}

// sendDSN queues a DSN about r to its sender. Mail from the null sender is
// never bounced: that is logged and counts as done.
func (q *Queue) sendDSN(r *round, rcpts []DSNRcpt, reason string) error {
	if r.rec.Env.From == "" {
		for _, d := range rcpts {
			r.log.Warn("not bouncing mail from the null sender; dropped", "to", d.Addr,
				"action", d.Action, "reply", d.Diagnostic)
		}
		return nil
	}
	hdr, err := q.readHeader(r.id, r.rec)
	if err != nil {
		return fmt.Errorf("read original header: %w", err)
	}
	d := &DSN{
		ReportingMTA: q.opts.Hostname, From: q.opts.BounceFrom, To: r.rec.Env.From,
		QueueID: r.id, Arrival: r.arrival, Rcpts: rcpts, Header: hdr, EnvID: r.rec.Env.EnvID,
	}
	// RET=FULL: a failure notice returns the whole message (RFC 3461
	// section 4.3), up to maxDSNFull; otherwise, and for other notices, the
	// header only.
	if strings.EqualFold(r.rec.Env.Ret, "FULL") && reason != "delay" && reason != "relayed" {
		if r.rec.Size() <= maxDSNFull {
			if d.Full, err = q.readAll(r.id, r.rec); err != nil {
				return fmt.Errorf("read original message: %w", err)
			}
		} else {
			d.TooLarge = true
		}
	}
	msg, err := BuildDSN(d)
	if err != nil {
		return err
	}
	id, err := q.queueDSN(msg, r.rec.Env.From, r.rec.Env.SMTPUTF8)
	if err != nil {
		return err
	}
	bouncesTotal.WithLabelValues(reason).Inc()
	r.log.Info("bounce queued", "dsn_id", id, "to", r.rec.Env.From, "reason", reason, "rcpts", len(rcpts))
	return nil
}

// queueDSN stores a DSN from <> to the given address as a new message.
func (q *Queue) queueDSN(msg []byte, to string, utf8 bool) (string, error) {
	var prefix []byte
	if q.opts.SignBounce != nil {
		p, err := q.opts.SignBounce(msg)
		if err != nil {
			q.log.Warn("cannot sign bounce; sending it unsigned", "err", err)
		} else {
			prefix = p
		}
	}
	d, err := q.NewDraft(&Envelope{
		To: []string{to}, Received: now(), Helo: q.opts.Hostname,
		SMTPUTF8: utf8 || !mailsyntax.IsASCII(to) || !mailsyntax.IsASCII(msg),
		Body8Bit: !mailsyntax.IsASCII(msg),
	})
	if err != nil {
		return "", err
	}
	if _, err := d.Write(msg); err != nil {
		d.Abort()
		return "", err
	}
	if err := d.Commit(prefix); err != nil {
		return "", err
	}
	return d.ID(), nil
}

// finish removes a message whose recipients are all done.
func (q *Queue) finish(r *round) error {
	if err := q.removeMessage(r.id); err != nil {
		r.log.Error("cannot remove finished message", "err", err)
		return err
	}
	r.log.Info("removed", "reason", "done")
	return nil
}

// readAll returns a whole stored message (prefix and body).
func (q *Queue) readAll(id string, rec *record) ([]byte, error) {
	rc, err := q.opener(id, rec)()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// readHeader returns the header section of a stored message.
func (q *Queue) readHeader(id string, rec *record) ([]byte, error) {
	rc, err := q.opener(id, rec)()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return readHeaderSection(rc)
}

// opener returns Delivery.Open for a message: prefix, then body.
func (q *Queue) opener(id string, rec *record) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		if data := q.memData(id); data != nil {
			return io.NopCloser(io.MultiReader(bytes.NewReader(rec.Prefix), bytes.NewReader(data[:rec.BodyLen]))), nil
		}
		f, err := q.openMsg(id)
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("open message %s: %w", id, ErrNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("open message %s: %w", id, err)
		}
		return &messageReader{
			Reader: io.MultiReader(bytes.NewReader(rec.Prefix), io.NewSectionReader(f, 0, rec.BodyLen)),
			f:      f,
		}, nil
	}
}

type messageReader struct {
	io.Reader
	f *os.File
}

func (m *messageReader) Close() error { return m.f.Close() }
