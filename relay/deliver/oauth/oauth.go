// Package oauth gets the OAuth2 access tokens inkan logs in to relays with
// (SASL XOAUTH2 and OAUTHBEARER), from a relay's oauth2 settings
// (config.OAuth2).
//
// Promises:
//
//   - A token is fetched with golang.org/x/oauth2 (refresh_token flow) or
//     its clientcredentials package, or read from token_file; it is cached
//     in memory and fetched again a minute before it expires, or when a
//     relay refuses it (Refused, once per refused token, however many
//     connections saw the refusal).
//   - Secrets (client secret, refresh token, access tokens) are never in an
//     error, a log line or anything printed: errors name the setting and
//     quote only the provider's error code and description.
//   - A new refresh token handed out by the provider replaces the old one in
//     memory and, through queue/safefile, in refresh_token_file; a file that
//     cannot be written is logged and the token is kept in memory.
//   - After a failed fetch, the same error is returned for a minute without
//     asking the provider again, unless the files involved changed (the
//     operator fixed them).
package oauth

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"golang.org/x/oauth2/endpoints"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/queue/safefile"
)

const (
	// renewBefore is how long before its expiry a token is renewed.
	renewBefore = time.Minute
	// failureHold is how long a failed fetch is answered from memory.
	failureHold = time.Minute
	// fetchTimeout bounds one request to the token endpoint.
	fetchTimeout = 30 * time.Second
)

// Scopes of the providers.
const (
	ScopeMicrosoftSMTP = "https://outlook.office.com/SMTP.Send"
	ScopeMicrosoftApp  = "https://outlook.office365.com/.default"
	ScopeGoogleMail    = "https://mail.google.com/"
)

// Endpoint returns o's endpoints: those of its provider, each replaced by
// the URL o sets explicitly.
func Endpoint(o *config.OAuth2) oauth2.Endpoint {
	var e oauth2.Endpoint
	switch o.Provider {
	case "microsoft":
		e = endpoints.AzureAD(o.Tenant)
	case "google":
		e = endpoints.Google
	}
	if o.TokenURL != "" {
		e.TokenURL = o.TokenURL
	}
	if o.AuthURL != "" {
		e.AuthURL = o.AuthURL
	}
	if o.DeviceAuthURL != "" {
		e.DeviceAuthURL = o.DeviceAuthURL
	}
	// Both providers take the client in the form; probing for the style
	// would send every failing request twice.
	e.AuthStyle = oauth2.AuthStyleInParams
	return e
}

// Scopes returns o.Scopes, or the provider's scopes for o's flow.
func Scopes(o *config.OAuth2) []string {
	if len(o.Scopes) > 0 {
		return o.Scopes
	}
	switch {
	case o.Provider == "microsoft" && o.FlowName() == config.FlowClientCredentials:
		return []string{ScopeMicrosoftApp}
	case o.Provider == "microsoft":
		// offline_access: the answer carries a refresh token.
		return []string{ScopeMicrosoftSMTP, "offline_access"}
	case o.Provider == "google":
		return []string{ScopeGoogleMail}
	}
	return nil
}

// Config is the oauth2.Config of a refresh_token relay (also what `inkan
// oauth2 login` uses); secret is the client secret, "" for a public client.
func Config(o *config.OAuth2, secret string) *oauth2.Config {
	return &oauth2.Config{ClientID: o.ClientID, ClientSecret: secret, Endpoint: Endpoint(o), Scopes: Scopes(o)}
}

// Source hands out access tokens for one relay. It is safe for concurrent
// use.
type Source struct {
	key  string // "delivery.smarthost.oauth2", for errors
	o    config.OAuth2
	log  *slog.Logger
	http *http.Client // nil = http.DefaultClient

	mu     sync.Mutex // held while fetching, so a burst asks once
	now    func() time.Time
	tok    *oauth2.Token
	expiry time.Time // of tok, by now; zero = unknown

	refresh     string    // refresh token in use (rotated ones replace it)
	refreshFile [32]byte  // hash of refresh_token_file when refresh was read from it
	tokenFile   fileStamp // token_file as last read

	failed   error
	failedAt time.Time
	failedOn [32]byte // hash of the files' state at the failure
}

// fileStamp identifies a version of a file cheaply.
type fileStamp struct {
	mod  time.Time
	size int64
}

// New checks o and reads the files it names now, so that a mistake shows
// at start and in `inkan check`. key is the setting o is at; errors name
// the key below it and say how to fix it.
func New(key string, o config.OAuth2, log *slog.Logger) (*Source, error) {
	if log == nil {
		log = slog.Default()
	}
	s := &Source{key: key, o: o, log: log, now: time.Now}
	bad := func(sub, format string, args ...any) error {
		return fmt.Errorf("%s.%s: %s", key, sub, fmt.Sprintf(format, args...))
	}
	switch o.FlowName() {
	case config.FlowRefreshToken:
		rt, err := o.ReadRefreshToken()
		switch {
		case err != nil:
			return nil, bad("refresh_token_file", "%v; get a refresh token with `inkan oauth2 login`", err)
		case rt == "":
			return nil, bad("refresh_token_file", "%s holds no refresh token; get one with `inkan oauth2 login`", o.RefreshTokenFile)
		}
		s.refresh, s.refreshFile = rt, hashOf(rt)
	case config.FlowClientCredentials:
		sec, err := o.ReadClientSecret()
		switch {
		case err != nil:
			return nil, bad("client_secret_file", "%v", err)
		case sec == "":
			return nil, bad("client_secret_file", "%s holds no client secret", o.ClientSecretFile)
		}
	case config.FlowTokenFile:
		if _, err := os.Stat(o.TokenFile); err != nil {
			return nil, bad("token_file", "%v; the program that renews the access token must write it there", err)
		}
	default:
		return nil, bad("flow", "unknown flow %q", o.Flow)
	}
	if o.FlowName() != config.FlowTokenFile && Endpoint(&o).TokenURL == "" {
		return nil, bad("token_url", "is empty; set provider (microsoft, google) or the token endpoint's URL")
	}
	if _, err := o.ReadClientSecret(); err != nil {
		return nil, bad("client_secret_file", "%v", err)
	}
	return s, nil
}

// SetClock replaces the clock that decides when a token has expired (for
// tests; the provider's expires_in is counted from the real time).
func (s *Source) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
}

// SetHTTPClient sets the client that talks to the token endpoint.
func (s *Source) SetHTTPClient(c *http.Client) { s.http = c }

// Token returns a valid access token, fetching one if the cached one is
// missing or expires within a minute.
func (s *Source) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.o.FlowName() == config.FlowTokenFile {
		return s.fromFile(false)
	}
	if s.valid() {
		return s.tok.AccessToken, nil
	}
	return s.fetch(ctx)
}

// Refused is called when the relay refused token: it returns another one,
// fetched now unless another caller already replaced the refused one, or
// an error when there is none (a token file that has not changed).
func (s *Source) Refused(ctx context.Context, token string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.o.FlowName() == config.FlowTokenFile {
		return s.fromFile(true, token)
	}
	if s.tok != nil && s.tok.AccessToken != token && s.valid() {
		return s.tok.AccessToken, nil
	}
	s.tok = nil
	s.failed = nil // a refusal is news: ask the provider
	return s.fetch(ctx)
}

func (s *Source) valid() bool {
	return s.tok != nil && (s.expiry.IsZero() || s.now().Add(renewBefore).Before(s.expiry))
}

// fetch asks the token endpoint; s.mu is held.
func (s *Source) fetch(ctx context.Context) (string, error) {
	state := s.filesState()
	if s.failed != nil && s.now().Sub(s.failedAt) < failureHold && state == s.failedOn {
		return "", s.failed
	}
	parent := ctx
	if s.http != nil {
		ctx = context.WithValue(ctx, oauth2.HTTPClient, s.http)
	}
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	asked := s.now()
	tok, err := s.request(ctx)
	if err == nil && tok.AccessToken == "" {
		err = errors.New("the token endpoint answered without an access_token")
	}
	if err != nil {
		if parent.Err() != nil {
			// The delivery was cancelled (shutdown): not the provider's answer.
			return "", fmt.Errorf("%s: getting an access token was interrupted: %w", s.key, context.Cause(parent))
		}
		s.failed, s.failedAt, s.failedOn = s.describe(err), s.now(), state
		return "", s.failed
	}
	s.failed = nil
	s.tok, s.expiry = tok, time.Time{}
	// expires_in counts from when the endpoint answered: from when it was
	// asked, by s.now, is on the safe side.
	switch {
	case tok.ExpiresIn > 0:
		s.expiry = asked.Add(time.Duration(tok.ExpiresIn) * time.Second)
	case !tok.Expiry.IsZero():
		s.expiry = asked.Add(time.Until(tok.Expiry))
	}
	s.log.Info("OAuth2 access token renewed", "setting", s.key, "valid_for", s.expiry.Sub(asked).Round(time.Second).String())
	return tok.AccessToken, nil
}

// request runs the flow once.
func (s *Source) request(ctx context.Context) (*oauth2.Token, error) {
	secret, err := s.o.ReadClientSecret()
	if err != nil {
		return nil, fmt.Errorf("%s.client_secret_file: %w", s.key, err)
	}
	if s.o.FlowName() == config.FlowClientCredentials {
		cc := clientcredentials.Config{ClientID: s.o.ClientID, ClientSecret: secret, TokenURL: Endpoint(&s.o).TokenURL,
			Scopes: Scopes(&s.o), AuthStyle: oauth2.AuthStyleInParams}
		return cc.Token(ctx)
	}
	s.rereadRefreshFile()
	tok, err := Config(&s.o, secret).TokenSource(ctx, &oauth2.Token{RefreshToken: s.refresh}).Token()
	if err != nil {
		return nil, err
	}
	if tok.RefreshToken != "" && tok.RefreshToken != s.refresh {
		s.refresh = tok.RefreshToken
		s.storeRefresh()
	}
	return tok, nil
}

// rereadRefreshFile picks up a refresh token the operator put in
// refresh_token_file since it was last read (a new `inkan oauth2 login`).
func (s *Source) rereadRefreshFile() {
	if s.o.RefreshTokenFile == "" {
		return
	}
	rt, err := s.o.ReadRefreshToken()
	if err != nil || rt == "" {
		if err != nil {
			s.log.Warn("cannot read the refresh token file; using the token in memory", "setting", s.key+".refresh_token_file", "err", err)
		}
		return
	}
	if h := hashOf(rt); h != s.refreshFile {
		s.refresh, s.refreshFile = rt, h
	}
}

// storeRefresh writes a rotated refresh token to refresh_token_file.
func (s *Source) storeRefresh() {
	if s.o.RefreshTokenFile == "" {
		s.log.Warn("the provider issued a new refresh token; it is kept in memory only (use refresh_token_file so that inkan can store it)", "setting", s.key)
		return
	}
	if err := safefile.WriteFile(s.o.RefreshTokenFile, []byte(s.refresh+"\n"), 0o600); err != nil {
		s.log.Warn("cannot store the new refresh token; it is kept in memory until inkan stops", "setting", s.key+".refresh_token_file", "err", err)
		return
	}
	s.refreshFile = hashOf(s.refresh)
	s.log.Info("stored the new refresh token the provider issued", "setting", s.key+".refresh_token_file")
}

// filesState sums up the files a fetch depends on, so that a fix by the
// operator is tried at once.
func (s *Source) filesState() [32]byte {
	h := sha256.New()
	for _, f := range []string{s.o.RefreshTokenFile, s.o.ClientSecretFile} {
		if f == "" {
			continue
		}
		b, _ := os.ReadFile(f)
		h.Write(b)
		h.Write([]byte{0})
	}
	return [32]byte(h.Sum(nil))
}

func hashOf(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// describe turns a fetch error into one that names the setting and the fix
// and holds no secret: a RetrieveError's body is left out.
func (s *Source) describe(err error) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		if strings.Contains(err.Error(), s.refresh) && s.refresh != "" {
			err = errors.New("the request to the token endpoint failed")
		}
		return fmt.Errorf("%s: cannot get an access token from %s: %v", s.key, Endpoint(&s.o).TokenURL, err)
	}
	what := re.ErrorCode
	if what == "" && re.Response != nil {
		what = re.Response.Status
	}
	if re.ErrorDescription != "" {
		what += ": " + firstLine(re.ErrorDescription)
	}
	fix := ""
	switch re.ErrorCode {
	case "invalid_grant":
		if s.o.FlowName() == config.FlowRefreshToken {
			fix = fmt.Sprintf("; the refresh token was revoked or has expired: get a new one with `inkan oauth2 login` (it writes %s)", orSetting(s.o.RefreshTokenFile, s.key+".refresh_token_file"))
		}
	case "invalid_client", "unauthorized_client":
		fix = fmt.Sprintf("; check %[1]s.client_id and the client secret (%[1]s.client_secret_file), and that it has not expired", s.key)
	case "invalid_scope":
		fix = fmt.Sprintf("; check %s.scopes and the API permissions of the app registration", s.key)
	}
	return fmt.Errorf("%s: the token endpoint refused to issue an access token (%s)%s", s.key, what, fix)
}

func orSetting(file, key string) string {
	if file != "" {
		return file
	}
	return key
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(line)
}

// fromFile returns the access token in token_file, read again when it
// changed (or when refused names the token the relay refused). s.mu is
// held.
func (s *Source) fromFile(refused bool, token ...string) (string, error) {
	fi, err := os.Stat(s.o.TokenFile)
	if err != nil {
		return "", fmt.Errorf("%s.token_file: %v", s.key, err)
	}
	st := fileStamp{mod: fi.ModTime(), size: fi.Size()}
	if s.tok == nil || st != s.tokenFile || refused {
		b, err := os.ReadFile(s.o.TokenFile)
		if err != nil {
			return "", fmt.Errorf("%s.token_file: %v", s.key, err)
		}
		tok, err := parseTokenFile(b)
		if err != nil {
			return "", fmt.Errorf("%s.token_file: %s: %v", s.key, s.o.TokenFile, err)
		}
		s.tok, s.expiry, s.tokenFile = tok, tok.Expiry, st
	}
	if refused && len(token) > 0 && s.tok.AccessToken == token[0] {
		return "", fmt.Errorf("%s.token_file: the relay refused the access token in %s, and it has not changed since; the program that renews it must write a new one", s.key, s.o.TokenFile)
	}
	if !s.tok.Expiry.IsZero() && !s.now().Before(s.tok.Expiry) {
		return "", fmt.Errorf("%s.token_file: the access token in %s expired at %s; the program that renews it has not written a new one", s.key, s.o.TokenFile, s.tok.Expiry.UTC().Format(time.RFC3339))
	}
	return s.tok.AccessToken, nil
}

// parseTokenFile reads a token file: JSON with access_token (and expiry,
// an RFC 3339 time, or expires_at, Unix seconds), or the token alone on the
// first line.
func parseTokenFile(b []byte) (*oauth2.Token, error) {
	text := strings.TrimSpace(string(b))
	if strings.HasPrefix(text, "{") {
		var j struct {
			AccessToken string    `json:"access_token"`
			Expiry      time.Time `json:"expiry"`
			ExpiresAt   int64     `json:"expires_at"`
		}
		if err := json.Unmarshal([]byte(text), &j); err != nil {
			return nil, errors.New("not valid JSON")
		}
		if j.AccessToken == "" {
			return nil, errors.New("no access_token in it")
		}
		tok := &oauth2.Token{AccessToken: j.AccessToken, Expiry: j.Expiry}
		if tok.Expiry.IsZero() && j.ExpiresAt > 0 {
			tok.Expiry = time.Unix(j.ExpiresAt, 0)
		}
		return tok, nil
	}
	line, _, _ := strings.Cut(text, "\n")
	if line = strings.TrimSpace(line); line == "" {
		return nil, errors.New("it is empty")
	}
	return &oauth2.Token{AccessToken: line}, nil
}
