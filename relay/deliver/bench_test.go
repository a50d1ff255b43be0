package deliver_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/inkan-relay/inkan/queue"
	"github.com/inkan-relay/inkan/relay/deliver"
)

// BenchmarkDeliver4K sends a 4 KB message to one recipient on a loopback
// sink; after the first message every delivery reuses the connection.
func BenchmarkDeliver4K(b *testing.B) {
	for _, mode := range []string{"none", "may"} {
		b.Run("tls="+mode, func(b *testing.B) {
			e := newEnv(b)
			e.zone.add(b, "bench.test. 300 IN A 127.0.0.2")
			s := e.net.start(b, "127.0.0.2", sinkOpts{tls: serverTLS(b)})
			c := e.config()
			c.TLS = mode
			tr := newTransport(b, deliver.Options{Config: c, Logger: slog.New(slog.DiscardHandler)})
			msg := "Subject: bench\r\n\r\n" + strings.Repeat(strings.Repeat("x", 78)+"\r\n", 4096/80)
			d := delivery("a@sender.test", "bench.test", msg, "bob@bench.test")
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				if res := tr.Deliver(context.Background(), d); res[0].Status != queue.Sent {
					b.Fatalf("result %+v", res[0])
				}
			}
			b.ReportMetric(float64(s.conns.Load()), "conns")
		})
	}
}
