package inbound

import (
	"crypto/tls"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	connections = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "inkan_connections_total", Help: "SMTP connections accepted, by listener.",
	}, []string{"listener"})
	activeConns = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "inkan_connections_active", Help: "SMTP connections open now.",
	})
	accepted = promauto.NewCounter(prometheus.CounterOpts{
		Name: "inkan_messages_accepted_total", Help: "Messages queued (250 sent).",
	})
	refused = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "inkan_messages_refused_total", Help: "Commands or messages refused, by reason.",
	}, []string{"reason"})
	submitSeconds = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "inkan_submission_duration_seconds",
		Help:    "Time from DATA to the 250 reply (reading, signing, fsync).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	})
)

func tlsVersionName(v uint16) string { return tls.VersionName(v) }
func tlsCipherName(c uint16) string  { return tls.CipherSuiteName(c) }
