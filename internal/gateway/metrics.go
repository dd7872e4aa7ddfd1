package gateway

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the gateway's Prometheus series.
type Metrics struct {
	requests      *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	keyDeliveries prometheus.Counter
	sessions      *prometheus.CounterVec
	cache         *prometheus.CounterVec
}

// NewMetrics creates the series and registers them with reg (nil: not
// registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hlsvault_gateway_requests_total",
			Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hlsvault_gateway_request_duration_seconds",
			Help:    "Time to answer a request, by route.",
			Buckets: []float64{.0002, .0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route"}),
		keyDeliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hlsvault_gateway_key_deliveries_total",
			Help: "Content keys delivered to authorized players.",
		}),
		sessions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hlsvault_gateway_sessions_total",
			Help: "Session decisions: admitted (new session), refreshed (live session seen again), refused (stream limit), ended (released, evicted or timed out).",
		}, []string{"outcome"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hlsvault_gateway_playlist_cache_total",
			Help: "Playlist template cache lookups by result (hit, miss).",
		}, []string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.latency, m.keyDeliveries, m.sessions, m.cache)
	}
	return m
}
