package deliver

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/inkan-relay/inkan/config"
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
	route    Route
	domains  []string // recipient domains it serves; empty = all
	settings config.Smarthost
	password string // read at New; re-read from password_file at each login
}

// routes is the parsed routing configuration.
type routes struct {
	senders   map[string]*relay // lower-case address or "@domain"
	transport map[string]Route  // lower-case domain or ".parent"
	smarthost *relay
	tls       string            // default MX/transport TLS policy
	policy    map[string]string // per destination domain or ".parent"
	mxPort    int
}

var (
	deliveryModes  = []string{"none", "may", "encrypt", "verify"}
	smarthostModes = []string{"none", "may", "encrypt", "verify", "implicit"}
)

// parseRoutes checks and parses the routing settings; every error names the
// setting it is about, and all errors are reported together.
func parseRoutes(c config.Delivery) (*routes, error) {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	rt := &routes{
		senders:   map[string]*relay{},
		transport: map[string]Route{},
		policy:    map[string]string{},
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
		key, mode := normDomain(k), strings.ToLower(c.TLSPolicy[k])
		if !validDomainKey(key) {
			bad("delivery.tls_policy."+k, "%q is not a domain or .domain", k)
		}
		if !oneOf(mode, deliveryModes) {
			bad("delivery.tls_policy."+k, "invalid value %q (use %s)", c.TLSPolicy[k], strings.Join(deliveryModes, ", "))
		}
		rt.policy[key] = mode
	}
	for _, k := range sortedKeys(c.Transport) {
		key := normDomain(k)
		if !validDomainKey(key) {
			bad("delivery.transport."+k, "%q is not a domain or .domain", k)
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
	if c.Smarthost != nil {
		r, err := parseRelay("delivery.smarthost", *c.Smarthost, rt.mxPort)
		if err != nil {
			errs = append(errs, err)
		} else {
			r.route.Via = ViaSmarthost
			rt.smarthost = r
		}
	}
	for _, k := range sortedKeys(c.SenderRelay) {
		key := strings.ToLower(strings.TrimSpace(k))
		if i := strings.LastIndexByte(key, '@'); i < 0 || !validDomainKey(key[i+1:]) || strings.HasPrefix(key[i+1:], ".") {
			bad("delivery.sender_relay."+k, "%q is neither a sender address nor @domain", k)
			continue
		}
		r, err := parseRelay("delivery.sender_relay."+k, c.SenderRelay[k], rt.mxPort)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r.route.Via, r.route.Match = ViaSenderRelay, key
		rt.senders[key] = r
	}
	return rt, errors.Join(errs...)
}

// parseRelay parses a smarthost entry and reads its password. A missing port
// means 465 with implicit TLS, delivery.mx_port otherwise.
func parseRelay(key string, s config.Smarthost, mxPort int) (*relay, error) {
	var errs []error
	bad := func(sub, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", key, sub, fmt.Sprintf(format, args...)))
	}
	mode := strings.ToLower(s.TLS)
	if mode == "" {
		mode = "encrypt"
	}
	if !oneOf(mode, smarthostModes) {
		bad("tls", "invalid value %q (use %s)", s.TLS, strings.Join(smarthostModes, ", "))
	}
	r, err := config.ParseRoute(s.Address)
	if err != nil {
		bad("address", "%v", err)
	}
	if r.Port == 0 {
		r.Port = mxPort
		if mode == "implicit" {
			r.Port = 465
		}
	}
	rel := &relay{
		route:    Route{Host: strings.ToLower(r.Host), Port: r.Port, MX: r.MX, TLS: mode, User: s.Username, NoSign: s.NoSign},
		settings: s,
	}
	for i, d := range s.Domains {
		d = normDomain(d)
		if !validDomainKey(d) {
			bad(fmt.Sprintf("domains[%d]", i), "%q is not a domain or .domain", s.Domains[i])
		}
		rel.domains = append(rel.domains, d)
	}
	switch {
	case s.Username == "" && (s.Password != "" || s.PasswordFile != ""):
		bad("username", "is empty but a password is set")
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
	return rel, errors.Join(errs...)
}

// choose applies the routing rules to a sender and a recipient domain.
func (rt *routes) choose(from, domain string) (Route, *relay) {
	domain = normDomain(domain)
	from = strings.ToLower(from)
	if i := strings.LastIndexByte(from, '@'); i >= 0 {
		for _, k := range []string{from, "@" + normDomain(from[i+1:])} {
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

func normDomain(d string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
}

// validDomainKey accepts "example.com" or ".example.com" (labels of letters,
// digits, hyphens and, for internationalised names, any non-ASCII rune).
func validDomainKey(k string) bool {
	k = strings.TrimPrefix(k, ".")
	if k == "" || len(k) > 253 {
		return false
	}
	for _, l := range strings.Split(k, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c >= 0x80) {
				return false
			}
		}
	}
	return true
}

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
