package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// outboxMetrics are the figures of the external sinks (package outbox)
// and of the hold they put on retention.
type outboxMetrics struct {
	delivered   *prometheus.CounterVec
	failed      *prometheus.CounterVec
	lagRecords  *prometheus.GaugeVec
	lagSeconds  *prometheus.GaugeVec
	heldSeconds *prometheus.GaugeVec
	sinks       sync.Map // the sinks named so far (string → struct{})
}

func (m *Metrics) registerOutbox() {
	o := &m.outbox
	o.delivered = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "sink_delivered_records_total",
		Help: "Records an external sink acknowledged as durable at its destination (its cursor moved past them), by sink.",
	}, []string{"sink"})
	o.failed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "sink_errors_total",
		Help: "Failed delivery attempts of an external sink (retried with backoff), by sink.",
	}, []string{"sink"})
	o.lagRecords = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "sink_lag_records",
		Help: "Records in the store a sink has not acknowledged yet (counted every few seconds while behind), by sink.",
	}, []string{"sink"})
	o.lagSeconds = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "sink_lag_seconds",
		Help: "Age (by commit time) of the oldest record a sink has not acknowledged; 0 when caught up, by sink.",
	}, []string{"sink"})
	o.heldSeconds = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "retention_held_seconds",
		Help: "Age of the oldest expired record retention keeps because a sink has not acknowledged it (0: retention not held back), by sink.",
	}, []string{"sink"})
	m.own.MustRegister(o.delivered, o.failed, o.lagRecords, o.lagSeconds, o.heldSeconds)
}

// Sinks pre-initialises the series of the configured sinks, so that a
// healthy system shows zeros rather than no data.
func (m *Metrics) Sinks(names ...string) {
	for _, n := range names {
		m.outbox.sinks.Store(n, struct{}{})
		m.outbox.delivered.WithLabelValues(n)
		m.outbox.failed.WithLabelValues(n)
		m.outbox.lagRecords.WithLabelValues(n)
		m.outbox.lagSeconds.WithLabelValues(n)
		m.outbox.heldSeconds.WithLabelValues(n)
	}
}

// SinkDelivered counts records a sink acknowledged.
func (m *Metrics) SinkDelivered(sink string, n int) {
	m.outbox.delivered.WithLabelValues(sink).Add(float64(n))
}

// SinkFailed counts a failed delivery attempt.
func (m *Metrics) SinkFailed(sink string) { m.outbox.failed.WithLabelValues(sink).Inc() }

// SinkLag sets how far behind a sink is.
func (m *Metrics) SinkLag(sink string, records uint64, seconds float64) {
	m.outbox.lagRecords.WithLabelValues(sink).Set(float64(records))
	m.outbox.lagSeconds.WithLabelValues(sink).Set(seconds)
}

// RetentionHeld reports a retention pass: by is the sink that held it back
// ("" none) and since the commit time of the oldest record it kept.
// Every other sink's series goes to 0.
func (m *Metrics) RetentionHeld(by string, since time.Time) {
	m.outbox.sinks.Range(func(k, _ any) bool {
		m.outbox.heldSeconds.WithLabelValues(k.(string)).Set(0)
		return true
	})
	if by != "" {
		m.outbox.sinks.Store(by, struct{}{})
		m.outbox.heldSeconds.WithLabelValues(by).Set(max(m.now().Sub(since).Seconds(), 0))
	}
}
