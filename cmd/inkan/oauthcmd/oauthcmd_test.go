package oauthcmd_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inkan-relay/inkan/cmd/inkan/oauthcmd"
	"github.com/inkan-relay/inkan/config"
)

// authServer is an OAuth2 authorization server on loopback: the
// authorization endpoint (it signs the user in at once, or refuses), the
// device endpoint and the token endpoint, with PKCE checked as a real one
// does.
type authServer struct {
	*httptest.Server
	t       *testing.T
	refresh string
	deny    bool // the user refuses consent

	mu         sync.Mutex
	challenges map[string]string // code -> S256 challenge
	redirects  map[string]string // code -> redirect_uri
	approved   bool              // the device code was entered
	hints      []string
	access     []string
}

func newAuthServer(t *testing.T) *authServer {
	a := &authServer{t: t, refresh: "rt-" + fmt.Sprint(time.Now().UnixNano()), challenges: map[string]string{}, redirects: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/authorize", a.authorize)
	mux.HandleFunc("/token", a.token)
	mux.HandleFunc("/devicecode", a.devicecode)
	a.Server = httptest.NewServer(mux)
	t.Cleanup(a.Close)
	return a
}

func (a *authServer) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || redirect.Scheme != "http" || redirect.Hostname() != "localhost" || q.Get("client_id") != "client-1" ||
		q.Get("response_type") != "code" || q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" ||
		q.Get("scope") != "https://outlook.office.com/SMTP.Send offline_access" {
		http.Error(w, "bad authorization request: "+r.URL.RawQuery, http.StatusBadRequest)
		return
	}
	v := url.Values{"state": {q.Get("state")}}
	if a.deny {
		v.Set("error", "access_denied")
		v.Set("error_description", "The user declined to consent.")
	} else {
		code := fmt.Sprintf("code-%d", time.Now().UnixNano())
		a.mu.Lock()
		a.challenges[code] = q.Get("code_challenge")
		a.redirects[code] = q.Get("redirect_uri")
		a.hints = append(a.hints, q.Get("login_hint"))
		a.mu.Unlock()
		v.Set("code", code)
	}
	redirect.RawQuery = v.Encode()
	http.Redirect(w, r, redirect.String(), http.StatusFound)
}

func (a *authServer) devicecode(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	if r.Form.Get("client_id") != "client-1" {
		http.Error(w, "bad client", http.StatusBadRequest)
		return
	}
	json.NewEncoder(w).Encode(map[string]any{"device_code": "dev-1", "user_code": "ABCD-EFGH",
		"verification_uri": a.URL + "/device", "expires_in": 600, "interval": 1})
}

func (a *authServer) token(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	a.mu.Lock()
	defer a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	fail := func(code string) {
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(map[string]string{"error": code})
	}
	switch r.Form.Get("grant_type") {
	case "authorization_code":
		code := r.Form.Get("code")
		sum := sha256.Sum256([]byte(r.Form.Get("code_verifier")))
		if a.challenges[code] == "" || base64.RawURLEncoding.EncodeToString(sum[:]) != a.challenges[code] ||
			r.Form.Get("redirect_uri") != a.redirects[code] {
			fail("invalid_grant")
			return
		}
		delete(a.challenges, code)
	case "urn:ietf:params:oauth:grant-type:device_code":
		if !a.approved {
			fail("authorization_pending")
			return
		}
	case "refresh_token":
		if r.Form.Get("refresh_token") != a.refresh {
			fail("invalid_grant")
			return
		}
	default:
		fail("unsupported_grant_type")
		return
	}
	at := fmt.Sprintf("at-%d", time.Now().UnixNano())
	a.access = append(a.access, at)
	json.NewEncoder(w).Encode(map[string]any{"access_token": at, "token_type": "Bearer", "expires_in": 3600, "refresh_token": a.refresh})
}

// lines collects a command's output and hands out each line as it comes.
type lines struct {
	mu   sync.Mutex
	buf  strings.Builder
	ch   chan string
	rest string
}

func newLines() *lines { return &lines{ch: make(chan string, 100)} }

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	l.rest += string(p)
	for {
		i := strings.IndexByte(l.rest, '\n')
		if i < 0 {
			break
		}
		l.ch <- l.rest[:i]
		l.rest = l.rest[i+1:]
	}
	return len(p), nil
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// waitLine returns the first line (trimmed) that starts with prefix.
func (l *lines) waitLine(t *testing.T, prefix string) string {
	t.Helper()
	deadline := time.After(20 * time.Second) // catches hangs only
	for {
		select {
		case s := <-l.ch:
			if s = strings.TrimSpace(s); strings.HasPrefix(s, prefix) {
				return s
			}
		case <-deadline:
			t.Fatalf("no line starting with %q in:\n%s", prefix, l.String())
		}
	}
}

// setup writes a configuration whose smarthost signs in at a.
func setup(t *testing.T, a *authServer, extra string) (load func() (*config.Config, error), refreshFile string) {
	t.Helper()
	dir := t.TempDir()
	refreshFile = filepath.Join(dir, "oauth2", "m365.refresh")
	text := fmt.Sprintf(`hostname: mail.example.com
data_dir: %s
delivery:
  smarthost:
    address: "[smtp.office365.com]:587"
    username: relay@example.com
    oauth2:
      provider: microsoft
      tenant: 11111111-2222-3333-4444-555555555555
      client_id: client-1
      auth_url: %s/authorize
      token_url: %s/token
      device_auth_url: %s/devicecode
      refresh_token_file: %s
%s`, dir, a.URL, a.URL, a.URL, refreshFile, extra)
	path := filepath.Join(dir, "inkan.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return func() (*config.Config, error) {
		return config.LoadEnv(path, func(string) (string, bool) { return "", false })
	}, refreshFile
}

func run(load func() (*config.Config, error), args ...string) (out, errs *lines, done chan int) {
	out, errs, done = newLines(), newLines(), make(chan int, 1)
	go func() { done <- oauthcmd.Main(load, args, out, errs) }()
	return out, errs, done
}

func wait(t *testing.T, done chan int, errs *lines) int {
	t.Helper()
	select {
	case code := <-done:
		return code
	case <-time.After(30 * time.Second):
		t.Fatalf("the command did not finish; stderr:\n%s", errs.String())
		return 0
	}
}

// The authorization-code flow with a loopback redirect, the browser played
// by an HTTP client: the refresh token lands in refresh_token_file (0600),
// never on the terminal, and `inkan oauth2 test` then gets an access token
// without printing it.
func TestLoginLoopback(t *testing.T) {
	t.Parallel()
	a := newAuthServer(t)
	load, file := setup(t, a, "")
	out, errs, done := run(load, "login", "-timeout", "30s")
	authURL := out.waitLine(t, "http")
	resp, err := http.Get(authURL) // the browser: sign-in, consent, redirect to inkan
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if code := wait(t, done, errs); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, errs.String())
	}
	b, err := os.ReadFile(file)
	if err != nil || strings.TrimSpace(string(b)) != a.refresh {
		t.Fatalf("refresh_token_file holds %q (%v)", b, err)
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	if strings.Contains(out.String()+errs.String(), a.refresh) {
		t.Errorf("the refresh token was printed:\n%s", out.String())
	}
	if len(a.hints) != 1 || a.hints[0] != "relay@example.com" {
		t.Errorf("login_hint %q", a.hints)
	}

	out, errs, done = run(load, "test")
	if code := wait(t, done, errs); code != 0 || !strings.Contains(out.String(), "issued an access token for relay@example.com") {
		t.Fatalf("test: exit %d\n%s%s", code, out.String(), errs.String())
	}
	for _, at := range a.access {
		if strings.Contains(out.String()+errs.String(), at) {
			t.Errorf("an access token was printed")
		}
	}
}

// The device-code flow: the code is shown, the person enters it elsewhere;
// with -o the token goes to that file and the YAML to set is printed.
func TestLoginDevice(t *testing.T) {
	t.Parallel()
	a := newAuthServer(t)
	load, _ := setup(t, a, "")
	other := filepath.Join(t.TempDir(), "other.refresh")
	out, errs, done := run(load, "login", "-device", "-o", other)
	out.waitLine(t, "ABCD-EFGH")
	a.mu.Lock()
	a.approved = true
	a.mu.Unlock()
	if code := wait(t, done, errs); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, errs.String())
	}
	if b, _ := os.ReadFile(other); strings.TrimSpace(string(b)) != a.refresh {
		t.Errorf("-o file holds %q", b)
	}
	if !strings.Contains(out.String(), "refresh_token_file: "+other) {
		t.Errorf("no YAML to set in:\n%s", out.String())
	}
}

// A refused consent, and a relay whose flow needs no sign-in, end with a
// message that says what happened.
func TestLoginRefusals(t *testing.T) {
	t.Parallel()
	a := newAuthServer(t)
	a.deny = true
	load, file := setup(t, a, "")
	out, errs, done := run(load, "login", "-timeout", "30s")
	resp, err := http.Get(out.waitLine(t, "http"))
	if err == nil {
		resp.Body.Close()
	}
	if code := wait(t, done, errs); code != 1 || !strings.Contains(errs.String(), "access_denied") {
		t.Errorf("exit %d, stderr %q", code, errs.String())
	}
	if _, err := os.Stat(file); err == nil {
		t.Errorf("a refresh token file was written after a refusal")
	}

	load, _ = setup(t, a, "  sender_relay:\n    \"@app.example.com\":\n      address: \"[smtp.office365.com]:587\"\n      username: app@example.com\n"+
		"      oauth2: {provider: microsoft, tenant: t.example.com, client_id: c, client_secret_file: /nonexistent}\n")
	_, errs, done = run(load, "login", "-relay", "@app.example.com")
	if code := wait(t, done, errs); code != 78 || !strings.Contains(errs.String(), "delivery.sender_relay.@app.example.com.oauth2.flow is client_credentials") {
		t.Errorf("exit %d, stderr %q", code, errs.String())
	}
	_, errs, done = run(load, "login", "-relay", "@nobody.example.com")
	if code := wait(t, done, errs); code != 78 || !strings.Contains(errs.String(), "relays: delivery.smarthost, delivery.sender_relay.@app.example.com") {
		t.Errorf("exit %d, stderr %q", code, errs.String())
	}
}
