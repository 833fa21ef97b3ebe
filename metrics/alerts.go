package metrics

import "github.com/prometheus/client_golang/prometheus"

// alertMetrics are the figures of alert delivery (alerts.Deliverer).
type alertMetrics struct {
	delivered *prometheus.CounterVec
	queued    prometheus.Gauge
}

func (m *Metrics) registerAlerts() {
	a := &m.alerts
	a.delivered = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "alerts_delivered_total",
		Help: "Alert delivery attempts, by channel (email, webhook) and result (ok, failed: retried, gave_up, no_address).",
	}, []string{"channel", "result"})
	a.queued = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "alerts_queued",
		Help: "Alert deliveries waiting (an alert once per target), as of the deliverer's last pass.",
	})
	// Every channel and result is a series from the start: an alert on a
	// rate of failures reads 0 on a healthy system, not nothing.
	for _, ch := range []string{"email", "webhook"} {
		for _, r := range []string{"ok", "failed", "gave_up", "no_address"} {
			a.delivered.WithLabelValues(ch, r)
		}
	}
	m.own.MustRegister(a.delivered, a.queued)
}

// AlertDelivered counts one delivery attempt.
func (m *Metrics) AlertDelivered(channel, result string) {
	m.alerts.delivered.WithLabelValues(channel, result).Inc()
}

// AlertsQueued sets the deliveries waiting.
func (m *Metrics) AlertsQueued(n int) { m.alerts.queued.Set(float64(n)) }
