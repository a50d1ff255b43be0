package auth_test

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/inkan-relay/inkan/auth"
)

// checker accepts alice/secret; "boom" makes verify fail internally.
func checker(got *[]string) func(user, pass string) error {
	return func(user, pass string) error {
		*got = append(*got, user+"/"+pass)
		switch {
		case user == "boom":
			return errors.New("disk on fire")
		case user == "alice" && pass == "secret":
			return nil
		}
		return auth.ErrAuthFailed
	}
}

type step struct {
	response  []byte // nil = no initial response
	challenge string
	done      bool
	code      int // expected SMTP error code, 0 = none
}

func runSASL(t *testing.T, s sasl.Server, steps []step) {
	t.Helper()
	for i, st := range steps {
		ch, done, err := s.Next(st.response)
		if st.code != 0 {
			var se *smtp.SMTPError
			if !errors.As(err, &se) || se.Code != st.code {
				t.Fatalf("step %d: err = %v, want SMTP code %d", i, err, st.code)
			}
			if _, ok := err.(*smtp.SMTPError); !ok {
				t.Fatalf("step %d: %T is not *smtp.SMTPError itself (go-smtp uses a type assertion)", i, err)
			}
			continue
		}
		if err != nil || done != st.done || string(ch) != st.challenge {
			t.Fatalf("step %d: Next(%q) = %q, %v, %v; want %q, %v", i, st.response, ch, done, err, st.challenge, st.done)
		}
	}
}

func TestLoginServer(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
		calls string
	}{
		{"no initial response", []step{
			{nil, "Username:", false, 0},
			{[]byte("alice"), "Password:", false, 0},
			{[]byte("secret"), "", true, 0},
		}, "alice/secret"},
		{"initial response is the user name", []step{
			{[]byte("alice"), "Password:", false, 0},
			{[]byte("secret"), "", true, 0},
		}, "alice/secret"},
		{"empty initial response", []step{
			{[]byte{}, "Password:", false, 0},
			{[]byte("secret"), "", true, 535},
		}, "/secret"},
		{"wrong password", []step{
			{nil, "Username:", false, 0},
			{[]byte("alice"), "Password:", false, 0},
			{[]byte("nope"), "", false, 535},
		}, "alice/nope"},
		{"internal error is temporary", []step{
			{[]byte("boom"), "Password:", false, 0},
			{[]byte("x"), "", false, 454},
		}, "boom/x"},
		{"response after done", []step{
			{[]byte("alice"), "Password:", false, 0},
			{[]byte("secret"), "", true, 0},
			{[]byte("more"), "", false, 501},
		}, "alice/secret"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var calls []string
			runSASL(t, auth.NewLoginServer(checker(&calls)), tc.steps)
			if strings.Join(calls, ",") != tc.calls {
				t.Errorf("verify calls %q, want %q", calls, tc.calls)
			}
		})
	}
}

func TestPlainServer(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
		calls string
	}{
		{"initial response", []step{{[]byte("\x00alice\x00secret"), "", true, 0}}, "alice/secret"},
		{"authzid equal", []step{{[]byte("alice\x00alice\x00secret"), "", true, 0}}, "alice/secret"},
		{"authzid other", []step{{[]byte("root\x00alice\x00secret"), "", false, 535}}, ""},
		{"empty challenge first", []step{{nil, "", false, 0}, {[]byte("\x00alice\x00secret"), "", true, 0}}, "alice/secret"},
		{"wrong password", []step{{[]byte("\x00alice\x00bad"), "", false, 535}}, "alice/bad"},
		{"malformed", []step{{[]byte("alice\x00secret"), "", false, 501}}, ""},
		{"internal error", []step{{[]byte("\x00boom\x00x"), "", false, 454}}, "boom/x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var calls []string
			runSASL(t, auth.NewPlainServer(checker(&calls)), tc.steps)
			if strings.Join(calls, ",") != tc.calls {
				t.Errorf("verify calls %q, want %q", calls, tc.calls)
			}
		})
	}
}

// testBackend is a go-smtp backend whose AUTH goes through Authenticator.
type testBackend struct{ a *auth.Authenticator }

func (b *testBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	ap, err := netip.ParseAddrPort(c.Conn().RemoteAddr().String())
	if err != nil {
		return nil, err
	}
	return &testSession{a: b.a, ip: ap.Addr()}, nil
}

type testSession struct {
	a    *auth.Authenticator
	ip   netip.Addr
	user string
}

func (s *testSession) AuthMechanisms() []string { return []string{sasl.Plain, sasl.Login} }

func (s *testSession) Auth(mech string) (sasl.Server, error) {
	verify := func(user, pass string) error {
		if err := s.a.Authenticate(context.Background(), s.ip, user, pass); err != nil {
			return err
		}
		s.user = user
		return nil
	}
	if mech == sasl.Login {
		return auth.NewLoginServer(verify), nil
	}
	return auth.NewPlainServer(verify), nil
}

func (s *testSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *testSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *testSession) Data(io.Reader) error                 { return nil }
func (s *testSession) Reset()                               {}
func (s *testSession) Logout() error                        { return nil }

// startServer runs a go-smtp server on 127.0.0.1:0 until the test ends.
func startServer(t *testing.T, a *auth.Authenticator) string {
	t.Helper()
	srv := smtp.NewServer(&testBackend{a: a})
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	srv.ReadTimeout = 10 * time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

func testAuthenticator(t *testing.T) (*auth.Authenticator, *[]time.Duration) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "users")
	if err := auth.SetUser(path, "alice", bcryptHash(t, "secret")); err != nil {
		t.Fatal(err)
	}
	users, err := auth.LoadUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var slept []time.Duration
	a := &auth.Authenticator{
		Users:   users,
		Limiter: auth.NewFailureLimiter(3, time.Hour),
		Sleep: func(_ context.Context, d time.Duration) {
			mu.Lock()
			slept = append(slept, d)
			mu.Unlock()
		},
	}
	return a, &slept
}

// rawConn speaks SMTP lines to addr.
func rawConn(t *testing.T, addr string) *textproto.Conn {
	t.Helper()
	c, err := textproto.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	expect(t, c, "", 220)
	expect(t, c, "EHLO client.example", 250)
	return c
}

func expect(t *testing.T, c *textproto.Conn, line string, code int) string {
	t.Helper()
	if line != "" {
		if err := c.PrintfLine("%s", line); err != nil {
			t.Fatal(err)
		}
	}
	got, msg, err := c.ReadResponse(0)
	if err != nil && got == 0 {
		t.Fatalf("%q: %v", line, err)
	}
	if got != code {
		t.Fatalf("%q: got %d %s, want %d", line, got, msg, code)
	}
	return msg
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestLoginOverSMTP(t *testing.T) {
	a, _ := testAuthenticator(t)
	addr := startServer(t, a)

	c := rawConn(t, addr)
	if msg := expect(t, c, "AUTH LOGIN", 334); msg != b64("Username:") {
		t.Fatalf("first challenge %q", msg)
	}
	if msg := expect(t, c, b64("alice"), 334); msg != b64("Password:") {
		t.Fatalf("second challenge %q", msg)
	}
	expect(t, c, b64("secret"), 235)

	c = rawConn(t, addr)
	expect(t, c, "AUTH LOGIN "+b64("alice"), 334)
	if msg := expect(t, c, b64("wrong"), 535); !strings.HasPrefix(msg, "5.7.8 ") {
		t.Fatalf("failure reply %q lacks 5.7.8", msg)
	}

	c = rawConn(t, addr)
	expect(t, c, "AUTH PLAIN "+b64("\x00alice\x00secret"), 235)
	c = rawConn(t, addr)
	expect(t, c, "AUTH PLAIN "+b64("garbage"), 501)
}

func TestLockoutOverSMTP(t *testing.T) {
	a, slept := testAuthenticator(t)
	before := authCount(t, auth.ResultFailure)
	beforeLocked := authCount(t, auth.ResultLocked)
	addr := startServer(t, a)
	login := func(pw string) error {
		c, err := smtp.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Hello("client.example"); err != nil {
			t.Fatal(err)
		}
		return c.Auth(sasl.NewPlainClient("", "alice", pw))
	}
	for range 3 {
		wantSMTP(t, login("bad"), 535, smtp.EnhancedCode{5, 7, 8})
	}
	// Locked out now, even with the right password.
	wantSMTP(t, login("secret"), 454, smtp.EnhancedCode{4, 7, 0})
	if got := *slept; len(got) != 3 || got[0] != time.Second || got[1] != 2*time.Second || got[2] != 4*time.Second {
		t.Errorf("delays %v, want [1s 2s 4s]", got)
	}
	if d := authCount(t, auth.ResultFailure) - before; d != 3 {
		t.Errorf("failure counter grew by %v, want 3", d)
	}
	if d := authCount(t, auth.ResultLocked) - beforeLocked; d != 1 {
		t.Errorf("locked counter grew by %v, want 1", d)
	}
	// Success (say, by an admin) lifts the lockout.
	a.Limiter.Unlock(netip.MustParseAddr("127.0.0.1"))
	if err := login("secret"); err != nil {
		t.Fatalf("after Success: %v", err)
	}
}
