package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// snapshotMetrics are the figures of the tables' snapshot (package snapshot).
type snapshotMetrics struct {
	rows      prometheus.Counter
	tables    *prometheus.GaugeVec
	remaining prometheus.Gauge
	eta       prometheus.Gauge
}

func (m *Metrics) registerSnapshot() {
	s := &m.snap
	s.rows = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "snapshot_rows_total",
		Help: "Rows the snapshot copied, as they were (stored as snapshot records, except a row the stream had already changed, which is dropped; not counted in events_total).",
	})
	s.tables = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "snapshot_tables",
		Help: "Tables of the snapshot by state: pending, copying, done.",
	}, []string{"state"})
	s.remaining = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "snapshot_remaining_rows",
		Help: "Rows of the snapshot still to copy, estimated from pg_class.reltuples (0 when done).",
	})
	s.eta = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "snapshot_eta_seconds",
		Help: "Estimated seconds until the snapshot is complete, at its rate so far (0 when done or unknown).",
	})
	for _, st := range []string{"pending", "copying", "done"} {
		s.tables.WithLabelValues(st).Set(0)
	}
	m.own.MustRegister(s.rows, s.tables, s.remaining, s.eta)
}

// SnapshotRows counts n rows stored as snapshot records.
func (m *Metrics) SnapshotRows(n int) {
	if n > 0 {
		m.snap.rows.Add(float64(n))
	}
}

// SnapshotTables reports how many tables of the snapshot are in each state.
func (m *Metrics) SnapshotTables(pending, copying, done int) {
	m.snap.tables.WithLabelValues("pending").Set(float64(pending))
	m.snap.tables.WithLabelValues("copying").Set(float64(copying))
	m.snap.tables.WithLabelValues("done").Set(float64(done))
}

// SnapshotRemaining reports the rows still to copy and the time that takes.
func (m *Metrics) SnapshotRemaining(rows int64, eta time.Duration) {
	m.snap.remaining.Set(float64(rows))
	m.snap.eta.Set(eta.Seconds())
}
