// Package queuecmd implements `inkan queue`: list, show, retry, delete,
// bounce, hold and release queued messages. It talks to a running server
// through the queue's control socket and, when no server holds the spool
// lock, opens the spool itself, so it also works on a stopped server.
//
// Everything it prints that came from others (addresses, remote replies,
// header fields) passes through mailsyntax.Printable first: no terminal
// control sequence reaches the administrator's screen.
package queuecmd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/inkan-relay/inkan/cmd/inkan/internal/cli"
	"github.com/inkan-relay/inkan/queue"
	"github.com/inkan-relay/inkan/relay/mailsyntax"
)

// admin is what the commands need; *queue.Queue and *queue.Client have it.
type admin interface {
	List(fn func(queue.Info) error) error
	Get(id string) (queue.Info, error)
	Body(id string) (io.ReadCloser, error)
	Retry(id string) error
	Delete(id string) error
	Bounce(id string) error
	Hold(id string) error
	Release(id string) error
}

const usage = `usage: inkan queue COMMAND [ID...]

  list              show queued messages, like mailq ("!" marks held ones)
  list -json        one JSON object per message and line, like postqueue -j
  show ID           envelope, per-recipient state and headers of a message
  retry [ID|ALL]    deliver now (no ID = all messages); "inkan queue all" too
  delete ID|ALL     remove without notifying anyone
  bounce ID|ALL     return to sender now ("deleted by administrator")
  hold ID|ALL       stop delivery until release
  release ID|ALL    undo hold
`

// ops are the commands that change messages, with their past tense.
var ops = map[string]struct {
	done string
	call func(admin, string) error
}{
	"retry":   {"scheduled for delivery", admin.Retry},
	"delete":  {"deleted", admin.Delete},
	"bounce":  {"bounced", admin.Bounce},
	"hold":    {"held", admin.Hold},
	"release": {"released", admin.Release},
}

// Main runs `inkan queue ARGS` on the spool in queueDir and returns the exit
// status.
func Main(queueDir string, args []string, stdout, stderr io.Writer) int {
	if cli.WantsHelp(args) {
		fmt.Fprint(stdout, usage)
		return cli.ExitOK
	}
	if len(args) == 0 {
		args = []string{"list"}
	}
	cmd, ids := args[0], args[1:]
	ids, asJSON := jsonFlag(cmd, ids)
	if cmd == "all" { // `inkan queue all`: retry everything
		cmd, ids = "retry", nil
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "inkan queue: "+format+"\n", a...)
		return 1
	}
	switch {
	case cmd == "help":
		fmt.Fprint(stdout, usage)
		return cli.ExitOK
	case cmd == "list" || cmd == "show":
	case ops[cmd].call != nil:
	default:
		fmt.Fprintf(stderr, "inkan queue: unknown command %q\n\n%s", cmd, usage)
		return cli.ExitUsage
	}
	if cmd == "retry" && len(ids) == 0 {
		ids = []string{queue.AllMessages}
	}
	if (cmd != "list" && len(ids) == 0) || (cmd == "list" && len(ids) > 0) {
		fmt.Fprint(stderr, usage)
		return 2
	}
	if _, err := os.Stat(queueDir); errors.Is(err, os.ErrNotExist) {
		if cmd == "list" {
			emptyQueue(stdout, asJSON)
			return 0
		}
		return fail("no queue at %s", queueDir)
	}
	a, closeAdmin, err := open(queueDir, stderr)
	if err != nil {
		return fail("%v", err)
	}
	defer closeAdmin()

	switch cmd {
	case "list":
		if err := lister(asJSON)(a, stdout); err != nil {
			return fail("%v", err)
		}
		return 0
	case "show":
		status := 0
		for _, id := range ids {
			if err := show(a, strings.ToUpper(id), stdout); errors.Is(err, queue.ErrNotFound) {
				status = fail("%s is not in the queue: it was delivered, bounced or deleted; the server's log lines with queue_id=%[1]s say which (under systemd: journalctl -u inkan -g %[1]s)", strings.ToUpper(id))
			} else if err != nil {
				status = fail("%s: %v", id, err)
			}
		}
		return status
	}
	op, status := ops[cmd], 0
	for _, id := range ids {
		id = strings.ToUpper(id) // IDs are upper case; "all" means ALL
		name := id
		if id == queue.AllMessages {
			name = "all messages"
		}
		if err := op.call(a, id); err != nil {
			status = fail("%s: %v", name, err)
			continue
		}
		fmt.Fprintf(stdout, "%s: %s\n", name, op.done)
	}
	return status
}

// open uses the control socket when a server holds the lock, else the spool.
func open(dir string, stderr io.Writer) (admin, func() error, error) {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	q, err := queue.Open(queue.Options{Dir: dir, Logger: log})
	if err == nil {
		return q, q.Close, nil
	}
	if !errors.Is(err, queue.ErrLocked) {
		return nil, nil, err
	}
	sock := filepath.Join(dir, queue.ControlSocket)
	if _, err := os.Stat(sock); err != nil {
		return nil, nil, fmt.Errorf("a running server holds the queue lock, but its control socket is missing: %w", err)
	}
	c := queue.NewClient(sock)
	return c, c.Close, nil
}

// list prints the queue like mailq.
func list(a admin, w io.Writer) error {
	bw := bufio.NewWriter(w)
	var n, total int64
	err := a.List(func(info queue.Info) error {
		if n == 0 {
			fmt.Fprintln(bw, "-Queue ID-        --Size-- ----Arrival Time---- -Sender/Recipient-------")
		}
		n++
		total += info.Size
		id := info.ID
		if info.Held {
			id += "!"
		}
		from := info.From
		if from == "" {
			from = "MAILER-DAEMON"
		}
		fmt.Fprintf(bw, "%-17s %8d %s  %s\n", id, info.Size, info.Arrival.Local().Format("Mon Jan _2 15:04:05"), term(from))
		const indent = "                                              "
		for _, r := range info.Rcpts {
			if r.Status != queue.Pending {
				continue
			}
			if r.LastReply != "" { // at column 0, as mailq prints it
				fmt.Fprintf(bw, "(%s)\n", oneLine(r.LastReply))
			}
			fmt.Fprintf(bw, "%s%s\n", indent, term(r.Addr))
		}
		fmt.Fprintln(bw)
		return nil
	})
	if err != nil {
		return err
	}
	if n == 0 {
		fmt.Fprintln(bw, "Mail queue is empty")
	} else {
		plural := "s"
		if n == 1 {
			plural = ""
		}
		fmt.Fprintf(bw, "-- %d Kbytes in %d Request%s.\n", (total+1023)/1024, n, plural)
	}
	return bw.Flush()
}

// show prints one message in detail.
func show(a admin, id string, w io.Writer) error {
	info, err := a.Get(id)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	state := "queued"
	if info.Held {
		state = "held"
	}
	fmt.Fprintf(bw, "Queue ID:     %s (%s)\n", info.ID, state)
	fmt.Fprintf(bw, "Sender:       <%s>\n", term(info.From))
	fmt.Fprintf(bw, "Arrival:      %s\n", info.Arrival.Local().Format(time.RFC1123Z))
	fmt.Fprintf(bw, "Size:         %d bytes\n", info.Size)
	fmt.Fprintf(bw, "Attempts:     %d\n", info.Attempts)
	if !info.NextAttempt.IsZero() {
		fmt.Fprintf(bw, "Next attempt: %s\n", info.NextAttempt.Local().Format(time.RFC1123Z))
	}
	if info.User != "" || info.Client != "" {
		fmt.Fprintf(bw, "Submitted by: user=%q client=%s helo=%q\n", info.User, term(info.Client), info.Helo)
	}
	fmt.Fprintln(bw, "Recipients:")
	for _, r := range info.Rcpts {
		fmt.Fprintf(bw, "  <%s> %s attempts=%d", term(r.Addr), r.Status, r.Attempts)
		if !r.NextAttempt.IsZero() {
			fmt.Fprintf(bw, " next=%s", r.NextAttempt.Local().Format(time.RFC3339))
		}
		if r.Remote != "" {
			fmt.Fprintf(bw, " relay=%s", term(r.Remote))
		}
		fmt.Fprintln(bw)
		if r.TLSPolicy != "" {
			fmt.Fprintf(bw, "      tls policy: %s\n", term(r.TLSPolicy))
		}
		if r.LastReply != "" {
			fmt.Fprintf(bw, "      last reply: %s\n", oneLine(r.LastReply))
		}
	}
	fmt.Fprintln(bw, "Headers:")
	hdr, err := headers(a, id)
	if err != nil {
		return err
	}
	for _, line := range strings.SplitAfter(string(hdr), "\n") {
		if line = strings.TrimRight(line, "\r\n"); line != "" {
			fmt.Fprintf(bw, "  %s\n", term(line))
		}
	}
	return bw.Flush()
}

// headers reads the message's header section (at most 256 KiB).
func headers(a admin, id string) ([]byte, error) {
	rc, err := a.Body(id)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	buf, err := io.ReadAll(io.LimitReader(rc, 256<<10))
	if err != nil {
		return nil, err
	}
	if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
		buf = buf[:i+2]
	} else if i := bytes.Index(buf, []byte("\n\n")); i >= 0 {
		buf = buf[:i+1]
	}
	return buf, nil
}

// oneLine puts a remote reply on one line, fit for a terminal.
func oneLine(s string) string {
	return term(strings.Join(strings.Fields(s), " "))
}

// term makes text from the queue safe to print: senders, recipients,
// remote hosts, SMTP replies and header fields all come from others, and
// an ESC or CSI in them would be obeyed by the administrator's terminal.
func term(s string) string { return mailsyntax.Printable(s) }
