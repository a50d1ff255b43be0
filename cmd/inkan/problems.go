package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"syscall"

	"github.com/inkan-relay/inkan/auth"
	"github.com/inkan-relay/inkan/cmd/inkan/internal/cli"
	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/queue/safefile"
	"github.com/inkan-relay/inkan/relay/inbound"
	"github.com/inkan-relay/inkan/relay/signing"
)

// checkConfig opens what cfg names, as serve would, without changing
// anything: the data directory (if it exists), trusted networks, sender
// policy, the users file, DKIM keys and tables, certificate files and the
// delivery settings. Each problem is a *config.Error located at the setting
// that names the file (file:line or variable) with a fix; warnings are
// cfg's and the signer's advice.
func checkConfig(cfg *config.Config) (problems []error, warnings []string) {
	add := func(key string, err error) {
		if err != nil {
			problems = append(problems, cli.Locate(cfg, key, err))
		}
	}
	if fi, err := os.Stat(cfg.DataDir); err == nil {
		add("data_dir", safefile.Check("data directory", cfg.DataDir, fi))
	}
	_, err := auth.NewNetworks(cfg.Auth, nil)
	add("auth.trusted_networks", err)
	_, err = auth.NewPolicy(cfg.Auth.Senders)
	add("auth.senders", err)
	add("auth.local_senders", inbound.CheckLocalSenders(cfg))
	if cfg.Auth.UsersFile != "" {
		_, err := auth.LoadUsers(cfg.Auth.UsersFile)
		add("auth.users_file", err)
	} else if _, err := os.Stat(usersPath(cfg)); err == nil {
		_, err := auth.LoadUsers(usersPath(cfg))
		add("data_dir", err)
	}
	warnings = cfg.Warnings()
	if hasDKIM(cfg) {
		s, err := signing.New(cfg.DKIM, slog.New(slog.NewTextHandler(io.Discard, nil)))
		add("dkim", err)
		if err == nil {
			warnings = append(warnings, s.Warnings()...)
		}
	} else {
		warnings = append(warnings, fmt.Sprintf("no DKIM keys configured: mail will leave unsigned; create one with `inkan dkim keygen -d example.com -s s1 -o %s` (loaded from there at the next start or SIGHUP)", config.AutoKeysDir(cfg.DataDir)))
	}
	if cfg.TLS.CertFile != "" && cfg.TLS.ACME == nil {
		_, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
		add("tls.cert_file", err)
	}
	tr, err := newTransport(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	add("delivery", err)
	if tr != nil {
		tr.Close()
	}
	return problems, warnings
}

// isConfigProblem reports whether a start failure is one that a restart
// cannot fix: a port inkan may not bind or an address this host lacks.
func isConfigProblem(err error) bool {
	return errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EADDRNOTAVAIL)
}
