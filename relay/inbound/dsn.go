package inbound

import (
	"github.com/emersion/go-smtp"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/queue"
)

// dsnRequests are the DSN parameters (RFC 3461) of the transaction in
// progress: RET and ENVID from MAIL FROM, NOTIFY and ORCPT from each RCPT
// TO. go-smtp checks their syntax (a bad NOTIFY set or xtext gets 501
// 5.5.4) and decodes them; the queue stores them with the message, passes
// them to a next hop that supports DSN and otherwise honours them itself.
type dsnRequests struct {
	ret, envid string
	rcpts      []queue.RcptDSN // in step with session.rcpts
	any        bool            // some recipient has NOTIFY or ORCPT
}

func (d *dsnRequests) mail(opts *smtp.MailOptions) {
	*d = dsnRequests{}
	if opts != nil {
		d.ret, d.envid = string(opts.Return), opts.EnvelopeID
	}
}

func (d *dsnRequests) rcpt(opts *smtp.RcptOptions) {
	var r queue.RcptDSN
	if opts != nil {
		for _, n := range opts.Notify {
			r.Notify = append(r.Notify, string(n))
		}
		if opts.OriginalRecipient != "" {
			r.ORcptType, r.ORcpt = string(opts.OriginalRecipientType), opts.OriginalRecipient
		}
	}
	d.any = d.any || len(r.Notify) > 0 || r.ORcpt != ""
	d.rcpts = append(d.rcpts, r)
}

// apply stores the requests in env.
func (d *dsnRequests) apply(env *queue.Envelope) {
	env.Ret, env.EnvID = d.ret, d.envid
	if d.any && len(d.rcpts) == len(env.To) {
		env.RcptDSN = d.rcpts
	}
}

// hideClient reports whether the Received field leaves out the client's
// address and HELO name (headers.received_privacy, hide_client_ip).
func (s *session) hideClient() bool {
	switch s.st.Config.Headers.Privacy() {
	case config.PrivacyAll:
		return true
	case config.PrivacyAuthenticated:
		return s.user != ""
	}
	return false
}

// heloName is the name the client gave in HELO/EHLO, or "" when it sent a
// bare one (greetConn) or none.
func (s *session) heloName() string {
	if g := greetOf(s.conn.Conn()); g != nil && g.anonymous() {
		return ""
	}
	return s.conn.Hostname()
}
