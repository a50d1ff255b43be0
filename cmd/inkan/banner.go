package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"strings"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/relay/inbound"
	"github.com/inkan-relay/inkan/relay/signing"
)

// printBanner tells whoever started inkan where it listens, what it signs
// with and how to try it. It is written with one Write, so log lines from
// the listeners never land inside it.
func printBanner(w io.Writer, d *daemon) {
	cfg := d.cfg.Load()
	var b bytes.Buffer
	fmt.Fprintf(&b, "\ninkan %s is running\n", version)
	fmt.Fprintf(&b, "  %s\n", config.Describe(cfg.Source, d.source))
	fmt.Fprintf(&b, "  data: %s\n", cfg.DataDir)
	line := func(kind inbound.Kind, what string) {
		for _, a := range d.srv.Addrs(kind) {
			fmt.Fprintf(&b, "  %-10s %-22s %s\n", kind, a, what)
		}
	}
	line(inbound.KindSMTPS, "implicit TLS, AUTH PLAIN/LOGIN")
	line(inbound.KindSubmission, "STARTTLS, AUTH after TLS")
	line(inbound.KindRelay, "plain SMTP for trusted networks")
	for _, a := range d.httpAddrs {
		fmt.Fprintf(&b, "  %-10s %-22s /healthz /readyz%s\n", "http", a, map[bool]string{true: " /metrics", false: ""}[cfg.HTTP.Metrics])
	}
	fmt.Fprintf(&b, "  TLS: %s certificate for %s\n", d.tlsSetup.Source, cfg.Hostname)
	dkimBlock(&b, cfg, d.srv.Current().Signer)
	tryIt(&b, d)
	fmt.Fprintln(&b)
	w.Write(b.Bytes())
}

// dkimBlock says which keys sign and the records to publish for them, or
// how to make a first key that inkan loads without a config change.
func dkimBlock(b *bytes.Buffer, cfg *config.Config, s *signing.Signer) {
	doms := s.Domains()
	if len(doms) == 0 {
		reload, as := fmt.Sprintf("kill -HUP %d", os.Getpid()), ""
		if os.Getenv("INVOCATION_ID") != "" { // a systemd service
			reload = "systemctl reload inkan"
			if u, err := user.Current(); err == nil && os.Geteuid() != 0 {
				as = "sudo -u " + u.Username + " " // the key must be the service's
			}
		}
		fmt.Fprintf(b, "  DKIM: no keys yet. Make one; it is loaded at the next start or on reload (%s):\n", reload)
		fmt.Fprintf(b, "          %sinkan dkim keygen -d %s -s s1 -o %s\n", as, exampleDomain(cfg.Hostname), config.AutoKeysDir(cfg.DataDir))
		return
	}
	from := ""
	if cfg.KeysDir != "" {
		from = " (from " + cfg.KeysDir + ")"
	}
	fmt.Fprintf(b, "  DKIM: signing with %d key(s)%s. Publish these TXT records (inkan dns records adds SPF and DMARC):\n", len(doms), from)
	for _, dom := range doms {
		fmt.Fprintf(b, "    %s._domainkey.%s TXT \"%s\"\n", dom.Selector, dom.Name, dom.PublicKeyTXT)
	}
}

// tryIt prints a swaks line that reaches this server and says what becomes
// of the message and where to look.
func tryIt(b *bytes.Buffer, d *daemon) {
	from := "you@" + exampleDomain(d.cfg.Load().Hostname)
	if addrs := d.srv.Addrs(inbound.KindRelay); len(addrs) > 0 {
		fmt.Fprintf(b, "  Try it:  swaks --server %s --from %s --to someone@example.net\n", reachable(addrs[0].String()), from)
	} else if addrs := d.srv.Addrs(inbound.KindSubmission); len(addrs) > 0 {
		fmt.Fprintf(b, "  Try it:  inkan user add NAME, then\n           swaks --server %s -tls --auth-user NAME --from %s --to someone@example.net\n", reachable(addrs[0].String()), from)
	} else {
		return
	}
	fmt.Fprintf(b, "           (example.net takes no mail: expect a bounce; put your own address to see a delivery)\n")
	fmt.Fprintf(b, "  Its fate: swaks shows \"250 2.0.0 Ok: queued as ID\"; then %s shows a line msg=delivery queue_id=ID\n", logPlace())
	fmt.Fprintf(b, "           with status=sent, deferred or bounced and the remote reply; inkan queue show ID while it waits\n")
}

// logPlace says where the log lines are: the journal under systemd, else
// this terminal.
func logPlace() string {
	if os.Getenv("INVOCATION_ID") != "" {
		return "journalctl -u inkan -g ID"
	}
	return "the log below"
}

// reachable turns a listening address into one a client on this host can
// dial: a wildcard host ("", 0.0.0.0, ::) becomes 127.0.0.1.
func reachable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// exampleDomain proposes the mail domain of a host name: mail.example.com
// gives example.com; a name without a dot gives example.com.
func exampleDomain(hostname string) string {
	labels := strings.Split(strings.TrimSuffix(hostname, "."), ".")
	switch {
	case len(labels) >= 3:
		return strings.Join(labels[1:], ".")
	case len(labels) == 2:
		return hostname
	}
	return "example.com"
}

// announceKeys prints the DKIM block again when a reload changed the keys
// (a key made with keygen in data_dir/dkim, then SIGHUP), and logs them.
func (d *daemon) announceKeys(old []signing.Domain, cfg *config.Config, s *signing.Signer) {
	now := s.Domains()
	key := func(ds []signing.Domain) string {
		var k []string
		for _, x := range ds {
			k = append(k, x.Selector+"._domainkey."+x.Name+" "+x.PublicKeyTXT)
		}
		return strings.Join(k, "\n")
	}
	if key(old) == key(now) {
		return
	}
	for _, x := range now {
		d.log.Info("dkim key loaded", "domain", x.Name, "selector", x.Selector, "algorithm", x.Algorithm, "key_file", x.KeyFile)
	}
	if d.quiet {
		return
	}
	var b bytes.Buffer
	b.WriteString("\n")
	dkimBlock(&b, cfg, s)
	b.WriteString("\n")
	os.Stderr.Write(b.Bytes())
}
