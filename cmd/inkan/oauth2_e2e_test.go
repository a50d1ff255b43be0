package main_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// `inkan check` opens what an OAuth2 relay names: a missing refresh token
// is an error naming the setting and `inkan oauth2 login`; once it is
// there the config passes, and -print shows neither the inline client
// secret nor the refresh token.
func TestCheckOAuth2Relay(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rt := filepath.Join(dir, "oauth2", "m365.refresh")
	cfg := writeConfig(t, dir, `  smarthost:
    address: "[smtp.office365.com]:587, [smtp-backup.example.net]:587"
    username: relay@example.com
    oauth2:
      provider: microsoft
      tenant: 11111111-2222-3333-4444-555555555555
      client_id: 66666666-7777-8888-9999-000000000000
      client_secret: inline-client-secret-value
      refresh_token_file: `+rt+`
    pacing: {messages: 30, recipients_per_day: 10000}
`)
	out, err := exec.Command(binPath, "check", "-config", cfg).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 78 {
		t.Fatalf("check exited %v, want 78:\n%s", err, out)
	}
	for _, want := range []string{"delivery.smarthost.oauth2.refresh_token_file", "inkan oauth2 login"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}

	os.MkdirAll(filepath.Dir(rt), 0o700)
	if err := os.WriteFile(rt, []byte("refresh-token-value\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(binPath, "check", "-print", "-config", cfg).CombinedOutput()
	if err != nil {
		t.Fatalf("check: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "delivery.smarthost.oauth2.client_secret") {
		t.Errorf("no warning about the client secret written in the config:\n%s", out)
	}
	for _, secret := range []string{"inline-client-secret-value", "refresh-token-value"} {
		if strings.Contains(string(out), secret) {
			t.Errorf("check -print shows a secret:\n%s", out)
		}
	}
}

// ---- the built binary against a loopback token endpoint and a relay that
// takes only XOAUTH2 with a valid token ----

// e2eTokens is a token endpoint: refresh_token grant only.
type e2eTokens struct {
	*httptest.Server
	mu      sync.Mutex
	refresh map[string]bool
	access  map[string]bool
	issued  []string
}

func newE2ETokens(t *testing.T, refresh string) *e2eTokens {
	tk := &e2eTokens{refresh: map[string]bool{refresh: true}, access: map[string]bool{}, issued: []string{refresh}}
	tk.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		tk.mu.Lock()
		defer tk.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if r.Form.Get("grant_type") != "refresh_token" || !tk.refresh[r.Form.Get("refresh_token")] || r.Form.Get("client_id") != "client-1" {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":"invalid_grant","error_description":"AADSTS50173: The provided grant has expired due to it being revoked."}`)
			return
		}
		at := fmt.Sprintf("at-%d", time.Now().UnixNano())
		tk.access[at] = true
		tk.issued = append(tk.issued, at)
		json.NewEncoder(w).Encode(map[string]any{"access_token": at, "token_type": "Bearer", "expires_in": 3600})
	}))
	t.Cleanup(tk.Close)
	return tk
}

func (tk *e2eTokens) valid(token string) bool {
	tk.mu.Lock()
	defer tk.mu.Unlock()
	return tk.access[token]
}

// xoauth2Sink is a TLS relay that accepts AUTH XOAUTH2 only, with a token
// tk issued, in the exact wire format.
type xoauth2Sink struct {
	sink
	tk   *e2eTokens
	pin  string
	user string
}

type xoauth2Session struct {
	sinkSession
	x      *xoauth2Sink
	authed bool
}

func (s *xoauth2Session) AuthMechanisms() []string { return []string{"XOAUTH2"} }

func (s *xoauth2Session) Auth(string) (sasl.Server, error) { return &e2eXOAuth2{s: s}, nil }

func (s *xoauth2Session) Mail(from string, o *smtp.MailOptions) error {
	if !s.authed {
		return smtp.ErrAuthRequired
	}
	return s.sinkSession.Mail(from, o)
}

type e2eXOAuth2 struct {
	s      *xoauth2Session
	failed bool
}

var e2eXOAuth2Line = regexp.MustCompile("^user=([^\x01]+)\x01auth=Bearer ([^\x01]+)\x01\x01$")

func (x *e2eXOAuth2) Next(resp []byte) ([]byte, bool, error) {
	if x.failed {
		return nil, true, &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 3}, Message: "Authentication unsuccessful"}
	}
	m := e2eXOAuth2Line.FindSubmatch(resp)
	if m == nil || string(m[1]) != x.s.x.user || !x.s.x.tk.valid(string(m[2])) {
		x.failed = true
		return []byte(`{"status":"401","schemes":"bearer"}`), false, nil
	}
	x.s.authed = true
	return nil, true, nil
}

func startXOAuth2Sink(t *testing.T, tk *e2eTokens) *xoauth2Sink {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "relay.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	x := &xoauth2Sink{tk: tk, pin: hex.EncodeToString(sum[:]), user: "relay@example.com"}
	x.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &xoauth2Session{sinkSession: sinkSession{s: &x.sink}, x: x}, nil
	}))
	x.srv.Domain = "relay.test"
	x.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	x.addr = l.Addr().String()
	go x.srv.Serve(l)
	t.Cleanup(func() { x.srv.Close() })
	return x
}

// startOAuth2Inkan runs inkan with everything going to a failover list
// whose first address is down and whose second is the XOAUTH2 relay.
func startOAuth2Inkan(t *testing.T, x *xoauth2Sink, tk *e2eTokens, refreshFile, pacing string) *inkan {
	t.Helper()
	dir := t.TempDir()
	in := &inkan{t: t, dir: dir, logs: &syncBuffer{},
		relay: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		sub:   fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		smtps: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		http:  fmt.Sprintf("127.0.0.1:%d", freePort(t)),
	}
	cfg := fmt.Sprintf(`hostname: relay.test.example
data_dir: %s
listen: {smtps: "%s", submission: "%s", relay: "%s", http: "%s"}
auth:
  trusted_networks: [127.0.0.0/8]
delivery:
  resolver: "127.0.0.1:9"
  smarthost:
    address: "[127.0.0.1]:%d, [127.0.0.1]:%s"
    tls: verify
    tls_fingerprint: %s
    username: relay@example.com
    oauth2:
      token_url: %s/token
      client_id: client-1
      refresh_token_file: %s
%s
queue:
  retry_min: 1s
  retry_max: 2s
`, dir, in.smtps, in.sub, in.relay, in.http, freePort(t), portOf(x.addr), x.pin, tk.URL, refreshFile, pacing)
	in.cfgPath = filepath.Join(dir, "inkan.yaml")
	if err := os.WriteFile(in.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	in.start()
	return in
}

func queuedID(reply string) string {
	f := strings.Fields(reply)
	return f[len(f)-1]
}

// waitShow runs `inkan queue show ID` until its output contains want.
func waitShow(t *testing.T, in *inkan, id, want string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second) // catches hangs only
	for {
		out, _ := in.run("", "queue", "show", id)
		if strings.Contains(out, want) {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue show %s never said %q; last:\n%s\nlogs:\n%s", id, want, out, in.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Through the real queue: the first relay of the list is down, so mail
// goes to the second, logged in with XOAUTH2; a route paced to one message
// an hour delivers the first message and keeps the second, which `inkan
// queue show` says waits for pacing; no secret reaches the log.
func TestOAuth2FailoverPacingEndToEnd(t *testing.T) {
	t.Parallel()
	refresh := fmt.Sprintf("rt-%d", time.Now().UnixNano())
	tk := newE2ETokens(t, refresh)
	x := startXOAuth2Sink(t, tk)
	rf := filepath.Join(t.TempDir(), "refresh")
	os.WriteFile(rf, []byte(refresh+"\n"), 0o600)
	in := startOAuth2Inkan(t, x, tk, rf, "    pacing: {messages: 1, period: 1h}")

	body := "From: app@example.com\r\nTo: bob@elsewhere.example\r\nSubject: hi\r\n\r\nhello\r\n"
	sendRaw(t, in.relay, "app@example.com", []string{"bob@elsewhere.example"}, body)
	got := x.wait(t, 1)
	if got[0].to[0] != "bob@elsewhere.example" {
		t.Errorf("relay got %+v", got[0])
	}
	id := queuedID(sendRaw(t, in.relay, "app@example.com", []string{"carol@elsewhere.example"}, body))
	out := waitShow(t, in, id, "waits for pacing")
	if !strings.Contains(out, "delivery.smarthost.pacing allows 1 message per 1h") {
		t.Errorf("queue show:\n%s", out)
	}
	logs := in.logs.String()
	if !strings.Contains(logs, "relay address failed; trying the next one") {
		t.Errorf("no failover line in the log:\n%s", logs)
	}
	tk.mu.Lock()
	defer tk.mu.Unlock()
	for _, s := range tk.issued {
		if strings.Contains(logs+out, s) {
			t.Errorf("a token appears in the log or in queue show")
		}
	}
}

// A revoked refresh token: the message waits in the queue with the reason
// and the fix; once a new refresh token is in the file, `inkan queue
// retry` delivers it. Nothing is lost.
func TestOAuth2RevokedRefreshTokenEndToEnd(t *testing.T) {
	t.Parallel()
	tk := newE2ETokens(t, "revoked-long-ago")
	tk.refresh = map[string]bool{}
	x := startXOAuth2Sink(t, tk)
	rf := filepath.Join(t.TempDir(), "refresh")
	os.WriteFile(rf, []byte("revoked-long-ago\n"), 0o600)
	in := startOAuth2Inkan(t, x, tk, rf, "")

	body := "From: app@example.com\r\nTo: bob@elsewhere.example\r\nSubject: hi\r\n\r\nhello\r\n"
	id := queuedID(sendRaw(t, in.relay, "app@example.com", []string{"bob@elsewhere.example"}, body))
	waitShow(t, in, id, "inkan oauth2 login")

	tk.mu.Lock()
	tk.refresh["new-after-login"] = true
	tk.mu.Unlock()
	os.WriteFile(rf, []byte("new-after-login\n"), 0o600)
	if out, err := in.run("", "queue", "retry", id); err != nil {
		t.Fatalf("queue retry: %v\n%s", err, out)
	}
	x.wait(t, 1)
}
