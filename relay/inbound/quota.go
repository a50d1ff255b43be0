package inbound

import "github.com/inkan-relay/inkan/auth"

// Sending quotas (config quotas, counters in auth.Quotas): an authenticated
// session is counted as its user, an unauthenticated one from a trusted
// network as that network. Nothing else can send.

// quotaSender is who this session's mail counts against.
func (s *session) quotaSender() (auth.Sender, bool) {
	switch {
	case s.user != "":
		return auth.Sender{Name: s.user}, true
	case s.network != nil:
		return auth.Sender{Network: true, Name: s.network.Name}, true
	}
	return auth.Sender{}, false
}

// checkQuota refuses with 451 4.7.1 when msgs more messages to rcpts more
// recipients would exceed a quota, and logs which one and how to lift it.
func (s *session) checkQuota(msgs, rcpts int) error {
	snd, ok := s.quotaSender()
	if !ok {
		return nil
	}
	q := s.st.Config.Quotas.For(snd.Name, snd.Network)
	e := s.srv.quotas.Check(snd, q, msgs, rcpts)
	if e == nil {
		return nil
	}
	refused.WithLabelValues("quota").Inc()
	s.log.Warn("refused", "reason", "sending quota exceeded", "sender", snd.String(), "quota", e.Quota,
		"limit", e.Limit, "sent", e.Used,
		"hint", "sending quotas are new: raise "+e.Key()+", add a quotas.overrides entry for this "+snd.Scope()+", or set it to 0 to turn it off")
	return e.Reply()
}

// countQuota records an accepted message.
func (s *session) countQuota() {
	if snd, ok := s.quotaSender(); ok {
		s.srv.quotas.Add(snd, 1, len(s.rcpts))
	}
}
