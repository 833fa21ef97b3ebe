package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// retentionMetrics are the figures of retention (the pruner of the store).
type retentionMetrics struct {
	pruned  prometheus.Counter
	cuts    prometheus.Counter
	lastCut prometheus.Gauge
}

func (m *Metrics) registerRetention() {
	r := &m.ret
	r.pruned = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "retention_pruned_events_total",
		Help: "Records removed by retention (expired events and snapshot records).",
	})
	r.cuts = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "retention_cuts_total",
		Help: "Cut records retention added to the hash chain (one per batch of removals).",
	})
	r.lastCut = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "retention_last_cut_timestamp_seconds",
		Help: "When retention last cut the chain (Unix time; 0: not since start).",
	})
	m.own.MustRegister(r.pruned, r.cuts, r.lastCut)
}

// Pruned reports a retention pass that removed records under cuts, the
// last made at lastCut.
func (m *Metrics) Pruned(records uint64, cuts int, lastCut time.Time) {
	m.ret.pruned.Add(float64(records))
	m.ret.cuts.Add(float64(cuts))
	if !lastCut.IsZero() {
		m.ret.lastCut.Set(float64(lastCut.UnixNano()) / 1e9)
	}
}
