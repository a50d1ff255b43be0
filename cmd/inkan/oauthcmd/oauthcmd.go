// Package oauthcmd implements `inkan oauth2`: obtaining the first refresh
// token for a relay that logs in with OAuth2 (Microsoft 365, Google
// Workspace), for an operator who has only a browser, and testing the
// settings by getting an access token.
//
// login runs the authorization-code flow with PKCE and a redirect to a
// listener on this machine's loopback address (RFC 8252), or with -device
// the device-code flow (RFC 8628), where the browser may be on another
// machine. The refresh token goes to the relay's refresh_token_file (or -o
// FILE), written atomically with mode 0600; it is printed only when there
// is no file to write it to. Access tokens are never printed.
package oauthcmd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/inkan-relay/inkan/cmd/inkan/internal/cli"
	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/queue/safefile"
	"github.com/inkan-relay/inkan/relay/deliver/oauth"
)

const usage = `usage: inkan oauth2 login [-relay KEY] [-device] [-listen ADDR] [-o FILE] [-timeout D]
       inkan oauth2 test [-relay KEY]

login   get a refresh token for a relay whose oauth2 flow is refresh_token:
        open the address it prints in a browser, sign in as the relay's
        username and consent. Without -device the browser must reach this
        machine's loopback address (on a server: ssh -L PORT:localhost:PORT,
        with PORT from -listen). The token is written to the relay's
        oauth2.refresh_token_file (or -o FILE) with mode 0600.
test    get an access token with the relay's settings, as inkan serve would,
        and say whether it worked (the token itself is not printed).

KEY is the relay's setting: delivery.smarthost (the default) or
delivery.sender_relay.SENDER ("@example.org" alone also works).
`

// Main runs `inkan oauth2 ARGS`; load reads the configuration.
func Main(load func() (*config.Config, error), args []string, stdout, stderr io.Writer) int {
	if cli.WantsHelp(args) && (len(args) == 0 || strings.HasPrefix(args[0], "-")) {
		fmt.Fprint(stdout, usage)
		return cli.ExitOK
	}
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return cli.ExitUsage
	}
	cmd, rest := args[0], args[1:]
	fs := flag.NewFlagSet("inkan oauth2 "+cmd, flag.ContinueOnError)
	fs.Usage = cli.Usage(fs, usage+"\nFlags:\n")
	relayKey := fs.String("relay", "delivery.smarthost", "the relay whose oauth2 settings to use")
	var o loginOptions
	switch cmd {
	case "login":
		fs.BoolVar(&o.device, "device", false, "use the device-code flow: enter a code in a browser anywhere")
		fs.StringVar(&o.listen, "listen", "127.0.0.1:0", "loopback `address` for the browser's redirect (port 0: any free port)")
		fs.StringVar(&o.out, "o", "", "write the refresh token to `FILE` (default: the relay's oauth2.refresh_token_file)")
		fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "how long to wait for the sign-in")
	case "test":
	case "help":
		fmt.Fprint(stdout, usage)
		return cli.ExitOK
	default:
		fmt.Fprintf(stderr, "inkan oauth2: unknown command %q\n%s", cmd, usage)
		return cli.ExitUsage
	}
	if status, ok := cli.Parse(fs, rest, stdout, stderr); !ok {
		return status
	}
	if fs.NArg() > 0 {
		fs.SetOutput(stderr)
		fs.Usage()
		return cli.ExitUsage
	}
	cfg, err := load()
	if err != nil {
		cli.PrintErrors(stderr, err)
		return cli.ExitConfig
	}
	key, relay, err := findRelay(cfg, *relayKey)
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return cli.ExitConfig
	}
	if cmd == "test" {
		return test(key, relay, stdout, stderr)
	}
	o.key, o.relay, o.cfg = key, relay, cfg
	return login(o, stdout, stderr)
}

// findRelay returns the relay named by key, which must log in with OAuth2.
func findRelay(cfg *config.Config, key string) (string, *config.Smarthost, error) {
	d := cfg.Delivery
	var s *config.Smarthost
	switch {
	case key == "delivery.smarthost" || key == "smarthost":
		key, s = "delivery.smarthost", d.Smarthost
	default:
		sender := strings.TrimPrefix(strings.TrimPrefix(key, "delivery."), "sender_relay.")
		if r, ok := d.SenderRelay[sender]; ok {
			key, s = "delivery.sender_relay."+sender, &r
		} else {
			var known []string
			for k := range d.SenderRelay {
				known = append(known, "delivery.sender_relay."+k)
			}
			sort.Strings(known)
			if d.Smarthost != nil {
				known = append([]string{"delivery.smarthost"}, known...)
			}
			return "", nil, fmt.Errorf("-relay %s: no such relay in %s (relays: %s)", key, source(cfg), orNone(known))
		}
	}
	if s == nil {
		return "", nil, fmt.Errorf("%s is not set in %s; configure the relay and its oauth2 section first (see deploy/oauth2.md)", key, source(cfg))
	}
	if s.OAuth2 == nil {
		return "", nil, fmt.Errorf("%s has no oauth2 section in %s; add one (see deploy/oauth2.md)", key, source(cfg))
	}
	return key, s, nil
}

func source(cfg *config.Config) string {
	if cfg.Source == "" {
		return "the embedded default configuration"
	}
	return cfg.Source
}

func orNone(list []string) string {
	if len(list) == 0 {
		return "none"
	}
	return strings.Join(list, ", ")
}

// test gets an access token as the server would.
func test(key string, relay *config.Smarthost, stdout, stderr io.Writer) int {
	src, err := oauth.New(key+".oauth2", *relay.OAuth2, nil)
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return cli.ExitConfig
	}
	if _, err := src.Token(context.Background()); err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return cli.ExitFail
	}
	fmt.Fprintf(stdout, "%s: the token endpoint issued an access token for %s (flow %s); inkan will log in with %s\n",
		key, relay.Username, relay.OAuth2.FlowName(), mechanismName(relay.OAuth2.Mechanism))
	return cli.ExitOK
}

func mechanismName(m string) string {
	if m == "" {
		return "XOAUTH2 (or OAUTHBEARER when the relay offers only that)"
	}
	return strings.ToUpper(m)
}

type loginOptions struct {
	key     string
	relay   *config.Smarthost
	cfg     *config.Config
	device  bool
	listen  string
	out     string
	timeout time.Duration
}

// login gets a refresh token and stores it.
func login(o loginOptions, stdout, stderr io.Writer) int {
	settings := o.relay.OAuth2
	if f := settings.FlowName(); f != config.FlowRefreshToken {
		fmt.Fprintf(stderr, "error: %s.oauth2.flow is %s, which needs no sign-in: test the settings with `inkan oauth2 test`\n", o.key, f)
		return cli.ExitConfig
	}
	secret, err := settings.ReadClientSecret()
	if err != nil {
		fmt.Fprintf(stderr, "error: %s.oauth2.client_secret_file: %v\n", o.key, err)
		return cli.ExitConfig
	}
	conf := oauth.Config(settings, secret)
	out := o.out
	if out == "" {
		out = settings.RefreshTokenFile
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	var tok *oauth2.Token
	if o.device {
		tok, err = deviceFlow(ctx, conf, stdout)
	} else {
		tok, err = loopbackFlow(ctx, conf, settings.Provider, o.listen, o.relay.Username, stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "error:", describe(err, o.key))
		return cli.ExitFail
	}
	if tok.RefreshToken == "" {
		fmt.Fprintf(stderr, "error: the provider issued no refresh token: Microsoft needs the offline_access scope in %s.oauth2.scopes (the default has it); Google gives one at the first consent (remove inkan's access at myaccount.google.com/permissions and sign in again)\n", o.key)
		return cli.ExitFail
	}
	if out == "" {
		fmt.Fprintf(stderr, "%s.oauth2 names no refresh_token_file and -o was not given: the refresh token is printed below. Store it in a file only inkan can read, and set refresh_token_file to that file.\n", o.key)
		fmt.Fprintln(stdout, tok.RefreshToken)
		return cli.ExitOK
	}
	if err := store(out, tok.RefreshToken, o.cfg.DataDir); err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return cli.ExitFail
	}
	fmt.Fprintf(stdout, "Stored the refresh token in %s (mode 0600).\n", out)
	if out != settings.RefreshTokenFile {
		fmt.Fprintf(stdout, "Set it in the configuration:\n\n%s\n", snippet(o.key, out))
	}
	fmt.Fprintf(stdout, "Check the settings with `inkan oauth2 test -relay %s`; a running inkan reads the file at its next token renewal.\n", o.key)
	return cli.ExitOK
}

// snippet is the YAML that sets refresh_token_file for the relay.
func snippet(key, file string) string {
	if rest, ok := strings.CutPrefix(key, "delivery.sender_relay."); ok {
		return fmt.Sprintf("delivery:\n  sender_relay:\n    %q:\n      oauth2:\n        refresh_token_file: %s", rest, file)
	}
	return fmt.Sprintf("delivery:\n  smarthost:\n    oauth2:\n      refresh_token_file: %s", file)
}

// store writes the refresh token. Run as root for a data directory owned
// by the service user, a new file (and folder) is given to that user, who
// must read it and write the rotated tokens next to it.
func store(path, token, dataDir string) error {
	_, statErr := os.Lstat(path)
	if err := safefile.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		return err
	}
	if os.Geteuid() != 0 || statErr == nil || dataDir == "" {
		return nil
	}
	fi, err := os.Stat(dataDir)
	if err != nil {
		return nil
	}
	own, ok := safefile.OwnerOf(fi)
	if !ok || own.UID == 0 {
		return nil
	}
	if dir := filepath.Dir(path); strings.HasPrefix(dir, filepath.Clean(dataDir)+string(filepath.Separator)) {
		os.Chown(dir, own.UID, own.GID)
	}
	if err := os.Chown(path, own.UID, own.GID); err != nil {
		return fmt.Errorf("give %s to the owner of %s: %w", path, dataDir, err)
	}
	return nil
}

// describe explains a failed sign-in without quoting a response body.
func describe(err error, key string) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return err
	}
	what := re.ErrorCode
	if what == "" && re.Response != nil {
		what = re.Response.Status
	}
	if re.ErrorDescription != "" {
		what += ": " + strings.SplitN(re.ErrorDescription, "\n", 2)[0]
	}
	return fmt.Errorf("the provider refused (%s); check %s.oauth2 (client_id, tenant, scopes) and the app registration's redirect URI and API permissions", what, key)
}

// deviceFlow runs RFC 8628: show a code, wait for the person to enter it.
func deviceFlow(ctx context.Context, conf *oauth2.Config, stdout io.Writer) (*oauth2.Token, error) {
	if conf.Endpoint.DeviceAuthURL == "" {
		return nil, errors.New("no device authorization endpoint: set oauth2.device_auth_url, or sign in without -device")
	}
	da, err := conf.DeviceAuth(ctx)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(stdout, "Open %s in a browser (on any machine), enter the code\n\n    %s\n\nand sign in as the relay's mailbox. Waiting...\n", da.VerificationURI, da.UserCode)
	if da.VerificationURIComplete != "" {
		fmt.Fprintf(stdout, "(or open %s)\n", da.VerificationURIComplete)
	}
	return conf.DeviceAccessToken(ctx, da)
}

// loopbackFlow runs the authorization-code flow with PKCE, the redirect
// coming back to a listener on the loopback address (RFC 8252 section 7.3).
func loopbackFlow(ctx context.Context, conf *oauth2.Config, provider, listen, user string, stdout io.Writer) (*oauth2.Token, error) {
	if conf.Endpoint.AuthURL == "" {
		return nil, errors.New("no authorization endpoint: set oauth2.auth_url, or use -device")
	}
	host, _, err := net.SplitHostPort(listen)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("-listen %s: give a loopback address and port, e.g. 127.0.0.1:8400", listen)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("-listen %s: %w", listen, err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	// Microsoft accepts any port on http://localhost; browsers may resolve
	// localhost to ::1, so listen there too when it is free.
	lns := []net.Listener{ln}
	if host == "127.0.0.1" {
		if ln6, err := net.Listen("tcp", fmt.Sprintf("[::1]:%d", port)); err == nil {
			lns = append(lns, ln6)
		}
	}
	conf.RedirectURL = fmt.Sprintf("http://localhost:%d", port) // as registered: http://localhost, any port
	state := randomHex(16)
	verifier := oauth2.GenerateVerifier()
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier)}
	if user != "" {
		opts = append(opts, oauth2.SetAuthURLParam("login_hint", user))
	}
	if provider == "google" {
		// Without these Google gives a refresh token only at the first consent.
		opts = append(opts, oauth2.AccessTypeOffline, oauth2.SetAuthURLParam("prompt", "consent"))
	}
	authURL := conf.AuthCodeURL(state, opts...)

	type result struct {
		code string
		err  error
	}
	got := make(chan result, 1)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if r.URL.Path != "/" || (q.Get("code") == "" && q.Get("error") == "") {
			http.NotFound(w, r)
			return
		}
		var res result
		switch {
		case q.Get("state") != state:
			res.err = errors.New("the redirect carried the wrong state: it did not come from this sign-in")
		case q.Get("error") != "":
			res.err = fmt.Errorf("the sign-in was refused (%s: %s)", q.Get("error"), q.Get("error_description"))
		default:
			res.code = q.Get("code")
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if res.err != nil {
			fmt.Fprintf(w, "<p>inkan: %s</p>", html.EscapeString(res.err.Error()))
		} else {
			fmt.Fprint(w, "<p>inkan has the authorization; you can close this page.</p>")
		}
		select {
		case got <- res:
		default:
		}
	})}
	for _, l := range lns {
		go srv.Serve(l)
	}
	defer srv.Close()
	fmt.Fprintf(stdout, "Open this address in a browser on this machine and sign in as %s:\n\n    %s\n\n"+
		"(On a server without a browser: ssh -L %d:localhost:%d to it first, or use -device.) Waiting...\n",
		orAny(user), authURL, port, port)
	var res result
	select {
	case res = <-got:
	case <-ctx.Done():
		return nil, fmt.Errorf("no sign-in within the time allowed (-timeout): %w", ctx.Err())
	}
	if res.err != nil {
		return nil, res.err
	}
	return conf.Exchange(ctx, res.code, oauth2.VerifierOption(verifier))
}

func orAny(user string) string {
	if user == "" {
		return "the relay's mailbox"
	}
	return user
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
