package inbound

import (
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/emersion/go-smtp"

	"github.com/inkan-relay/inkan/relay/mailsyntax"
	"github.com/inkan-relay/inkan/relay/rewrite"
)

// Address rewriting in the session (package rewrite decides what): the
// envelope at MAIL and RCPT, the header section once at DATA, in its bytes,
// before the one parse that the sender policy and the signer read. So the
// bytes spooled, the parse the policy checks and the header the signer
// signs are the same rewritten header.

// lastRewriter keeps the Rewriter of the State most recently asked for: a
// State never changes, and a reload makes a new one.
var lastRewriter atomic.Pointer[stateRewriter]

type stateRewriter struct {
	st *State
	rw *rewrite.Rewriter
}

// Rewriter returns the address rewriter of st, built from its configuration
// and signing keys.
func (st *State) Rewriter() *rewrite.Rewriter {
	if c := lastRewriter.Load(); c != nil && c.st == st {
		return c.rw
	}
	rw := rewrite.ForSigner(st.Config, st.Signer)
	lastRewriter.Store(&stateRewriter{st, rw})
	return rw
}

// rewrites reports whether this session's addresses are completed and
// mapped: a client of this host or of a trusted network that did not
// authenticate. Authenticated users are never rewritten.
func (s *session) rewrites() bool { return s.user == "" && s.network != nil }

func (s *session) networkName() string {
	if s.network == nil {
		return ""
	}
	return s.network.Name
}

// bareMark is the domain barePathConn gives a MAIL FROM or RCPT TO path
// that has no domain at all ("MAIL FROM:<root>", as old Unix programs and
// RFC 5321's bare <postmaster> write it), which go-smtp's parser refuses:
// the session takes such an address as the local part alone. The name is
// reserved (RFC 2606), so no deliverable address is taken for a bare one.
const bareMark = "bare.invalid"

// envelopeAddress returns the address a client gave in MAIL or RCPT: a
// local part alone (Domain "") when it had no domain. ok is false when it
// does not split (the syntax check that follows explains why).
func envelopeAddress(path string) (a mailsyntax.Address, ok bool) {
	if local, found := strings.CutSuffix(path, "@"+bareMark); found {
		return mailsyntax.Address{Local: local}, true
	}
	a, err := mailsyntax.SplitAddress(path)
	return a, err == nil
}

// shown is an address as the client wrote it, for replies and logs.
func shown(a mailsyntax.Address) string {
	return mailsyntax.Change{Old: a}.OldString()
}

// rewriteSender completes and maps a MAIL FROM address (see rewrites); for
// an authenticated client, an address without a fully-qualified domain is
// refused (553 5.1.7), as nobody completes it.
func (s *session) rewriteSender(from string) (string, error) {
	a, ok := envelopeAddress(from)
	if from == "" || !ok {
		return from, nil
	}
	if !s.rewrites() {
		if mailsyntax.Unqualified(a.Domain) && !s.st.Rewriter().Kept(a.Domain) {
			refused.WithLabelValues("unqualified_sender").Inc()
			return "", unqualified(badSenderCode, a, "an authenticated client must give its full address, e.g. "+a.Local+"@example.com; only mail from this host and trusted networks is completed")
		}
		return from, nil
	}
	n, steps, err := s.st.Rewriter().EnvelopeSender(s.networkName(), a)
	if err != nil {
		refused.WithLabelValues("unqualified_sender").Inc()
		return "", unqualified(badSenderCode, a, "no origin domain is known to complete it (set rewrite.origin_domain)")
	}
	for _, st := range steps {
		s.log.Info("address rewritten", "field", "MAIL FROM", "from", shown(st.Old), "to", st.New.String(), "why", st.Why)
	}
	if len(steps) > 0 {
		s.originals = append(s.originals, "sender <"+shown(a)+">")
	}
	return n.String(), nil
}

// rewriteRecipient completes a RCPT TO address (see rewrites); for an
// authenticated client, one without a fully-qualified domain is refused
// (553 5.1.3), except the bare postmaster RFC 5321 §4.5.1 requires, which is
// the origin domain's.
func (s *session) rewriteRecipient(to string) (string, error) {
	a, ok := envelopeAddress(to)
	rw := s.st.Rewriter()
	if !ok || !mailsyntax.Unqualified(a.Domain) || rw.Kept(a.Domain) {
		return to, nil
	}
	postmaster := a.Domain == "" && strings.EqualFold(a.Local, "postmaster")
	if !s.rewrites() && !postmaster {
		refused.WithLabelValues("unqualified_recipient").Inc()
		return "", unqualified(badRecipientCode, a, "give the full address, e.g. "+a.Local+"@example.com; only mail from this host and trusted networks is completed")
	}
	n, steps, err := rw.Recipient(a)
	if err != nil {
		refused.WithLabelValues("unqualified_recipient").Inc()
		return "", unqualified(badRecipientCode, a, "no origin domain is known to complete it (set rewrite.origin_domain)")
	}
	for _, st := range steps {
		s.log.Info("address rewritten", "field", "RCPT TO", "from", shown(st.Old), "to", st.New.String(), "why", st.Why)
	}
	return n.String(), nil
}

// rewriteHeader completes and maps the addresses of the header section
// (see rewrites) and returns the section to spool, parse and sign.
func (s *session) rewriteHeader(hdr []byte) []byte {
	if !s.rewrites() || !s.st.Rewriter().Active(s.networkName()) {
		return hdr
	}
	out, steps := s.st.Rewriter().Header(s.networkName(), hdr)
	for _, st := range steps {
		field, _, _ := strings.Cut(st.Why, ":")
		s.log.Info("address rewritten", "field", field, "from", shown(st.Old), "to", st.New.String(), "why", st.Why)
		if isSenderField(field) {
			s.originals = append(s.originals, field+" <"+shown(st.Old)+">")
		}
	}
	return out
}

func isSenderField(name string) bool {
	switch strings.ToLower(name) {
	case "from", "sender", "resent-from", "resent-sender":
		return true
	}
	return false
}

// receivedOriginals is the comment our Received field carries when the
// sender was rewritten, so the trace keeps what the client gave:
// "(original sender <root@web01>, From <root>)". It is left out with the
// client's address (headers.received_privacy).
func (s *session) receivedOriginals() string {
	if len(s.originals) == 0 || s.hideClient() {
		return ""
	}
	var b strings.Builder
	for _, o := range s.originals {
		for _, c := range o {
			if c >= ' ' && c < 0x7f && c != '(' && c != ')' && c != '\\' {
				b.WriteRune(c)
			}
		}
		b.WriteString(", ")
	}
	return "\r\n\t(original " + strings.TrimSuffix(b.String(), ", ") + ")"
}

var (
	badSenderCode    = smtp.EnhancedCode{5, 1, 7}
	badRecipientCode = smtp.EnhancedCode{5, 1, 3}
)

// unqualified refuses an address without a fully-qualified domain.
func unqualified(code smtp.EnhancedCode, a mailsyntax.Address, why string) *smtp.SMTPError {
	what := "Sender"
	if code == badRecipientCode {
		what = "Recipient"
	}
	return &smtp.SMTPError{Code: 553, EnhancedCode: code,
		Message: clean(fmt.Sprintf("%s address <%s> is not fully qualified: %s", what, shown(a), why))}
}

// withComment puts comment (from receivedOriginals) into a Received field
// before the "; date" that ends it.
func withComment(received, comment string) string {
	i := strings.LastIndex(received, ";")
	if comment == "" || i < 0 {
		return received
	}
	return received[:i] + comment + received[i:]
}
