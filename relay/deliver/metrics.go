package deliver

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	tlsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "inkan_delivery_tls_total",
		Help: "Messages sent (DATA started) over outbound SMTP, by whether the connection was encrypted: tls or plain.",
	}, []string{"mode"})
	connectionsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "inkan_delivery_connections_total",
		Help: "Outbound SMTP connections: new (dialed and greeted), reused (from the idle pool), failed (could not be set up).",
	}, []string{"result"})
)
