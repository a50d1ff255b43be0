package inbound

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/inkan-relay/inkan/auth"
	"github.com/inkan-relay/inkan/queue"
	"github.com/inkan-relay/inkan/relay/mailsyntax"
	"github.com/inkan-relay/inkan/relay/signing"
)

// session is one SMTP conversation. go-smtp calls its methods from the
// connection's goroutine only, so it needs no locking.
type session struct {
	srv      *Server
	st       *State
	conn     *smtp.Conn
	kind     Kind
	ip       netip.Addr
	network  *auth.Network // nil when the client is not in a trusted network
	user     string        // authenticated user, "" if none
	log      *slog.Logger
	from     string
	hasFrom  bool
	utf8     bool
	rcpts    []string
	declared int64       // SIZE= from MAIL FROM
	dsn      dsnRequests // RET, ENVID, NOTIFY, ORCPT (dsn.go)

	// originals are the sender addresses the client gave where inkan
	// rewrote them, for the Received field (rewrite.go).
	originals []string
}

var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 32<<10) }}

func (s *session) tls() bool {
	_, ok := s.conn.TLSConnectionState()
	return ok
}

// AuthMechanisms offers AUTH only over TLS, or in clear text to a trusted
// network that explicitly allows it (old printers and NAS boxes).
func (s *session) AuthMechanisms() []string {
	if s.st.Users == nil {
		return nil
	}
	if s.tls() || (s.network != nil && s.network.AllowPlainAuth) {
		return []string{sasl.Plain, sasl.Login}
	}
	return nil
}

// Auth runs AUTH PLAIN or LOGIN through auth.Authenticator, the same check
// package auth tests: lockout per client and user name, a bound on
// concurrent hashing, equal cost for unknown users, safe log lines, and a
// slow-down that ends when the connection closes or the server stops.
func (s *session) Auth(mech string) (sasl.Server, error) {
	if s.st.Users == nil {
		return nil, smtp.ErrAuthUnsupported
	}
	if !s.tls() && (s.network == nil || !s.network.AllowPlainAuth) {
		return nil, auth.ErrTLSRequired
	}
	a := s.srv.authenticator(s.st.Users, s.log.With("mech", strings.ToUpper(mech)))
	verify := func(user, pass string) error {
		if err := a.Authenticate(s.srv.connContext(s.conn.Conn()), s.ip, user, pass); err != nil {
			return err
		}
		s.user = user
		s.log = s.log.With("user", user)
		s.srv.authenticated(s.conn.Conn())
		return nil
	}
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return auth.NewPlainServer(verify), nil
	case sasl.Login:
		return auth.NewLoginServer(verify), nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if s.user == "" && s.network == nil {
		refused.WithLabelValues("relay_denied").Inc()
		s.log.Warn("refused", "reason", "not authenticated or trusted", "from", from)
		if s.kind == KindRelay {
			return auth.ErrRelayDenied
		}
		return auth.ErrAuthRequired
	}
	from, rerr := s.rewriteSender(from)
	if rerr != nil {
		return rerr
	}
	if from != "" {
		if err := auth.CheckSender(from); err != nil {
			return err
		}
		if !mailsyntax.IsASCII(from) && (opts == nil || !opts.UTF8) {
			return ErrNeedSMTPUTF8
		}
	}
	var err error
	if s.user != "" {
		err = s.st.Policy.CheckUser(s.user, from)
	} else {
		err = s.st.Policy.CheckNetwork(s.network, from)
	}
	if err != nil {
		refused.WithLabelValues("sender_policy").Inc()
		s.log.Warn("refused", "reason", "sender not allowed", "from", from)
		return err
	}
	if opts != nil && opts.Size > 0 && opts.Size > s.maxSize() {
		return ErrMessageTooLarge
	}
	if err := s.checkQuota(1, 1); err != nil {
		return err
	}
	if s.user == "" {
		if err := s.network.AllowMessage(s.ip); err != nil {
			refused.WithLabelValues("rate_limit").Inc()
			s.log.Warn("refused", "reason", "rate limit", "network", s.network.Name)
			return err
		}
	}
	s.from, s.hasFrom = from, true
	s.dsn.mail(opts)
	s.utf8 = opts != nil && opts.UTF8
	if opts != nil {
		s.declared = opts.Size
	}
	return nil
}

func (s *session) maxSize() int64 {
	if s.network != nil && s.user == "" && s.network.MaxMessageSize > 0 {
		return s.network.MaxMessageSize
	}
	return int64(s.st.Config.Limits.MaxMessageSize)
}

func (s *session) maxRcpts() int {
	if s.network != nil && s.user == "" && s.network.MaxRecipients > 0 {
		return s.network.MaxRecipients
	}
	return s.st.Config.Limits.MaxRecipients
}

func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if !s.hasFrom {
		return ErrNoMailFrom
	}
	to, rerr := s.rewriteRecipient(to)
	if rerr != nil {
		return rerr
	}
	if !s.utf8 && !mailsyntax.IsASCII(to) {
		return ErrNeedSMTPUTF8
	}
	if err := auth.CheckRecipient(to); err != nil {
		refused.WithLabelValues("bad_recipient").Inc()
		s.log.Warn("refused", "reason", "bad recipient", "to", to)
		return err
	}
	if max := s.maxRcpts(); max > 0 && len(s.rcpts) >= max {
		return ErrTooManyRecipients
	}
	if err := s.checkQuota(1, len(s.rcpts)+1); err != nil {
		return err
	}
	s.rcpts = append(s.rcpts, to)
	s.dsn.rcpt(opts)
	return nil
}

func (s *session) Reset() {
	s.from, s.hasFrom, s.utf8, s.rcpts, s.declared = "", false, false, nil, 0
	s.originals = nil
	s.dsn = dsnRequests{}
}

func (s *session) Logout() error { return nil }

// Data reads the message once: the header section is parsed for policy and
// fix-ups, then every byte streams at the same time into the spool draft and
// the DKIM hash. The reply is 250 only after the queue has made it durable.
func (s *session) Data(r io.Reader) error {
	start := time.Now()
	if d := s.st.Config.Limits.DataTimeout.D(); d > 0 {
		s.conn.Conn().SetReadDeadline(start.Add(d))
	}
	limit := s.maxSize()
	lr := &limitReader{r: r, n: limit}
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(lr)
	defer func() { br.Reset(nil); readerPool.Put(br) }()

	hdr, bodyStart, err := readHeader(br, int(s.st.Config.Limits.MaxHeaderSize))
	if err != nil {
		return s.readError(err, lr)
	}
	// The addresses of mail from this host and trusted networks are
	// completed and rewritten in the header bytes first (rewrite.go). Then
	// the one parse of the header section: the loop check, the sender
	// policy and the signer all read this, never the raw bytes again.
	hdr = s.rewriteHeader(hdr)
	h := mailsyntax.ParseHeader(hdr)
	if hops := h.Count("Received"); hops >= s.st.Config.Limits.MaxHops {
		refused.WithLabelValues("too_many_hops").Inc()
		s.log.Warn("refused", "reason", "too many hops", "received_fields", hops)
		return tooManyHops(hops)
	}
	author, addFrom, err := s.checkAuthors(h)
	if err != nil {
		return err
	}
	// An unlabelled body decides the MIME fields inkan adds and signs
	// (hygiene.go): look at it now when it is all in the buffer.
	shape, err := peekBody(br, h, bodyStart)
	if err != nil {
		return s.readError(err, lr)
	}

	env := &queue.Envelope{
		From: s.from, To: s.rcpts, User: s.user, Client: s.clientName(),
		Helo: s.conn.Hostname(), Received: start, SMTPUTF8: s.utf8,
	}
	s.dsn.apply(env)
	draft, err := s.srv.spool.NewDraft(env)
	if err != nil {
		return s.spoolError("create draft", err)
	}
	committed := false
	defer func() {
		if !committed {
			draft.Abort()
		}
	}()
	draft.Quiet() // the "accepted" line below says it all
	id := draft.ID()

	added := s.fixups(h, id, addFrom)
	var sink io.Writer = spoolWriter{draft}
	var stream *signing.Stream
	// A stream not finished on some path is marked dropped.
	defer func() { stream.Abort() }()
	decision := "not signed: signing disabled for this route"
	noSign := s.srv.noSign(s.from, s.rcpts)
	if noSign {
		s.st.Signer.Skip("route has no_sign")
	}
	// begin starts the signature once every field inkan adds is known.
	begin := func() error {
		if noSign {
			return nil
		}
		m := signing.Message{Header: append(mailsyntax.ParseHeader(added), h...), Author: author}
		var err error
		if stream, decision, err = s.st.beginSign(m); err != nil {
			s.log.Error("dkim signing failed", "queue_id", id, "err", err)
			return ErrSignFailed
		}
		if stream != nil {
			stream.Write(added)
		}
		return nil
	}
	if shape.known {
		added = append(added, hygiene(h, shape)...)
		if err := begin(); err != nil {
			return err
		}
		if stream != nil {
			sink = io.MultiWriter(sink, stream)
		}
	}
	norm := &crlfWriter{w: sink}
	if _, err := sink.Write(hdr); err != nil {
		return s.spoolError("write", err)
	}
	if len(bodyStart) > 0 {
		if _, err := norm.Write(bodyStart); err != nil {
			return s.spoolError("write", err)
		}
	}
	tail := &tailWriter{}
	scan := &mailsyntax.EightBit{}
	scan.Write(bodyStart)
	if _, err := io.Copy(io.MultiWriter(norm, tail, scan), br); err != nil {
		var we *writeError
		if errors.As(err, &we) {
			return s.spoolError("write", we.err)
		}
		return s.readError(err, lr)
	}
	if tail.nul || bytes.IndexByte(bodyStart, 0) >= 0 {
		return s.readError(errNUL, lr)
	}
	endsNL := tail.last == '\n' || (len(bodyStart) == 0 && tail.n == 0)
	if err := norm.finish(endsNL); err != nil {
		return s.spoolError("write", err)
	}
	if !shape.known {
		// Spooled first (hygiene.go): now the labels, then the signature
		// over the fields added and the spooled bytes.
		added = append(added, hygiene(h, bodyShape{known: true, eight: scan.Any(), utf8: scan.UTF8()})...)
		if err := begin(); err != nil {
			return err
		}
		if stream != nil {
			spooled, err := draft.Reread()
			if err == nil {
				_, err = io.Copy(stream, spooled)
			}
			if err != nil {
				return s.spoolError("reread", err)
			}
		}
	}
	env.Body8Bit = scan.Any()
	env.Header8Bit = !mailsyntax.IsASCII(hdr) || !mailsyntax.IsASCII(added)

	var prefix bytes.Buffer
	if stream != nil {
		sigs, err := stream.Finish()
		if err != nil {
			s.log.Error("dkim signing failed", "queue_id", id, "err", err)
			return ErrSignFailed
		}
		prefix.Write(sigs)
	}
	prefix.WriteString(s.received(id))
	prefix.Write(added)
	if err := draft.Commit(prefix.Bytes()); err != nil {
		return s.spoolError("commit", err)
	}
	committed = true
	if stream != nil {
		stream.Count()
	}
	accepted.Inc()
	s.countQuota()
	submitSeconds.Observe(time.Since(start).Seconds())
	s.log.Info("accepted", "queue_id", id, "from", s.from, "rcpts", len(s.rcpts), "to", strings.Join(s.rcpts, ","),
		"size", lr.read, "dkim", decision)
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Ok: queued as " + id}
}

// readError maps a failure while reading DATA to a reply. The connection is
// probably gone; the reply matters when it is not.
func (s *session) readError(err error, lr *limitReader) error {
	var se *smtp.SMTPError
	switch {
	case errors.Is(err, errTooLarge):
		refused.WithLabelValues("too_large").Inc()
		return ErrMessageTooLarge
	case errors.As(err, &se):
		return se
	case errors.Is(err, smtp.ErrTooLongLine):
		refused.WithLabelValues("line_too_long").Inc()
		return ErrLineTooLong
	case errors.Is(err, errHeaderTooLarge):
		refused.WithLabelValues("header_too_large").Inc()
		return ErrHeaderTooLarge
	case errors.Is(err, errNUL):
		refused.WithLabelValues("nul_byte").Inc()
		return ErrNULByte
	case errors.Is(err, errBareCRInHeader):
		refused.WithLabelValues("bare_cr_header").Inc()
		return ErrBareCRInHeader
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		s.log.Warn("data timeout", "read", lr.read)
		return ErrDataTimeout
	}
	s.log.Warn("data read failed", "err", err, "read", lr.read)
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Error reading the message, try again"}
}

func (s *session) spoolError(op string, err error) error {
	s.log.Error("spool failed", "op", op, "err", err)
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return ErrDiskFull
	}
	return ErrSpoolFailed
}

// checkAuthors applies authorOf to this session, with the log line and
// metric of a refusal.
func (s *session) checkAuthors(h mailsyntax.Header) (author mailsyntax.Address, addFrom bool, err error) {
	author, addFrom, err = authorOf(h, s.from, s.user, s.network, s.st.Policy)
	if err != nil {
		refused.WithLabelValues("header_from").Inc()
		s.log.Warn("refused", "reason", "header sender refused", "err", err)
	}
	return author, addFrom, err
}

// authorOf reads who the header says the message is from (From, Sender,
// Resent-From, Resent-Sender) and applies the sender policy of user (or of
// trusted network n) to every one of them, so a user allowed to send as
// alice@ can neither forge From: ceo@ nor get ceo@'s domain signed through a
// field the signer reads differently. It returns the author the signer signs
// for. A message without From gets one from the envelope sender envFrom
// (RFC 6409 §8.1), which the policy approved at MAIL FROM; with the null
// sender there is nobody to name, and RFC 5322 §3.6 requires a From: refused.
func authorOf(h mailsyntax.Header, envFrom, user string, n *auth.Network, p *auth.Policy) (author mailsyntax.Address, addFrom bool, err error) {
	a, err := h.Authors()
	if errors.Is(err, mailsyntax.ErrNoFrom) && envFrom != "" {
		env, serr := mailsyntax.SplitAddress(envFrom)
		if serr != nil { // MAIL FROM checked it; cannot happen
			return author, false, ErrBadMessage
		}
		a.From, addFrom, err = []mailsyntax.Address{env}, true, nil
	}
	var fe *mailsyntax.FieldError
	switch {
	case errors.As(err, &fe):
		return author, false, malformedAuthor(fe)
	case err != nil: // no From and the null sender
		return author, false, ErrNoFromNullSender
	}
	if auth.Restricted(user, n) {
		if perr := p.CheckAuthors(user, n, a.All()); perr != nil {
			return author, false, perr
		}
	}
	return a.From[0], addFrom, nil
}

// fixups returns the header fields RFC 6409 §8 lets a submission server add.
func (s *session) fixups(h mailsyntax.Header, id string, addFrom bool) []byte {
	var b []byte
	if addFrom {
		b = fmt.Appendf(b, "From: %s\r\n", s.from)
	}
	hc := s.st.Config.Headers
	if (hc.AddMessageID == nil || *hc.AddMessageID) && !h.Has("Message-ID") {
		var r [8]byte
		rand.Read(r[:])
		b = fmt.Appendf(b, "Message-ID: <%s.%s@%s>\r\n", id, hex.EncodeToString(r[:]), s.st.Config.Hostname)
	}
	if (hc.AddDate == nil || *hc.AddDate) && !h.Has("Date") {
		b = fmt.Appendf(b, "Date: %s\r\n", now().Format(time.RFC1123Z))
	}
	return b
}

// received builds our Received field (RFC 5321 §4.4, protocol names per RFC 3848).
func (s *session) received(id string) string {
	if p := peerOf(s.conn.Conn()); p != nil {
		return withComment(s.localReceived(p, id), s.receivedOriginals())
	}
	proto := "ESMTP"
	state, isTLS := s.conn.TLSConnectionState()
	if isTLS {
		proto += "S"
	}
	if s.user != "" {
		proto += "A"
	}
	var b strings.Builder
	b.WriteString("Received: ")
	if !s.hideClient() {
		fmt.Fprintf(&b, "from %s ([%s])\r\n\t", sanitizeHelo(s.heloName()), s.ip)
	}
	fmt.Fprintf(&b, "by %s (inkan) with %s id %s", s.st.Config.Hostname, proto, id)
	if isTLS {
		fmt.Fprintf(&b, "\r\n\t(using %s with cipher %s)", tlsVersionName(state.Version), tlsCipherName(state.CipherSuite))
	}
	b.WriteString(s.receivedOriginals())
	if len(s.rcpts) == 1 {
		fmt.Fprintf(&b, "\r\n\tfor <%s>", s.rcpts[0])
	}
	fmt.Fprintf(&b, "; %s\r\n", now().Format(time.RFC1123Z))
	return b.String()
}

// sanitizeHelo keeps a client's HELO from injecting header syntax.
func sanitizeHelo(h string) string {
	var b strings.Builder
	for _, c := range h {
		if c > ' ' && c < 0x7f && c != '(' && c != ')' && c != ';' {
			b.WriteRune(c)
		}
	}
	if b.Len() == 0 {
		return "unknown"
	}
	return b.String()
}

var errTooLarge = errors.New("message too large")

// limitReader enforces the per-client size limit and counts bytes read.
type limitReader struct {
	r    io.Reader
	n    int64
	read int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.read += int64(n)
	if l.n > 0 && l.read > l.n {
		return n, errTooLarge
	}
	return n, err
}

// tailWriter remembers the last byte written, how many, and whether one
// was a NUL.
type tailWriter struct {
	last byte
	n    int64
	nul  bool
}

func (t *tailWriter) Write(p []byte) (int, error) {
	if len(p) > 0 {
		t.last = p[len(p)-1]
		t.n += int64(len(p))
		t.nul = t.nul || bytes.IndexByte(p, 0) >= 0
	}
	return len(p), nil
}

// spoolWriter marks errors from the draft so they are not blamed on the client.
type spoolWriter struct{ d *queue.Draft }

func (w spoolWriter) Write(p []byte) (int, error) {
	n, err := w.d.Write(p)
	if err != nil {
		return n, &writeError{err}
	}
	return n, nil
}

// writeError marks an error that came from the spool, not the client.
type writeError struct{ err error }

func (w *writeError) Error() string { return w.err.Error() }
func (w *writeError) Unwrap() error { return w.err }
