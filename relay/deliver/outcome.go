package deliver

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/inkan-relay/inkan/queue"
)

// verdict is the answer for one or more recipients: a remote reply (code >
// 0) or a local error (code 0), with where it came from.
type verdict struct {
	status   queue.Status // Sent, Deferred or Failed
	code     int
	enhanced string
	msg      string
	remote   string
	tls      string
	// notBefore: not tried; the route's pacing lets it go then.
	notBefore time.Time
	// stop: no other host would do better (no OAuth2 token to log in with).
	stop bool
}

func temporary(enhanced, format string, args ...any) *verdict {
	return &verdict{status: queue.Deferred, enhanced: enhanced, msg: fmt.Sprintf(format, args...)}
}

func permanent(enhanced, format string, args ...any) *verdict {
	return &verdict{status: queue.Failed, enhanced: enhanced, msg: fmt.Sprintf(format, args...)}
}

// fromReply turns a server reply into a verdict: 5xx is permanent, anything
// else that is not a success is temporary.
func fromReply(e *smtp.SMTPError) *verdict {
	v := &verdict{status: queue.Deferred, code: e.Code, msg: strings.ReplaceAll(e.Message, "\n", " ")}
	if e.Code/100 == 5 {
		v.status = queue.Failed
	}
	if c := e.EnhancedCode; c != smtp.EnhancedCodeNotSet && c != smtp.NoEnhancedCode {
		v.enhanced = fmt.Sprintf("%d.%d.%d", c[0], c[1], c[2])
	}
	return v
}

// fromError is fromReply for an *smtp.SMTPError, and a lost connection
// (temporary, 4.4.2) for anything else; ends reports the latter, and 421,
// which both end the connection.
func fromError(err error, remote, stage string) (v *verdict, ends bool) {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		v = fromReply(se)
		return v, se.Code == 421 || (se.Code/100 != 4 && se.Code/100 != 5)
	}
	return temporary("4.4.2", "lost connection with %s %s: %v", remote, stage, err), true
}

// sentReply parses the text of a 250 reply to the end of DATA.
func sentReply(text string) *verdict {
	enh, msg := splitEnhanced(strings.ReplaceAll(text, "\n", " "))
	return &verdict{status: queue.Sent, code: 250, enhanced: enh, msg: msg}
}

// splitEnhanced splits "2.0.0 Ok: queued" into "2.0.0" and "Ok: queued"; a
// text without an RFC 3463 code comes back whole.
func splitEnhanced(text string) (enhanced, rest string) {
	first, after, _ := strings.Cut(text, " ")
	parts := strings.Split(first, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || !strings.Contains("245", parts[0]) {
		return "", text
	}
	for _, p := range parts[1:] {
		if n, err := strconv.Atoi(p); err != nil || n < 0 || len(p) > 3 || p[0] == '+' {
			return "", text
		}
	}
	return first, after
}

// String is the verdict as a one-line reply: "550 5.1.1 no such user".
func (v *verdict) String() string {
	var b strings.Builder
	if v.code > 0 {
		b.WriteString(strconv.Itoa(v.code) + " ")
	}
	if v.enhanced != "" {
		b.WriteString(v.enhanced + " ")
	}
	b.WriteString(v.msg)
	return b.String()
}

func (v *verdict) at(remote, tls string) *verdict {
	v.remote, v.tls = remote, tls
	return v
}

func (v *verdict) result(rcpt string) queue.Result {
	return queue.Result{Rcpt: rcpt, Status: v.status, Code: v.code, Enhanced: v.enhanced,
		Message: v.msg, Remote: v.remote, TLS: v.tls, NotBefore: v.notBefore}
}

// outcome collects the results of one Deliver call.
type outcome struct {
	rcpts    []string
	res      []queue.Result
	done     []bool
	left     int      // recipients without a final result
	lastTemp *verdict // latest temporary session-level failure
	lastPerm *verdict // latest permanent one
	tally    tally    // of the current attempt, for its log line
	stop     bool     // a verdict said no other host would do better
	moved    []string // relay addresses that failed before, and why (failover)

	// Of the current relay address in a failover list (startHop):
	hopTemp     *verdict // its first temporary failure
	hopDeferred []int    // recipients it answered with 4xx
}

// tally counts what one attempt decided.
type tally struct {
	tried                  int
	sent, deferred, failed int
	last                   string
}

func (t tally) summary() string {
	switch {
	case t.sent+t.deferred+t.failed == 0:
		return "none"
	case t.deferred+t.failed == 0:
		return "sent"
	case t.sent+t.failed == 0:
		return "deferred"
	case t.sent+t.deferred == 0:
		return "failed"
	}
	return fmt.Sprintf("sent=%d deferred=%d failed=%d", t.sent, t.deferred, t.failed)
}

func newOutcome(rcpts []string) *outcome {
	return &outcome{rcpts: rcpts, res: make([]queue.Result, len(rcpts)), done: make([]bool, len(rcpts)),
		left: len(rcpts)}
}

// pending lists the recipients still without a final result.
func (o *outcome) pending() []int {
	var p []int
	for i, d := range o.done {
		if !d {
			p = append(p, i)
		}
	}
	return p
}

// resolve gives recipients their final result.
func (o *outcome) resolve(idx []int, v *verdict) {
	for _, i := range idx {
		if o.done[i] {
			continue
		}
		o.res[i], o.done[i] = v.result(o.rcpts[i]), true
		o.left--
		switch v.status {
		case queue.Sent:
			o.tally.sent++
		case queue.Failed:
			o.tally.failed++
		default:
			o.tally.deferred++
		}
		o.tally.last = v.String()
		if v.status == queue.Deferred {
			if o.hopTemp == nil {
				o.hopTemp = v
			}
			if v.code/100 == 4 {
				o.hopDeferred = append(o.hopDeferred, i)
			}
		}
	}
}

// startHop begins the next address of a failover list.
func (o *outcome) startHop() { o.hopTemp, o.hopDeferred = nil, nil }

// reopen gives the recipients the current address answered with 4xx back
// to the next one: the server refused to take them, so nothing was sent.
func (o *outcome) reopen() {
	for _, i := range o.hopDeferred {
		if o.done[i] && o.res[i].Status == queue.Deferred {
			o.done[i] = false
			o.left++
		}
	}
	if o.hopTemp != nil {
		o.lastTemp = o.hopTemp
	}
}

// note records a failure that leaves the pending recipients for the next
// host; if no host is left, it becomes their result.
func (o *outcome) note(v *verdict) {
	if v.status == queue.Failed {
		o.lastPerm = v
	} else {
		o.lastTemp = v
		if o.hopTemp == nil && !v.stop {
			o.hopTemp = v
		}
	}
	o.stop = o.stop || v.stop
}

// results finishes the pending recipients with the last failure: a
// temporary one if any host failed temporarily, so that they are bounced
// only when every host failed permanently.
func (o *outcome) results() []queue.Result {
	v := o.lastTemp
	if v == nil {
		v = o.lastPerm
	}
	if v == nil {
		v = temporary("4.4.0", "no mail server could be tried")
	}
	o.resolve(o.pending(), v)
	return o.res
}
