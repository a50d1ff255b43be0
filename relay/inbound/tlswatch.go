package inbound

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/inkan-relay/inkan/config"
)

var (
	tlsHandshakes = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "inkan_tls_handshakes_total", Help: "Completed inbound TLS handshakes, by listener, profile and TLS version.",
	}, []string{"listener", "profile", "version"})
	tlsFailures = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "inkan_tls_handshake_failures_total", Help: "Failed inbound TLS handshakes, by listener and reason.",
	}, []string{"listener", "reason"})
)

// tlsRoot is the tls.Config a listener of kind hands to crypto/tls. It
// asks the current State for every handshake, so a reload of certificates
// or profiles reaches new handshakes without rebuilding servers, and it
// watches the handshake of the connection: what the client offered, and
// whether it completed.
func (s *Server) tlsRoot(kind Kind) *tls.Config {
	return &tls.Config{
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			return s.configForClient(kind, hello), nil
		},
	}
}

// configForClient picks the profile for this client (legacy when its
// listener or its trusted network asks for it) and records the client's
// offer on its connection for the failure log.
func (s *Server) configForClient(kind Kind, hello *tls.ClientHelloInfo) *tls.Config {
	st := s.state.Load()
	tc := trackedOf(hello.Conn)
	profile := st.profileFor(kind, tc)
	base := st.TLS
	if profile == config.TLSLegacy {
		base = st.legacyTLS()
	}
	if tc == nil {
		return base
	}
	w := &tc.hs
	w.offered(kind, profile, hello)
	c := base.Clone()
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		w.completed()
		tlsHandshakes.WithLabelValues(kind.String(), profile, tls.VersionName(cs.Version)).Inc()
		return nil
	}
	return c
}

// profileFor is the TLS profile for a client of kind on conn tc (nil:
// unknown client): legacy when the listener or the client's
// auth.networks entry says so.
func (st *State) profileFor(kind Kind, tc *trackedConn) string {
	if st.Config.Listeners.Options(kind.String()).Legacy() {
		return config.TLSLegacy
	}
	if tc != nil && st.Networks != nil {
		if n := st.Networks.Match(tc.ip); n != nil {
			if cn := st.Config.NetworkNamed(n.Name); cn != nil && cn.TLSProfile == config.TLSLegacy {
				return config.TLSLegacy
			}
		}
	}
	return config.TLSModern
}

// legacyTLS is st.TLS with the legacy profile, built once per State.
func (st *State) legacyTLS() *tls.Config {
	st.legacyOnce.Do(func() { st.legacy = legacyConfig(st.TLS) })
	return st.legacy
}

// handshakeWatch is what one connection's TLS handshake showed, so that a
// failure on any listener (STARTTLS as well as 465) is logged with the
// client's offer and a hint.
type handshakeWatch struct {
	mu       sync.Mutex
	listener Kind
	profile  string
	versions []uint16
	suites   []uint16
	sni      string
	seen     bool // a ClientHello arrived
	done     bool // the handshake completed
	reported bool // the failure was logged (or the connection was refused for another reason)
}

func (w *handshakeWatch) offered(kind Kind, profile string, hello *tls.ClientHelloInfo) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.listener, w.profile, w.seen, w.done = kind, profile, true, false
	w.versions = slices.Clone(hello.SupportedVersions)
	w.suites = slices.Clone(hello.CipherSuites)
	w.sni = hello.ServerName
}

func (w *handshakeWatch) listenerKind() Kind {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.listener
}

func (w *handshakeWatch) completed() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// pending reports whether a handshake started and has not completed.
func (w *handshakeWatch) pending() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen && !w.done && !w.reported
}

// started reports whether a ClientHello arrived.
func (w *handshakeWatch) started() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen
}

// quiet marks the connection as explained elsewhere (a refused PROXY
// header): no handshake failure line for it.
func (w *handshakeWatch) quiet() {
	w.mu.Lock()
	w.reported = true
	w.mu.Unlock()
}

// fail logs the failed handshake once. reason is a short label for the
// metric; detail is the error or alert text.
func (s *Server) handshakeFailed(c *trackedConn, kind Kind, reason, detail string) {
	w := &c.hs
	w.mu.Lock()
	if w.reported || w.done {
		w.mu.Unlock()
		return
	}
	w.reported = true
	attrs := []any{"client", c.ip.String(), "listener", kind.String(), "reason", detail}
	if c.proxy.IsValid() {
		attrs = append(attrs, "proxy", c.proxy.String())
	}
	if w.seen {
		attrs = append(attrs, "profile", w.profile, "offered_versions", versionNames(w.versions),
			"offered_suites", suiteNames(w.suites), "sni", w.sni)
		if hint := s.handshakeHint(w, kind, c); hint != "" {
			attrs = append(attrs, "hint", hint)
		}
	} else {
		attrs = append(attrs, "offered_versions", "none: no TLS ClientHello")
	}
	w.mu.Unlock()
	tlsFailures.WithLabelValues(kind.String(), reason).Inc()
	s.log.Warn("TLS handshake failed", attrs...)
}

// handshakeHint says what would let the client in, when its offer shows
// an old device. w.mu is held.
func (s *Server) handshakeHint(w *handshakeWatch, kind Kind, c *trackedConn) string {
	if w.profile == config.TLSLegacy {
		return ""
	}
	where := "listeners." + kind.String() + ".tls_profile: legacy"
	if n := s.state.Load().Networks.Match(c.ip); n != nil && s.state.Load().Config.NetworkNamed(n.Name) != nil {
		where += fmt.Sprintf(", or tls_profile: legacy on auth.networks entry %q", n.Name)
	} else {
		where += ", or an auth.networks entry for this device with tls_profile: legacy"
	}
	if len(w.versions) > 0 && slices.Max(w.versions) < tls.VersionTLS12 {
		return "the client offers only TLS versions before 1.2 (an old device): set " + where
	}
	if !slices.Contains(w.versions, tls.VersionTLS13) && !slices.ContainsFunc(w.suites, func(id uint16) bool { return slices.Contains(cipherSuites, id) }) {
		return "the client offers no forward-secret AEAD cipher suite (RSA key exchange or CBC only: an old device): set " + where
	}
	return ""
}

// alertNames are the TLS alerts a failing server handshake sends.
var alertNames = map[byte]string{
	10: "unexpected_message", 20: "bad_record_mac", 40: "handshake_failure", 42: "bad_certificate",
	47: "illegal_parameter", 50: "decode_error", 51: "decrypt_error", 70: "protocol_version",
	71: "insufficient_security", 80: "internal_error", 86: "inappropriate_fallback",
	109: "missing_extension", 110: "unsupported_extension", 112: "unrecognized_name", 120: "no_application_protocol",
}

// sawAlert looks at bytes the server writes during a handshake: a plain
// alert record (type 21) means crypto/tls gave up, and says why.
func (c *trackedConn) sawAlert(p []byte, kind Kind) {
	if len(p) < 7 || p[0] != 21 || p[1] != 3 || !c.hs.pending() {
		return
	}
	name, ok := alertNames[p[6]]
	if !ok {
		name = fmt.Sprintf("alert_%d", p[6])
	}
	c.srv.handshakeFailed(c, kind, name, "inkan sent TLS alert "+name)
}

func versionNames(vs []uint16) string {
	var out []string
	for _, v := range vs {
		if v >= tls.VersionTLS10 && v <= tls.VersionTLS13 || v == tls.VersionSSL30 {
			out = append(out, tls.VersionName(v))
		}
	}
	return strings.Join(out, ",")
}

func suiteNames(ids []uint16) string {
	var out []string
	for _, id := range ids {
		if id&0x0f0f == 0x0a0a { // GREASE
			continue
		}
		out = append(out, tls.CipherSuiteName(id))
	}
	const max = 40
	if len(out) > max {
		out = append(out[:max], fmt.Sprintf("... (%d more)", len(out)-max))
	}
	return strings.Join(out, ",")
}

// handshakeReason is the metric label for a handshake error.
func handshakeReason(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "protocol version"):
		return "protocol_version"
	case strings.Contains(msg, "no cipher suite"):
		return "no_shared_cipher"
	case strings.Contains(msg, "does not look like a TLS handshake"):
		return "not_tls"
	case strings.Contains(msg, "remote error"):
		return "client_alert"
	case isTimeout(err):
		return "timeout"
	}
	return "other"
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
