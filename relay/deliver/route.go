package deliver

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/relay/deliver/oauth"
	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// Via names the rule that chose a Route.
type Via string

// The routing rules, in the order they are consulted.
const (
	ViaSenderRelay Via = "sender_relay" // delivery.sender_relay
	ViaTransport   Via = "transport"    // delivery.transport
	ViaSmarthost   Via = "smarthost"    // delivery.smarthost
	ViaMX          Via = "mx"           // the recipient domain's MX records
)

// Route describes where mail from one sender to one recipient domain goes.
type Route struct {
	Via    Via
	Match  string // the key that matched: "alice@example.com", "@example.com", "example.net", ".example.net"; "" for smarthost and mx
	Host   string // host to connect to, or whose MX records are looked up
	Port   int
	MX     bool   // look up Host's MX records (false: connect to Host itself)
	TLS    string // none | may | encrypt | verify | implicit
	User   string // AUTH user name; "" = no AUTH
	NoSign bool   // the route asks not to DKIM-sign (a smarthost that rewrites mail)
	// Fallback are a relay's further addresses, tried in order when the
	// first fails (failover.go).
	Fallback []Hop
}

// String gives the route in one line, in Postfix's next-hop notation:
// "[host]:port" is a host, "host:port" a domain whose MX records are used.
func (r Route) String() string {
	var b strings.Builder
	b.WriteString(string(r.Via))
	if r.Match != "" {
		b.WriteString(" " + strconv.Quote(r.Match))
	}
	b.WriteString(" -> " + r.Addr())
	for _, h := range r.Fallback {
		b.WriteString(", " + r.at(h).Addr())
	}
	b.WriteString(" tls=" + r.TLS)
	if r.User != "" {
		b.WriteString(" auth=" + r.User)
	}
	if r.NoSign {
		b.WriteString(" no_sign")
	}
	return b.String()
}

// Addr is the next hop in Postfix notation: "[host]:port" or "host:port".
func (r Route) Addr() string {
	hp := net.JoinHostPort(r.Host, strconv.Itoa(r.Port))
	if r.MX {
		return hp
	}
	if strings.HasPrefix(hp, "[") { // IPv6 already has brackets
		return hp
	}
	return "[" + r.Host + "]:" + strconv.Itoa(r.Port)
}

// relay is a parsed smarthost or sender_relay entry.
type relay struct {
	key      string // "delivery.smarthost", "delivery.sender_relay.@example.com"
	route    Route
	domains  []string // recipient domains it serves; empty = all
	settings config.Smarthost
	password string                 // read at New; re-read from password_file at each login
	roots    *x509.CertPool         // from ca_file; nil = Options.RootCAs
	pins     [][sha256.Size]byte    // from tls_fingerprint; checked instead of roots
	oauth    *oauth.Source          // oauth2: tokens instead of the password
	cert     *clientCert            // client_cert_file, client_key_file
	sessions tls.ClientSessionCache // TLS sessions of a relay with a client certificate
	pacer    *pacer                 // pacing; nil = none
}

// routes is the parsed routing configuration.
type routes struct {
	senders   map[string]*relay // lower-case address or "@domain"
	transport map[string]Route  // lower-case domain or ".parent"
	smarthost *relay
	tls       string            // default MX/transport TLS policy
	policy    map[string]string // per destination domain or ".parent"
	mxPort    int
	pacing    map[string]*pacer // delivery.pacing, by domain or ".parent"
}

var (
	deliveryModes  = []string{"none", "may", "encrypt", "verify", config.TLSModeDANE, config.TLSModeMTASTS} // the last two: tlspolicy.go
	smarthostModes = []string{"none", "may", "encrypt", "verify", "implicit"}
)

// parseRoutes checks and parses the routing settings; every error names the
// setting it is about, and all errors are reported together.
func parseRoutes(c config.Delivery, log *slog.Logger) (*routes, error) {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	rt := &routes{
		senders:   map[string]*relay{},
		transport: map[string]Route{},
		policy:    map[string]string{},
		pacing:    map[string]*pacer{},
		tls:       strings.ToLower(c.TLS),
		mxPort:    c.MXPort,
	}
	if rt.tls == "" {
		rt.tls = "may"
	}
	if !oneOf(rt.tls, deliveryModes) {
		bad("delivery.tls", "invalid value %q (use %s)", c.TLS, strings.Join(deliveryModes, ", "))
	}
	if rt.mxPort == 0 {
		rt.mxPort = 25
	}
	if rt.mxPort < 1 || rt.mxPort > 65535 {
		bad("delivery.mx_port", "invalid port %d (1..65535)", c.MXPort)
	}
	if c.Resolver != "" {
		if _, err := netip.ParseAddrPort(c.Resolver); err != nil {
			bad("delivery.resolver", "%q is not ip:port", c.Resolver)
		}
	}
	for _, k := range sortedKeys(c.TLSPolicy) {
		key, mode := mailsyntax.NormDomain(k), strings.ToLower(c.TLSPolicy[k])
		if err := mailsyntax.CheckDomain(key, domainKey); err != nil {
			bad("delivery.tls_policy."+k, "%q is not a domain or .domain: %v", k, err)
		}
		if !oneOf(mode, deliveryModes) {
			bad("delivery.tls_policy."+k, "invalid value %q (use %s)", c.TLSPolicy[k], strings.Join(deliveryModes, ", "))
		}
		rt.policy[key] = mode
	}
	for _, k := range sortedKeys(c.Transport) {
		key := mailsyntax.NormDomain(k)
		if err := mailsyntax.CheckDomain(key, domainKey); err != nil {
			bad("delivery.transport."+k, "%q is not a domain or .domain: %v", k, err)
			continue
		}
		r, err := config.ParseRoute(c.Transport[k])
		if err != nil {
			bad("delivery.transport."+k, "%v", err)
			continue
		}
		if r.Port == 0 {
			r.Port = rt.mxPort
		}
		rt.transport[key] = Route{Via: ViaTransport, Match: key, Host: strings.ToLower(r.Host), Port: r.Port, MX: r.MX}
	}
	for _, k := range sortedKeys(c.Pacing) {
		key := mailsyntax.NormDomain(k)
		if err := mailsyntax.CheckDomain(key, domainKey); err != nil {
			bad("delivery.pacing."+k, "%q is not a domain or .domain: %v", k, err)
			continue
		}
		if p := sharedPacer("delivery.pacing."+k, "", c.Pacing[k]); p != nil {
			rt.pacing[key] = p
		}
	}
	if c.Smarthost != nil {
		r, err := parseRelay("delivery.smarthost", *c.Smarthost, rt.mxPort, log)
		if err != nil {
			errs = append(errs, err)
		} else {
			r.route.Via = ViaSmarthost
			rt.smarthost = r
		}
	}
	for _, k := range sortedKeys(c.SenderRelay) {
		key := strings.ToLower(strings.TrimSpace(k))
		if i := strings.LastIndexByte(key, '@'); i < 0 || mailsyntax.CheckDomain(key[i+1:], mailsyntax.MailDomain) != nil {
			bad("delivery.sender_relay."+k, "%q is neither a sender address nor @domain", k)
			continue
		}
		r, err := parseRelay("delivery.sender_relay."+k, c.SenderRelay[k], rt.mxPort, log)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r.route.Via, r.route.Match = ViaSenderRelay, key
		rt.senders[key] = r
	}
	return rt, errors.Join(errs...)
}

// parseRelay parses a smarthost entry, reads its password and its ca_file.
// A missing port means 465 with implicit TLS, delivery.mx_port otherwise.
// A relay with a username must check the certificate (config.TLSProblem).
func parseRelay(key string, s config.Smarthost, mxPort int, log *slog.Logger) (*relay, error) {
	var errs []error
	bad := func(sub, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", key, sub, fmt.Sprintf(format, args...)))
	}
	mode := strings.ToLower(s.TLSMode())
	if !oneOf(mode, smarthostModes) {
		bad("tls", "invalid value %q (use %s)", s.TLS, strings.Join(smarthostModes, ", "))
	} else if sub, msg, fix := s.TLSProblem(); msg != "" {
		bad(sub, "%s; %s", msg, fix)
	}
	var hops []Hop
	for i, a := range s.Addresses() {
		r, err := config.ParseRoute(a)
		if err != nil {
			bad("address", "item %d: %v", i+1, err)
			continue
		}
		if r.Port == 0 {
			r.Port = mxPort
			if mode == "implicit" {
				r.Port = 465
			}
		}
		hops = append(hops, Hop{Host: strings.ToLower(r.Host), Port: r.Port, MX: r.MX})
	}
	if len(hops) == 0 {
		bad("address", "is empty; set the relay, e.g. \"[smtp.example.net]:587\"")
		hops = []Hop{{}}
	}
	rel := &relay{
		key:      key,
		route:    Route{Host: hops[0].Host, Port: hops[0].Port, MX: hops[0].MX, TLS: mode, User: s.Username, NoSign: s.NoSign, Fallback: hops[1:]},
		settings: s,
	}
	if len(rel.route.Fallback) == 0 {
		rel.route.Fallback = nil
	}
	rel.pins, _ = config.ParseFingerprints(s.TLSFingerprint) // TLSProblem reported a bad one
	if s.CAFile != "" {
		pem, err := os.ReadFile(s.CAFile)
		rel.roots = x509.NewCertPool()
		switch {
		case err != nil:
			bad("ca_file", "%v", err)
		case !rel.roots.AppendCertsFromPEM(pem):
			bad("ca_file", "%s holds no PEM certificate; give the CA certificate(s) that sign the relay's certificate", s.CAFile)
		}
	}
	for i, d := range s.Domains {
		d = mailsyntax.NormDomain(d)
		if err := mailsyntax.CheckDomain(d, domainKey); err != nil {
			bad(fmt.Sprintf("domains[%d]", i), "%q is not a domain or .domain: %v", s.Domains[i], err)
		}
		rel.domains = append(rel.domains, d)
	}
	switch {
	case s.Username == "" && (s.Password != "" || s.PasswordFile != ""):
		bad("username", "is empty but a password is set")
	case s.OAuth2 != nil && s.Username == "":
		bad("username", "is empty but oauth2 is set; set it to the mailbox that sends")
	case s.OAuth2 != nil && (s.Password != "" || s.PasswordFile != ""):
		bad("password_file", "is set together with oauth2; keep one way to log in")
	case s.OAuth2 != nil:
		src, err := oauth.New(key+".oauth2", *s.OAuth2, log)
		if err != nil {
			errs = append(errs, err)
		}
		rel.oauth = src
	case s.Username != "" && s.Password == "" && s.PasswordFile == "":
		bad("password_file", "is empty but username is set")
	case s.Username != "":
		pw, err := s.ReadPassword()
		if err != nil {
			bad("password_file", "%v", err)
		} else if pw == "" {
			bad("password_file", "%s holds an empty password", s.PasswordFile)
		}
		rel.password = pw
	}
	if s.ClientCertFile != "" || s.ClientKeyFile != "" {
		cc, err := loadClientCert(s.ClientCertFile, s.ClientKeyFile)
		if err != nil {
			bad("client_cert_file", "%v", err)
		}
		rel.cert, rel.sessions = cc, tls.NewLRUClientSessionCache(16)
	}
	if s.Pacing != nil {
		rel.pacer = sharedPacer(key+".pacing", s.Address+" "+s.Username, *s.Pacing)
	}
	return rel, errors.Join(errs...)
}

// pacerFor returns the pacer of a route: the relay's own, or for MX and
// transport routes that of delivery.pacing for the recipient domain.
func (rt *routes) pacerFor(rel *relay, domain string) *pacer {
	if rel != nil {
		return rel.pacer
	}
	for _, k := range domainKeys(mailsyntax.NormDomain(domain)) {
		if p, ok := rt.pacing[k]; ok {
			return p
		}
	}
	return nil
}

// choose applies the routing rules to a sender and a recipient domain.
func (rt *routes) choose(from, domain string) (Route, *relay) {
	domain = mailsyntax.NormDomain(domain)
	from = strings.ToLower(from)
	if i := strings.LastIndexByte(from, '@'); i >= 0 {
		for _, k := range []string{from, "@" + mailsyntax.NormDomain(from[i+1:])} {
			if r := rt.senders[k]; r != nil && (len(r.domains) == 0 || matchDomain(r.domains, domain)) {
				return rt.finish(r.route, domain), r
			}
		}
	}
	for _, k := range domainKeys(domain) {
		if r, ok := rt.transport[k]; ok {
			return rt.finish(r, domain), nil
		}
	}
	if s := rt.smarthost; s != nil && (len(s.domains) == 0 || matchDomain(s.domains, domain)) {
		return rt.finish(s.route, domain), s
	}
	return rt.finish(Route{Via: ViaMX, Host: domain, Port: rt.mxPort, MX: true}, domain), nil
}

// finish fills the TLS mode of MX and transport routes from the policy.
func (rt *routes) finish(r Route, domain string) Route {
	if r.TLS == "" {
		r.TLS = rt.tls
		for _, k := range domainKeys(domain) {
			if m, ok := rt.policy[k]; ok {
				r.TLS = m
				break
			}
		}
	}
	return r
}

// domainKeys lists the table keys that match a domain, best first:
// "a.b.c", ".b.c", ".c".
func domainKeys(domain string) []string {
	keys := []string{domain}
	for d := domain; ; {
		i := strings.IndexByte(d, '.')
		if i < 0 {
			return keys
		}
		d = d[i+1:]
		keys = append(keys, "."+d)
	}
}

func matchDomain(list []string, domain string) bool {
	for _, k := range domainKeys(domain) {
		if oneOf(k, list) {
			return true
		}
	}
	return false
}

// domainKey is the syntax of routing table keys: a mail domain, or
// ".domain" for its subdomains.
const domainKey = mailsyntax.MailDomain | mailsyntax.LeadingDot

func oneOf(s string, list []string) bool {
	for _, v := range list {
		if s == v {
			return true
		}
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// relays lists the smarthost and the sender relays.
func (rt *routes) relays() []*relay {
	var out []*relay
	if rt.smarthost != nil {
		out = append(out, rt.smarthost)
	}
	for _, k := range sortedKeys(rt.senders) {
		out = append(out, rt.senders[k])
	}
	return out
}
