package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/inkan-relay/inkan/config"
	"github.com/inkan-relay/inkan/queue/maildrop"
)

// Pickup: the server's half of the maildrop (package maildrop). While the
// server runs it submits every file `inkan sendmail` dropped, through the
// local SMTP server as the file's owner (inbound.Server.DialLocal), then
// removes the file. Replies decide:
//
//   - 250: submitted; the file is removed.
//   - 4xx, or the server stopping: the file stays and is tried again after
//     a delay that grows from pickupRetryMin to queue.retry_max; past
//     queue.max_lifetime it is held.
//   - 5xx (a sender the user may not use, a message the server refuses) and
//     files that are not maildrop files: held, that is moved to
//     data_dir/maildrop.held with an error in the log, never deleted.

const (
	pickupInterval = 5 * time.Second // scans while the folder is quiet
	pickupRetryMin = 30 * time.Second
	staleTemp      = 24 * time.Hour // a temporary file older than this is a dead sendmail's
)

// pickup is the running maildrop pickup.
type pickup struct {
	d      *daemon
	folder *maildrop.Folder
	log    *slog.Logger
	next   map[string]time.Time // when a deferred file is due again
	delay  map[string]time.Duration
}

// startPickup prepares the maildrop folder of cfg and runs the pickup until
// the daemon stops. A folder that cannot be used is logged with its fix and
// leaves the server running without pickup.
func (d *daemon) startPickup(cfg *config.Config) {
	dir := cfg.MaildropPath()
	if dir == "" {
		return
	}
	log := d.log.With("maildrop", dir)
	if filepath.Dir(dir) == filepath.Clean(cfg.DataDir) {
		if note, err := maildrop.Traversable(cfg.DataDir); err != nil {
			log.Warn("local users cannot reach the maildrop", "err", err)
		} else if note != "" {
			log.Info(note)
		}
	}
	if note, err := maildrop.Prepare(dir); err != nil {
		log.Error("maildrop pickup is off: sendmail cannot queue mail while inkan is stopped", "err", err)
		return
	} else if note != "" {
		log.Info("maildrop: " + note)
	}
	folder, err := maildrop.OpenFolder(dir, filepath.Join(cfg.DataDir, "maildrop.held"))
	if err != nil {
		log.Error("maildrop pickup is off", "err", err)
		return
	}
	p := &pickup{d: d, folder: folder, log: log, next: map[string]time.Time{}, delay: map[string]time.Duration{}}
	d.goFunc(func() { defer folder.Close(); p.run(d.ctx) })
}

func (p *pickup) run(ctx context.Context) {
	t := time.NewTicker(pickupInterval)
	defer t.Stop()
	for {
		p.scan(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// scan submits every due file once.
func (p *pickup) scan(ctx context.Context) {
	if n := p.folder.RemoveStale(staleTemp); n > 0 {
		p.log.Info("maildrop: removed temporary files of sendmail runs that died", "files", n)
	}
	names, err := p.folder.Names()
	if err != nil {
		p.log.Error("maildrop: cannot list the folder", "err", err)
		return
	}
	seen := map[string]bool{}
	for _, name := range names {
		if ctx.Err() != nil {
			return
		}
		seen[name] = true
		if time.Now().Before(p.next[name]) {
			continue
		}
		p.one(name)
	}
	for name := range p.next { // forget files that are gone
		if !seen[name] {
			delete(p.next, name)
			delete(p.delay, name)
		}
	}
}

// one submits, defers or holds the file name.
func (p *pickup) one(name string) {
	cfg := p.d.cfg.Load()
	e, err := p.folder.Read(name, int64(cfg.Limits.MaxMessageSize))
	var bad *maildrop.BadFileError
	switch {
	case errors.As(err, &bad):
		p.hold(name, "uid", bad.UID, "reason", bad.Problem)
		return
	case errors.Is(err, fs.ErrNotExist):
		return
	case err != nil:
		p.log.Error("maildrop: cannot read a file; is the folder mode 3733 (set-group-ID, so files get inkan's group)?", "file", name, "err", err)
		p.postpone(name, cfg)
		return
	}
	log := p.log.With("file", name, "uid", e.UID)
	id, err := p.submit(e)
	var se *smtp.SMTPError
	switch {
	case err == nil:
		if rerr := p.folder.Remove(name); rerr != nil {
			log.Error("maildrop: submitted but not removed; it will be sent again", "queue_id", id, "err", rerr)
			return
		}
		delete(p.next, name)
		delete(p.delay, name)
		log.Info("maildrop: picked up", "queue_id", id, "from", e.Env.From, "rcpts", len(e.Env.To))
	case errors.As(err, &se) && se.Code/100 == 5:
		p.hold(name, "uid", e.UID, "from", e.Env.From, "reason", err.Error())
	case time.Since(e.Env.Created) > cfg.Queue.MaxLifetime.D() && cfg.Queue.MaxLifetime > 0:
		p.hold(name, "uid", e.UID, "from", e.Env.From, "reason", "still refused after queue.max_lifetime: "+err.Error())
	default:
		log.Warn("maildrop: submission deferred", "err", err)
		p.postpone(name, cfg)
	}
}

// submit sends one entry through the local SMTP server as its owner and
// returns the queue ID.
func (p *pickup) submit(e *maildrop.Entry) (string, error) {
	conn, err := p.d.srv.DialLocal(e.UID)
	if err != nil {
		return "", err
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("localhost"); err != nil {
		return "", err
	}
	mo := &smtp.MailOptions{UTF8: e.Env.UTF8, Return: smtp.DSNReturn(e.Env.Ret), EnvelopeID: e.Env.EnvID}
	if err := c.Mail(e.Env.From, mo); err != nil {
		return "", err
	}
	ro := &smtp.RcptOptions{}
	for _, n := range e.Env.Notify {
		ro.Notify = append(ro.Notify, smtp.DSNNotify(strings.ToUpper(n)))
	}
	if len(ro.Notify) == 0 {
		ro = nil
	}
	for _, r := range e.Env.To {
		if err := c.Rcpt(r, ro); err != nil {
			return "", fmt.Errorf("RCPT TO:<%s>: %w", r, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	if _, err := w.Write(e.Msg); err != nil {
		return "", err
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", err
	}
	c.Quit()
	_, id, _ := strings.Cut(resp.StatusText, "queued as ")
	return id, nil
}

func (p *pickup) postpone(name string, cfg *config.Config) {
	d := p.delay[name] * 2
	if d < pickupRetryMin {
		d = pickupRetryMin
	}
	if max := cfg.Queue.RetryMax.D(); max > 0 && d > max {
		d = max
	}
	p.delay[name] = d
	p.next[name] = time.Now().Add(d)
}

func (p *pickup) hold(name string, attrs ...any) {
	delete(p.next, name)
	delete(p.delay, name)
	dst, err := p.folder.Hold(name)
	if err != nil {
		p.log.Error("maildrop: cannot move a refused file aside; it will be tried again", append(attrs, "file", name, "err", err)...)
		return
	}
	p.log.Error("maildrop: file not submitted, held", append(attrs, "file", name, "held", dst)...)
}
