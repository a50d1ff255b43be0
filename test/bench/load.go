package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// runSource runs Postfix's smtp-source: n messages of size bytes over up to
// sessions parallel sessions (one message per session, as smtp-source does),
// and returns its wall time and CPU time.
func runSource(ctx context.Context, port, n, sessions, size int, out string, timeout time.Duration) (wall, cpu time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	f, err := os.Create(out)
	if err != nil {
		return 0, 0, fmt.Errorf("create smtp-source output: %w", err)
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, "/usr/sbin/smtp-source", "-c", "-l", strconv.Itoa(size), "-m", strconv.Itoa(n),
		"-s", strconv.Itoa(sessions), "-f", sender, "-t", recipient, fmt.Sprintf("127.0.0.1:%d", port))
	cmd.Stdout, cmd.Stderr = f, f
	t0 := time.Now()
	err = cmd.Run()
	el := time.Since(t0)
	if ps := cmd.ProcessState; ps != nil {
		cpu = ps.UserTime() + ps.SystemTime()
	}
	if ctx.Err() != nil {
		return el, cpu, fmt.Errorf("smtp-source did not finish within %s (output %s)", timeout, out)
	}
	if err != nil {
		return el, cpu, fmt.Errorf("smtp-source: %w (output %s)", err, out)
	}
	return el, cpu, nil
}

// clientResult is what the Go client mode measured.
type clientResult struct {
	lat      []time.Duration // DATA command sent -> 250 after the final dot, sorted
	elapsed  time.Duration
	ok       int
	failed   int
	firstErr string
}

func (r clientResult) pct(p float64) time.Duration { return percentile(r.lat, p) }

// percentile returns the nearest-rank percentile of sorted d (0 when empty).
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(float64(len(d))*p+0.999999) - 1
	return d[min(max(i, 0), len(d)-1)]
}

// benchMessage builds message seq of a run: headers like smtp-source's plus a
// Message-ID and an X-Bench-Seq the sink check counts, and a body of about
// size bytes of 78-character lines.
func benchMessage(tag string, seq, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: inkan-bench %s %d\r\nDate: %s\r\n", sender, recipient, tag, seq, time.Now().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s.%d@inkan-bench.example.test>\r\nX-Bench-Seq: %s/%d\r\n\r\n", tag, seq, tag, seq)
	line := bytes.Repeat([]byte("X"), 78)
	for n := 0; n < size; n += 80 {
		l := line[:min(78, max(size-n-2, 1))]
		b.Write(l)
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// runClient is the Go client mode: the same shape as smtp-source (sessions
// parallel sessions, one message each, n in all), timing each DATA command
// up to the server's reply to the final dot, i.e. the 250 after fsync.
func runClient(ctx context.Context, port, n, sessions, size int, tag string, timeout time.Duration) clientResult {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var next atomic.Int64
	var mu sync.Mutex
	res := clientResult{lat: make([]time.Duration, 0, n)}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	t0 := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < sessions; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				seq := int(next.Add(1))
				if seq > n {
					return
				}
				d, err := sendOne(ctx, addr, benchMessage(tag, seq, size))
				mu.Lock()
				if err != nil {
					res.failed++
					if res.firstErr == "" {
						res.firstErr = fmt.Sprintf("message %d: %v", seq, err)
					}
				} else {
					res.ok++
					res.lat = append(res.lat, d)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(t0)
	if ctx.Err() != nil && res.firstErr == "" {
		res.firstErr = fmt.Sprintf("client run stopped after %s: %v", timeout, ctx.Err())
	}
	sort.Slice(res.lat, func(i, j int) bool { return res.lat[i] < res.lat[j] })
	return res
}

// sendOne sends one message in its own session and returns the DATA-to-250
// time.
func sendOne(ctx context.Context, addr string, msg []byte) (time.Duration, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, fmt.Errorf("dial: %w", err)
	}
	c := smtp.NewClient(conn)
	c.CommandTimeout = 60 * time.Second
	c.SubmissionTimeout = 120 * time.Second
	defer c.Close()
	if err := c.Hello("inkan-bench.example.test"); err != nil {
		return 0, fmt.Errorf("ehlo: %w", err)
	}
	if err := c.Mail(sender, nil); err != nil {
		return 0, fmt.Errorf("mail: %w", err)
	}
	if err := c.Rcpt(recipient, nil); err != nil {
		return 0, fmt.Errorf("rcpt: %w", err)
	}
	t0 := time.Now()
	w, err := c.Data()
	if err != nil {
		return 0, fmt.Errorf("data: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return 0, fmt.Errorf("write body: %w", err)
	}
	if err := w.Close(); err != nil {
		return 0, fmt.Errorf("end of data: %w", err)
	}
	lat := time.Since(t0)
	_ = c.Quit()
	return lat, nil
}

// idleConnsResult is what idleConns opened, and how often inkan refused a
// good password with 454 (the attempt was then repeated on a new connection).
type idleConnsResult struct {
	clients  []*smtp.Client
	refused  int    // 454 replies to a correct AUTH
	firstRef string // the first such reply
}

// idleConns opens count implicit-TLS connections to addr, authenticates each
// with AUTH PLAIN and keeps them open. The caller closes the returned
// clients. workers bounds the handshakes in flight. A 454 (temporary) reply
// to the correct password is counted and the login repeated, up to 50 times
// per connection: the memory figure is still measured, and the report shows
// the refusals.
func idleConns(ctx context.Context, addr, user, pass string, count, workers int, timeout time.Duration) (idleConnsResult, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// Loopback, our own self-signed certificate.
	tc := &tls.Config{InsecureSkipVerify: true} //nolint:gosec
	var mu sync.Mutex
	res := idleConnsResult{clients: make([]*smtp.Client, 0, count)}
	var firstErr error
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && int(next.Add(1)) <= count {
				var c *smtp.Client
				var err error
				for try := 0; try < 50 && ctx.Err() == nil; try++ {
					c, err = authConn(ctx, addr, tc, user, pass)
					var se *smtp.SMTPError
					if err == nil || !errors.As(err, &se) || se.Code != 454 {
						break
					}
					mu.Lock()
					res.refused++
					if res.firstRef == "" {
						res.firstRef = err.Error()
					}
					mu.Unlock()
					time.Sleep(20 * time.Millisecond)
				}
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
					}
				} else {
					res.clients = append(res.clients, c)
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = fmt.Errorf("opened %d of %d connections in %s", len(res.clients), count, timeout)
	}
	return res, firstErr
}

func authConn(ctx context.Context, addr string, tc *tls.Config, user, pass string) (*smtp.Client, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: tc}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial tls: %w", err)
	}
	c := smtp.NewClient(conn)
	c.CommandTimeout = 60 * time.Second
	if err := c.Hello("inkan-bench.example.test"); err != nil {
		c.Close()
		return nil, fmt.Errorf("ehlo: %w", err)
	}
	if err := c.Auth(sasl.NewPlainClient("", user, pass)); err != nil {
		c.Close()
		return nil, fmt.Errorf("auth plain: %w", err)
	}
	return c, nil
}
