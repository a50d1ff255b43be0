package main

import (
	"crypto/tls"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/inkan-relay/inkan/auth"
	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/relay/inbound"
)

// startHTTP binds the ops listener (health, readiness, metrics, autoconfig)
// and, with ACME, its challenge listener.
func (d *daemon) startHTTP(cfg *config.Config) error {
	if d.tlsSetup.ACME != nil {
		if err := d.startACMEChallenge(cfg); err != nil {
			return err
		}
	}
	addrs := config.SplitAddrs(cfg.Listen.HTTP)
	if len(addrs) == 0 {
		return nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", d.readyz)
	if cfg.HTTP.Metrics {
		mux.Handle("/metrics", promhttp.Handler())
	}
	if cfg.HTTP.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	d.routeStatus(mux, cfg)
	if cfg.HTTP.Autoconfig {
		mux.HandleFunc("/.well-known/autoconfig/mail/config-v1.1.xml", d.autoconfig)
		mux.HandleFunc("/mail/config-v1.1.xml", d.autoconfig)
	}
	d.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	for _, a := range addrs {
		ln, err := inbound.ListenTCP(a, d.log)
		if err != nil {
			return fmt.Errorf("listen http on %s: %w", a, err)
		}
		if ln == nil {
			continue
		}
		d.httpAddrs = append(d.httpAddrs, ln.Addr().String())
		d.log.Info("listening", "listener", "http", "addr", ln.Addr().String())
		d.goFunc(func() {
			if err := d.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				d.log.Error("http listener stopped", "err", err)
			}
		})
	}
	return nil
}

// startACMEChallenge serves HTTP-01 on a port-80 style address, or
// TLS-ALPN-01 on a port-443 style address.
func (d *daemon) startACMEChallenge(cfg *config.Config) error {
	addr := cfg.TLS.ACME.ChallengeListen
	if addr == "" {
		addr = ":80"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen for ACME challenges on %s: %w (set tls.acme.challenge_listen)", addr, err)
	}
	m := d.tlsSetup.ACME
	if inbound.ACMEChallengeTLS(cfg.TLS.ACME) { // tls.acme.challenge, or port 443
		ln = tls.NewListener(ln, m.TLSConfig())
		d.acmeSrv = &http.Server{Handler: http.NotFoundHandler(), ReadHeaderTimeout: 10 * time.Second}
	} else {
		d.acmeSrv = &http.Server{Handler: d.tlsSetup.ACMEHTTPHandler(), ReadHeaderTimeout: 10 * time.Second}
	}
	d.log.Info("listening", "listener", "acme-challenge", "addr", ln.Addr().String())
	d.goFunc(func() { d.tlsSetup.RunACME(d.ctx) }) // certificates in the background (acme.go)
	d.goFunc(func() {
		if err := d.acmeSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("acme challenge listener stopped", "err", err)
		}
	})
	return nil
}

// readyz is 200 only when the listeners are bound, the spool accepts writes
// and every configured DKIM key is loaded. Its callers may be anyone who
// reaches listen.http, so the reply says what is wrong in general words;
// the error, with its paths, goes to the log.
func (d *daemon) readyz(w http.ResponseWriter, r *http.Request) {
	cfg := d.cfg.Load()
	var problems []string
	if len(d.srv.Addrs(inbound.KindSMTPS))+len(d.srv.Addrs(inbound.KindSubmission))+len(d.srv.Addrs(inbound.KindRelay)) == 0 {
		problems = append(problems, "no SMTP listener is bound")
	}
	if err := probeSpool(queueDir(cfg)); err != nil {
		d.log.Error("readyz: spool not writable", "err", err)
		problems = append(problems, "spool not writable (the server log has the details)")
	}
	if hasDKIM(cfg) && d.srv.Current().Signer == nil {
		problems = append(problems, "DKIM keys not loaded")
	}
	if len(problems) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		for _, p := range problems {
			fmt.Fprintln(w, p)
		}
		return
	}
	fmt.Fprintln(w, "ready")
}

// probeSpool writes and removes a file in the queue directory.
func probeSpool(dir string) error {
	probe := filepath.Join(dir, ".readyz-probe")
	f, err := os.OpenFile(probe, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write([]byte("ok"))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	os.Remove(probe)
	return err
}

// autoconfig describes the account in Thunderbird's format
// (https://wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat).
// Thunderbird requires an incoming server: http.autoconfig_imap names it.
func (d *daemon) autoconfig(w http.ResponseWriter, r *http.Request) {
	cfg := d.cfg.Load()
	type server struct {
		Type           string `xml:"type,attr"`
		Hostname       string `xml:"hostname"`
		Port           int    `xml:"port"`
		SocketType     string `xml:"socketType"`
		Authentication string `xml:"authentication"`
		Username       string `xml:"username"`
	}
	type provider struct {
		ID          string   `xml:"id,attr"`
		Domain      []string `xml:"domain"`
		DisplayName string   `xml:"displayName"`
		Incoming    []server `xml:"incomingServer"`
		Outgoing    []server `xml:"outgoingServer"`
	}
	type clientConfig struct {
		XMLName  xml.Name `xml:"clientConfig"`
		Version  string   `xml:"version,attr"`
		Provider provider `xml:"emailProvider"`
	}
	if cfg.HTTP.AutoconfigIMAP == "" {
		http.Error(w, "autoconfig needs http.autoconfig_imap (the incoming IMAP server)", http.StatusNotFound)
		return
	}
	domain := cfg.Hostname
	smtpUser, imapUser := autoconfigUsernames(cfg, d.srv.Current().Users)
	if _, dom, ok := cutLast(r.URL.Query().Get("emailaddress"), "@"); ok && dom != "" {
		domain = dom
	}
	host := cfg.HTTP.AutoconfigHost
	if host == "" {
		host = cfg.Hostname
	}
	p := provider{ID: host, Domain: []string{domain}, DisplayName: domain + " (inkan " + host + ")"}
	if h, port, err := net.SplitHostPort(cfg.HTTP.AutoconfigIMAP); err == nil {
		n, _ := strconv.Atoi(port)
		socket := "SSL"
		if n == 143 {
			socket = "STARTTLS"
		}
		p.Incoming = append(p.Incoming, server{Type: "imap", Hostname: h, Port: n, SocketType: socket,
			Authentication: "password-cleartext", Username: imapUser})
	}
	add := func(listen string, public int, socket string) {
		for _, a := range config.SplitAddrs(listen) {
			if _, port, err := net.SplitHostPort(a); err == nil {
				n, _ := strconv.Atoi(port)
				if public > 0 {
					n = public
				}
				p.Outgoing = append(p.Outgoing, server{Type: "smtp", Hostname: host, Port: n,
					SocketType: socket, Authentication: "password-cleartext", Username: smtpUser})
				return
			}
		}
	}
	add(cfg.Listen.SMTPS, cfg.HTTP.AutoconfigSMTPSPort, "SSL")
	add(cfg.Listen.Submission, cfg.HTTP.AutoconfigSubmissionPort, "STARTTLS")
	w.Header().Set("Content-Type", "application/xml")
	w.Write([]byte(xml.Header))
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	enc.Encode(clientConfig{Version: "1.1", Provider: p})
}

// autoconfigUsernames says which user name a mail client should log in
// with: http.autoconfig_username when set (for SMTP and IMAP alike), else,
// for SMTP, what the users file holds: the whole address when every user
// name is one (or there are none), else the part before "@" (the README's
// user alice signs in as "alice", not "alice@example.com"). The file as a
// whole decides, never the address asked about: an answer that depended on
// whether that user exists would tell anyone which users exist.
func autoconfigUsernames(cfg *config.Config, users *auth.Users) (smtp, imap string) {
	const address, localpart = "%EMAILADDRESS%", "%EMAILLOCALPART%"
	switch cfg.HTTP.AutoconfigUsername {
	case "address":
		return address, address
	case "localpart":
		return localpart, localpart
	}
	if users != nil {
		for _, n := range users.Names() {
			if !strings.Contains(n, "@") {
				return localpart, address
			}
		}
	}
	return address, address
}

func cutLast(s, sep string) (string, string, bool) {
	for i := len(s) - len(sep); i >= 0; i-- {
		if s[i:i+len(sep)] == sep {
			return s[:i], s[i+len(sep):], true
		}
	}
	return s, "", false
}
