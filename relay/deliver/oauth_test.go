package deliver_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/queue"
	"github.com/inkan-relay/inkan/relay/deliver"
)

// ---- a clock the test moves ----

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

// newTestClock starts at the real time: the token endpoint's expires_in is
// turned into an expiry by golang.org/x/oauth2 with the real clock.
func newTestClock() *testClock { return &testClock{t: time.Now()} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func (c *testClock) AdvanceTo(t time.Time) {
	c.mu.Lock()
	if t.After(c.t) {
		c.t = t
	}
	c.mu.Unlock()
}

// ---- the server side of XOAUTH2 and OAUTHBEARER ----

// xoauth2Line is the exact wire format of an XOAUTH2 initial response.
var xoauth2Line = regexp.MustCompile("^user=([^\x01]+)\x01auth=Bearer ([^\x01]+)\x01\x01$")

type xoauth2Server struct {
	check  func(user, token string) bool
	failed bool
}

func (x *xoauth2Server) Next(resp []byte) ([]byte, bool, error) {
	switch {
	case x.failed: // the client's empty answer to the error challenge
		return nil, true, &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Username and Password not accepted"}
	case resp == nil:
		return []byte{}, false, nil
	}
	m := xoauth2Line.FindSubmatch(resp)
	if m == nil {
		return nil, true, &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "malformed XOAUTH2 response"}
	}
	if !x.check(string(m[1]), string(m[2])) {
		x.failed = true
		return []byte(`{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`), false, nil
	}
	return nil, true, nil
}

func (ss *sinkSession) bearerServer(mech string) (sasl.Server, error) {
	check := func(user, token string) bool {
		ss.s.auths.Add(1)
		if !ss.s.opts.bearer(user, token) {
			ss.s.fails.Add(1)
			return false
		}
		ss.user = user
		return true
	}
	switch mech {
	case "XOAUTH2":
		return &xoauth2Server{check: check}, nil
	case sasl.OAuthBearer:
		return sasl.NewOAuthBearerServer(func(o sasl.OAuthBearerOptions) *sasl.OAuthBearerError {
			if !check(o.Username, o.Token) {
				return &sasl.OAuthBearerError{Status: "invalid_token", Schemes: "bearer"}
			}
			return nil
		}), nil
	}
	return nil, &smtp.SMTPError{Code: 504, EnhancedCode: smtp.EnhancedCode{5, 5, 4}, Message: "mechanism not supported"}
}

// ---- a token endpoint ----

// tokenServer is an OAuth2 token endpoint issuing short-lived tokens, and
// the judge of the tokens the sink is shown.
type tokenServer struct {
	*httptest.Server
	clock    *testClock
	lifetime time.Duration
	clientID string
	secret   string // "" = public client
	rotate   bool   // hand out a new refresh token each time, revoking the old one

	mu       sync.Mutex
	refresh  map[string]bool
	access   map[string]time.Time // token -> expiry
	issued   []string             // every secret handed out
	requests int
	scopes   []string
	rejects  int
}

func newTokenServer(t *testing.T, clock *testClock, refreshToken string) *tokenServer {
	t.Helper()
	ts := &tokenServer{clock: clock, lifetime: time.Hour, clientID: "client-1", refresh: map[string]bool{},
		access: map[string]time.Time{}}
	if refreshToken != "" {
		ts.refresh[refreshToken] = true
	}
	ts.Server = httptest.NewServer(http.HandlerFunc(ts.serve))
	t.Cleanup(ts.Close)
	return ts
}

func secretString(prefix string) string {
	b := make([]byte, 12)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func (ts *tokenServer) serve(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.requests++
	ts.scopes = append(ts.scopes, r.Form.Get("scope"))
	fail := func(code int, errCode, desc string) {
		ts.rejects++
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(map[string]string{"error": errCode, "error_description": desc})
	}
	if r.Form.Get("client_id") != ts.clientID || r.Form.Get("client_secret") != ts.secret {
		fail(http.StatusUnauthorized, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
		return
	}
	answer := map[string]any{"token_type": "Bearer", "expires_in": int(ts.lifetime / time.Second)}
	switch r.Form.Get("grant_type") {
	case "refresh_token":
		rt := r.Form.Get("refresh_token")
		if !ts.refresh[rt] {
			fail(http.StatusBadRequest, "invalid_grant", "AADSTS70008: The provided authorization code or refresh token has expired due to inactivity.")
			return
		}
		if ts.rotate {
			delete(ts.refresh, rt)
			next := secretString("rt-")
			ts.refresh[next] = true
			ts.issued = append(ts.issued, next)
			answer["refresh_token"] = next
		}
	case "client_credentials":
	default:
		fail(http.StatusBadRequest, "unsupported_grant_type", "")
		return
	}
	at := secretString("at-")
	ts.access[at] = ts.clock.Now().Add(ts.lifetime)
	ts.issued = append(ts.issued, at)
	answer["access_token"] = at
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(answer)
}

// valid is the sink's judgement: a token this server issued, unexpired.
func (ts *tokenServer) valid(user, token string) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	exp, ok := ts.access[token]
	return ok && user == oauthUser && ts.clock.Now().Before(exp)
}

// revokeAccess makes every access token issued so far invalid.
func (ts *tokenServer) revokeAccess() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	clear(ts.access)
}

func (ts *tokenServer) revokeRefresh() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	clear(ts.refresh)
}

func (ts *tokenServer) count() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.requests
}

func (ts *tokenServer) secrets() []string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]string(nil), ts.issued...)
}

const oauthUser = "relay@sender.test"

// oauthSetup is a sink that accepts only tokens from ts, and delivery
// settings that send everything to it as oauthUser over checked TLS.
type oauthSetup struct {
	e     *env
	ts    *tokenServer
	sink  *sink
	clock *testClock
	file  string // refresh_token_file
	logs  *syncBuffer
}

func newOAuthSetup(t *testing.T, mechs []string) (*oauthSetup, config.Delivery) {
	t.Helper()
	o := &oauthSetup{e: newEnv(t), clock: newTestClock(), logs: &syncBuffer{}}
	refresh := secretString("rt-")
	o.ts = newTokenServer(t, o.clock, refresh)
	o.ts.issued = append(o.ts.issued, refresh)
	o.sink = o.e.net.start(t, "127.0.0.4", sinkOpts{tls: serverTLS(t), bearer: o.ts.valid, mechs: mechs})
	o.file = filepath.Join(t.TempDir(), "refresh")
	if err := os.WriteFile(o.file, []byte(refresh+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := o.e.config()
	c.Smarthost = &config.Smarthost{
		Address:  "[127.0.0.4]:" + strconv.Itoa(o.e.net.port),
		Username: oauthUser,
		TLS:      "verify",
		OAuth2:   &config.OAuth2{TokenURL: o.ts.URL + "/token", ClientID: "client-1", RefreshTokenFile: o.file},
	}
	return o, c
}

func (o *oauthSetup) transport(t *testing.T, c config.Delivery) *deliver.Transport {
	t.Helper()
	_, pool := selfSigned(t)
	log := slog.New(slog.NewTextHandler(io2(t, o.logs), &slog.HandlerOptions{Level: slog.LevelDebug}))
	tr := newTransport(t, deliver.Options{Config: c, RootCAs: pool, Logger: log, IdleTimeout: -1})
	tr.SetClock(o.clock.Now)
	return tr
}

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// io2 sends log output to buf and to the test's output.
func io2(t *testing.T, buf *syncBuffer) *teeWriter { return &teeWriter{buf: buf, t: t} }

type teeWriter struct {
	buf *syncBuffer
	t   *testing.T
}

func (w *teeWriter) Write(p []byte) (int, error) {
	w.buf.Write(p)
	return w.t.Output().Write(p)
}

// burst delivers n messages at once and returns their results.
func burst(t *testing.T, tr *deliver.Transport, n int, tag string) [][]queue.Result {
	t.Helper()
	out := make([][]queue.Result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			d := delivery("a@sender.test", "x.test", testMessage, fmt.Sprintf("%s%d@x.test", tag, i))
			d.ID = fmt.Sprintf("%s%d", tag, i)
			out[i] = tr.Deliver(context.Background(), d)
		})
	}
	wg.Wait()
	return out
}

func allSent(t *testing.T, res [][]queue.Result) {
	t.Helper()
	for _, r := range res {
		if len(r) != 1 {
			t.Fatalf("results %+v", r)
		}
		wantStatus(t, r[0], queue.Sent)
	}
}

// The token expires during a burst (by the clock both the sink and inkan
// follow): inkan renews it before using it again, once for the whole
// burst, and never shows the sink an expired token. Then the provider
// revokes the tokens it issued: the sink refuses the cached one (535 after
// the XOAUTH2 error challenge, or the OAUTHBEARER error), inkan gets a new
// one once and logs in with it on the same connection. With rotating
// refresh tokens, each new one is stored in refresh_token_file.
func TestOAuth2TokenRefreshDuringBurst(t *testing.T) {
	t.Parallel()
	for _, mech := range []string{"XOAUTH2", "OAUTHBEARER"} {
		t.Run(mech, func(t *testing.T) {
			t.Parallel()
			o, c := newOAuthSetup(t, []string{mech})
			o.ts.rotate = true
			tr := o.transport(t, c)

			allSent(t, burst(t, tr, 10, "first"))
			if n := o.ts.count(); n != 1 {
				t.Errorf("%d token requests for the first burst, want 1", n)
			}
			o.clock.Advance(2 * time.Hour) // every token issued so far has expired
			allSent(t, burst(t, tr, 10, "second"))
			if n := o.ts.count(); n != 2 {
				t.Errorf("%d token requests after expiry, want 2", n)
			}
			if n := o.sink.fails.Load(); n != 0 {
				t.Errorf("the sink refused %d logins: an expired token was used", n)
			}

			o.ts.revokeAccess()
			allSent(t, burst(t, tr, 10, "third"))
			if n := o.ts.count(); n != 3 {
				t.Errorf("%d token requests after the revocation, want 3 (one new token for the whole burst)", n)
			}
			if o.sink.fails.Load() == 0 {
				t.Errorf("the revoked token was never refused: the test proves nothing")
			}
			if got := len(o.sink.messages()); got != 30 {
				t.Errorf("the sink got %d messages, want 30", got)
			}
			for _, m := range o.sink.messages() {
				if m.user != oauthUser || !m.tls {
					t.Fatalf("message delivered as %q, TLS %v", m.user, m.tls)
				}
			}
			b, _ := os.ReadFile(o.file)
			if last := o.ts.secrets(); !o.ts.refresh[strings.TrimSpace(string(b))] {
				t.Errorf("refresh_token_file does not hold the refresh token in force (%d issued)", len(last))
			}
			if strings.Contains(o.logs.String(), "kept in memory") {
				t.Errorf("the rotated refresh token was not stored:\n%s", o.logs.String())
			}
		})
	}
}

// A revoked refresh token defers the mail with a reason that says what to
// do; no SMTP connection is made and the token endpoint is asked once for
// the whole burst. When the operator puts a new refresh token in the file,
// the next delivery uses it at once.
func TestOAuth2RevokedRefreshToken(t *testing.T) {
	t.Parallel()
	o, c := newOAuthSetup(t, nil)
	tr := o.transport(t, c)
	o.ts.revokeRefresh()
	for _, r := range burst(t, tr, 5, "revoked") {
		wantStatus(t, r[0], queue.Deferred)
		for _, want := range []string{"delivery.smarthost.oauth2", "invalid_grant", "inkan oauth2 login", o.file} {
			if !strings.Contains(r[0].Message, want) {
				t.Errorf("reason %q does not say %q", r[0].Message, want)
			}
		}
	}
	if n := o.sink.conns.Load(); n != 0 {
		t.Errorf("%d SMTP connections without a token", n)
	}
	if n := o.ts.count(); n != 1 {
		t.Errorf("%d token requests, want 1 for the burst", n)
	}

	fresh := secretString("rt-")
	o.ts.mu.Lock()
	o.ts.refresh[fresh] = true
	o.ts.issued = append(o.ts.issued, fresh)
	o.ts.mu.Unlock()
	if err := os.WriteFile(o.file, []byte(fresh+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	allSent(t, burst(t, tr, 1, "fixed"))
}

// Microsoft 365 application access: the client-credentials flow with the
// secret from client_secret_file and the scope asked for.
func TestOAuth2ClientCredentials(t *testing.T) {
	t.Parallel()
	o, c := newOAuthSetup(t, []string{"XOAUTH2"})
	o.ts.secret = secretString("cs-")
	o.ts.issued = append(o.ts.issued, o.ts.secret)
	secretFile := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secretFile, []byte(o.ts.secret+"\n"), 0o600)
	c.Smarthost.OAuth2 = &config.OAuth2{TokenURL: o.ts.URL + "/token", ClientID: "client-1", ClientSecretFile: secretFile,
		Scopes: []string{"https://outlook.office365.com/.default"}}
	tr := o.transport(t, c)
	allSent(t, burst(t, tr, 3, "app"))
	o.ts.mu.Lock()
	scopes := o.ts.scopes
	o.ts.mu.Unlock()
	if len(scopes) != 1 || scopes[0] != "https://outlook.office365.com/.default" {
		t.Errorf("token requests asked for scopes %q", scopes)
	}
}

// A token kept by another program in token_file: read again when it
// changes; a refused token that has not changed defers with a reason.
func TestOAuth2TokenFile(t *testing.T) {
	t.Parallel()
	o, c := newOAuthSetup(t, nil)
	token := func() string {
		o.ts.mu.Lock()
		defer o.ts.mu.Unlock()
		at := secretString("at-")
		o.ts.access[at] = o.clock.Now().Add(time.Hour)
		o.ts.issued = append(o.ts.issued, at)
		return at
	}
	file := filepath.Join(t.TempDir(), "token.json")
	write := func(tok string) {
		b, _ := json.Marshal(map[string]any{"access_token": tok, "expiry": o.clock.Now().Add(time.Hour)})
		os.WriteFile(file, b, 0o600)
	}
	write(token())
	c.Smarthost.OAuth2 = &config.OAuth2{TokenFile: file}
	tr := o.transport(t, c)
	allSent(t, burst(t, tr, 2, "file"))

	o.ts.revokeAccess()
	res := burst(t, tr, 1, "stale")[0][0]
	wantStatus(t, res, queue.Deferred)
	if !strings.Contains(res.Message, "has not changed") || !strings.Contains(res.Message, file) {
		t.Errorf("reason %q", res.Message)
	}
	write(token())
	allSent(t, burst(t, tr, 1, "renewed"))
	if n := o.ts.count(); n != 0 {
		t.Errorf("the token endpoint was asked %d times in token_file mode", n)
	}
}

// No secret reaches a log line, a result, the route description or the
// effective configuration: refresh tokens (old and rotated), the client
// secret and every access token.
func TestOAuth2SecretsNotLogged(t *testing.T) {
	t.Parallel()
	o, c := newOAuthSetup(t, nil)
	o.ts.rotate = true
	o.ts.secret = secretString("cs-")
	o.ts.issued = append(o.ts.issued, o.ts.secret)
	secretFile := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secretFile, []byte(o.ts.secret+"\n"), 0o600)
	c.Smarthost.OAuth2.ClientSecretFile = secretFile
	tr := o.transport(t, c)
	var seen []string
	collect := func(res [][]queue.Result) {
		for _, r := range res {
			seen = append(seen, fmt.Sprintf("%+v", r))
		}
	}
	collect(burst(t, tr, 3, "one"))
	o.clock.Advance(2 * time.Hour)
	collect(burst(t, tr, 3, "two"))
	o.ts.revokeAccess()
	collect(burst(t, tr, 3, "three"))
	o.ts.revokeRefresh()
	o.clock.Advance(2 * time.Hour)
	collect(burst(t, tr, 3, "four")) // deferred: the refresh token was revoked
	seen = append(seen, tr.Route("a@sender.test", "x.test").String())
	full := &config.Config{Delivery: c}
	dump, err := full.Dump()
	if err != nil {
		t.Fatal(err)
	}
	seen = append(seen, string(dump))
	text := o.logs.String() + strings.Join(seen, "\n")
	if !strings.Contains(text, "invalid_grant") {
		t.Fatalf("the last burst was not refused; logs:\n%s", text)
	}
	for _, s := range o.ts.secrets() {
		if strings.Contains(text, s) {
			t.Errorf("a secret (%.6s...) appears in the logs, results or configuration dump", s)
		}
	}
}
