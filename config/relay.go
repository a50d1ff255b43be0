package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// OAuth2 is how a smarthost or sender relay gets the OAuth2 access token it
// logs in with (SASL XOAUTH2 or OAUTHBEARER, RFC 7628) instead of a
// password. Microsoft 365 and Google Workspace are retiring password AUTH
// for SMTP; this is what replaces it.
//
// The token comes from one of three flows (Flow):
//
//   - refresh_token: a refresh token obtained once by a person (`inkan
//     oauth2 login`) is exchanged for access tokens (Google, Microsoft
//     delegated access). When the provider hands out a new refresh token,
//     inkan writes it back to refresh_token_file.
//   - client_credentials: the application's own secret is exchanged for an
//     access token (Microsoft 365 application access).
//   - token_file: another program keeps an access token in token_file;
//     inkan reads it again when it changes.
type OAuth2 struct {
	// Provider fills in the endpoints and default scopes: microsoft or
	// google; "" means token_url (and for `inkan oauth2 login` auth_url or
	// device_auth_url) are given.
	Provider string `yaml:"provider"`
	// Tenant is the Microsoft Entra directory (tenant) ID or domain.
	Tenant string `yaml:"tenant"`
	// Flow is refresh_token, client_credentials or token_file; "" picks it
	// from the keys set (token_file, then a refresh token, then a client
	// secret alone).
	Flow             string   `yaml:"flow"`
	ClientID         string   `yaml:"client_id"`
	ClientSecret     string   `yaml:"client_secret"`      // prefer client_secret_file
	ClientSecretFile string   `yaml:"client_secret_file"` // first line is the secret
	RefreshToken     string   `yaml:"refresh_token"`      // prefer refresh_token_file
	RefreshTokenFile string   `yaml:"refresh_token_file"` // first line; rewritten when the provider rotates it
	TokenFile        string   `yaml:"token_file"`         // access token kept by another program
	Scopes           []string `yaml:"scopes"`             // "" = the provider's for the flow
	TokenURL         string   `yaml:"token_url"`          // "" = the provider's
	AuthURL          string   `yaml:"auth_url"`           // for `inkan oauth2 login`; "" = the provider's
	DeviceAuthURL    string   `yaml:"device_auth_url"`    // for `inkan oauth2 login -device`
	// Mechanism is xoauth2 or oauthbearer; "" uses XOAUTH2 when the relay
	// offers it, else OAUTHBEARER.
	Mechanism string `yaml:"mechanism"`
}

// Pacing limits how fast mail goes through one route, so that a provider's
// sending limits are never hit: above them mail waits in the queue.
type Pacing struct {
	Messages         int      `yaml:"messages"`           // per period; 0 = no limit
	Period           Duration `yaml:"period"`             // default 1m
	RecipientsPerDay int      `yaml:"recipients_per_day"` // in any 24 hours; 0 = no limit
}

// The OAuth2 flows.
const (
	FlowRefreshToken      = "refresh_token"
	FlowClientCredentials = "client_credentials"
	FlowTokenFile         = "token_file"
)

var (
	oauthProviders  = []string{"", "microsoft", "google"}
	oauthFlows      = []string{"", FlowRefreshToken, FlowClientCredentials, FlowTokenFile}
	oauthMechanisms = []string{"", "xoauth2", "oauthbearer"}
)

// FlowName is the flow in effect: Flow, or the one the keys set imply.
func (o *OAuth2) FlowName() string {
	switch {
	case o.Flow != "":
		return o.Flow
	case o.TokenFile != "":
		return FlowTokenFile
	case o.RefreshToken != "" || o.RefreshTokenFile != "":
		return FlowRefreshToken
	case o.ClientSecret != "" || o.ClientSecretFile != "":
		return FlowClientCredentials
	}
	return FlowRefreshToken
}

// ReadClientSecret returns ClientSecret, or else the first line of
// ClientSecretFile (read on each call, so a rotated secret is picked up).
func (o *OAuth2) ReadClientSecret() (string, error) {
	return readSecret(o.ClientSecret, o.ClientSecretFile, "client secret")
}

// ReadRefreshToken returns RefreshToken, or else the first line of
// RefreshTokenFile.
func (o *OAuth2) ReadRefreshToken() (string, error) {
	return readSecret(o.RefreshToken, o.RefreshTokenFile, "refresh token")
}

func readSecret(inline, file, what string) (string, error) {
	if inline != "" || file == "" {
		return inline, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", what, err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(line), nil
}

// HasCredentials reports whether the relay proves who inkan is: a user name
// (password or OAuth2) or a client certificate. Such a relay must check
// the server's certificate (TLSProblem).
func (s *Smarthost) HasCredentials() bool {
	return s.Username != "" || s.ClientCertFile != ""
}

// Addresses splits Address into its next hops: "[a]:587, [b]:587" is a
// failover list, tried in order.
func (s *Smarthost) Addresses() []string { return splitList(s.Address, ",") }

// relayExtras checks what a relay has beyond address, password and TLS: the
// failover list, OAuth2, client certificate and pacing.
func (k *checker) relayExtras(key string, s *Smarthost) {
	seen := map[string]bool{}
	for i, a := range s.Addresses() {
		if _, err := ParseRoute(a); err != nil {
			k.bad(key+".address", fmt.Sprintf("item %d: %v", i+1, err), `write "[host]:port", or several separated by commas, tried in order: "[smtp1.example.net]:587, [smtp2.example.net]:587"`)
		}
		if seen[strings.ToLower(a)] {
			k.warn(key+".address", fmt.Sprintf("%q is listed twice", a), "list each relay address once")
		}
		seen[strings.ToLower(a)] = true
	}
	if o := s.OAuth2; o != nil {
		k.oauth2(key, s, o)
	}
	switch {
	case s.ClientCertFile != "" && s.ClientKeyFile == "":
		k.bad(key+".client_key_file", "is empty while client_cert_file is set", "set the PEM private key of the client certificate")
	case s.ClientCertFile == "" && s.ClientKeyFile != "":
		k.bad(key+".client_cert_file", "is empty while client_key_file is set", "set the PEM certificate (chain) to present to the relay")
	}
	if s.Pacing != nil {
		k.pacing(key+".pacing", *s.Pacing)
	}
}

// oauth2 checks an oauth2 section; s is the relay it belongs to.
func (k *checker) oauth2(relayKey string, s *Smarthost, o *OAuth2) {
	key := relayKey + ".oauth2"
	k.enum(key+".provider", o.Provider, oauthProviders...)
	k.enum(key+".flow", o.Flow, oauthFlows...)
	k.enum(key+".mechanism", strings.ToLower(o.Mechanism), oauthMechanisms...)
	flow := o.FlowName()
	if s.Username == "" {
		k.bad(relayKey+".username", "is empty but oauth2 is set", "set it to the mailbox that sends (the user= of XOAUTH2), e.g. relay@example.com")
	}
	if s.Password != "" || s.PasswordFile != "" {
		k.bad(relayKey+".password_file", "is set together with oauth2", "keep one way to log in: remove the password, or the oauth2 section")
	}
	if o.Tenant != "" && !validTenant(o.Tenant) {
		k.bad(key+".tenant", fmt.Sprintf("%q is not a directory ID or domain", o.Tenant), "copy the Directory (tenant) ID from the app registration's Overview page")
	}
	switch o.Provider {
	case "microsoft":
		if o.Tenant == "" && o.TokenURL == "" {
			k.bad(key+".tenant", "is empty", "copy the Directory (tenant) ID from the app registration's Overview page in the Entra admin center")
		}
		if flow == FlowClientCredentials && (o.Tenant == "common" || o.Tenant == "organizations" || o.Tenant == "consumers") {
			k.bad(key+".tenant", fmt.Sprintf("%q cannot issue application tokens", o.Tenant), "use the Directory (tenant) ID of your organisation")
		}
	case "google":
		if flow == FlowClientCredentials {
			k.bad(key+".flow", "Google has no client-credentials flow for SMTP", "use refresh_token (get one with `inkan oauth2 login`), or token_file with a token another program keeps")
		}
	case "":
		if o.TokenURL == "" && flow != FlowTokenFile {
			k.bad(key+".token_url", "is empty and no provider is set", "set provider: microsoft or google, or the token endpoint's URL")
		}
	}
	for _, u := range []struct{ sub, v string }{{"token_url", o.TokenURL}, {"auth_url", o.AuthURL}, {"device_auth_url", o.DeviceAuthURL}} {
		if u.v != "" {
			if msg := checkEndpointURL(u.v); msg != "" {
				k.bad(key+"."+u.sub, msg, "use the provider's https:// URL (http:// only to a loopback address, for tests)")
			}
		}
	}
	if o.ClientSecret != "" && o.ClientSecretFile != "" {
		k.bad(key+".client_secret", "is set together with client_secret_file", "keep only one")
	}
	if o.RefreshToken != "" && o.RefreshTokenFile != "" {
		k.bad(key+".refresh_token", "is set together with refresh_token_file", "keep only one")
	}
	if o.ClientSecret != "" {
		k.warn(key+".client_secret", "the client secret is written in the configuration", "put it in a file and use client_secret_file")
	}
	if o.RefreshToken != "" {
		k.warn(key+".refresh_token", "the refresh token is written in the configuration, where inkan cannot store the new ones the provider issues", "put it in a file and use refresh_token_file")
	}
	for i, sc := range o.Scopes {
		if sc == "" || strings.ContainsAny(sc, " \t\r\n\"\\") {
			k.bad(fmt.Sprintf("%s.scopes[%d]", key, i), fmt.Sprintf("%q is not a scope", sc), "write one scope per item, e.g. https://mail.google.com/")
		}
	}
	switch flow {
	case FlowRefreshToken:
		if o.ClientID == "" {
			k.bad(key+".client_id", "is empty", "copy the Application (client) ID of the app registration")
		}
		if o.RefreshToken == "" && o.RefreshTokenFile == "" {
			k.bad(key+".refresh_token_file", "is empty, so there is no refresh token", "get one with `inkan oauth2 login` and give the file it wrote")
		}
	case FlowClientCredentials:
		if o.ClientID == "" {
			k.bad(key+".client_id", "is empty", "copy the Application (client) ID of the app registration")
		}
		if o.ClientSecret == "" && o.ClientSecretFile == "" {
			k.bad(key+".client_secret_file", "is empty, which the client_credentials flow needs", "create a client secret in the app registration and put it in a file")
		}
	case FlowTokenFile:
		if o.TokenFile == "" {
			k.bad(key+".token_file", "is empty", "name the file where the program that renews the access token writes it")
		}
	}
}

// validTenant accepts a directory ID (GUID) or a domain name: the value is
// put in the token endpoint's path.
func validTenant(t string) bool {
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	return t != "" && !strings.HasPrefix(t, ".")
}

// checkEndpointURL returns what is wrong with an OAuth2 endpoint URL, or "".
// A client secret or refresh token goes there, so it must be https, except
// to a loopback address.
func checkEndpointURL(v string) string {
	u, err := url.Parse(v)
	switch {
	case err != nil || u.Host == "":
		return fmt.Sprintf("%q is not an absolute URL", v)
	case u.Scheme == "https":
		return ""
	case u.Scheme == "http" && isLoopbackHost(u.Hostname()):
		return ""
	case u.Scheme == "http":
		return fmt.Sprintf("%q is plain http: the secrets sent there could be read on the way", v)
	}
	return fmt.Sprintf("%q is not an https URL", v)
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsLoopback()
}

// pacing checks one pacing entry.
func (k *checker) pacing(key string, p Pacing) {
	if p.Messages < 0 {
		k.bad(key+".messages", fmt.Sprintf("is %d", p.Messages), "use a number of messages per period, or 0 for no limit")
	}
	if p.Period < 0 {
		k.bad(key+".period", "is negative", "use e.g. 1m")
	}
	if p.RecipientsPerDay < 0 {
		k.bad(key+".recipients_per_day", fmt.Sprintf("is %d", p.RecipientsPerDay), "use a number of recipients, or 0 for no limit")
	}
	if p.Messages == 0 && p.RecipientsPerDay == 0 {
		k.warn(key, "sets no limit", "set messages (per period) or recipients_per_day, or remove it")
	}
}

// destinationPacing checks delivery.pacing and delivery.failover_backoff.
func (k *checker) destinationPacing(d Delivery) {
	for _, dom := range sortedKeys(d.Pacing) {
		key := "delivery.pacing." + dom
		if !mailsyntax.ValidDomain(dom, mailsyntax.MailDomain|mailsyntax.LeadingDot) {
			k.bad(key, fmt.Sprintf("%q is not a domain or .domain", dom), "use recipient domains as keys: example.com, or .example.com for its subdomains")
		}
		k.pacing(key, d.Pacing[dom])
	}
	if d.FailoverBackoff < 0 {
		k.bad("delivery.failover_backoff", "is negative", "use e.g. 1m")
	}
}

// finalizeRelays fills the defaults of failover and pacing: a failover
// back-off of 1m and pacing periods of 1m.
func finalizeRelays(c *Config) {
	d := &c.Delivery
	if d.FailoverBackoff == 0 {
		d.FailoverBackoff = Duration(time.Minute)
	}
	period := func(p *Pacing) {
		if p != nil && p.Period == 0 {
			p.Period = Duration(time.Minute)
		}
	}
	if d.Smarthost != nil {
		period(d.Smarthost.Pacing)
	}
	for _, s := range d.SenderRelay {
		period(s.Pacing) // a pointer: the map value shares it
	}
	for k, p := range d.Pacing {
		period(&p)
		d.Pacing[k] = p
	}
}

// credentialName says what a relay's credentials are, for messages about
// who could collect them: "the password of alice".
func (s *Smarthost) credentialName() string {
	switch {
	case s.OAuth2 != nil:
		return "the OAuth2 access tokens of " + s.Username
	case s.Username != "":
		return "the password of " + s.Username
	}
	return "the mail that the client certificate lets through"
}
