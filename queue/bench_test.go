package queue

import (
	"bytes"
	"io"
	"log/slog"
	"testing"
)

func benchQueue(b *testing.B) *Queue {
	b.Helper()
	q, err := Open(Options{Dir: b.TempDir(), Hostname: "relay.test",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { q.Close() })
	return q
}

func commit4K(b *testing.B, q *Queue, body []byte) {
	d, err := q.NewDraft(&Envelope{From: "alice@example.com", To: []string{"bob@example.org"}})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := d.Write(body); err != nil {
		b.Fatal(err)
	}
	if err := d.Commit([]byte("Received: from bench\r\n")); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkCommit4K measures durable commits of 4 KB messages, one at a time
// and from many goroutines (where the directory fsync is shared).
func BenchmarkCommit4K(b *testing.B) {
	body := bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!\r\n"), 64)
	b.Run("serial", func(b *testing.B) {
		q := benchQueue(b)
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			commit4K(b, q, body)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		q := benchQueue(b)
		b.SetBytes(int64(len(body)))
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				commit4K(b, q, body)
			}
		})
	})
}
