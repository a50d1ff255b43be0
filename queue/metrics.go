package queue

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// metricsQueue is the queue the gauges describe: the last one opened.
var metricsQueue atomic.Pointer[Queue]

var (
	queueMessages = promauto.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "inkan_queue_messages",
		Help: "Messages in the queue.",
	}, func() float64 {
		if q := metricsQueue.Load(); q != nil {
			n, _ := q.Stats()
			return float64(n)
		}
		return 0
	})
	_ = promauto.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "inkan_queue_oldest_seconds",
		Help: "Age of the oldest message in the queue, 0 when empty.",
	}, func() float64 {
		if q := metricsQueue.Load(); q != nil {
			if _, oldest := q.Stats(); !oldest.IsZero() {
				return now().Sub(oldest).Seconds()
			}
		}
		return 0
	})
	deliveriesTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "inkan_deliveries_total",
		Help: "Delivery attempts per recipient, by outcome (sent, deferred, bounced, expired; paced: not tried, waits for the route's pacing).",
	}, []string{"status"})
	deliveryDuration = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "inkan_delivery_duration_seconds",
		Help:    "Time taken by one transport call (one message, one domain).",
		Buckets: prometheus.ExponentialBuckets(0.05, 2, 12),
	})
	bouncesTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "inkan_bounces_total",
		Help: "DSNs queued, by reason (failed, expired, admin, delay, relayed: a success notice the sender asked for).",
	}, []string{"reason"})
	dsnSuppressed = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "inkan_dsn_suppressed_total",
		Help: "Notices not sent because the sender's NOTIFY left them out (RFC 3461), by condition (failure, delay).",
	}, []string{"condition"})
)
