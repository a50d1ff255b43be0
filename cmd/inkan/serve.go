package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/inkan-relay/inkan/auth"
	"github.com/inkan-relay/inkan/cmd/inkan/internal/cli"
	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/queue"
	"github.com/inkan-relay/inkan/queue/safefile"
	"github.com/inkan-relay/inkan/relay/deliver"
	"github.com/inkan-relay/inkan/relay/inbound"
	"github.com/inkan-relay/inkan/relay/mailsyntax"
	"github.com/inkan-relay/inkan/relay/signing"
)

func runServe(args []string) int {
	fs := flag.NewFlagSet("inkan serve", flag.ContinueOnError)
	fs.Usage = cli.Usage(fs, "usage: inkan serve [-config FILE] [-log-format text|json] [-log-level LEVEL] [-quiet]\n\n"+
		"Runs the relay. SIGHUP reloads the configuration and what it names (a bad one is\nrefused and the running one stays); SIGTERM lets sessions finish and stops.\n"+
		"Exit status: 0 after SIGTERM, 78 for a configuration problem, 1 otherwise.\n\n"+configHelp+"\n\nFlags:\n")
	cfgPath := configFlag(fs)
	logFormat := fs.String("log-format", "", "log format: text or json (overrides log.format)")
	logLevel := fs.String("log-level", "", "log level: debug, info, warn, error (overrides log.level)")
	quiet := fs.Bool("quiet", false, "do not print the startup banner")
	if status, ok := cli.Parse(fs, args, os.Stdout, os.Stderr); !ok {
		return status
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "inkan serve: unexpected argument %q (the config file goes after -config)\n", fs.Arg(0))
		return cli.ExitUsage
	}
	cfg, source, status := loadConfig(*cfgPath, os.Stderr)
	if status != cli.ExitOK {
		return status
	}
	if *logFormat != "" {
		cfg.Log.Format = *logFormat
	}
	if *logLevel != "" {
		cfg.Log.Level = *logLevel
	}
	// What serve would refuse later, refused now: once, located, with exit
	// status 78 so that systemd does not restart into the same mistake.
	problems, _ := checkConfig(cfg)
	if err := safefile.MakeDir("data directory", cfg.DataDir); err != nil {
		problems = append(problems, cli.Locate(cfg, "data_dir", err))
	}
	if len(problems) > 0 {
		for _, p := range problems {
			cli.PrintErrors(os.Stderr, p)
		}
		return cli.ExitConfig
	}
	logger := newLogger(os.Stderr, cfg.Log)
	slog.SetDefault(logger)
	if os.Getenv("GOGC") == "" {
		// The live heap is a few MB; collecting less often costs little
		// memory and saves several percent of CPU per message.
		debug.SetGCPercent(400)
	}
	if cfg.CPUScheduling == "batch" {
		if n, err := setBatchScheduling(); err != nil {
			logger.Info("cpu_scheduling: batch not applied; running with the policy inkan was started with", "err", err,
				"fix", "allow sched_setattr (a systemd unit: CPUSchedulingPolicy=batch does it for inkan), or set cpu_scheduling: normal")
		} else {
			logger.Debug("threads scheduled as SCHED_BATCH (cpu_scheduling)", "threads", n)
		}
	}

	d, err := startDaemon(cfg, cfg.Source, logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, "inkan serve: cannot start:", err)
		if isConfigProblem(err) {
			return cli.ExitConfig
		}
		return cli.ExitFail
	}
	d.source, d.quiet = source, *quiet
	if !*quiet {
		printBanner(os.Stderr, d)
	} else {
		logger.Info(config.Describe(cfg.Source, source)) // the banner's first line says it otherwise
	}
	return d.wait()
}

// daemon is a running inkan: SMTP listeners, queue, delivery, HTTP.
type daemon struct {
	cfgPath string
	source  string // how cfgPath was found (config.Discover)
	quiet   bool   // no banner, nor the DKIM records on reload
	// cpuScheduling is cpu_scheduling as applied at start.
	cpuScheduling string
	log           *slog.Logger
	cfg           atomic.Pointer[config.Config]

	srv       *inbound.Server
	q         *queue.Queue
	transport *swapTransport
	tlsSetup  *inbound.TLSSetup
	httpSrv   *http.Server
	httpAddrs []string
	acmeSrv   *http.Server

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startDaemon(cfg *config.Config, cfgPath string, logger *slog.Logger) (*daemon, error) {
	if err := safefile.MakeDir("data directory", cfg.DataDir); err != nil {
		return nil, fmt.Errorf("%w (or set data_dir or INKAN_DATA_DIR to a directory of inkan's own)", err)
	}
	d := &daemon{cfgPath: cfgPath, log: logger, cpuScheduling: cfg.CPUScheduling}
	d.cfg.Store(cfg)
	st, tlsSetup, err := buildState(cfg, logger, nil)
	if err != nil {
		return nil, err
	}
	d.tlsSetup = tlsSetup
	if err := d.startTLSReports(cfg); err != nil {
		return nil, err
	}
	tr, err := newTransport(cfg, logger)
	if err != nil {
		return nil, err
	}
	d.transport = &swapTransport{}
	d.transport.p.Store(tr)

	qopts := queueOptions(cfg, d.transport, logger)
	qopts.SignBounce = d.signBounce
	d.q, err = queue.Open(qopts)
	if err != nil {
		return nil, fmt.Errorf("open queue: %w", err)
	}
	d.srv = inbound.New(st, inbound.Options{Spool: d.q, Router: d.transport, Logger: logger})
	if err := d.srv.Listen(); err != nil {
		d.q.Close()
		return nil, err
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	if err := d.startHTTP(cfg); err != nil {
		d.cancel()
		d.srv.Shutdown(context.Background())
		d.q.Close()
		return nil, err
	}
	d.goFunc(func() {
		if err := d.q.Run(d.ctx); err != nil && !errors.Is(err, context.Canceled) {
			logger.Error("queue stopped", "err", err)
		}
	})
	d.goFunc(func() {
		if err := d.q.ServeControl(d.ctx, filepath.Join(queueDir(cfg), "control.sock")); err != nil && !errors.Is(err, context.Canceled) {
			logger.Error("queue control socket stopped", "err", err)
		}
	})
	d.goFunc(func() { d.srv.Serve() })
	d.runTLSReports()
	d.startPickup(cfg) // maildrop: mail `inkan sendmail` left while the server was down
	d.goFunc(d.watchUsers)
	for _, w := range st.Warnings() {
		logger.Warn(w)
	}
	logger.Info("inkan started", "version", version, "hostname", cfg.Hostname, "data_dir", cfg.DataDir, "config", sourceName(cfg))
	return d, nil
}

func (d *daemon) goFunc(f func()) {
	d.wg.Add(1)
	go func() { defer d.wg.Done(); f() }()
}

func queueDir(cfg *config.Config) string { return filepath.Join(cfg.DataDir, "queue") }

func queueOptions(cfg *config.Config, tr queue.Transport, logger *slog.Logger) queue.Options {
	return queue.Options{
		Dir:           queueDir(cfg),
		Transport:     tr,
		Logger:        logger,
		Hostname:      cfg.Hostname,
		MaxLifetime:   cfg.Queue.MaxLifetime.D(),
		RetryMin:      cfg.Queue.RetryMin.D(),
		RetryMax:      cfg.Queue.RetryMax.D(),
		DelayWarning:  cfg.Queue.DelayWarning.D(),
		MaxConcurrent: cfg.Delivery.MaxConcurrent,
		MaxPerDomain:  cfg.Delivery.MaxPerDomain,
	}
}

func newTransport(cfg *config.Config, logger *slog.Logger) (*deliver.Transport, error) {
	l := cfg.Listen
	listen := slices.Concat(config.SplitAddrs(l.SMTPS), config.SplitAddrs(l.Submission), config.SplitAddrs(l.Relay))
	return deliver.New(deliver.Options{Config: cfg.Delivery, Hostname: cfg.Hostname, Logger: logger, Listen: listen,
		DataDir: cfg.DataDir, Reports: tlsReports.Load()}) // MTA-STS cache, TLS-RPT (tlsrpt.go)
}

// buildState loads everything a reload replaces. old, when set, lends its
// ACME manager: the challenge listener cannot be rebuilt on reload.
func buildState(cfg *config.Config, logger *slog.Logger, oldTLS *inbound.TLSSetup) (*inbound.State, *inbound.TLSSetup, error) {
	st := &inbound.State{Config: cfg}
	usersFile := usersPath(cfg)
	if _, err := os.Stat(usersFile); errors.Is(err, os.ErrNotExist) && cfg.Auth.UsersFile == "" {
		// The embedded default keeps users in the data dir; start with none.
		if err := safefile.WriteFile(usersFile, nil, 0o600); err != nil {
			return nil, nil, fmt.Errorf("create users file: %w", err)
		}
	}
	users, err := auth.LoadUsers(usersFile)
	if err != nil {
		return nil, nil, err
	}
	st.Users = users
	if st.Networks, err = auth.NewNetworks(cfg.Auth, nil); err != nil {
		return nil, nil, err
	}
	if st.Policy, err = auth.NewPolicy(cfg.Auth.Senders); err != nil {
		return nil, nil, err
	}
	if err := inbound.CheckLocalSenders(cfg); err != nil {
		return nil, nil, err
	}
	if hasDKIM(cfg) {
		if st.Signer, err = signing.New(cfg.DKIM, logger); err != nil {
			return nil, nil, err
		}
		if err := limitTrustedSenders(cfg, st, logger); err != nil {
			return nil, nil, err
		}
	}
	setup := oldTLS
	if setup == nil || setup.ACME == nil {
		if setup, err = inbound.ServerTLS(cfg, logger); err != nil {
			return nil, nil, err
		}
	}
	st.TLS = setup.Config
	return st, setup, nil
}

// limitTrustedSenders applies the default for auth.trusted_senders: with
// DKIM keys configured, clients of auth.trusted_networks may send as the
// domains inkan signs for (and their subdomains where a key signs those),
// the host's own names and localhost, so that a local user cannot get a
// signature or the host's reputation for any address at all. ["*"] opts out.
func limitTrustedSenders(cfg *config.Config, st *inbound.State, logger *slog.Logger) error {
	patterns, complete := st.Signer.SigningDomains()
	if !complete {
		if len(cfg.Auth.TrustedSenders) == 0 && len(cfg.Auth.TrustedNetworks) > 0 {
			logger.Warn("auth.trusted_networks may send as any address: a KeyTable \"%\" entry signs every From domain, so no default list can be made; set auth.trusted_senders")
		}
		return nil
	}
	hosts := []string{cfg.Hostname, "localhost"}
	if h, err := os.Hostname(); err == nil {
		hosts = append(hosts, h)
	}
	for _, h := range hosts {
		if h = strings.TrimSuffix(h, "."); h != "" && mailsyntax.ValidDomain(h, mailsyntax.MailDomain) {
			patterns = append(patterns, "@"+strings.ToLower(h))
		}
	}
	n, err := st.Networks.DefaultSenders(patterns)
	if n != nil {
		logger.Info("auth.trusted_senders not set: trusted networks may send as " + strings.Join(n.Senders.Patterns(), " ") + " (set auth.trusted_senders, [\"*\"] for any address)")
	}
	return err
}

func hasDKIM(cfg *config.Config) bool {
	return len(cfg.DKIM.Keys) > 0 || cfg.DKIM.KeyTable != "" || cfg.DKIM.SigningTable != "" || cfg.DKIM.OpenDKIMConf != ""
}

func usersPath(cfg *config.Config) string {
	if cfg.Auth.UsersFile != "" {
		return cfg.Auth.UsersFile
	}
	return filepath.Join(cfg.DataDir, "users")
}

// watchUsers reloads the users file when it changes on disk, so
// `inkan user add` takes effect without a signal.
func (d *daemon) watchUsers() {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-t.C:
			st := d.srv.Current()
			if st.Users == nil {
				continue
			}
			if changed, err := st.Users.ReloadIfChanged(); err != nil {
				d.log.Error("users file reload failed; keeping the old users", "err", err)
			} else if changed {
				d.log.Info("users file reloaded", "users", len(st.Users.Names()))
			}
		}
	}
}

// reload re-reads the config and everything it names. A bad config is
// refused and logged; the running one stays.
func (d *daemon) reload() {
	cfg, err := config.Load(d.cfgPath)
	if err != nil {
		d.log.Error("reload refused: config has errors; keeping the running config", "err", err)
		return
	}
	st, setup, err := buildState(cfg, d.log, d.tlsSetup)
	if err != nil {
		d.log.Error("reload refused; keeping the running config", "err", err)
		return
	}
	tr, err := newTransport(cfg, d.log)
	if err != nil {
		d.log.Error("reload refused: delivery settings; keeping the running config", "err", err)
		return
	}
	old := d.transport.p.Swap(tr)
	// In-flight deliveries may still use the old transport's pooled
	// connections; close it a little later.
	time.AfterFunc(time.Minute, func() { old.Close() })
	d.tlsSetup = setup
	oldKeys := d.srv.Current().Signer.Domains()
	d.srv.Swap(st)
	d.cfg.Store(cfg)
	if cfg.CPUScheduling != d.cpuScheduling {
		d.log.Warn("cpu_scheduling differs from the one applied at start; restart inkan to apply it", "applied", d.cpuScheduling)
	}
	d.announceKeys(oldKeys, cfg, st.Signer)
	if cfg.Listen != d.srv.ListenConfig() {
		d.log.Warn("listener addresses changed; restart inkan to apply them")
	}
	for _, w := range st.Warnings() {
		d.log.Warn(w)
	}
	d.log.Info("reloaded", "config", sourceName(cfg))
}

// wait runs until SIGTERM/SIGINT, reloading on SIGHUP.
func (d *daemon) wait() int {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	for sig := range sigs {
		if sig == syscall.SIGHUP {
			d.log.Info("SIGHUP: reloading")
			d.reload()
			continue
		}
		d.log.Info("shutting down", "signal", sig.String())
		break
	}
	d.stop(30 * time.Second)
	return 0
}

// stop closes listeners, lets sessions finish for up to grace, then stops
// the queue (in-flight deliveries are abandoned and retried next start).
func (d *daemon) stop(grace time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	d.srv.Shutdown(ctx)
	// Let in-flight deliveries finish within the grace period; the rest are
	// cancelled and retried at the next start.
	d.q.Shutdown(ctx)
	if d.httpSrv != nil {
		d.httpSrv.Shutdown(ctx)
	}
	if d.acmeSrv != nil {
		d.acmeSrv.Shutdown(ctx)
	}
	d.cancel()
	d.wg.Wait()
	d.q.Close()
	d.transport.p.Load().Close()
	d.log.Info("stopped")
}

// signBounce DKIM-signs a DSN the queue generates, when a key matches its
// From (MAILER-DAEMON@hostname), so bounces pass DMARC too. It goes through
// the signer's one entry point; the author is read with the one header
// parser, from a header inkan wrote itself.
func (d *daemon) signBounce(msg []byte) ([]byte, error) {
	st := d.srv.Current()
	if st.Signer == nil {
		return nil, nil
	}
	hdr := msg
	if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
		hdr = msg[:i+4]
	}
	m, err := signing.MessageOf(hdr)
	if err != nil {
		return nil, fmt.Errorf("bounce header: %w", err)
	}
	sigs, _, err := st.Signer.Sign(m, msg)
	return sigs, err
}

func sourceName(cfg *config.Config) string {
	if cfg.Source == "" {
		return "embedded default"
	}
	return cfg.Source
}

// swapTransport lets a reload replace delivery settings under a running queue.
type swapTransport struct {
	p atomic.Pointer[deliver.Transport]
}

func (s *swapTransport) Deliver(ctx context.Context, d *queue.Delivery) []queue.Result {
	return s.p.Load().Deliver(ctx, d)
}

func (s *swapTransport) NoSign(from, domain string) bool { return s.p.Load().NoSign(from, domain) }

func newLogger(w io.Writer, c config.Log) *slog.Logger {
	var level slog.Level
	switch strings.ToLower(c.Level) {
	case "debug":
		level = slog.LevelDebug
	case "warn", "warning":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	opts := &slog.HandlerOptions{Level: level}
	if strings.EqualFold(c.Format, "json") {
		return slog.New(&lateAttrs{h: slog.NewJSONHandler(w, opts)})
	}
	return slog.New(&lateAttrs{h: slog.NewTextHandler(w, opts)})
}

// lateAttrs keeps a logger's With attributes of plain values (strings,
// numbers...) and formats them with each line. slog's handlers format them
// in With, copying the handler: a cost paid per connection and per
// delivery, most of which log once or twice, or never.
type lateAttrs struct {
	h     slog.Handler
	attrs []slog.Attr
}

func (l *lateAttrs) Enabled(ctx context.Context, level slog.Level) bool {
	return l.h.Enabled(ctx, level)
}

func (l *lateAttrs) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return l
	}
	all := append(slices.Clip(l.attrs), as...)
	for _, a := range as {
		switch a.Value.Kind() {
		case slog.KindString, slog.KindInt64, slog.KindUint64, slog.KindFloat64, slog.KindBool, slog.KindDuration, slog.KindTime:
		default:
			// A LogValuer, a group, a slice...: it could change or be
			// costly, so it is formatted now, as slog's handlers do.
			return &lateAttrs{h: l.h.WithAttrs(all)}
		}
	}
	return &lateAttrs{h: l.h, attrs: all}
}

func (l *lateAttrs) WithGroup(name string) slog.Handler {
	if name == "" {
		return l
	}
	return &lateAttrs{h: l.h.WithAttrs(l.attrs).WithGroup(name)}
}

func (l *lateAttrs) Handle(ctx context.Context, r slog.Record) error {
	if len(l.attrs) == 0 {
		return l.h.Handle(ctx, r)
	}
	nr := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	nr.AddAttrs(l.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		nr.AddAttrs(a)
		return true
	})
	return l.h.Handle(ctx, nr)
}
