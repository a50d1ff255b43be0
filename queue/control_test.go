package queue

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func metricValue(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

func TestControlSocket(t *testing.T) {
	dir := t.TempDir()
	opts, _ := testOptions(t, dir, nil)
	q := openQueue(t, opts)
	id := commit(t, q, "alice@example.com", "bob@example.org")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.ServeControl(ctx, "") }()
	sock := filepath.Join(dir, ControlSocket)
	waitFor(t, "socket", func() bool { _, err := os.Stat(sock); return err == nil })
	fi, _ := os.Stat(sock)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600", fi.Mode().Perm())
	}

	c := NewClient(sock)
	defer c.Close()
	n, oldest, err := c.Stats()
	if err != nil || n != 1 || oldest.IsZero() {
		t.Errorf("Stats = %d, %v, %v", n, oldest, err)
	}
	info, err := c.Get(id)
	if err != nil || info.From != "alice@example.com" || info.Rcpts[0].Status != Pending {
		t.Errorf("Get = %+v, %v", info, err)
	}
	rc, err := c.Body(id)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(rc)
	rc.Close()
	if string(body) != "Received: from test\r\n"+testBody {
		t.Errorf("Body = %q", body)
	}
	if _, err := c.Get("../../etc/passwd"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(bad id) = %v", err)
	}
	if err := c.Hold("0000000000000000"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Hold(unknown) = %v", err)
	}
	var listed []string
	if err := c.List(func(i Info) error { listed = append(listed, i.ID); return nil }); err != nil || len(listed) != 1 {
		t.Errorf("List = %v, %v", listed, err)
	}
	if err := c.Delete(id); err != nil || inQueue(q, id) {
		t.Errorf("Delete = %v", err)
	}

	// Claimed by a worker: Bounce must refuse rather than race it.
	id2 := commit(t, q, "alice@example.com", "bob@example.org")
	it := q.lookup(id2)
	q.mu.Lock()
	it.busy = true
	q.schedule(it)
	q.mu.Unlock()
	if err := c.Bounce(id2); !errors.Is(err, ErrBusy) {
		t.Errorf("Bounce(busy) = %v, want ErrBusy", err)
	}
	q.mu.Lock()
	it.busy = false
	q.schedule(it)
	q.mu.Unlock()

	cancel()
	if err := <-done; err != nil {
		t.Errorf("ServeControl = %v", err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left behind: %v", err)
	}
}

func TestMetrics(t *testing.T) {
	useFakeClock(t)
	tr := &fakeTransport{}
	opts, _ := testOptions(t, t.TempDir(), tr)
	q := openQueue(t, opts)
	before := metricValue(t, deliveriesTotal.WithLabelValues("sent"))
	commit(t, q, "alice@example.com", "bob@example.org")
	if got := metricValue(t, queueMessages); got != 1 {
		t.Errorf("inkan_queue_messages = %v, want 1", got)
	}
	runQueue(t, q)
	waitFor(t, "delivery", func() bool { n, _ := q.Stats(); return n == 0 })
	if got := metricValue(t, deliveriesTotal.WithLabelValues("sent")) - before; got != 1 {
		t.Errorf("inkan_deliveries_total{status=sent} grew by %v, want 1", got)
	}
}
