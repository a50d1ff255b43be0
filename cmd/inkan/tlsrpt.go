package main

import (
	"fmt"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/queue"
	"github.com/inkan-relay/inkan/relay/deliver"
)

// tlsReports is the running server's TLS-RPT collector (nil: tls_rpt off).
// It outlives the transports a reload replaces, so newTransport hands the
// same one to each; commands other than serve never set it.
var tlsReports atomic.Pointer[deliver.TLSReports]

// startTLSReports makes the collector when delivery.tls_rpt.enabled is set.
// Its counts live in data_dir/tls-rpt; mailed reports go through the queue,
// DKIM-signed like bounces. Settings are read at start only.
func (d *daemon) startTLSReports(cfg *config.Config) error {
	r := cfg.Delivery.TLSRPT
	if !r.Enabled {
		return nil
	}
	rep, err := deliver.NewTLSReports(deliver.ReportOptions{
		Dir:          filepath.Join(cfg.DataDir, "tls-rpt"),
		Hostname:     cfg.Hostname,
		From:         r.From,
		Organization: r.Organization,
		Contact:      r.Contact,
		Resolver:     cfg.Delivery.Resolver,
		Logger:       d.log,
		Submit:       d.submitReport,
	})
	if err != nil {
		return err
	}
	tlsReports.Store(rep)
	return nil
}

// runTLSReports sends the daily reports until the daemon stops.
func (d *daemon) runTLSReports() {
	if rep := tlsReports.Load(); rep != nil {
		d.goFunc(func() { rep.Run(d.ctx) })
	}
}

// submitReport queues a TLS report from inkan's report address, signed
// when a key matches its From.
func (d *daemon) submitReport(from, to string, msg []byte) error {
	prefix, err := d.signBounce(msg)
	if err != nil {
		d.log.Warn("cannot sign TLS report; sending it unsigned", "to", to, "err", err)
		prefix = nil
	}
	draft, err := d.q.NewDraft(&queue.Envelope{From: from, To: []string{to}, Received: time.Now(), Helo: d.cfg.Load().Hostname})
	if err != nil {
		return fmt.Errorf("queue TLS report: %w", err)
	}
	if _, err := draft.Write(msg); err != nil {
		draft.Abort()
		return fmt.Errorf("queue TLS report: %w", err)
	}
	return draft.Commit(prefix)
}
